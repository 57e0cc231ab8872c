package edges

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/protocol"
)

// An id whose path form needs escaping.
const oddID = "sess/1 ä?#%"

func testClient(ctl *fakeControl) *engine.Client {
	return &engine.Client{BaseURL: ctl.URL(), APIKey: "key", APISecret: "secret"}
}

// session is a session of the control server, under prefix.
func session(base, prefix string) *protocol.Session {
	return &protocol.Session{
		ID:       oddID,
		ChunkURL: base + prefix + "/api/jetty/sessions/" + url.PathEscape(oddID) + "/chunks/{index}",
		Missing:  []int{0, 1, 2, 3},
	}
}

var strategy = protocol.EdgeStrategy{ChunkSize: 8 << 20, Workers: 8, MaxWorkers: 32, Weights: map[string]float64{"origin": 1}}

// respond answers the origin (at the control server) and extra.
func respond(jettySpeed bool, extra ...protocol.Candidate) func(string) protocol.OptimalResponse {
	return func(base string) protocol.OptimalResponse {
		return protocol.OptimalResponse{
			JettySpeed: jettySpeed,
			Edges:      append([]protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: base, Weight: 1}}, extra...),
			Strategy:   strategy,
		}
	}
}

// reports collects the reports of a Selector.
type reports struct {
	mu   sync.Mutex
	list []Report
}

func (r *reports) add(rep Report) { r.mu.Lock(); r.list = append(r.list, rep); r.mu.Unlock() }

func (r *reports) one(t *testing.T) Report {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.list) != 1 {
		t.Fatalf("%d reports, want 1", len(r.list))
	}
	return r.list[0]
}

func routeIDs(rs []engine.Route) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func checkWeights(t *testing.T, rs []engine.Route) {
	t.Helper()
	var sum float64
	for _, r := range rs {
		if r.Weight <= 0 {
			t.Errorf("route %s has weight %v", r.ID, r.Weight)
		}
		sum += r.Weight
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("weights sum to %v", sum)
	}
}

