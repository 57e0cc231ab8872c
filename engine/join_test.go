package engine

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// Routes joining a running upload (issue 18): the workers start on the
// origin (or the remembered routes) while the selection runs.

// joinUpload uploads a file of n 5 MiB chunks with workers (0: the
// server's suggestion) and sel, and checks that every chunk was stored
// once and that no worker outlived the upload.
func joinUpload(t *testing.T, f *fakeServer, sel EdgeSelector, seed byte, n, workers int) (*Result, *recorder) {
	t.Helper()
	path, data := writeFile(t, seed, int64(n)*5*MiB)
	opts, rec, _ := routeOpts(workers, sel)
	res, err := Upload(context.Background(), f.client(), path, opts)
	checkNoWorkers(t)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredMoved(t, f, data, rec)
	return res, rec
}

// checkStoredMoved is checkStoredOnce for uploads whose routes join: a
// chunk moved to a faster route (preemption) may have been stored by the
// route it left too: once more, no more.
func checkStoredMoved(t *testing.T, f *fakeServer, data []byte, rec *recorder) {
	t.Helper()
	moved := map[int]int{}
	rec.mu.Lock()
	for _, e := range rec.events {
		if e.Kind == EventRetry && errors.Is(e.Err, errPreempted) {
			moved[e.Index]++
		}
	}
	rec.mu.Unlock()
	if got := f.object(hexSum(data)); !bytes.Equal(got, data) {
		t.Fatalf("the server assembled %d bytes, not the file's %d", len(got), len(data))
	}
	for i, c := range f.storedCounts() {
		if c < 1 || c > 1+moved[i] {
			t.Errorf("chunk %d stored %d times, moved %d times", i, c, moved[i])
		}
	}
}

// slowSelector is an EdgeSelector whose Select takes delay (a probe),
// then answers routes(s) or err; it records when Select returned. With
// start it is a RouteStarter; with advise > 0 a WorkerAdvisor.
type slowSelector struct {
	delay  time.Duration
	routes func(s *protocol.Session) []Route
	err    error
	// gate, when set, ends the wait early once closed: delay is then
	// the longest wait (a test waiting for an event, not for a time).
	gate <-chan struct{}

	mu       sync.Mutex
	returned time.Time
}

func (sl *slowSelector) Select(ctx context.Context, s *protocol.Session, cs int64, w int) ([]Route, error) {
	t := time.NewTimer(sl.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sl.gate: // nil: never
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var routes []Route
	if sl.routes != nil {
		routes = sl.routes(s)
	}
	sl.mu.Lock()
	sl.returned = time.Now()
	sl.mu.Unlock()
	return routes, sl.err
}

func (sl *slowSelector) returnedAt() time.Time {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.returned
}

type startingSelector struct {
	*slowSelector
	start func(s *protocol.Session) []Route
}

func (st startingSelector) StartRoutes(s *protocol.Session) []Route { return st.start(s) }

type growingSelector struct {
	*slowSelector
	advise int
}

func (g growingSelector) AdviseWorkers(suggested, ceiling int) int { return g.advise }

// putLog records when requests began (the origin's own chunk PUTs, not
// those a relay forwarded; or a relay's).
type putLog struct {
	mu    sync.Mutex
	times []time.Time
	gates map[int]chan struct{}
}

func newPutLog() *putLog { return &putLog{gates: map[int]chan struct{}{}} }

// reached is closed when the n-th request begins.
func (l *putLog) reached(n int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.gates[n]
	if !ok {
		c = make(chan struct{})
		l.gates[n] = c
		if len(l.times) >= n {
			close(c)
		}
	}
	return c
}

func (l *putLog) add() {
	l.mu.Lock()
	l.times = append(l.times, time.Now())
	if c, ok := l.gates[len(l.times)]; ok {
		close(c)
	}
	l.mu.Unlock()
}

// split counts the requests that began before and after t.
func (l *putLog) split(t time.Time) (before, after int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.times {
		if x.Before(t) {
			before++
		} else {
			after++
		}
	}
	return before, after
}

// slowOrigin makes the origin's own chunk PUTs take d, and logs them.
func slowOrigin(f *fakeServer, d time.Duration) *putLog {
	l := newPutLog()
	f.setPutHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if r.Header.Get("X-Forwarded-For") == "" { // not through a relay
			l.add()
			time.Sleep(d)
		}
		return false
	})
	return l
}

