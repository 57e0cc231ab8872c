package edges

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/protocol"
)

// DefaultMaxEdges is the most routes a Selector returns by default.
const DefaultMaxEdges = 5

// OriginFallbackShare is the weight the origin keeps when it did not pass
// its probe (or was outscored) while other routes did: the session's own
// URL is known to work, since it just opened the session.
const OriginFallbackShare = 0.05

// sessionsPath is where session URLs live under a server's base URL.
const sessionsPath = "/api/jetty/sessions/"

// Report is what an evaluation found, for display (`jetty edges`) and
// JSON output.
type Report struct {
	// JettySpeed is the server's word: false means origin only, nothing
	// was probed.
	JettySpeed bool `json:"jettyspeed"`
	// Candidates are the candidates kept, best first, with their weights.
	Candidates []Scored `json:"candidates"`
	// Measurements are every candidate probed, in the server's order,
	// dropped ones included (with Err saying why when they failed).
	Measurements []Measurement `json:"measurements"`
	// Strategy is the server's advice.
	Strategy protocol.EdgeStrategy `json:"strategy"`
	// ChunkSize and Workers are what the candidates were scored for.
	ChunkSize int64 `json:"chunk_size"`
	Workers   int   `json:"workers"`
	// Routes are the routes Select returned (empty from Evaluate).
	Routes []engine.Route `json:"routes,omitempty"`
	// Took is the time from the optimal-edges call to the scores.
	Took time.Duration `json:"-"`
}

// EvaluateOptions tune Evaluate.
type EvaluateOptions struct {
	// Request is sent to optimal-edges (size and location hints).
	Request protocol.OptimalRequest
	// Probe bounds the probes.
	Probe ProbeOptions
	// Kinds, when not empty, limits the candidates probed to these kinds;
	// the origin is always probed.
	Kinds []string
	// HTTP is the template of the probes' client (see Probe); nil means
	// the engine client's.
	HTTP *http.Client
}

// Candidates asks the server for candidates (POST PathOptimal, an
// authenticated control call).
func Candidates(ctx context.Context, c *engine.Client, req protocol.OptimalRequest) (protocol.OptimalResponse, error) {
	var out protocol.OptimalResponse
	err := c.Call(ctx, http.MethodPost, protocol.PathOptimalEdges, req, &out)
	return out, err
}

// Evaluate asks for candidates, probes and scores them, without a
// session. chunkSize and workers default (when ≤ 0) to the server's
// strategy.
func Evaluate(ctx context.Context, c *engine.Client, chunkSize int64, workers int, opts EvaluateOptions) (Report, error) {
	if c == nil {
		return Report{}, errors.New("edges: Evaluate needs a client")
	}
	start := time.Now()
	resp, err := Candidates(ctx, c, opts.Request)
	if err != nil {
		return Report{}, err
	}
	if chunkSize <= 0 {
		chunkSize = resp.Strategy.ChunkSize
	}
	if workers <= 0 {
		workers = resp.Strategy.Workers
	}
	hc := opts.HTTP
	if hc == nil {
		hc = c.HTTPClient()
	}
	return evaluate(ctx, hc, resp, strings.TrimRight(c.BaseURL, "/"), chunkSize, workers, opts, start)
}

// evaluate probes and scores the candidates of resp. originURL stands in
// for the origin's candidate should the server have left it out.
func evaluate(ctx context.Context, hc *http.Client, resp protocol.OptimalResponse, originURL string, chunkSize int64, workers int, opts EvaluateOptions, start time.Time) (Report, error) {
	rep := Report{JettySpeed: resp.JettySpeed, Strategy: resp.Strategy, ChunkSize: chunkSize, Workers: workers}
	cands := candidateList(resp.Edges, originURL, opts.Kinds)
	if !resp.JettySpeed || len(cands) <= 1 {
		// Nothing to choose between: no probe.
		rep.Took = time.Since(start)
		return rep, nil
	}
	rep.Measurements = Probe(ctx, hc, cands, opts.Probe)
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.Candidates = Score(rep.Measurements, chunkSize, workers)
	rep.Took = time.Since(start)
	return rep, nil
}