func TestSelectRoutes(t *testing.T) {
	// Everyone 20 ms away: the scores are close and all are kept.
	const d = 20 * time.Millisecond
	relay := newFakeEdge(t, edgeConf{Delay: d})
	store, storeHits := fakeStore(t, d)
	loc := &protocol.Location{ID: "fra", Name: "Frankfurt"}
	ctl := newFakeControl(t, edgeConf{Delay: d}, respond(true,
		protocol.Candidate{ID: "direct", Kind: protocol.KindDirect, URL: store, Weight: 1},
		protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL() + "/", Location: loc, Weight: 1},
	))
	var reps reports
	sel := &Selector{Client: testClient(ctl), OnReport: reps.add}
	s := session(ctl.URL(), "/prefix")
	const chunk = 1 << 10 // the transfer term is negligible: T ≈ 2×RTT everywhere
	rs, err := sel.Select(context.Background(), s, chunk, 8)
	if err != nil {
		t.Fatal(err)
	}
	ids := routeIDs(rs)
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"direct", "origin", "relay-1"}) {
		t.Fatalf("routes %v", routeIDs(rs))
	}
	checkWeights(t, rs)
	esc := "sess%2F1%20%C3%A4%3F%23%25"
	for _, r := range rs {
		if r.Weight < 0.1 {
			t.Errorf("%s: weight %v for a candidate as good as the others", r.ID, r.Weight)
		}
		switch r.ID {
		case "origin":
			if r.Kind != engine.RouteOrigin || r.ChunkURL != s.ChunkURL || r.PresignURL != "" {
				t.Errorf("origin route %+v", r)
			}
		case "relay-1":
			want := relay.URL() + "/api/jetty/sessions/" + esc + "/chunks/{index}"
			if r.Kind != engine.RouteRelay || r.ChunkURL != want || r.PresignURL != "" {
				t.Errorf("relay route %+v, want chunk URL %s", r, want)
			}
			if !strings.Contains(r.Label, "Frankfurt") {
				t.Errorf("relay label %q", r.Label)
			}
		case "direct":
			want := ctl.URL() + "/prefix/api/jetty/sessions/" + esc + "/presign"
			if r.Kind != engine.RouteDirect || r.PresignURL != want || r.ChunkURL != "" {
				t.Errorf("direct route %+v, want presign URL %s", r, want)
			}
		}
	}
	// The relay's chunk URL leads to the session's id.
	u, err := url.Parse(engine.ChunkURL(rs[slices.IndexFunc(rs, func(r engine.Route) bool { return r.ID == "relay-1" })].ChunkURL, 7))
	if err != nil || u.Path != "/api/jetty/sessions/"+oddID+"/chunks/7" {
		t.Errorf("relay chunk URL parses to %q (%v)", u.Path, err)
	}

	rep := reps.one(t)
	if !rep.JettySpeed || len(rep.Candidates) != 3 || len(rep.Measurements) != 3 || rep.Took <= 0 {
		t.Errorf("report: jettyspeed %v, %d candidates, %d measurements, took %v", rep.JettySpeed, len(rep.Candidates), len(rep.Measurements), rep.Took)
	}
	if rep.Strategy.ChunkSize != strategy.ChunkSize || rep.Strategy.MaxWorkers != strategy.MaxWorkers || rep.ChunkSize != chunk || rep.Workers != 8 {
		t.Errorf("report strategy %+v, chunk %d, workers %d", rep.Strategy, rep.ChunkSize, rep.Workers)
	}
	if !slices.Equal(routeIDs(rep.Routes), routeIDs(rs)) {
		t.Errorf("report routes %v, returned %v", routeIDs(rep.Routes), routeIDs(rs))
	}
	if rep.Measurements[0].Candidate.ID != "origin" {
		t.Errorf("the origin's measurement is not first: %s", rep.Measurements[0].Candidate.ID)
	}
	if storeHits.Load() == 0 || relay.probes.Load() != 1 || ctl.probes.Load() != 1 {
		t.Errorf("probes: store %d, relay %d, origin %d", storeHits.Load(), relay.probes.Load(), ctl.probes.Load())
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if len(ctl.requests) != 1 || ctl.requests[0].FileSize != 4*chunk {
		t.Errorf("optimal-edges requests %+v, want one with file_size %d", ctl.requests, 4*chunk)
	}
}

func TestSelectKinds(t *testing.T) {
	relay := newFakeEdge(t, edgeConf{})
	store, storeHits := fakeStore(t, 0)
	ctl := newFakeControl(t, edgeConf{}, respond(true,
		protocol.Candidate{ID: "direct", Kind: protocol.KindDirect, URL: store},
		protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()},
	))
	sel := &Selector{Client: testClient(ctl), Kinds: []string{protocol.KindRelay}}
	rs, err := sel.Select(context.Background(), session(ctl.URL(), ""), 1<<10, 8)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(rs, func(r engine.Route) bool { return r.Kind == engine.RouteDirect }) || storeHits.Load() != 0 {
		t.Errorf("direct filtered out, yet routes %v and %d store hits", routeIDs(rs), storeHits.Load())
	}
	if ctl.healthz.Load() == 0 || relay.healthz.Load() == 0 {
		t.Errorf("origin or relay not probed")
	}
	if !slices.ContainsFunc(rs, func(r engine.Route) bool { return r.ID == "origin" }) {
		t.Errorf("routes %v without the origin", routeIDs(rs))
	}
}