// loggedRelay logs a relay's requests, each taking d.
func loggedRelay(rl *fakeRelay, d time.Duration) *putLog {
	l := newPutLog()
	rl.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
		l.add()
		time.Sleep(d)
		return false
	})
	return l
}

// TestJoinSlowSelector: with a selector that does not answer until the
// origin has begun its third chunk PUT (so, with 2 workers, one PUT was
// answered), or 30 s (an engine waiting for the selector sends its first
// PUT only after that, and fails), the origin gets chunk PUTs before
// Select returns; the relay it chose joins then and takes the rest (the
// origin, not named, stays as a reserve). (It waited a fixed 2 s, which a
// loaded machine could spend before the first PUT was answered.)
func TestJoinSlowSelector(t *testing.T) {
	f := newFake(t)
	a := newRelay(f, "edge-a")
	origin := slowOrigin(f, 500*time.Millisecond)
	relay := loggedRelay(a, 0)
	sel := &slowSelector{delay: 30 * time.Second, gate: origin.reached(3), routes: func(s *protocol.Session) []Route { return []Route{a.route(s, 1)} }}
	began := time.Now()
	res, rec := joinUpload(t, f, sel, 90, 16, 2)
	ret := sel.returnedAt()
	if ret.IsZero() {
		t.Fatal("Select never returned")
	}
	ob, _ := origin.split(ret)
	rb, ra := relay.split(ret)
	if ob == 0 {
		t.Errorf("the origin got no chunk PUT before Select returned (%v after the start)", ret.Sub(began))
	}
	if rb != 0 || ra == 0 {
		t.Errorf("relay: %d requests before Select returned, %d after; want none before, some after", rb, ra)
	}
	eo, _ := edgeByID(res, "origin")
	ea, _ := edgeByID(res, "edge-a")
	if eo.Chunks == 0 || ea.Chunks == 0 || eo.Chunks+ea.Chunks != 16 {
		t.Errorf("edges %+v", res.Edges)
	}
	if w := rec.warnings(); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
	t.Logf("Select returned after %v; origin %d chunks, relay %d", ret.Sub(began), eo.Chunks, ea.Chunks)
}

// TestJoinTakesShare: a relay joining mid-upload with weight 3 against
// the origin's 1 takes 3 of the 4 workers (its PUTs in flight reach 3,
// never more), and the origin keeps sending its share after the join.
func TestJoinTakesShare(t *testing.T) {
	f := newFake(t)
	a := newRelay(f, "edge-a")
	origin := slowOrigin(f, 400*time.Millisecond)
	loggedRelay(a, 400*time.Millisecond)
	sel := &slowSelector{delay: time.Second, routes: func(s *protocol.Session) []Route {
		return []Route{a.route(s, 3), {ID: "origin", Kind: RouteOrigin, Weight: 1}}
	}}
	res, _ := joinUpload(t, f, sel, 91, 24, 4)
	_, _, maxA, fwd := a.counts()
	if maxA != 3 {
		t.Errorf("relay PUTs in flight at most %d, want 3 (3 of 4 workers after the join)", maxA)
	}
	ob, oa := origin.split(sel.returnedAt())
	if ob == 0 || oa == 0 || len(fwd) == 0 {
		t.Errorf("origin PUTs %d before the join, %d after; relay %d chunks", ob, oa, len(fwd))
	}
	t.Logf("edges %+v", res.Edges)
}

// TestJoinSelectorFails: a selector failing after a while leaves the
// origin alone, with the warning, as before.
func TestJoinSelectorFails(t *testing.T) {
	f := newFake(t)
	slowOrigin(f, 100*time.Millisecond)
	sel := &slowSelector{delay: 300 * time.Millisecond, err: errors.New("optimal-edges: 503")}
	res, rec := joinUpload(t, f, sel, 92, 8, 2)
	if w := rec.warnings(); len(w) != 1 || countContaining(w, "edge selection failed (sending through the origin only): optimal-edges: 503") != 1 {
		t.Errorf("warnings %q", w)
	}
	if len(res.Edges) != 1 || res.Edges[0].ID != "origin" || res.Edges[0].Chunks != 8 {
		t.Errorf("edges %+v", res.Edges)
	}
}