// candidateList is the server's candidates worth probing: known kinds,
// the wanted ones, one per ID, exactly one origin (first).
func candidateList(list []protocol.Candidate, originURL string, kinds []string) []protocol.Candidate {
	out := make([]protocol.Candidate, 0, len(list)+1)
	seen := map[string]bool{}
	hasOrigin := false
	for _, c := range list {
		switch {
		case c.Kind != protocol.KindOrigin && c.Kind != protocol.KindRelay && c.Kind != protocol.KindDirect:
			continue
		case c.Kind == protocol.KindOrigin && hasOrigin:
			continue
		case c.Kind != protocol.KindOrigin && len(kinds) > 0 && !slices.Contains(kinds, c.Kind):
			continue
		}
		if c.Kind == protocol.KindOrigin {
			c.ID = protocol.KindOrigin
			hasOrigin = true
		}
		if c.ID == "" || seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		out = append(out, c)
	}
	if !hasOrigin {
		if seen[protocol.KindOrigin] { // a relay calling itself "origin"
			out = slices.DeleteFunc(out, func(c protocol.Candidate) bool { return c.ID == protocol.KindOrigin })
		}
		out = append(out, protocol.Candidate{ID: protocol.KindOrigin, Kind: protocol.KindOrigin, URL: originURL})
	}
	// The origin first: it is the reference in reports.
	slices.SortStableFunc(out, func(a, b protocol.Candidate) int {
		if (a.Kind == protocol.KindOrigin) == (b.Kind == protocol.KindOrigin) {
			return 0
		}
		if a.Kind == protocol.KindOrigin {
			return -1
		}
		return 1
	})
	return out
}

// Selector chooses the routes of an upload: it implements
// engine.EdgeSelector.
type Selector struct {
	// Client is the server (required).
	Client *engine.Client
	// Timeout bounds the probes (DefaultProbeTimeout).
	Timeout time.Duration
	// SampleBytes is the throughput sample (DefaultSampleBytes).
	SampleBytes int64
	// Pings is the number of measured round trips (DefaultPings).
	Pings int
	// MaxEdges is the most routes returned, the origin included
	// (DefaultMaxEdges), not counting the origin's fallback route.
	MaxEdges int
	// Kinds, when not empty, limits the routes to these kinds (e.g.
	// origin and relay); the origin is always among them.
	Kinds []string
	// Hint is sent to optimal-edges (region, coordinates, file size; the
	// file size defaults to the session's missing chunks × chunk size).
	Hint protocol.OptimalRequest
	// OnReport, when set, receives the report of each selection.
	OnReport func(Report)
	// Reuse, when positive, lets a Select within that time of the last
	// probe (for the same chunk size) reuse its scores instead of probing
	// again: the files of one command are probed once.
	Reuse time.Duration
	// MinChunks is the fewest missing chunks worth choosing routes for;
	// below it the origin alone takes them and nothing is probed
	// (default 2: a single chunk gains nothing from several routes).
	MinChunks int
	// Memory, when set, is a file (DefaultMemoryPath, say) where each
	// selection's best edge is kept per server, so that the next upload
	// to that server starts on it while its own selection runs
	// (StartRoutes). "" keeps nothing.
	Memory string
	// MemoryFresh is how long a remembered edge is used
	// (DefaultMemoryFresh).
	MemoryFresh time.Duration

	mu     sync.Mutex
	last   *Report // for Reuse
	lastAt time.Time
	seen   *Report // the last report, for AdviseWorkers
	pre    *prefetch
}

// prefetchTTL is how long a prefetched probe stays usable (one left by an
// upload that needed no routes, deduplicated say, is then replaced).
const prefetchTTL = time.Minute

// prefetch is a probe run started by Prefetch.
type prefetch struct {
	at        time.Time
	chunkSize int64
	done      chan struct{}
	rep       Report
	err       error

	mu    sync.Mutex
	cands *protocol.OptimalResponse // once received, while the probe runs (PresignHint)
}

var _ engine.Prefetcher = (*Selector)(nil)

