package edges

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

func TestProbeLatencyAndThroughput(t *testing.T) {
	fast := newFakeEdge(t, edgeConf{})
	slow := newFakeEdge(t, edgeConf{Delay: 150 * time.Millisecond})
	cands := []protocol.Candidate{
		{ID: "origin", Kind: protocol.KindOrigin, URL: fast.URL()},
		{ID: "r1", Kind: protocol.KindRelay, URL: slow.URL() + "/"},
	}
	ms := Probe(context.Background(), nil, cands, ProbeOptions{})
	if len(ms) != 2 {
		t.Fatalf("%d measurements", len(ms))
	}
	for i, m := range ms {
		if m.Candidate != cands[i] {
			t.Errorf("measurement %d is of %+v, want %+v", i, m.Candidate, cands[i])
		}
		if !m.Healthy || m.Err != nil {
			t.Fatalf("%s: healthy %v, err %v", m.Candidate.ID, m.Healthy, m.Err)
		}
		if m.Throughput <= 0 {
			t.Errorf("%s: throughput %v", m.Candidate.ID, m.Throughput)
		}
		if m.Connect <= 0 {
			t.Errorf("%s: connect time %v", m.Candidate.ID, m.Connect)
		}
	}
	if ms[1].RTT < 150*time.Millisecond {
		t.Errorf("slow RTT %v, the receiver waits 150ms", ms[1].RTT)
	}
	if ms[0].RTT <= 0 || ms[0].RTT >= 100*time.Millisecond {
		t.Errorf("fast RTT %v", ms[0].RTT)
	}
	for _, f := range []*fakeEdge{fast, slow} {
		// One warming request and DefaultPings measured ones, all on one
		// connection; one throughput probe.
		if n := f.healthz.Load(); n != 1+DefaultPings {
			t.Errorf("healthz asked %d times, want %d", n, 1+DefaultPings)
		}
		if n := f.remoteCount(); n != 1 {
			t.Errorf("healthz came on %d connections, want 1", n)
		}
		if n := f.probes.Load(); n != 1 {
			t.Errorf("%d throughput probes", n)
		}
		if n := f.probeLength.Load(); n != DefaultSampleBytes {
			t.Errorf("probe of %d bytes, want %d", n, DefaultSampleBytes)
		}
	}
	// Small chunks: the round trips decide (loopback throughput is CPU
	// bound and varies with the machine's load).
	sc := Score(ms, 64<<10, 8)
	if len(sc) != 1 || sc[0].Candidate.ID != "origin" || sc[0].Weight != 1 {
		t.Errorf("scores %+v: the 150ms relay should be cut", sc)
	}
}

func TestProbeThroughputIsTheReceivers(t *testing.T) {
	const rate = 4 << 20
	fast := newFakeEdge(t, edgeConf{})
	slow := newFakeEdge(t, edgeConf{Rate: rate})
	ms := Probe(context.Background(), nil, []protocol.Candidate{
		{ID: "origin", Kind: protocol.KindOrigin, URL: fast.URL()},
		{ID: "r1", Kind: protocol.KindRelay, URL: slow.URL()},
	}, ProbeOptions{})
	if !ms[0].Healthy || !ms[1].Healthy {
		t.Fatalf("unhealthy: %v / %v", ms[0].Err, ms[1].Err)
	}
	// The client's socket buffers swallow 1 MiB at once on loopback: only
	// the receiver's figure shows the limit.
	if thr := ms[1].Throughput; thr <= 0 || thr > 1.1*rate {
		t.Errorf("rate-limited receiver: throughput %.0f B/s, limit %d", thr, rate)
	}
	if ms[0].Throughput <= ms[1].Throughput {
		t.Errorf("unlimited receiver %.0f B/s not above the limited one's %.0f", ms[0].Throughput, ms[1].Throughput)
	}
}

func TestProbeBoundedByTimeout(t *testing.T) {
	fast := newFakeEdge(t, edgeConf{})
	cands := []protocol.Candidate{
		{ID: "origin", Kind: protocol.KindOrigin, URL: fast.URL()},
		{ID: "hole", Kind: protocol.KindRelay, URL: blackHole(t)},
		{ID: "closed", Kind: protocol.KindRelay, URL: closedPort(t)},
		{ID: "direct", Kind: protocol.KindDirect, URL: blackHole(t)},
	}
	const timeout = time.Second
	start := time.Now()
	ms := Probe(context.Background(), nil, cands, ProbeOptions{Timeout: timeout})
	took := time.Since(start)
	if took > timeout+750*time.Millisecond {
		t.Errorf("Probe took %v with a %v timeout", took, timeout)
	}
	if took < timeout {
		t.Errorf("Probe took %v: it should have waited for the black holes until the %v timeout", took, timeout)
	}
	if m := ms[0]; !m.Healthy || m.Throughput <= 0 {
		t.Errorf("origin: healthy %v, throughput %v, err %v", m.Healthy, m.Throughput, m.Err)
	}
	for _, i := range []int{1, 3} {
		if m := ms[i]; m.Healthy || !errors.Is(m.Err, ErrTimedOut) {
			t.Errorf("%s: healthy %v, err %v; want timed out", m.Candidate.ID, m.Healthy, m.Err)
		}
	}
	if m := ms[2]; m.Healthy || !errors.Is(m.Err, ErrUnreachable) {
		t.Errorf("closed port: healthy %v, err %v; want unreachable", m.Healthy, m.Err)
	}
	sc := Score(ms, 8<<20, 8)
	if len(sc) != 1 || sc[0].Candidate.ID != "origin" {
		t.Errorf("scored %v, want origin alone", ids(sc))
	}
}