// TestJoinStartRoutes: the routes a RouteStarter names (the remembered
// best edge) carry chunks from the start, before Select returns.
func TestJoinStartRoutes(t *testing.T) {
	f := newFake(t)
	a := newRelay(f, "edge-a")
	slowOrigin(f, 200*time.Millisecond)
	relay := loggedRelay(a, 100*time.Millisecond)
	slow := &slowSelector{delay: 1500 * time.Millisecond, routes: func(s *protocol.Session) []Route { return []Route{a.route(s, 1)} }}
	sel := startingSelector{slowSelector: slow, start: func(s *protocol.Session) []Route {
		return []Route{a.route(s, 0.95), {ID: "origin", Kind: RouteOrigin, ChunkURL: s.ChunkURL, Weight: 0.05}}
	}}
	res, rec := joinUpload(t, f, sel, 93, 12, 4)
	at := slow.returnedAt()
	if at.IsZero() {
		at = time.Now() // the upload ended before Select returned: every chunk came before
	}
	if rb, _ := relay.split(at); rb == 0 {
		t.Error("the remembered relay got no chunk before Select returned")
	}
	if ea, _ := edgeByID(res, "edge-a"); ea.Chunks == 0 {
		t.Errorf("edges %+v", res.Edges)
	}
	if w := rec.warnings(); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
}

// TestJoinStream: a stream does not wait for the selection either; the
// relay joins its running workers.
func TestJoinStream(t *testing.T) {
	f := newFake(t)
	a := newRelay(f, "edge-a")
	st := newStore(f)
	origin := slowOrigin(f, 400*time.Millisecond)
	relay := loggedRelay(a, 0)
	sel := &slowSelector{delay: 1500 * time.Millisecond, routes: func(s *protocol.Session) []Route {
		return []Route{a.route(s, 1), st.route(s, 1)}
	}}
	data := genBytes(94, 14*5*MiB+3) // 15 blocks
	opts, rec, _ := routeOpts(2, sel)
	res, err := UploadStream(context.Background(), f.client(), pipeOf(data), "s.bin", opts)
	checkNoWorkers(t)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredMoved(t, f, data, rec)
	ret := sel.returnedAt()
	ob, _ := origin.split(ret)
	rb, ra := relay.split(ret)
	if ob == 0 || rb != 0 || ra == 0 {
		t.Errorf("origin PUTs before Select returned %d; relay before %d, after %d", ob, rb, ra)
	}
	if attempts, _ := st.stats(); len(st.calls()) != 0 || len(attempts) != 0 {
		t.Error("the direct route was used for a stream")
	}
	if len(rec.warnings()) != 0 {
		t.Errorf("warnings %q", rec.warnings())
	}
	t.Logf("edges %+v", res.Edges)
}

// TestJoinDirectWarms: a direct route joining later asks for the parts of
// the first queued chunks at once, in one call, as it joins.
func TestJoinDirectWarms(t *testing.T) {
	f := newFake(t)
	st := newStore(f)
	slowOrigin(f, 800*time.Millisecond)
	sel := &slowSelector{delay: time.Second, routes: func(s *protocol.Session) []Route { return []Route{st.route(s, 1)} }}
	res, _ := joinUpload(t, f, sel, 95, 16, 4)
	calls := st.calls()
	if len(calls) == 0 || len(calls[0]) < 4 {
		t.Errorf("presign calls %v: the first should ask for the queued chunks at once (at least one per worker)", calls)
	}
	if ed, _ := edgeByID(res, "direct"); ed.Chunks == 0 {
		t.Errorf("edges %+v", res.Edges)
	}
}

// TestJoinAdviceGrows: a WorkerAdvisor answering after the workers
// started grows the pool up to its advice; the result says the pool the
// upload started with.
func TestJoinAdviceGrows(t *testing.T) {
	f := newFake(t)
	// Fewer chunks (24) than the ceiling (30): the upload starts with the
	// suggestion, not the ceiling (begin), and the advice grows it.
	f.strategy = protocol.Strategy{Workers: 2, MaxWorkers: 30}
	a := newRelay(f, "edge-a")
	slowOrigin(f, 300*time.Millisecond)
	loggedRelay(a, 300*time.Millisecond)
	sel := growingSelector{slowSelector: &slowSelector{delay: 500 * time.Millisecond, routes: func(s *protocol.Session) []Route { return []Route{a.route(s, 1)} }}, advise: 6}
	res, _ := joinUpload(t, f, sel, 96, 24, 0)
	if res.Workers != 2 {
		t.Errorf("result workers %d, want the 2 the upload started with", res.Workers)
	}
	if _, _, maxA, _ := a.counts(); maxA != 6 {
		t.Errorf("relay PUTs in flight at most %d, want 6 (the pool grown to the ceiling)", maxA)
	}
}
