package edges

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// Defaults of ProbeOptions.
const (
	DefaultProbeTimeout = 3 * time.Second
	DefaultPings        = 3
	DefaultSampleBytes  = protocol.MaxProbeBytes
)

// ProbeOptions bound a probe run. Zero values take the defaults.
type ProbeOptions struct {
	// Timeout bounds the whole run, whatever the candidates do
	// (DefaultProbeTimeout).
	Timeout time.Duration
	// Pings is the number of measured round trips per candidate, after
	// one that opens the connection (DefaultPings).
	Pings int
	// SampleBytes is the size of the throughput sample (DefaultSampleBytes,
	// at most MaxProbeBytes).
	SampleBytes int64
	// SampleTime bounds how long the receiver reads the sample, from its
	// first byte (at most ProbeReadTime). 0 takes SampleRTTs round trips
	// of the candidate, within MinSampleTime..ProbeReadTime: on a slow
	// link far away the whole sample would take longer than it tells,
	// while a few round trips already show what one connection carries.
	SampleTime time.Duration
}

// The default bounds of a throughput sample's reading time (see
// ProbeOptions.SampleTime).
const (
	SampleRTTs    = 4
	MinSampleTime = 100 * time.Millisecond
)

// sampleTime is how long the receiver is asked to read the sample of a
// candidate whose round trip is rtt.
func (o ProbeOptions) sampleTime(rtt time.Duration) time.Duration {
	if o.SampleTime > 0 {
		return min(o.SampleTime, protocol.ProbeReadTime)
	}
	return min(max(SampleRTTs*rtt, MinSampleTime), protocol.ProbeReadTime)
}

func (o ProbeOptions) withDefaults() ProbeOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Pings <= 0 {
		o.Pings = DefaultPings
	}
	if o.SampleBytes <= 0 {
		o.SampleBytes = DefaultSampleBytes
	}
	o.SampleBytes = min(o.SampleBytes, protocol.MaxProbeBytes)
	return o
}

// Why a candidate failed its probe (Measurement.Err wraps one of them,
// or context.Canceled when the caller gave up).
var (
	ErrTimedOut    = errors.New("timed out")
	ErrUnreachable = errors.New("unreachable")
	ErrBadStatus   = errors.New("bad status")
	ErrBadAnswer   = errors.New("bad answer")
)

// Measurement is what probing one candidate found.
type Measurement struct {
	Candidate protocol.Candidate
	// RTT is the median round trip of the measured pings, on a
	// connection already open (0 when unknown).
	RTT time.Duration
	// Connect is the time the first request took to get its connection
	// (DNS, TCP and TLS), not counted in RTT.
	Connect time.Duration
	// Throughput is in bytes per second, as the receiver measured it; 0
	// when unknown (always for direct candidates).
	Throughput float64
	// Healthy is true when the candidate answered everything it was asked
	// (health pings with 200 and, for origin and relays, the throughput
	// probe).
	Healthy bool
	// Err says why it is not healthy: it wraps ErrTimedOut,
	// ErrUnreachable, ErrBadStatus, ErrBadAnswer or context.Canceled.
	Err error
}