// Prefetch asks for candidates and probes them in the background (while
// the engine hashes the file); the next Select for the same chunk size
// uses the result instead of probing again. Nothing happens when a
// reusable report or a prefetch is already there, or the file is too
// small to be worth routes (MinChunks).
func (sel *Selector) Prefetch(ctx context.Context, fileSize, chunkSize int64, workers int) {
	if sel.Client == nil || chunkSize <= 0 || (fileSize+chunkSize-1)/chunkSize < int64(sel.minChunks()) {
		return
	}
	sel.mu.Lock()
	defer sel.mu.Unlock()
	if (sel.pre != nil && time.Since(sel.pre.at) < prefetchTTL) || (sel.Reuse > 0 && sel.last != nil && sel.last.ChunkSize == chunkSize && time.Since(sel.lastAt) < sel.Reuse) {
		return
	}
	p := &prefetch{at: time.Now(), chunkSize: chunkSize, done: make(chan struct{})}
	sel.pre = p
	req := sel.Hint
	if req.FileSize == 0 {
		req.FileSize = fileSize
	}
	go func() {
		defer close(p.done)
		start := time.Now()
		resp, err := Candidates(ctx, sel.Client, req)
		if err != nil {
			p.err = err
			return
		}
		p.mu.Lock()
		p.cands = &resp
		p.mu.Unlock()
		p.rep, p.err = evaluate(ctx, sel.Client.HTTPClient(), resp, strings.TrimRight(sel.Client.BaseURL, "/"), chunkSize, workers, sel.evalOptions(req), start)
	}()
}

// takePrefetch returns the prefetched report for chunkSize, waiting for
// it, and forgets it (ok false: none, or it failed).
func (sel *Selector) takePrefetch(ctx context.Context, chunkSize int64) (Report, bool) {
	sel.mu.Lock()
	p := sel.pre
	if p == nil || p.chunkSize != chunkSize || time.Since(p.at) > prefetchTTL {
		sel.mu.Unlock()
		return Report{}, false
	}
	sel.pre = nil
	sel.mu.Unlock()
	select {
	case <-p.done:
	case <-ctx.Done():
		// The upload ended before the probe (the engine does not wait
		// for it): leave it to the next Select.
		sel.mu.Lock()
		if sel.pre == nil {
			sel.pre = p
		}
		sel.mu.Unlock()
		return Report{}, false
	}
	return p.rep, p.err == nil
}

func (sel *Selector) minChunks() int {
	if sel.MinChunks <= 0 {
		return 2
	}
	return sel.MinChunks
}

func (sel *Selector) evalOptions(req protocol.OptimalRequest) EvaluateOptions {
	return EvaluateOptions{
		Request: req,
		Probe:   ProbeOptions{Timeout: sel.Timeout, Pings: sel.Pings, SampleBytes: sel.SampleBytes},
		Kinds:   sel.Kinds,
	}
}

// SlowConnection is the per-connection throughput (bytes per second)
// below which AdviseWorkers asks for the worker ceiling: a connection
// that slow is held back by latency or by shaping along the path, not by
// this machine, and parallel connections are what fill the link. Above
// it (a LAN, the same host) more workers only cost CPU and memory.
const SlowConnection = 25e6

var _ engine.WorkerAdvisor = (*Selector)(nil)

// AdviseWorkers is the worker ceiling when the best candidate of the last
// selection measured less than SlowConnection per connection (or, with no
// throughput figure at all, when the nearest is SlowRTT or more away),
// else the server's suggestion.
func (sel *Selector) AdviseWorkers(suggested, ceiling int) int {
	sel.mu.Lock()
	rep := sel.seen
	sel.mu.Unlock()
	if rep == nil {
		return suggested
	}
	best, rtt := 0.0, time.Duration(0)
	for _, c := range rep.Candidates {
		best = max(best, c.Throughput)
		if c.RTT > 0 && (rtt == 0 || c.RTT < rtt) {
			rtt = c.RTT
		}
	}
	switch {
	case best >= SlowConnection:
		return suggested
	case best > 0:
		return max(suggested, ceiling)
	case rtt >= SlowRTT:
		// No throughput figure (the sample failed, or only the direct
		// route passed), but every path is far away: one connection
		// carries at most its window per round trip.
		return max(suggested, ceiling)
	}
	return suggested
}