func TestSelectMaxEdges(t *testing.T) {
	const d = 20 * time.Millisecond
	var extra []protocol.Candidate
	for _, id := range []string{"r1", "r2", "r3"} {
		extra = append(extra, protocol.Candidate{ID: id, Kind: protocol.KindRelay, URL: newFakeEdge(t, edgeConf{Delay: d}).URL()})
	}
	ctl := newFakeControl(t, edgeConf{Delay: d}, respond(true, extra...))
	sel := &Selector{Client: testClient(ctl), MaxEdges: 2}
	rs, err := sel.Select(context.Background(), session(ctl.URL(), ""), 1<<10, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || !slices.ContainsFunc(rs, func(r engine.Route) bool { return r.ID == "origin" }) {
		t.Errorf("routes %v: want 2, the origin among them", routeIDs(rs))
	}
	checkWeights(t, rs)
}

func TestSelectJettySpeedOff(t *testing.T) {
	relay := newFakeEdge(t, edgeConf{})
	ctl := newFakeControl(t, edgeConf{}, respond(false, protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()}))
	var reps reports
	sel := &Selector{Client: testClient(ctl), OnReport: reps.add}
	s := session(ctl.URL(), "")
	rs, err := sel.Select(context.Background(), s, 8<<20, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != "origin" || rs[0].ChunkURL != s.ChunkURL || rs[0].Weight != 1 {
		t.Fatalf("routes %+v, want the origin alone", rs)
	}
	if relay.healthz.Load()+relay.probes.Load()+ctl.healthz.Load()+ctl.probes.Load() != 0 {
		t.Errorf("probed without JettySpeed")
	}
	if rep := reps.one(t); rep.JettySpeed || len(rep.Measurements) != 0 || len(rep.Routes) != 1 {
		t.Errorf("report %+v", rep)
	}
}

func TestSelectPrefersFaster(t *testing.T) {
	// 8 MiB chunks: the origin reads 4 MiB/s (≈ 2 s a chunk), the relay
	// 10 MiB/s (≈ 0.8 s): both kept, the relay first with more weight.
	// (Rates well below what loopback does even on a loaded machine.)
	relay := newFakeEdge(t, edgeConf{Rate: 10 << 20})
	ctl := newFakeControl(t, edgeConf{Rate: 4 << 20}, respond(true, protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()}))
	var reps reports
	sel := &Selector{Client: testClient(ctl), OnReport: reps.add}
	rs, err := sel.Select(context.Background(), session(ctl.URL(), ""), 8<<20, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].ID != "relay-1" || rs[1].ID != "origin" {
		t.Fatalf("routes %v, want relay-1 then origin", routeIDs(rs))
	}
	if rs[0].Weight <= 1.2*rs[1].Weight {
		t.Errorf("relay weight %.3f, origin %.3f: the faster should weigh more", rs[0].Weight, rs[1].Weight)
	}
	checkWeights(t, rs)
	rep := reps.one(t)
	if rep.Candidates[0].Throughput <= rep.Candidates[1].Throughput {
		t.Errorf("measured throughputs %v ≤ %v", rep.Candidates[0].Throughput, rep.Candidates[1].Throughput)
	}
}

func TestSelectSlowRelayDropped(t *testing.T) {
	relay := newFakeEdge(t, edgeConf{Delay: 150 * time.Millisecond})
	ctl := newFakeControl(t, edgeConf{}, respond(true, protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()}))
	sel := &Selector{Client: testClient(ctl)}
	// Small chunks: the round trips decide (loopback throughput is CPU
	// bound and varies with the machine's load).
	rs, err := sel.Select(context.Background(), session(ctl.URL(), ""), 64<<10, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != "origin" || rs[0].Weight != 1 {
		t.Fatalf("routes %+v, want the origin alone", rs)
	}
	if relay.probes.Load() != 1 {
		t.Errorf("the relay was not probed")
	}
}