// Probe measures the candidates concurrently and returns one Measurement
// per candidate, in their order, within opts.Timeout of the call (plus a
// moment to collect the answers) whatever the candidates do.
//
// Each candidate gets a first request that opens (warms) its connection,
// whose connection setup time is Connect, then opts.Pings sequential
// round trips on that connection, whose median is RTT: GET /healthz on
// origins and relays, which must answer 200; HEAD of the endpoint URL on
// direct candidates, where any answer counts. Origins and relays then
// receive one POST PathProbe of opts.SampleBytes random bytes, which
// they read for at most the sample time (opts.SampleTime, by default
// SampleRTTs of the candidate's round trips); their ProbeResult gives
// Throughput. The throughput probes start once every
// candidate has finished its pings (or a quarter of the timeout has
// passed), so that uploads do not inflate the others' round trips; they
// then run concurrently and share the client's uplink, which scales every
// figure alike.
//
// Probes never share connections with uploads: when hc's transport is an
// *http.Transport (or hc is nil, or has none), a clone of it (TLS and
// proxy settings included), restricted to HTTP/1.1, serves the run and its
// connections are closed at the end. Another http.RoundTripper is used as
// it is. Redirects are not followed.
func Probe(ctx context.Context, hc *http.Client, cands []protocol.Candidate, opts ProbeOptions) []Measurement {
	opts = opts.withDefaults()
	out := make([]Measurement, len(cands))
	for i, c := range cands {
		out[i].Candidate = c
	}
	if len(cands) == 0 {
		return out
	}
	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	client, done := probeClient(hc, len(cands))
	defer done()

	var sample []byte
	if slices.ContainsFunc(cands, func(c protocol.Candidate) bool { return c.Kind != protocol.KindDirect }) {
		sample = make([]byte, opts.SampleBytes)
		rand.Read(sample) // incompressible, whatever the path does
	}

	type result struct {
		i int
		m Measurement
	}
	results := make(chan result, len(cands))
	var pinged sync.WaitGroup
	pinged.Add(len(cands))
	allPinged := make(chan struct{})
	go func() { pinged.Wait(); close(allPinged) }()
	gate := make(chan struct{})
	go func() {
		t := time.NewTimer(opts.Timeout / 4)
		defer t.Stop()
		select {
		case <-allPinged:
		case <-t.C:
		case <-pctx.Done():
		}
		close(gate)
	}()
	for i, c := range cands {
		go func() {
			p := prober{client: client, opts: opts, sample: sample, gate: gate, pinged: sync.OnceFunc(pinged.Done)}
			defer p.pinged()
			results <- result{i, p.run(pctx, c)}
		}()
	}

	seen := make([]bool, len(cands))
	expired := pctx.Done()
	var grace <-chan time.Time
collect:
	for n := 0; n < len(cands); {
		select {
		case r := <-results:
			out[r.i], seen[r.i] = r.m, true
			n++
		case <-expired:
			// The requests are being cancelled; their goroutines report
			// at once, normally. Whoever does not is timed out anyway.
			expired = nil
			t := time.NewTimer(250 * time.Millisecond)
			defer t.Stop()
			grace = t.C
		case <-grace:
			break collect
		}
	}
	for i := range out {
		if !seen[i] {
			out[i].Err = ctxError(pctx, "probe")
		}
	}
	return out
}