// SlowRTT is the round trip from which AdviseWorkers asks for the ceiling
// when no throughput could be measured.
const SlowRTT = 10 * time.Millisecond

var _ engine.EdgeSelector = (*Selector)(nil)

// Select asks for candidates, probes and scores them and returns the
// routes, best first. The origin route is the session's own ChunkURL;
// relays get the same chunk path under their base URL; a direct route
// asks the origin for presigned part URLs. Without JettySpeed, or when
// nothing beats the origin, the origin alone is returned. When the origin
// fails its probe (or is outscored) while others pass, it is kept with
// OriginFallbackShare of the weight.
func (sel *Selector) Select(ctx context.Context, s *protocol.Session, chunkSize int64, workers int) ([]engine.Route, error) {
	if sel.Client == nil {
		return nil, errors.New("edges: Selector has no Client")
	}
	if s == nil || s.ChunkURL == "" {
		return nil, errors.New("edges: session without a chunk URL")
	}
	if len(s.Missing) < sel.minChunks() {
		return nil, nil
	}
	maxEdges := sel.MaxEdges
	if maxEdges <= 0 {
		maxEdges = DefaultMaxEdges
	}
	if sel.Reuse > 0 {
		sel.mu.Lock()
		last, at := sel.last, sel.lastAt
		sel.mu.Unlock()
		if last != nil && last.ChunkSize == chunkSize && time.Since(at) < sel.Reuse {
			rep := *last
			rep.Took = 0
			rep.Routes = routes(s, rep.Candidates, maxEdges)
			if sel.OnReport != nil {
				sel.OnReport(rep)
			}
			return rep.Routes, nil
		}
	}
	rep, ok := sel.takePrefetch(ctx, chunkSize)
	if !ok {
		start := time.Now()
		req := sel.Hint
		if req.FileSize == 0 && chunkSize > 0 {
			req.FileSize = int64(len(s.Missing)) * chunkSize
		}
		resp, err := Candidates(ctx, sel.Client, req)
		if err != nil {
			return nil, err
		}
		if rep, err = evaluate(ctx, sel.Client.HTTPClient(), resp, originBase(s), chunkSize, workers, sel.evalOptions(req), start); err != nil {
			return nil, err
		}
	}
	rep.Routes = routes(s, rep.Candidates, maxEdges)
	seen := rep
	sel.mu.Lock()
	sel.seen = &seen
	sel.mu.Unlock()
	if sel.Reuse > 0 && rep.JettySpeed {
		kept := rep
		sel.mu.Lock()
		sel.last, sel.lastAt = &kept, time.Now()
		sel.mu.Unlock()
	}
	if rep.JettySpeed && len(rep.Routes) > 0 {
		sel.remember(rep.Routes[0])
	}
	if sel.OnReport != nil {
		sel.OnReport(rep)
	}
	return rep.Routes, nil
}