func TestSelectOriginFailsProbe(t *testing.T) {
	relay := newFakeEdge(t, edgeConf{})
	dead := closedPort(t)
	ctl := newFakeControl(t, edgeConf{}, func(string) protocol.OptimalResponse {
		return protocol.OptimalResponse{JettySpeed: true, Strategy: strategy, Edges: []protocol.Candidate{
			{ID: "origin", Kind: protocol.KindOrigin, URL: dead},
			{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()},
		}}
	})
	sel := &Selector{Client: testClient(ctl)}
	s := session(ctl.URL(), "")
	rs, err := sel.Select(context.Background(), s, 8<<20, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].ID != "relay-1" || rs[1].ID != "origin" {
		t.Fatalf("routes %v, want relay-1 then origin", routeIDs(rs))
	}
	if rs[1].ChunkURL != s.ChunkURL || math.Abs(rs[1].Weight-OriginFallbackShare) > 1e-9 {
		t.Errorf("origin route %+v", rs[1])
	}
	checkWeights(t, rs)
}

func TestSelectDeadRelays(t *testing.T) {
	ctl := newFakeControl(t, edgeConf{}, respond(true,
		protocol.Candidate{ID: "closed", Kind: protocol.KindRelay, URL: closedPort(t)},
		protocol.Candidate{ID: "hole", Kind: protocol.KindRelay, URL: blackHole(t)},
	))
	var reps reports
	sel := &Selector{Client: testClient(ctl), Timeout: time.Second, OnReport: reps.add}
	start := time.Now()
	rs, err := sel.Select(context.Background(), session(ctl.URL(), ""), 8<<20, 8)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Select took %v with a 1s probe timeout", took)
	}
	if len(rs) != 1 || rs[0].ID != "origin" {
		t.Fatalf("routes %v, want the origin alone", routeIDs(rs))
	}
	rep := reps.one(t)
	if len(rep.Measurements) != 3 || len(rep.Candidates) != 1 {
		t.Fatalf("report: %d measurements, %d candidates", len(rep.Measurements), len(rep.Candidates))
	}
	if !errors.Is(rep.Measurements[1].Err, ErrUnreachable) || !errors.Is(rep.Measurements[2].Err, ErrTimedOut) {
		t.Errorf("errors %v / %v", rep.Measurements[1].Err, rep.Measurements[2].Err)
	}
}

func TestSelectErrors(t *testing.T) {
	ctl := newFakeControl(t, edgeConf{}, respond(true))
	c := testClient(ctl)
	c.APIKey = "wrong"
	_, err := (&Selector{Client: c}).Select(context.Background(), session(ctl.URL(), ""), 8<<20, 8)
	var ae *engine.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("err %v, want a 401 APIError", err)
	}
	if _, err := (&Selector{}).Select(context.Background(), session(ctl.URL(), ""), 8<<20, 8); err == nil {
		t.Errorf("no error without a client")
	}

	relay := newFakeEdge(t, edgeConf{})
	ctl2 := newFakeControl(t, edgeConf{}, respond(true, protocol.Candidate{ID: "hole", Kind: protocol.KindRelay, URL: blackHole(t)}, protocol.Candidate{ID: "r", Kind: protocol.KindRelay, URL: relay.URL()}))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := (&Selector{Client: testClient(ctl2)}).Select(ctx, session(ctl2.URL(), ""), 8<<20, 8); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v", err)
	}
}