// probeClient is the client of one probe run and what to do at its end.
func probeClient(hc *http.Client, n int) (*http.Client, func()) {
	base, _ := http.DefaultTransport.(*http.Transport)
	if hc != nil && hc.Transport != nil {
		t, ok := hc.Transport.(*http.Transport)
		if !ok {
			return hc, func() {}
		}
		base = t
	}
	var t *http.Transport
	if base != nil {
		t = base.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	t.ForceAttemptHTTP2 = false
	t.DisableKeepAlives = false
	t.DisableCompression = true
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = max(n, 2)
	t.MaxConnsPerHost = 0
	t.ResponseHeaderTimeout = 0 // the run's deadline covers it
	c := &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, t.CloseIdleConnections
}

type prober struct {
	client *http.Client
	opts   ProbeOptions
	sample []byte
	gate   <-chan struct{}
	pinged func()
}

func (p *prober) run(ctx context.Context, c protocol.Candidate) Measurement {
	m := Measurement{Candidate: c}
	base := strings.TrimRight(c.URL, "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		m.Err = fmt.Errorf("%w: %q is not an http(s) URL", ErrUnreachable, c.URL)
		return m
	}
	method, target, stage := http.MethodGet, base+"/healthz", "healthz"
	if c.Kind == protocol.KindDirect {
		method, target, stage = http.MethodHead, c.URL, "ping"
	}

	rtts := make([]time.Duration, 0, p.opts.Pings)
	for i := 0; i <= p.opts.Pings; i++ {
		tm, status, err := p.ping(ctx, method, target)
		if err != nil {
			m.Err = p.failure(ctx, stage, err)
			break
		}
		if c.Kind != protocol.KindDirect && status != http.StatusOK {
			m.Err = fmt.Errorf("%s: %w: HTTP %d", stage, ErrBadStatus, status)
			break
		}
		if i == 0 {
			m.Connect = tm.connect
		} else {
			rtts = append(rtts, tm.rtt)
		}
	}
	m.RTT = median(rtts)
	p.pinged()
	if m.Err != nil || c.Kind == protocol.KindDirect {
		m.Healthy = m.Err == nil
		return m
	}

	select {
	case <-p.gate:
	case <-ctx.Done():
		m.Err = ctxError(ctx, "throughput")
		return m
	}
	res, err := p.throughput(ctx, base+protocol.PathProbe+"?"+protocol.ProbeParamMillis+"="+strconv.FormatInt(p.opts.sampleTime(m.RTT).Milliseconds(), 10))
	if err != nil {
		m.Err = p.failure(ctx, "throughput", err)
		return m
	}
	if res.Bytes > 0 && res.Micros > 0 {
		m.Throughput = float64(res.Bytes) / (float64(res.Micros) / 1e6)
	}
	m.Healthy = true
	return m
}

// timing of one request, from its httptrace.
type timing struct {
	connect, rtt time.Duration
}

// ping makes one request and reads (a little of) its answer, so that the
// connection can serve the next.
func (p *prober) ping(ctx context.Context, method, target string) (timing, int, error) {
	var (
		mu                                 sync.Mutex
		getConn, gotConn, wrote, firstByte time.Time
		reused                             bool
		now                                = func(t *time.Time) { mu.Lock(); *t = time.Now(); mu.Unlock() }
	)
	trace := &httptrace.ClientTrace{
		GetConn: func(string) { now(&getConn) },
		GotConn: func(i httptrace.GotConnInfo) {
			now(&gotConn)
			mu.Lock()
			reused = i.Reused
			mu.Unlock()
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { now(&wrote) },
		GotFirstResponseByte: func() { now(&firstByte) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, target, nil)
	if err != nil {
		return timing{}, 0, err
	}
	req.Header.Set("User-Agent", "jetty-probe")
	start := time.Now()
	resp, err := p.client.Do(req)
	end := time.Now()
	if err != nil {
		return timing{}, 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()

	mu.Lock()
	defer mu.Unlock()
	var t timing
	if !reused && !getConn.IsZero() && !gotConn.IsZero() {
		t.connect = gotConn.Sub(getConn)
	}
	switch {
	case !wrote.IsZero() && !firstByte.IsZero() && firstByte.After(wrote):
		t.rtt = firstByte.Sub(wrote)
	case !gotConn.IsZero():
		t.rtt = end.Sub(gotConn)
	default:
		t.rtt = end.Sub(start) - t.connect
	}
	return t, resp.StatusCode, nil
}

// throughput posts the sample and reads the receiver's ProbeResult.
func (p *prober) throughput(ctx context.Context, target string) (protocol.ProbeResult, error) {
	var res protocol.ProbeResult
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(p.sample))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("User-Agent", "jetty-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("%w: HTTP %d", ErrBadStatus, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&res); err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if res.Bytes < 0 || res.Micros < 0 {
		return res, fmt.Errorf("%w: negative figures %+v", ErrBadAnswer, res)
	}
	return res, nil
}

// failure classifies the error of a probe request.
func (p *prober) failure(ctx context.Context, stage string, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx, stage)
	}
	if errors.Is(err, ErrBadStatus) || errors.Is(err, ErrBadAnswer) {
		return fmt.Errorf("%s: %w", stage, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: %w: %v", stage, ErrTimedOut, err)
	}
	return fmt.Errorf("%s: %w: %v", stage, ErrUnreachable, err)
}

// ctxError says why ctx ended: the run's deadline (ErrTimedOut) or the
// caller giving up (context.Canceled).
func ctxError(ctx context.Context, stage string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || ctx.Err() == nil {
		return fmt.Errorf("%s: %w", stage, ErrTimedOut)
	}
	return fmt.Errorf("%s: %w", stage, ctx.Err())
}

// median of ds (0 for none; the mean of the middle two for an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