// routes maps scored candidates (best first) to the routes of session s:
// at most maxEdges of them, the origin kept among them when scored,
// added with OriginFallbackShare when not.
func routes(s *protocol.Session, scored []Scored, maxEdges int) []engine.Route {
	origin := engine.Route{ID: protocol.KindOrigin, Kind: engine.RouteOrigin, Label: hostOf(s.ChunkURL), ChunkURL: s.ChunkURL, Weight: 1}
	var out []engine.Route
	haveOrigin := false
	for _, c := range scored {
		var r engine.Route
		switch c.Candidate.Kind {
		case protocol.KindOrigin:
			r = origin
			haveOrigin = true
		case protocol.KindRelay:
			r = engine.Route{
				ID:       c.Candidate.ID,
				Kind:     engine.RouteRelay,
				Label:    label(c.Candidate),
				ChunkURL: relayChunkURL(c.Candidate.URL, s),
			}
			if l := c.Candidate.Location; l != nil {
				r.Location = l.ID
			}
		case protocol.KindDirect:
			base := originBase(s)
			if base == "" {
				continue
			}
			r = engine.Route{
				ID:         protocol.KindDirect,
				Kind:       engine.RouteDirect,
				Label:      label(c.Candidate),
				PresignURL: presignURL(base, s),
			}
		default:
			continue
		}
		r.Weight = c.Weight
		out = append(out, r)
	}
	if len(out) > maxEdges {
		// Keep the best, the origin among them when it was scored.
		i := slices.IndexFunc(out, func(r engine.Route) bool { return r.ID == protocol.KindOrigin })
		if i >= maxEdges {
			out = append(out[:maxEdges-1], out[i])
		} else {
			out = out[:maxEdges]
		}
	}
	if len(out) == 0 || (len(out) == 1 && haveOrigin) {
		return []engine.Route{origin}
	}
	var sum float64
	for _, r := range out {
		sum += r.Weight
	}
	share := 1.0
	if !haveOrigin {
		share = 1 - OriginFallbackShare
	}
	for i := range out {
		if sum > 0 {
			out[i].Weight = out[i].Weight / sum * share
		} else {
			out[i].Weight = share / float64(len(out))
		}
	}
	if !haveOrigin {
		o := origin
		o.Weight = OriginFallbackShare
		out = append(out, o)
	}
	return out
}

// relayChunkURL is the chunk URL of session s on the relay at base.
func relayChunkURL(base string, s *protocol.Session) string {
	return strings.TrimRight(base, "/") + sessionsPath + url.PathEscape(s.ID) + "/chunks/{index}"
}

// presignURL is where the direct route of session s asks for parts.
func presignURL(base string, s *protocol.Session) string {
	return base + sessionsPath + url.PathEscape(s.ID) + "/presign"
}

var _ engine.PresignHinter = (*Selector)(nil)

// PresignHint is the presign URL of session s when the candidates
// already received (those of a prefetch still probing, or of a report
// kept for Reuse) offer the object store directly and the selector may
// choose it; "" otherwise. It never waits.
func (sel *Selector) PresignHint(s *protocol.Session) string {
	if s == nil || len(s.Missing) < sel.minChunks() || (len(sel.Kinds) > 0 && !slices.Contains(sel.Kinds, protocol.KindDirect)) {
		return ""
	}
	sel.mu.Lock()
	var cands []protocol.Candidate
	speed := false
	switch {
	case sel.pre != nil:
		sel.pre.mu.Lock()
		if r := sel.pre.cands; r != nil {
			cands, speed = r.Edges, r.JettySpeed
		}
		sel.pre.mu.Unlock()
	case sel.last != nil && sel.Reuse > 0 && time.Since(sel.lastAt) < sel.Reuse:
		for _, c := range sel.last.Candidates {
			cands = append(cands, c.Candidate)
		}
		speed = sel.last.JettySpeed
	}
	sel.mu.Unlock()
	base := originBase(s)
	if !speed || base == "" || !slices.ContainsFunc(cands, func(c protocol.Candidate) bool { return c.Kind == protocol.KindDirect }) {
		return ""
	}
	return presignURL(base, s)
}

// originBase is the origin's base URL as the session's chunk URL shows
// it: everything before the sessions path, else its scheme and host.
func originBase(s *protocol.Session) string {
	if i := strings.LastIndex(s.ChunkURL, sessionsPath); i > 0 {
		return s.ChunkURL[:i]
	}
	u, err := url.Parse(strings.ReplaceAll(s.ChunkURL, "{index}", "0"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// hostOf is the host of a URL (the URL itself when it has none).
func hostOf(raw string) string {
	u, err := url.Parse(strings.ReplaceAll(raw, "{index}", "0"))
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Host
}

// label describes a candidate: its location, and its host.
func label(c protocol.Candidate) string {
	host := hostOf(c.URL)
	if l := c.Location; l != nil {
		name := l.Name
		if name == "" {
			name = strings.Trim(l.City+", "+l.Country, ", ")
		}
		if name != "" {
			return name + " (" + host + ")"
		}
	}
	return host
}