func TestProbeStatuses(t *testing.T) {
	sick := newFakeEdge(t, edgeConf{HealthStatus: http.StatusServiceUnavailable})
	store, hits := fakeStore(t, 0)
	ms := Probe(context.Background(), nil, []protocol.Candidate{
		{ID: "r1", Kind: protocol.KindRelay, URL: sick.URL()},
		{ID: "direct", Kind: protocol.KindDirect, URL: store},
		{ID: "r2", Kind: protocol.KindRelay, URL: "ftp://example.com"},
	}, ProbeOptions{Pings: 2})
	if m := ms[0]; m.Healthy || !errors.Is(m.Err, ErrBadStatus) {
		t.Errorf("503 healthz: healthy %v, err %v", m.Healthy, m.Err)
	}
	if n := sick.probes.Load(); n != 0 {
		t.Errorf("an unhealthy relay got %d throughput probes", n)
	}
	// Any answer of the object store counts; only its latency is known.
	if m := ms[1]; !m.Healthy || m.Err != nil || m.Throughput != 0 || m.RTT <= 0 {
		t.Errorf("direct: %+v", m)
	}
	if n := hits.Load(); n != 1+2 {
		t.Errorf("the store was asked %d times, want 3", n)
	}
	if m := ms[2]; m.Healthy || !errors.Is(m.Err, ErrUnreachable) {
		t.Errorf("ftp URL: healthy %v, err %v", m.Healthy, m.Err)
	}
}

func TestProbeSampleBytes(t *testing.T) {
	e := newFakeEdge(t, edgeConf{})
	c := []protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: e.URL()}}
	Probe(context.Background(), nil, c, ProbeOptions{SampleBytes: 64 << 10})
	if n := e.probeLength.Load(); n != 64<<10 {
		t.Errorf("probe of %d bytes, want 64 KiB", n)
	}
	Probe(context.Background(), nil, c, ProbeOptions{SampleBytes: 5 * protocol.MaxProbeBytes})
	if n := e.probeLength.Load(); n != protocol.MaxProbeBytes {
		t.Errorf("probe of %d bytes, want at most %d", n, protocol.MaxProbeBytes)
	}
}

func TestProbeAsksForSampleTime(t *testing.T) {
	e := newFakeEdge(t, edgeConf{})
	c := []protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: e.URL()}}
	// A local candidate: its round trips are far below the floor.
	Probe(context.Background(), nil, c, ProbeOptions{})
	if got := e.probeMillis.Load(); got != "100" {
		t.Errorf("probe asked for %v ms, want MinSampleTime (100)", got)
	}
	Probe(context.Background(), nil, c, ProbeOptions{SampleTime: 700 * time.Millisecond})
	if got := e.probeMillis.Load(); got != "700" {
		t.Errorf("probe asked for %v ms, want the 700 set", got)
	}
}

func TestSampleTime(t *testing.T) {
	for _, tc := range []struct {
		set, rtt, want time.Duration
	}{
		{0, 0, MinSampleTime},
		{0, 10 * time.Millisecond, MinSampleTime},
		{0, 50 * time.Millisecond, 200 * time.Millisecond},
		{0, 300 * time.Millisecond, 1200 * time.Millisecond},
		{0, 2 * time.Second, protocol.ProbeReadTime},
		{30 * time.Millisecond, 50 * time.Millisecond, 30 * time.Millisecond},
		{time.Minute, 0, protocol.ProbeReadTime},
	} {
		if got := (ProbeOptions{SampleTime: tc.set}).sampleTime(tc.rtt); got != tc.want {
			t.Errorf("SampleTime %v, rtt %v: %v, want %v", tc.set, tc.rtt, got, tc.want)
		}
	}
}

func TestProbeZeroMicros(t *testing.T) {
	// A receiver that read everything at once reports 0 µs: no figure,
	// not an infinite one.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"bytes":1048576,"micros":0}`)
	}))
	defer srv.Close()
	other := newFakeEdge(t, edgeConf{})
	ms := Probe(context.Background(), nil, []protocol.Candidate{
		{ID: "origin", Kind: protocol.KindOrigin, URL: other.URL()},
		{ID: "r1", Kind: protocol.KindRelay, URL: srv.URL},
	}, ProbeOptions{})
	if m := ms[1]; !m.Healthy || m.Throughput != 0 {
		t.Fatalf("zero micros: healthy %v, throughput %v, err %v", m.Healthy, m.Throughput, m.Err)
	}
	for _, s := range Score(ms, 1<<20, 4) {
		if s.Candidate.ID == "r1" && !s.Assumed {
			t.Errorf("r1 should be credited with the other's throughput: %+v", s)
		}
	}
}

func TestProbeBadAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `not json`)
	}))
	defer srv.Close()
	ms := Probe(context.Background(), nil, []protocol.Candidate{{ID: "r1", Kind: protocol.KindRelay, URL: srv.URL}}, ProbeOptions{})
	if m := ms[0]; m.Healthy || !errors.Is(m.Err, ErrBadAnswer) {
		t.Errorf("healthy %v, err %v; want a bad answer", m.Healthy, m.Err)
	}
}

func TestProbeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	ms := Probe(ctx, nil, []protocol.Candidate{{ID: "r1", Kind: protocol.KindRelay, URL: blackHole(t)}}, ProbeOptions{Timeout: 10 * time.Second})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled Probe took %v", took)
	}
	if !errors.Is(ms[0].Err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", ms[0].Err)
	}
}

func TestProbeNoCandidates(t *testing.T) {
	if ms := Probe(context.Background(), nil, nil, ProbeOptions{}); len(ms) != 0 {
		t.Fatal(ms)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5}, 5},
		{[]time.Duration{9, 1, 5}, 5},
		{[]time.Duration{9, 1, 5, 3}, 4},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