func TestEvaluate(t *testing.T) {
	relay := newFakeEdge(t, edgeConf{})
	ctl := newFakeControl(t, edgeConf{}, respond(true, protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()}))
	rep, err := Evaluate(context.Background(), testClient(ctl), 0, 0, EvaluateOptions{Request: protocol.OptimalRequest{FileSize: 1 << 30, Region: "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ChunkSize != strategy.ChunkSize || rep.Workers != strategy.Workers {
		t.Errorf("scored for %d bytes × %d workers, want the strategy's", rep.ChunkSize, rep.Workers)
	}
	if len(rep.Measurements) != 2 || len(rep.Candidates) == 0 || len(rep.Routes) != 0 {
		t.Errorf("report %+v", rep)
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if len(ctl.requests) != 1 || ctl.requests[0].FileSize != 1<<30 || ctl.requests[0].Region != "eu" {
		t.Errorf("requests %+v", ctl.requests)
	}
}

func TestCandidateList(t *testing.T) {
	in := []protocol.Candidate{
		{ID: "r1", Kind: protocol.KindRelay, URL: "http://r1"},
		{ID: "d", Kind: protocol.KindDirect, URL: "http://s3"},
		{ID: "r1", Kind: protocol.KindRelay, URL: "http://dup"},
		{ID: "x", Kind: "carrier-pigeon", URL: "http://x"},
		{ID: "", Kind: protocol.KindRelay, URL: "http://anon"},
	}
	got := candidateList(in, "http://fallback", nil)
	want := []string{"origin", "r1", "d"}
	if len(got) != 3 || got[0].URL != "http://fallback" {
		t.Fatalf("got %+v", got)
	}
	for i, c := range got {
		if c.ID != want[i] {
			t.Fatalf("got %+v, want ids %v", got, want)
		}
	}
	got = candidateList(append([]protocol.Candidate{{ID: "o", Kind: protocol.KindOrigin, URL: "http://o"}}, in...), "http://fallback", []string{protocol.KindDirect})
	if len(got) != 2 || got[0].ID != "origin" || got[0].URL != "http://o" || got[1].ID != "d" {
		t.Fatalf("filtered: %+v", got)
	}
}

func TestRoutes(t *testing.T) {
	sc := func(id, kind, u string, w float64) Scored {
		return Scored{Measurement: Measurement{Candidate: protocol.Candidate{ID: id, Kind: kind, URL: u}, Healthy: true}, Weight: w}
	}
	s := &protocol.Session{ID: "a b", ChunkURL: "https://o.example/base/api/jetty/sessions/a%20b/chunks/{index}"}

	rs := routes(s, []Scored{sc("r1", protocol.KindRelay, "https://r1.example/", 0.6), sc("direct", protocol.KindDirect, "https://s3", 0.4)}, 5)
	if !slices.Equal(routeIDs(rs), []string{"r1", "direct", "origin"}) {
		t.Fatalf("routes %v", routeIDs(rs))
	}
	if rs[0].ChunkURL != "https://r1.example/api/jetty/sessions/a%20b/chunks/{index}" ||
		rs[1].PresignURL != "https://o.example/base/api/jetty/sessions/a%20b/presign" ||
		rs[2].ChunkURL != s.ChunkURL {
		t.Errorf("routes %+v", rs)
	}
	if math.Abs(rs[0].Weight-0.6*(1-OriginFallbackShare)) > 1e-9 || rs[2].Weight != OriginFallbackShare {
		t.Errorf("weights %v %v %v", rs[0].Weight, rs[1].Weight, rs[2].Weight)
	}

	// Cut to 2: the origin, outscored, keeps its place.
	rs = routes(s, []Scored{sc("r1", protocol.KindRelay, "http://r1", 0.4), sc("r2", protocol.KindRelay, "http://r2", 0.3), sc("origin", protocol.KindOrigin, "http://o", 0.3)}, 2)
	if !slices.Equal(routeIDs(rs), []string{"r1", "origin"}) {
		t.Fatalf("routes %v", routeIDs(rs))
	}
	checkWeights(t, rs)

	// Nothing, or the origin alone: the origin with all the weight.
	for _, in := range [][]Scored{nil, {sc("origin", protocol.KindOrigin, "http://o", 1)}} {
		rs = routes(s, in, 5)
		if len(rs) != 1 || rs[0].ID != "origin" || rs[0].Weight != 1 || rs[0].ChunkURL != s.ChunkURL {
			t.Errorf("routes %+v", rs)
		}
	}

	// A chunk URL of another shape: the presign URL is under its host.
	s2 := &protocol.Session{ID: "x", ChunkURL: "https://o.example/chunks/{index}"}
	rs = routes(s2, []Scored{sc("direct", protocol.KindDirect, "https://s3", 1)}, 5)
	if rs[0].PresignURL != "https://o.example/api/jetty/sessions/x/presign" {
		t.Errorf("presign URL %s", rs[0].PresignURL)
	}
}

func TestReportJSON(t *testing.T) {
	rep := Report{
		JettySpeed: true,
		Candidates: []Scored{{
			Measurement: Measurement{Candidate: protocol.Candidate{ID: "r1", Kind: protocol.KindRelay, URL: "http://r1"}, RTT: 12500 * time.Microsecond, Connect: 3 * time.Millisecond, Throughput: 1e8, Healthy: true},
			Estimate:    40 * time.Millisecond, Assumed: true, Weight: 1,
		}},
		Measurements: []Measurement{{Candidate: protocol.Candidate{ID: "r2", Kind: protocol.KindRelay}, Err: errors.New("healthz: timed out")}},
		Strategy:     strategy,
		ChunkSize:    8 << 20,
		Workers:      8,
		Routes:       []engine.Route{{ID: "r1", Kind: engine.RouteRelay, Weight: 1}},
		Took:         1500 * time.Millisecond,
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"took_ms":1500`, `"rtt_ms":12.5`, `"estimate_ms":40`, `"assumed_throughput":true`, `"error":"healthz: timed out"`, `"weight":1`, `"jettyspeed":true`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("%s lacks %s", b, s)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Took != rep.Took || back.Candidates[0].RTT != rep.Candidates[0].RTT || back.Candidates[0].Estimate != rep.Candidates[0].Estimate ||
		back.Candidates[0].Weight != 1 || !back.Candidates[0].Assumed || back.Measurements[0].Err == nil ||
		back.Measurements[0].Err.Error() != "healthz: timed out" || back.Strategy.Workers != 8 || len(back.Routes) != 1 {
		t.Errorf("round trip: %+v", back)
	}
}

func TestAdviseWorkers(t *testing.T) {
	sel := &Selector{}
	if got := sel.AdviseWorkers(16, 32); got != 16 {
		t.Errorf("no selection yet: %d, want the suggestion 16", got)
	}
	for _, tc := range []struct {
		tput []float64
		want int
	}{
		{[]float64{2e6, 1.5e6}, 32},     // a WAN: every connection slow
		{[]float64{2e6, 900e6}, 16},     // one fast path is enough
		{[]float64{SlowConnection}, 16}, // the threshold itself is fast
		{nil, 16},                       // nothing measured (origin only)
		{[]float64{0}, 16},              // no figure, near
		{[]float64{-1}, 32},             // no figure, 50 ms away
	} {
		rep := &Report{}
		for _, x := range tc.tput {
			m := Measurement{Throughput: x, Healthy: true, RTT: time.Millisecond}
			if x < 0 {
				m.Throughput, m.RTT = 0, 50*time.Millisecond
			}
			rep.Candidates = append(rep.Candidates, Scored{Measurement: m})
		}
		sel.seen = rep
		if got := sel.AdviseWorkers(16, 32); got != tc.want {
			t.Errorf("throughputs %v: %d workers, want %d", tc.tput, got, tc.want)
		}
	}
	sel.seen = &Report{Candidates: []Scored{{Measurement: Measurement{Throughput: 1e6}}}}
	if got := sel.AdviseWorkers(40, 32); got != 40 {
		t.Errorf("never fewer than suggested: %d", got)
	}
}

// TestPrefetch: a prefetched probe is used by the Select that follows
// (no second optimal-edges call) and only once.
func TestPrefetch(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == protocol.PathOptimalEdges {
			calls.Add(1)
			json.NewEncoder(w).Encode(protocol.OptimalResponse{JettySpeed: true, Edges: []protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: "http://" + r.Host}}})
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	c := &engine.Client{BaseURL: srv.URL, APIKey: "k", APISecret: "s"}
	sel := &Selector{Client: c}
	sess := &protocol.Session{ID: "ses_1", ChunkURL: srv.URL + "/api/jetty/sessions/ses_1/chunks/{index}", Missing: []int{0, 1, 2}}
	sel.Prefetch(context.Background(), 3*protocol.DefaultChunkSize, protocol.DefaultChunkSize, 8)
	sel.Prefetch(context.Background(), 3*protocol.DefaultChunkSize, protocol.DefaultChunkSize, 8) // one at a time
	if _, err := sel.Select(context.Background(), sess, protocol.DefaultChunkSize, 8); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("optimal-edges called %d times, want 1 (the prefetch)", n)
	}
	if _, err := sel.Select(context.Background(), sess, protocol.DefaultChunkSize, 8); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("after the prefetch was used, optimal-edges called %d times, want 2", n)
	}
	// Too small to be worth routes: no prefetch at all.
	sel.Prefetch(context.Background(), 100, protocol.DefaultChunkSize, 8)
	if sel.pre != nil {
		t.Error("a one-chunk file started a prefetch")
	}
}

func TestPresignHint(t *testing.T) {
	release := make(chan struct{})
	var direct atomic.Bool
	direct.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case protocol.PathOptimalEdges:
			edges := []protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: "http://" + r.Host}}
			if direct.Load() {
				edges = append(edges, protocol.Candidate{ID: "direct", Kind: protocol.KindDirect, URL: "http://" + r.Host + "/store"})
			}
			json.NewEncoder(w).Encode(protocol.OptimalResponse{JettySpeed: true, Edges: edges})
		case "/healthz":
			<-release // the probe goes on while the hint is asked for
			io.WriteString(w, `{"status":"ok"}`)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	c := &engine.Client{BaseURL: srv.URL, APIKey: "k", APISecret: "s"}
	sess := &protocol.Session{ID: "ses_1", ChunkURL: srv.URL + "/api/jetty/sessions/ses_1/chunks/{index}", Missing: []int{0, 1, 2}}
	want := srv.URL + "/api/jetty/sessions/ses_1/presign"

	sel := &Selector{Client: c}
	if h := sel.PresignHint(sess); h != "" {
		t.Errorf("before any prefetch: hint %q", h)
	}
	sel.Prefetch(context.Background(), 3*protocol.DefaultChunkSize, protocol.DefaultChunkSize, 8)
	deadline := time.Now().Add(5 * time.Second)
	var h string
	for h == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		h = sel.PresignHint(sess)
	}
	if h != want {
		t.Errorf("while probing: hint %q, want %q", h, want)
	}
	if h := (&Selector{Client: c, Kinds: []string{protocol.KindOrigin, protocol.KindRelay}, pre: sel.pre}).PresignHint(sess); h != "" {
		t.Errorf("direct not among Kinds: hint %q", h)
	}
	if h := sel.PresignHint(&protocol.Session{ID: "ses_1", ChunkURL: sess.ChunkURL, Missing: []int{0}}); h != "" {
		t.Errorf("one missing chunk: hint %q", h)
	}
	close(release)
	if _, err := sel.Select(context.Background(), sess, protocol.DefaultChunkSize, 8); err != nil {
		t.Fatal(err)
	}
	if h := sel.PresignHint(sess); h != "" {
		t.Errorf("prefetch used, no Reuse: hint %q", h)
	}

	// Without a direct candidate there is no hint.
	direct.Store(false)
	sel2 := &Selector{Client: c}
	sel2.Prefetch(context.Background(), 3*protocol.DefaultChunkSize, protocol.DefaultChunkSize, 8)
	<-sel2.pre.done
	if h := sel2.PresignHint(sess); h != "" {
		t.Errorf("no direct candidate: hint %q", h)
	}
}
