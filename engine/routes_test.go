package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

func (r *recorder) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Kind == EventWarning {
			out = append(out, e.Err.Error())
		}
	}
	return out
}

func (r *recorder) ofKind(k EventKind) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// countContaining counts the strings holding sub.
func countContaining(l []string, sub string) int {
	n := 0
	for _, s := range l {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// checkStoredOnce fails unless the fake assembled data and stored each of
// its n chunks exactly once.
func checkStoredOnce(t *testing.T, f *fakeServer, data []byte, n int) {
	t.Helper()
	if got := f.object(hexSum(data)); !bytes.Equal(got, data) {
		t.Fatalf("the server assembled %d bytes, not the file's %d", len(got), len(data))
	}
	counts := f.storedCounts()
	for i := range n {
		if counts[i] != 1 {
			t.Errorf("chunk %d stored %d times, want exactly once", i, counts[i])
		}
	}
	if len(counts) != n {
		t.Errorf("%d chunk indexes stored, want %d", len(counts), n)
	}
}

// checkNoWorkers fails if a goroutine of the engine's send path is still
// running: when an upload returns, its workers have all exited.
func checkNoWorkers(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"engine.(*uploader).sendChunks", "engine.(*uploader).sendChunk", "engine.(*chunkQueue).pop", "engine.(*presignCache).get", "engine.(*presignCache).warm", "engine.(*uploader).background", "engine.(*uploader).uploadStream.func"} {
			if strings.Contains(g, fn) {
				t.Errorf("a goroutine outlived the upload:\n%s", g)
				return
			}
		}
	}
}

func edgeByID(res *Result, id string) (EdgeStat, bool) {
	for _, e := range res.Edges {
		if e.ID == id {
			return e, true
		}
	}
	return EdgeStat{}, false
}

// routeOpts are options for the route tests: 5 MiB chunks, no journal,
// sleeps recorded, events recorded.
func routeOpts(workers int, sel EdgeSelector) (Options, *recorder, *noSleep) {
	rec, sl := &recorder{}, &noSleep{}
	return Options{Workers: workers, ChunkSize: 5 * MiB, JournalDir: "-", Progress: rec, Sleep: sl.sleep, Edges: sel, HashFirst: true}, rec, sl
}

func TestSplitWorkers(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		weights []float64
		n       int
		want    []int
	}{
		{[]float64{1}, 8, []int{8}},
		{[]float64{3, 1}, 8, []int{6, 2}},
		{[]float64{1, 1, 1}, 4, []int{2, 1, 1}},                   // largest remainder, ties to the first
		{[]float64{0.9, 0.05, 0.05}, 4, []int{2, 1, 1}},           // everyone with a weight gets one
		{[]float64{100, 1, 1}, 5, []int{3, 1, 1}},                 // taken from the one above its quota
		{[]float64{10, 1, 1}, 12, []int{10, 1, 1}},                // exact quotas
		{[]float64{2, 3, 5}, 7, []int{1, 2, 4}},                   // 1.4 2.1 3.5 → 1 2 3, +1 to 3.5
		{[]float64{5, 3, 1}, 2, []int{1, 1, 0}},                   // more routes than workers: the heaviest
		{[]float64{1, 3, 2}, 1, []int{0, 1, 0}},                   // one worker: the heaviest
		{[]float64{1, 1, 1, 1}, 3, []int{1, 1, 1, 0}},             // ties: the first ones
		{[]float64{1, 0}, 4, []int{4, 0}},                         // weight 0: a reserve
		{[]float64{0, 0}, 3, []int{2, 1}},                         // no weight at all: equal shares
		{[]float64{-1, nan, 1}, 3, []int{0, 0, 3}},                // nonsense weights count as 0
		{[]float64{1e308, 1e308}, 2, []int{1, 1}},                 // no overflow
		{[]float64{math.Inf(1), 1, 1}, 4, []int{0, 2, 2}},         // infinite: nonsense too
		{[]float64{2, 1}, 0, []int{0, 0}},                         // no workers
		{[]float64{}, 3, []int{}},                                 // no routes
		{[]float64{0.25, 0.25, 0.5}, 16, []int{4, 4, 8}},          // any scale
		{[]float64{1, 1, 1, 1, 1, 1}, 6, []int{1, 1, 1, 1, 1, 1}}, // exactly one each
	} {
		got := splitWorkers(tc.weights, tc.n)
		if !slices.Equal(got, tc.want) {
			t.Errorf("splitWorkers(%v, %d) = %v, want %v", tc.weights, tc.n, got, tc.want)
		}
	}
	// Properties on random weights: the workers add up, every weighted
	// route has one, and no route is more than one worker off its quota
	// unless it was raised to one.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		k := 1 + rng.IntN(6)
		w := make([]float64, k)
		sum := 0.0
		for i := range w {
			w[i] = rng.Float64() * 10
			sum += w[i]
		}
		n := k + rng.IntN(40)
		got := splitWorkers(w, n)
		total := 0
		for i, g := range got {
			total += g
			if g < 1 {
				t.Fatalf("splitWorkers(%v, %d) = %v: route %d has none", w, n, got, i)
			}
			if q := float64(n) * w[i] / sum; g > 1 && math.Abs(float64(g)-q) >= 1+float64(k) {
				t.Fatalf("splitWorkers(%v, %d) = %v: route %d far from its quota %.2f", w, n, got, i, q)
			}
		}
		if total != n {
			t.Fatalf("splitWorkers(%v, %d) = %v: %d workers", w, n, got, total)
		}
	}
}

func TestRouterBreaker(t *testing.T) {
	now := time.Unix(1000, 0)
	a := &route{Route: Route{ID: "a", Kind: RouteRelay}, idx: 0, weight: 1}
	b := &route{Route: Route{ID: "b", Kind: RouteRelay}, idx: 1, weight: 1}
	o := &route{Route: Route{ID: "origin", Kind: RouteOrigin}, idx: 2, weight: 0}
	r := &router{routes: []*route{a, b, o}, origin: o, cooldown: 10 * time.Second, now: func() time.Time { return now }}
	ws := r.workers(4)
	if len(ws) != 4 || a.cur != 2 || b.cur != 2 || o.cur != 0 {
		t.Fatalf("%d workers: a %d, b %d, origin %d", len(ws), a.cur, b.cur, o.cur)
	}
	if ws[0].home == ws[1].home {
		t.Error("the workers are not interleaved by route")
	}
	var wa, wa2 *worker
	for _, w := range ws {
		if w.home == a {
			if wa == nil {
				wa = w
			} else {
				wa2 = w
			}
		}
	}
	// Two failures leave the breaker closed; the third opens it, once.
	if r.failure(a, false, false) || r.failure(a, false, false) || a.open {
		t.Fatal("opened before 3 failures")
	}
	if !r.failure(a, false, false) || !a.open || r.failure(a, false, false) {
		t.Fatal("the third failure did not open the breaker, or a fourth opened it again")
	}
	if !r.otherClosed(a) {
		t.Error("b and the origin are closed")
	}
	// A worker of a moves to the closed route with the fewest workers per
	// unit of weight: b (the origin weighs 0).
	if rt, trial, fb := r.assign(wa, nil); rt != b || trial || fb || a.cur != 1 || b.cur != 3 {
		t.Fatalf("assign: %s trial %v fellBack %v; a %d b %d", rt.ID, trial, fb, a.cur, b.cur)
	}
	// A success resets the count of a closed breaker.
	r.failure(b, false, false)
	r.failure(b, false, false)
	r.success(b, false)
	if r.failure(b, false, false) || b.open {
		t.Fatal("failures before a success counted")
	}
	// edge_draining opens at once; the origin, though weightless, is
	// then the only closed route.
	if !r.failure(b, false, true) || !b.open {
		t.Fatal("draining did not open b")
	}
	if rt, _, fb := r.assign(wa, nil); rt != o || fb {
		t.Fatalf("assign: %s fellBack %v, want the origin (closed)", rt.ID, fb)
	}
	// Every route open: the origin all the same, as the fallback.
	for range breakerThreshold {
		r.failure(o, false, false)
	}
	if !o.open || r.otherClosed(o) {
		t.Fatal("origin not open")
	}
	if rt, trial, fb := r.assign(wa, nil); rt != o || trial || !fb {
		t.Fatalf("assign: %s trial %v fellBack %v, want the origin as fallback", rt.ID, trial, fb)
	}
	// After the cooldown one trial goes home, not two.
	now = now.Add(10 * time.Second)
	if rt, trial, _ := r.assign(wa, nil); rt != a || !trial {
		t.Fatalf("assign after cooldown: %s trial %v", rt.ID, trial)
	}
	if rt, trial, fb := r.assign(wa2, nil); rt == a || trial || !fb {
		t.Fatalf("second worker of a: %s trial %v fellBack %v; a's trial is taken", rt.ID, trial, fb)
	}
	// A failed trial keeps it open for another cooldown.
	if r.failure(a, true, false) || !a.open {
		t.Fatal("failed trial closed or re-reported the breaker")
	}
	if rt, _, _ := r.assign(wa, nil); rt == a {
		t.Fatal("a trial again before the cooldown")
	}
	// A trial given back (neither success nor failure) can be taken again.
	now = now.Add(10 * time.Second)
	rt, trial, _ := r.assign(wa, nil)
	if rt != a || !trial {
		t.Fatal("no trial after the second cooldown")
	}
	r.release(a, true)
	if rt, trial, _ := r.assign(wa2, nil); rt != a || !trial {
		t.Fatalf("released trial not offered again: %s %v", rt.ID, trial)
	}
	// A successful trial closes it: its workers come home.
	r.success(a, true)
	if a.open {
		t.Fatal("successful trial left a open")
	}
	if rt, trial, _ := r.assign(wa, nil); rt != a || trial {
		t.Fatalf("worker of a not home: %s", rt.ID)
	}
	// A success that was not the trial does not close an open breaker.
	r.success(b, false)
	if !b.open {
		t.Error("a stray success closed b")
	}
	// avoid: a chunk that just failed on a goes elsewhere even from a's
	// own worker, while another route is closed.
	r.success(o, true)
	if rt, _, _ := r.assign(wa, a); rt == a {
		t.Error("the chunk went back to the route it failed on")
	}
	total := 0
	for _, rt := range r.routes {
		total += rt.cur
	}
	if total != 4 {
		t.Errorf("%d workers on routes, want 4", total)
	}
	for _, w := range ws {
		r.leave(w)
	}
	if a.cur != 0 || b.cur != 0 || o.cur != 0 {
		t.Errorf("workers left behind: %d %d %d", a.cur, b.cur, o.cur)
	}

	// The lightest route per unit of weight: x has 2 workers for weight 1
	// (3 with one more), y 3 for weight 3 (4/3 with one more).
	x := &route{Route: Route{ID: "x"}, idx: 0, weight: 1}
	y := &route{Route: Route{ID: "y"}, idx: 1, weight: 3}
	z := &route{Route: Route{ID: "z"}, idx: 2, weight: 1}
	r2 := &router{routes: []*route{x, y, z}, origin: x, cooldown: time.Hour, now: time.Now}
	x.cur, y.cur, z.cur = 2, 3, 1
	z.open, z.openedAt = true, time.Now()
	wz := &worker{home: z, cur: z}
	if rt, _, _ := r2.assign(wz, nil); rt != y || z.cur != 0 || y.cur != 4 {
		t.Errorf("moved to %s, want y (fewest workers per weight)", rt.ID)
	}

	// One route: no breaker at all.
	solo := &route{Route: Route{ID: "origin", Kind: RouteOrigin}, weight: 1}
	r3 := &router{routes: []*route{solo}, origin: solo, cooldown: time.Second, now: time.Now}
	for range 10 {
		r3.failure(solo, false, true)
	}
	if solo.open || r3.otherClosed(solo) {
		t.Error("a lone route got a breaker")
	}
}

func TestRouteFailure(t *testing.T) {
	for _, tc := range []struct {
		err          error
		failed, draw bool
	}{
		{&APIError{Status: 503, Code: protocol.CodeEdgeDraining}, true, true},
		{&APIError{Status: 503}, true, false},
		{&APIError{Status: 502}, true, false},
		{&APIError{Status: 500}, true, false},
		{&APIError{Status: 501}, true, false},
		{fmt.Errorf("presign chunk 3: %w", &APIError{Status: 504}), true, false},
		{&APIError{Status: 429, Code: protocol.CodeTooManyStreams}, false, false},
		{&APIError{Status: 408}, false, false},
		{&APIError{Status: 400, Code: protocol.CodeChecksumMismatch}, false, false},
		{&APIError{Status: 401, Code: protocol.CodeTokenExpired}, false, false},
		{&APIError{Status: 403, Code: "AccessDenied"}, false, false},
		{&APIError{Status: 404}, false, false},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, true, false},
		{io.ErrUnexpectedEOF, true, false},
		{context.DeadlineExceeded, true, false},
		{context.Canceled, false, false},
		{errors.New("the server acknowledged another chunk"), false, false},
	} {
		failed, now := routeFailure(tc.err)
		if failed != tc.failed || now != tc.draw {
			t.Errorf("routeFailure(%v) = %v, %v; want %v, %v", tc.err, failed, now, tc.failed, tc.draw)
		}
	}
}

func TestChunkQueue(t *testing.T) {
	q := newChunkQueue([]int{0, 1, 2, 3}, 4)
	if i, ok := q.pop(-1); !ok || i != 0 {
		t.Fatalf("pop = %d %v", i, ok)
	}
	q.requeue(0, 5)
	// A worker of route 5 takes a fresh chunk rather than the one that
	// just failed there; a worker of another route takes that one first.
	if i, _ := q.pop(5); i != 1 {
		t.Errorf("route 5 took %d, want 1", i)
	}
	if got := q.peek(10, func(int) bool { return false }); !slices.Equal(got, []int{0, 2, 3}) {
		t.Errorf("peek = %v", got)
	}
	if got := q.peek(1, func(i int) bool { return i == 0 }); !slices.Equal(got, []int{2}) {
		t.Errorf("peek with skip = %v", got)
	}
	if i, _ := q.pop(7); i != 0 {
		t.Errorf("route 7 took %d, want the re-queued 0", i)
	}
	q.requeue(0, 5)
	if i, _ := q.pop(5); i != 2 {
		t.Errorf("took %d, want 2", i)
	}
	if i, _ := q.pop(5); i != 3 {
		t.Errorf("took %d, want 3", i)
	}
	if i, _ := q.pop(5); i != 0 { // only chunks that failed here: taken all the same
		t.Errorf("took %d, want 0", i)
	}
	// Empty queue, chunks still out: pop waits for a re-queue.
	got := make(chan int, 1)
	go func() {
		i, ok := q.pop(-1)
		if !ok {
			i = -1
		}
		got <- i
	}()
	select {
	case i := <-got:
		t.Fatalf("pop returned %d on an empty queue with chunks out", i)
	case <-time.After(50 * time.Millisecond):
	}
	q.requeue(3, 1)
	if i := <-got; i != 3 {
		t.Fatalf("woken with %d", i)
	}
	// Every chunk stored: waiting workers are released.
	go func() {
		_, ok := q.pop(-1)
		got <- map[bool]int{true: 1, false: 0}[ok]
	}()
	for range 4 {
		q.done()
	}
	select {
	case v := <-got:
		if v != 0 {
			t.Error("pop returned a chunk after all were stored")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pop still waiting after every chunk was stored")
	}
	// Closing releases waiters too.
	q2 := newChunkQueue([]int{0}, 1)
	q2.pop(-1)
	go func() {
		_, ok := q2.pop(-1)
		got <- map[bool]int{true: 1, false: 0}[ok]
	}()
	time.Sleep(10 * time.Millisecond)
	q2.close()
	if v := <-got; v != 0 {
		t.Error("pop returned a chunk from a closed queue")
	}
}

// TestRoutesWeights: 8 workers over two relays weighing 3 and 1 put
// exactly 6 and 2 chunk PUTs in flight; the origin (not chosen, a
// reserve) gets none; Result.Edges lists both relays.
func TestRoutesWeights(t *testing.T) {
	f := newFake(t)
	a, b := newRelay(f, "edge-a"), newRelay(f, "edge-b")
	var total atomic.Int32
	var gate sync.WaitGroup
	gate.Add(8)
	hook := func(w http.ResponseWriter, r *http.Request, index, n int) bool {
		if total.Add(1) <= 8 { // the first PUT of every worker waits for all 8
			gate.Done()
			gate.Wait()
		}
		return false
	}
	a.setHook(hook)
	b.setHook(hook)
	path, data := writeFile(t, 60, 80*MiB) // 16 chunks
	var askedWorkers int
	var askedChunk int64
	opts, rec, _ := routeOpts(8, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
		askedWorkers, askedChunk = workers, cs
		return []Route{a.route(s, 3), b.route(s, 1)}, nil
	}))
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, f, data, 16)
	if askedWorkers != 8 || askedChunk != 5*MiB {
		t.Errorf("selector asked with %d workers, chunk %d", askedWorkers, askedChunk)
	}
	_, _, maxA, fwdA := a.counts()
	_, _, maxB, fwdB := b.counts()
	if maxA != 6 || maxB != 2 {
		t.Errorf("PUTs in flight at most: a %d, b %d; want 6 and 2 (weights 3:1 of 8 workers)", maxA, maxB)
	}
	if len(fwdA)+len(fwdB) != 16 {
		t.Errorf("relays forwarded %d + %d chunks; the origin took some itself", len(fwdA), len(fwdB))
	}
	if len(res.Edges) != 2 {
		t.Fatalf("edges %+v", res.Edges)
	}
	ea, _ := edgeByID(res, "edge-a")
	eb, _ := edgeByID(res, "edge-b")
	if ea.Kind != RouteRelay || ea.URL != a.srv.URL || ea.Chunks != len(fwdA) || eb.URL != b.srv.URL || eb.Chunks != len(fwdB) ||
		ea.Bytes+eb.Bytes != int64(len(data)) {
		t.Errorf("edges %+v", res.Edges)
	}
	if res.Workers != 8 {
		t.Errorf("workers %d", res.Workers)
	}
	// Every chunk event names its route's figures.
	for _, e := range rec.ofKind(EventChunkDone) {
		if e.Edge.ID != "edge-a" && e.Edge.ID != "edge-b" || e.Edge.Kind != RouteRelay || e.Edge.Chunks == 0 {
			t.Errorf("chunk event edge %+v", e.Edge)
		}
	}
	if w := rec.warnings(); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
	b2, _ := json.Marshal(res.Edges[0])
	var m map[string]any
	json.Unmarshal(b2, &m)
	for _, k := range []string{"id", "kind", "url", "chunks", "bytes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("edge JSON lacks %q: %s", k, b2)
		}
	}
}

// TestRoutesFastRelayCarriesMore: equal weights, but one relay answers
// slowly: the workers of the fast one take more chunks from the shared
// queue.
func TestRoutesFastRelayCarriesMore(t *testing.T) {
	f := newFake(t)
	fast, slow := newRelay(f, "fast"), newRelay(f, "slow")
	slow.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
		time.Sleep(800 * time.Millisecond)
		return false
	})
	path, data := writeFile(t, 61, 60*MiB) // 12 chunks
	opts, _, _ := routeOpts(4, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
		return []Route{fast.route(s, 1), slow.route(s, 1)}, nil
	}))
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, f, data, 12)
	ef, _ := edgeByID(res, "fast")
	es, _ := edgeByID(res, "slow")
	if ef.Chunks <= es.Chunks || es.Chunks == 0 || ef.Chunks+es.Chunks != 12 {
		t.Errorf("fast relay took %d chunks, slow %d: the fast one should carry more, both some", ef.Chunks, es.Chunks)
	}
	t.Logf("fast %d chunks, slow %d", ef.Chunks, es.Chunks)
}

// TestRoutesRelayFailsMidUpload: a relay that starts failing after two
// chunks gets its breaker opened; its chunks go to the other relay at
// once (no backoff), every chunk is stored exactly once with the right
// bytes.
func TestRoutesRelayFailsMidUpload(t *testing.T) {
	for _, mode := range []string{"connection closed", "edge draining", "502"} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t)
			a, b := newRelay(f, "edge-a"), newRelay(f, "edge-b")
			a.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
				time.Sleep(30 * time.Millisecond) // leave b time to fail
				return false
			})
			b.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
				if n <= 2 {
					return false
				}
				switch mode {
				case "connection closed":
					resetConn(w)
				case "edge draining":
					writeErr(w, 503, protocol.CodeEdgeDraining, "this edge is draining")
				default:
					io.Copy(io.Discard, r.Body)
					writeErr(w, 502, "bad_gateway", "origin unreachable")
				}
				return true
			})
			path, data := writeFile(t, 62, 80*MiB) // 16 chunks
			opts, rec, sl := routeOpts(4, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
				return []Route{a.route(s, 1), b.route(s, 1)}, nil
			}))
			res, err := Upload(context.Background(), f.client(), path, opts)
			checkNoWorkers(t)
			if err != nil {
				t.Fatal(err)
			}
			checkStoredOnce(t, f, data, 16)
			_, refused, _, fwd := b.counts()
			if len(fwd) != 2 || refused == 0 {
				t.Fatalf("b forwarded %d chunks and refused %d requests", len(fwd), refused)
			}
			// Once open (cooldown 10 s), nothing more goes to b. Before:
			// b's two good PUTs may end after a failure or two of the
			// other worker and reset the count (consecutive failures), so
			// at most 2 failures, then the 3 that open it, then one PUT
			// of the other worker in flight. Draining opens at once: at
			// most one failure per worker of b.
			limit := 2 + breakerThreshold + 1
			if mode == "edge draining" {
				limit = 2
			}
			if refused > limit {
				t.Errorf("b refused %d requests: its breaker did not stop the traffic (limit %d)", refused, limit)
			}
			w := rec.warnings()
			if countContaining(w, "route edge-b") != 1 || countContaining(w, "route edge-a") != 0 || len(w) != 1 {
				t.Errorf("warnings %q, want one about edge-b", w)
			}
			if mode == "edge draining" && countContaining(w, "draining") != 1 {
				t.Errorf("warning does not say b is draining: %q", w)
			}
			eb, _ := edgeByID(res, "edge-b")
			ea, _ := edgeByID(res, "edge-a")
			if eb.Chunks != 2 || ea.Chunks != 14 {
				t.Errorf("edges %+v", res.Edges)
			}
			if len(sl.delays) != 0 {
				t.Errorf("slept %v: a failed chunk should go to the other route at once", sl.delays)
			}
			retries := rec.ofKind(EventRetry)
			if len(retries) != refused {
				t.Errorf("%d retry events for %d failures", len(retries), refused)
			}
			for _, e := range retries {
				if e.Delay != 0 || e.Attempt != 2 {
					t.Errorf("failover retry event %+v: want attempt 2 at once", e)
				}
			}
			if res.ChunksSent != 16 || res.BytesSent < int64(len(data)) {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// TestRoutesAllFailFallBackToOrigin: relays that always fail leave the
// origin (not chosen: a reserve) with every chunk; with the origin
// failing too, every breaker opens and the origin takes the chunks with
// the usual backoff.
func TestRoutesAllFailFallBackToOrigin(t *testing.T) {
	t.Run("origin in reserve", func(t *testing.T) {
		f := newFake(t)
		a, b := newRelay(f, "edge-a"), newRelay(f, "edge-b")
		fail := func(w http.ResponseWriter, r *http.Request, index, n int) bool {
			io.Copy(io.Discard, r.Body)
			writeErr(w, 502, "bad_gateway", "down")
			return true
		}
		a.setHook(fail)
		b.setHook(fail)
		path, data := writeFile(t, 63, 40*MiB) // 8 chunks
		opts, rec, sl := routeOpts(4, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
			return []Route{a.route(s, 1), b.route(s, 1)}, nil
		}))
		res, err := Upload(context.Background(), f.client(), path, opts)
		if err != nil {
			t.Fatal(err)
		}
		checkStoredOnce(t, f, data, 8)
		if len(res.Edges) != 1 || res.Edges[0].ID != "origin" || res.Edges[0].Kind != RouteOrigin || res.Edges[0].URL != f.srv.URL || res.Edges[0].Chunks != 8 {
			t.Errorf("edges %+v", res.Edges)
		}
		w := rec.warnings()
		if countContaining(w, "route edge-a") != 1 || countContaining(w, "route edge-b") != 1 || countContaining(w, "every route") != 0 {
			t.Errorf("warnings %q", w)
		}
		if len(sl.delays) != 0 {
			t.Errorf("slept %v while the origin was up", sl.delays)
		}
	})
	t.Run("every route open", func(t *testing.T) {
		f := newFake(t)
		a, b := newRelay(f, "edge-a"), newRelay(f, "edge-b")
		fail := func(w http.ResponseWriter, r *http.Request, index, n int) bool {
			resetConn(w)
			return true
		}
		a.setHook(fail)
		b.setHook(fail)
		var originPuts atomic.Int32
		f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
			if originPuts.Add(1) <= breakerThreshold { // relays never forward: these are the origin's own
				writeErr(w, 503, "unavailable", "busy")
				return true
			}
			return false
		}
		path, data := writeFile(t, 64, 30*MiB) // 6 chunks
		// One worker: the order of failures is fixed (a ×3, b ×3,
		// origin ×3), so every breaker is open before any chunk is stored.
		opts, rec, sl := routeOpts(1, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
			return []Route{a.route(s, 1), b.route(s, 1), {ID: "origin", Kind: RouteOrigin, Weight: 1}}, nil
		}))
		opts.Retry.MaxAttempts = 20
		// No half-open trial during the test: under load the upload can
		// outlast the default 10 s cooldown, and a trial on a relay would
		// be one more refusal than the breaker's threshold.
		opts.Retry.BreakerCooldown = time.Hour
		res, err := Upload(context.Background(), f.client(), path, opts)
		checkNoWorkers(t)
		if err != nil {
			t.Fatal(err)
		}
		checkStoredOnce(t, f, data, 6)
		if len(res.Edges) != 1 || res.Edges[0].ID != "origin" || res.Edges[0].Chunks != 6 {
			t.Errorf("edges %+v", res.Edges)
		}
		w := rec.warnings()
		if countContaining(w, "route edge-a") != 1 || countContaining(w, "route edge-b") != 1 || countContaining(w, "route origin") != 1 ||
			countContaining(w, "every route is failing") != 1 {
			t.Errorf("warnings %q", w)
		}
		if len(sl.delays) == 0 {
			t.Error("no backoff once every route was open")
		}
		if _, refused, _, _ := a.counts(); refused != breakerThreshold {
			t.Errorf("a refused %d requests, want %d", refused, breakerThreshold)
		}
	})
}

// TestRoutesHalfOpen: a relay that failed and recovered gets chunks again
// after the cooldown (one trial, then its workers come home).
func TestRoutesHalfOpen(t *testing.T) {
	f := newFake(t)
	a, b := newRelay(f, "edge-a"), newRelay(f, "edge-b")
	a.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
		time.Sleep(100 * time.Millisecond) // longer than the cooldown
		return false
	})
	b.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
		if n <= breakerThreshold {
			io.Copy(io.Discard, r.Body)
			writeErr(w, 503, "unavailable", "restarting")
			return true
		}
		return false
	})
	path, data := writeFile(t, 65, 50*MiB) // 10 chunks
	opts, rec, _ := routeOpts(2, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
		return []Route{a.route(s, 1), b.route(s, 1)}, nil
	}))
	opts.Retry.BreakerCooldown = 50 * time.Millisecond
	res, err := Upload(context.Background(), f.client(), path, opts)
	checkNoWorkers(t)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, f, data, 10)
	_, refused, _, fwd := b.counts()
	if refused != breakerThreshold || len(fwd) == 0 {
		t.Errorf("b refused %d, then forwarded %d chunks: it should be used again after the cooldown", refused, len(fwd))
	}
	if eb, _ := edgeByID(res, "edge-b"); eb.Chunks != len(fwd) {
		t.Errorf("edges %+v", res.Edges)
	}
	if w := rec.warnings(); countContaining(w, "route edge-b") != 1 {
		t.Errorf("warnings %q", w)
	}
}

// directUpload uploads a file of n 5 MiB chunks through the direct route
// alone (the origin in reserve).
func directUpload(t *testing.T, f *fakeServer, st *fakeStore, seed byte, n, workers int, r io.ReaderAt) (*Result, *recorder, *noSleep, []byte, error) {
	t.Helper()
	data := genBytes(seed, int64(n)*5*MiB)
	opts, rec, sl := routeOpts(workers, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, w int) ([]Route, error) {
		return []Route{st.route(s, 1)}, nil
	}))
	if r == nil {
		r = bytes.NewReader(data)
	} else if cr, ok := r.(*changingReader); ok {
		cr.data = data
		opts.Progress = ProgressFunc(func(e Event) {
			if e.Kind == EventStart {
				cr.armed.Store(true)
			}
			rec.Event(e)
		})
	}
	res, err := UploadReader(context.Background(), f.client(), r, int64(len(data)), "d.bin", opts)
	return res, rec, sl, data, err
}

func TestRoutesDirectPresignBatching(t *testing.T) {
	seq := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		batch   int
		ttl     time.Duration
		workers int
		want    [][]int // nil: checked otherwise
	}{
		{"one call", protocol.MaxPresign, 15 * time.Minute, 1, [][]int{seq(0, 8)}},
		{"batches of 3", 3, 15 * time.Minute, 1, [][]int{{0, 1, 2}, {3, 4, 5}, {6, 7}}},
		// Parts expiring within a minute are handed out once, by the
		// call made before the workers start (warm), and never again.
		{"short-lived URLs", protocol.MaxPresign, 30 * time.Second, 1, [][]int{seq(0, 8)}},
		{"4 workers", protocol.MaxPresign, 15 * time.Minute, 4, nil},
		// One round (as many workers as chunks): every worker pops at
		// once, and the call made before they start covers them all.
		{"one round", protocol.MaxPresign, 15 * time.Minute, 8, [][]int{seq(0, 8)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := presignBatch
			presignBatch = tc.batch
			t.Cleanup(func() { presignBatch = old })
			f := newFake(t)
			st := newStore(f)
			st.ttl = tc.ttl
			res, rec, _, data, err := directUpload(t, f, st, 70, 8, tc.workers, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkStoredOnce(t, f, data, 8)
			calls := st.calls()
			if tc.want != nil && !slices.EqualFunc(calls, tc.want, slices.Equal) {
				t.Errorf("presign calls %v, want %v", calls, tc.want)
			}
			if tc.want == nil {
				asked := map[int]bool{}
				for _, c := range calls {
					for _, i := range c {
						asked[i] = true
					}
				}
				if len(calls) == 0 || len(calls) > tc.workers || len(asked) != 8 {
					t.Errorf("presign calls %v: want at most one per worker, covering the 8 chunks", calls)
				}
			}
			attempts, leaks := st.stats()
			for i := range 8 {
				if attempts[i] != 1 {
					t.Errorf("chunk %d: %d part PUTs", i, attempts[i])
				}
			}
			if len(leaks) != 0 {
				t.Errorf("credentials sent to the store: %v", leaks)
			}
			if a, _, _ := f.stats(); len(a) != 0 {
				t.Errorf("the origin got chunk PUTs %v", a)
			}
			if len(res.Edges) != 1 || res.Edges[0].ID != "direct" || res.Edges[0].Kind != RouteDirect || res.Edges[0].URL != st.srv.URL ||
				res.Edges[0].Chunks != 8 || res.Edges[0].Bytes != int64(len(data)) {
				t.Errorf("edges %+v", res.Edges)
			}
			if w := rec.warnings(); len(w) != 0 {
				t.Errorf("warnings %q", w)
			}
		})
	}
}

func TestRoutesDirectExpiredURL(t *testing.T) {
	t.Run("once", func(t *testing.T) {
		f := newFake(t)
		st := newStore(f)
		st.setHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
			if index == 2 && attempt == 1 {
				s3Error(w, 403, "AccessDenied", "Request has expired")
				return true
			}
			return false
		})
		_, rec, sl, data, err := directUpload(t, f, st, 71, 5, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkStoredOnce(t, f, data, 5)
		// The refused URL is dropped and asked for again, alone (3 and 4
		// are still cached).
		if calls := st.calls(); !slices.EqualFunc(calls, [][]int{{0, 1, 2, 3, 4}, {2}}, slices.Equal) {
			t.Errorf("presign calls %v", calls)
		}
		if attempts, _ := st.stats(); attempts[2] != 2 {
			t.Errorf("chunk 2: %d part PUTs", attempts[2])
		}
		if rec.count(EventRetry) != 0 || len(sl.delays) != 0 {
			t.Errorf("an expired URL counted as a failed attempt: %d retries, sleeps %v", rec.count(EventRetry), sl.delays)
		}
	})
	t.Run("always", func(t *testing.T) {
		f := newFake(t)
		st := newStore(f)
		st.setHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
			if index == 2 {
				s3Error(w, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
				return true
			}
			return false
		})
		_, _, _, _, err := directUpload(t, f, st, 72, 5, 1, nil)
		checkNoWorkers(t)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "SignatureDoesNotMatch" {
			t.Fatalf("err = %v", err)
		}
		if calls := st.calls(); len(calls) != 1+presignRefreshes {
			t.Errorf("%d presign calls, want %d (bounded)", len(calls), 1+presignRefreshes)
		}
		if attempts, _ := st.stats(); attempts[2] != 1+presignRefreshes {
			t.Errorf("chunk 2: %d part PUTs", attempts[2])
		}
	})
}

func TestRoutesDirectBadDigest(t *testing.T) {
	damage := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		s3Error(w, 400, S3CodeBadDigest, "The SHA256 you specified did not match the calculated checksum.")
	}
	t.Run("damaged on the way", func(t *testing.T) {
		f := newFake(t)
		st := newStore(f)
		st.setHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
			if index == 1 && attempt == 1 {
				damage(w, r)
				return true
			}
			return false
		})
		_, rec, sl, data, err := directUpload(t, f, st, 73, 4, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkStoredOnce(t, f, data, 4)
		if attempts, _ := st.stats(); attempts[1] != 2 {
			t.Errorf("chunk 1: %d part PUTs", attempts[1])
		}
		// As a checksum_mismatch: one retry with backoff, same URL.
		if len(st.calls()) != 1 || rec.count(EventRetry) != 1 || len(sl.delays) != 1 {
			t.Errorf("%d presign calls, %d retries, sleeps %v", len(st.calls()), rec.count(EventRetry), sl.delays)
		}
	})
	t.Run("always", func(t *testing.T) {
		f := newFake(t)
		st := newStore(f)
		st.setHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
			if index == 1 {
				damage(w, r)
				return true
			}
			return false
		})
		_, _, _, _, err := directUpload(t, f, st, 74, 4, 1, nil)
		if !IsCode(err, S3CodeBadDigest) || !isChecksumMismatch(err) {
			t.Fatalf("err = %v", err)
		}
		if attempts, _ := st.stats(); attempts[1] != 1+checksumRetries {
			t.Errorf("chunk 1: %d part PUTs, want %d", attempts[1], 1+checksumRetries)
		}
	})
	t.Run("file changed", func(t *testing.T) {
		f := newFake(t)
		st := newStore(f) // the real check: the damaged bytes do not hash to the signed header
		_, rec, _, _, err := directUpload(t, f, st, 75, 4, 1, &changingReader{})
		if !errors.Is(err, ErrFileChanged) {
			t.Fatalf("err = %v", err)
		}
		attempts, _ := st.stats()
		if len(attempts) != 1 || rec.count(EventRetry) != 0 {
			t.Errorf("part PUTs %v, %d retries: a changed file is not retried", attempts, rec.count(EventRetry))
		}
	})
}

// TestRoutesDirectWithRelay: the direct route and a relay together, the
// direct store failing with 500 from the start: the relay and the
// origin take over.
func TestRoutesDirectFailsOver(t *testing.T) {
	f := newFake(t)
	st := newStore(f)
	st.setHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		io.Copy(io.Discard, r.Body)
		s3Error(w, 500, "InternalError", "We encountered an internal error. Please try again.")
		return true
	})
	a := newRelay(f, "edge-a")
	path, data := writeFile(t, 76, 40*MiB)
	opts, rec, sl := routeOpts(4, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
		return []Route{st.route(s, 1), a.route(s, 1)}, nil
	}))
	res, err := Upload(context.Background(), f.client(), path, opts)
	checkNoWorkers(t)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, f, data, 8)
	if _, ok := edgeByID(res, "direct"); ok {
		t.Errorf("edges %+v: the direct route stored nothing", res.Edges)
	}
	if ea, _ := edgeByID(res, "edge-a"); ea.Chunks != 8 {
		t.Errorf("edges %+v", res.Edges)
	}
	if w := rec.warnings(); countContaining(w, "route direct") != 1 {
		t.Errorf("warnings %q", w)
	}
	if len(sl.delays) != 0 {
		t.Errorf("slept %v", sl.delays)
	}
}

func TestRoutesSelectorProblems(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sel     func(s *protocol.Session) ([]Route, error)
		warning string
	}{
		{"error", func(*protocol.Session) ([]Route, error) { return nil, errors.New("optimal-edges: 503") }, "edge selection failed"},
		{"empty", func(*protocol.Session) ([]Route, error) { return []Route{}, nil }, ""},
		{"unusable", func(*protocol.Session) ([]Route, error) {
			return []Route{{ID: "r", Kind: RouteRelay, Weight: 1}, {ID: "x", Kind: "carrier-pigeon", ChunkURL: "http://x/{index}", Weight: 1}, {ID: "d", Kind: RouteDirect, Weight: 1}}, nil
		}, "left out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			path, data := writeFile(t, 77, 20*MiB)
			opts, rec, _ := routeOpts(4, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
				return tc.sel(s)
			}))
			res, err := Upload(context.Background(), f.client(), path, opts)
			if err != nil {
				t.Fatal(err)
			}
			checkStoredOnce(t, f, data, 4)
			w := rec.warnings()
			if tc.warning == "" && len(w) != 0 {
				t.Errorf("warnings %q, want none: the origin alone is normal", w)
			}
			if tc.warning != "" && countContaining(w, tc.warning) == 0 {
				t.Errorf("warnings %q, want one saying %q", w, tc.warning)
			}
			if tc.name == "error" && countContaining(w, "optimal-edges: 503") != 1 {
				t.Errorf("warning does not say why: %q", w)
			}
			if tc.name == "unusable" && len(w) != 3 {
				t.Errorf("warnings %q, want one per unusable route", w)
			}
			if len(res.Edges) != 1 || res.Edges[0].ID != "origin" || res.Edges[0].Chunks != 4 {
				t.Errorf("edges %+v", res.Edges)
			}
		})
	}
}

// TestRoutesNoSelector: without Options.Edges every chunk goes to the
// session's chunk_url and is counted under the origin route.
func TestRoutesNoSelector(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 78, 20*MiB+5)
	opts, rec, _ := routeOpts(3, nil)
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, f, data, 5)
	want := EdgeStat{ID: "origin", Kind: RouteOrigin, URL: f.srv.URL, Chunks: 5, Bytes: int64(len(data))}
	if len(res.Edges) != 1 || res.Edges[0] != want {
		t.Errorf("edges %+v, want %+v", res.Edges, want)
	}
	n := 0
	for _, e := range rec.ofKind(EventChunkDone) {
		n++
		if e.Edge.ID != "origin" || e.Edge.Kind != RouteOrigin || e.Edge.URL != f.srv.URL || e.Edge.Chunks != n {
			t.Errorf("chunk event %d: edge %+v", n, e.Edge)
		}
	}
	if len(rec.warnings()) != 0 {
		t.Errorf("warnings %q", rec.warnings())
	}
	b, _ := json.Marshal(res)
	if !bytes.Contains(b, []byte(`"edges":[{"id":"origin","kind":"origin","url":"`+f.srv.URL+`","chunks":5,`)) {
		t.Errorf("result JSON %s", b)
	}
}

// TestRoutesStream: a stream uses the relays (not the direct route, which
// needs hashes known at presign time); a relay failing from the start
// leaves its blocks to the other at once, each block stored once.
func TestRoutesStream(t *testing.T) {
	f := newFake(t)
	st := newStore(f)
	a, b := newRelay(f, "edge-a"), newRelay(f, "edge-b")
	b.setHook(func(w http.ResponseWriter, r *http.Request, index, n int) bool {
		resetConn(w)
		return true
	})
	data := genBytes(79, 40*MiB+17) // 9 blocks
	rec, sl := &recorder{}, &noSleep{}
	opts := Options{Workers: 4, ChunkSize: 5 * MiB, Progress: rec, Sleep: sl.sleep, HashFirst: true, Edges: selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
		return []Route{a.route(s, 1), b.route(s, 1), st.route(s, 1)}, nil
	})}
	res, err := UploadStream(context.Background(), f.client(), pipeOf(data), "s.tar", opts)
	checkNoWorkers(t)
	if err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, f, data, 9)
	if attempts, _ := st.stats(); len(st.calls()) != 0 || len(attempts) != 0 {
		t.Error("the direct route was used for a stream")
	}
	_, refused, _, fwd := b.counts()
	if len(fwd) != 0 || refused == 0 || refused > breakerThreshold+1 {
		t.Errorf("b: %d forwarded, %d refused", len(fwd), refused)
	}
	if ea, _ := edgeByID(res, "edge-a"); len(res.Edges) != 1 || ea.Chunks != 9 {
		t.Errorf("edges %+v", res.Edges)
	}
	if w := rec.warnings(); countContaining(w, "route edge-b") != 1 {
		t.Errorf("warnings %q", w)
	}
	if len(sl.delays) != 0 {
		t.Errorf("slept %v", sl.delays)
	}
}

// TestClientPresign checks the presign call: upload token only, the body,
// and the answer's checks.
func TestClientPresign(t *testing.T) {
	var extra bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req protocol.PresignRequest
		json.NewDecoder(r.Body).Decode(&req)
		if r.Method != "POST" || r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-API-Secret") != "" || !slices.Equal(req.Chunks, []int{1, 2}) {
			writeErr(w, 400, "bad", fmt.Sprintf("%s %q %q %v", r.Method, r.Header.Get("Authorization"), r.Header.Get("X-API-Secret"), req.Chunks))
			return
		}
		parts := []protocol.PresignedPart{{Index: 1, URL: "https://s3.example/b/k?partNumber=2", Method: "PUT"}, {Index: 2, URL: "https://s3.example/b/k?partNumber=3", Method: "PUT"}}
		if extra {
			parts = append(parts, protocol.PresignedPart{Index: 9, URL: "https://s3.example/x"})
		}
		writeJSON(w, 200, protocol.PresignResponse{Parts: parts})
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, APIKey: "key", APISecret: "secret", HTTP: srv.Client()}
	resp, err := c.Presign(context.Background(), "/api/jetty/sessions/s/presign", "tok", []int{1, 2}, nil)
	if err != nil || len(resp.Parts) != 2 || resp.Parts[1].Index != 2 {
		t.Fatalf("%+v %v", resp, err)
	}
	extra = true
	if _, err := c.Presign(context.Background(), srv.URL+"/p", "tok", []int{1, 2}, nil); err == nil || !strings.Contains(err.Error(), "not asked") {
		t.Errorf("a part not asked for was accepted: %v", err)
	}
}

// closeCounter is a body that records being closed.
type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

func TestClientPutPresigned(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	var body []byte
	answer := func(w http.ResponseWriter) { w.WriteHeader(200) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, body = r, b
		a := answer
		mu.Unlock()
		a(w)
	}))
	defer srv.Close()
	c := &Client{BaseURL: "https://jetty.example", APIKey: "key", APISecret: "secret", HTTP: srv.Client()}
	part := protocol.PresignedPart{Index: 3, URL: srv.URL + "/bucket/key?partNumber=4&uploadId=u&X-Amz-Signature=s", Method: "PUT",
		Headers: map[string]string{"x-amz-checksum-sha256": "c2hh", "X-Amz-Meta-Test": "v", "Content-Length": "3"}}
	if err := c.PutPresigned(context.Background(), part, strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got.Method != "PUT" || got.URL.RawQuery != "partNumber=4&uploadId=u&X-Amz-Signature=s" || got.ContentLength != 3 || string(body) != "abc" ||
		got.Header.Get("X-Amz-Checksum-Sha256") != "c2hh" || got.Header.Get("X-Amz-Meta-Test") != "v" {
		t.Errorf("request %s %s, %d bytes %q, headers %v", got.Method, got.URL, got.ContentLength, body, got.Header)
	}
	for _, h := range []string{"Authorization", "X-API-Secret", "X-Upload-Token", "X-Chunk-SHA256", "Content-Type"} {
		if got.Header.Get(h) != "" {
			t.Errorf("%s sent to the store", h)
		}
	}
	mu.Unlock()

	// A Content-Length header that is not the chunk's: refused before
	// sending, and the body is released.
	cc := &closeCounter{Reader: strings.NewReader("abcd")}
	if err := c.PutPresigned(context.Background(), part, cc, 4); err == nil || cc.closed.Load() == 0 {
		t.Errorf("err %v, body closed %d times", err, cc.closed.Load())
	}

	// Error answers: S3's XML, or anything else.
	for _, tc := range []struct {
		status   int
		body     string
		code     string
		msg      string
		mismatch bool
	}{
		{400, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>The Content-MD5 you specified did not match what we received.</Message></Error>`, "BadDigest", "The Content-MD5 you specified did not match what we received.", true},
		{400, `<Error><Code>XAmzContentChecksumMismatch</Code><Message>x</Message></Error>`, "XAmzContentChecksumMismatch", "x", true},
		{400, `<Error><Code>InvalidDigest</Code><Message>y</Message></Error>`, "InvalidDigest", "y", true},
		{403, `<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`, "AccessDenied", "Request has expired", false},
		{503, `{"error":"busy","code":"slow_down"}`, "slow_down", "busy", false},
		{502, `bad gateway`, "", "bad gateway", false},
	} {
		mu.Lock()
		answer = func(w http.ResponseWriter) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}
		mu.Unlock()
		err := c.PutPresigned(context.Background(), part, strings.NewReader("abc"), 3)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.Message != tc.msg || isChecksumMismatch(err) != tc.mismatch {
			t.Errorf("%d %s: err %#v", tc.status, tc.body, err)
		}
	}
}

// TestRouterHold: a slow route's worker leaves the last queued chunks to
// the fast routes, takes its share while there is plenty, and never
// holds when the fast routes are down or it is the fastest.
func TestRouterHold(t *testing.T) {
	fast := &route{Route: Route{ID: "fast", Kind: RouteRelay}, idx: 0, weight: 0.75}
	mid := &route{Route: Route{ID: "mid", Kind: RouteRelay}, idx: 1, weight: 0.2}
	slow := &route{Route: Route{ID: "origin", Kind: RouteOrigin}, idx: 2, weight: 0.05}
	r := &router{routes: []*route{fast, mid, slow}, origin: slow, cooldown: time.Second, now: time.Now}
	ws := r.workers(6) // fast 4, mid 1, slow 1
	if fast.cur != 4 || mid.cur != 1 || slow.cur != 1 {
		t.Fatalf("split %d %d %d", fast.cur, mid.cur, slow.cur)
	}
	on := func(rt *route) *worker {
		for _, w := range ws {
			if w.cur == rt {
				return w
			}
		}
		t.Fatalf("no worker on %s", rt.ID)
		return nil
	}
	wf, wm, wsl := on(fast), on(mid), on(slow)
	// By weight (nothing measured yet): the slow route (15× slower than
	// the fast one) holds even with 12 chunks queued; the mid one takes
	// its share of 12 but not of the last 3; the fast one never holds.
	for _, tc := range []struct {
		w      *worker
		queued int
		want   bool
	}{
		{wsl, 12, true}, {wsl, 100, false}, {wm, 12, false}, {wm, 2, true}, {wf, 1, false}, {wf, 100, false},
	} {
		if got := r.hold(tc.w, tc.queued); got != tc.want {
			t.Errorf("by weight: %s worker with %d queued: hold %v, want %v", tc.w.cur.ID, tc.queued, got, tc.want)
		}
	}
	// Measured figures replace the weights once every route has one: the
	// slow route turns out nearly as fast as the others.
	r.observe(fast, 300*time.Millisecond)
	r.observe(mid, 400*time.Millisecond)
	if !r.hold(wsl, 2) {
		t.Error("with a route unmeasured the weights still decide: the slow route should hold")
	}
	r.observe(slow, 350*time.Millisecond)
	if r.hold(wsl, 2) || r.hold(wm, 2) {
		t.Error("measured nearly as fast: no route should hold")
	}
	r.observe(slow, 20*time.Second) // moving average: 0.7×0.35 + 0.3×20 s
	if !r.hold(wsl, 2) {
		t.Error("measured slow: the slow route should hold the tail")
	}
	// With the fast routes' breakers open, the slow route takes everything.
	fast.open, mid.open = true, true
	if r.hold(wsl, 1) {
		t.Error("the only closed route held a chunk")
	}
	// A single route never holds.
	one := &router{routes: []*route{slow}, origin: slow, now: time.Now}
	if one.hold(&worker{home: slow, cur: slow}, 1) {
		t.Error("a single route held")
	}
}

// advisingSelector is a selector that also advises a worker count.
type advisingSelector struct {
	selectFunc
	advise       int
	gotSuggested int
	gotCeiling   int
	adviseCalls  int
}

func (a *advisingSelector) AdviseWorkers(suggested, ceiling int) int {
	a.adviseCalls++
	a.gotSuggested, a.gotCeiling = suggested, ceiling
	return a.advise
}

// TestRoutesWorkerAdvice: a selector's advice replaces the server's
// suggested worker count (within the ceiling), but never an explicit
// Options.Workers.
func TestRoutesWorkerAdvice(t *testing.T) {
	path, data := writeFile(t, 61, 40*MiB) // 8 chunks
	for _, tc := range []struct {
		name        string
		workers     int // Options.Workers
		advise      int
		want        int
		wantAdvised bool
	}{
		{"advice taken", 0, 6, 6, true},
		{"advice above the ceiling", 0, 100, 32, true},
		{"explicit workers win", 3, 30, 3, false},
	} {
		f := newFake(t) // suggests 8, ceiling 32
		a := newRelay(f, "edge-a")
		sel := &advisingSelector{advise: tc.advise, selectFunc: func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
			return []Route{a.route(s, 1)}, nil
		}}
		opts, _, _ := routeOpts(tc.workers, sel)
		res, err := Upload(context.Background(), f.client(), path, opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Workers != tc.want || (sel.adviseCalls > 0) != tc.wantAdvised {
			t.Errorf("%s: %d workers (advised %d times), want %d", tc.name, res.Workers, sel.adviseCalls, tc.want)
		}
		if tc.wantAdvised && (sel.gotSuggested != 8 || sel.gotCeiling != 32) {
			t.Errorf("%s: advisor asked with %d/%d, want 8/32", tc.name, sel.gotSuggested, sel.gotCeiling)
		}
		checkStoredOnce(t, f, data, 8)
	}
}

// hintedSelect is an EdgeSelector that hints at the direct route's presign
// URL (PresignHinter) and makes Select wait until release is closed, as a
// probe would.
type hintedSelect struct {
	st      *fakeStore
	hint    func(s *protocol.Session) string
	release chan struct{}
}

func (h hintedSelect) PresignHint(s *protocol.Session) string { return h.hint(s) }

func (h hintedSelect) Select(ctx context.Context, s *protocol.Session, cs int64, w int) ([]Route, error) {
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []Route{h.st.route(s, 1)}, nil
}

func TestRoutesEarlyPresign(t *testing.T) {
	t.Run("asked while selecting", func(t *testing.T) {
		f := newFake(t)
		st := newStore(f)
		sel := hintedSelect{st: st, hint: func(s *protocol.Session) string { return st.route(s, 1).PresignURL }, release: make(chan struct{})}
		go func() {
			// Select returns only once the presign call was made: the
			// parts are asked for before the routes are known.
			defer close(sel.release)
			deadline := time.Now().Add(10 * time.Second)
			for len(st.calls()) == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}()
		data := genBytes(81, 6*5*MiB)
		opts, rec, _ := routeOpts(6, sel)
		if _, err := UploadReader(context.Background(), f.client(), bytes.NewReader(data), int64(len(data)), "e.bin", opts); err != nil {
			t.Fatal(err)
		}
		checkStoredOnce(t, f, data, 6)
		want := [][]int{{0, 1, 2, 3, 4, 5}}
		if calls := st.calls(); !slices.EqualFunc(calls, want, slices.Equal) {
			t.Errorf("presign calls %v, want %v (one, before Select returned)", calls, want)
		}
		if w := rec.warnings(); len(w) != 0 {
			t.Errorf("warnings %q", w)
		}
	})
	t.Run("hint not chosen", func(t *testing.T) {
		// The hint names another URL than the route Select returns: its
		// parts are not used, the route asks for its own.
		f := newFake(t)
		st := newStore(f)
		sel := hintedSelect{st: st, hint: func(s *protocol.Session) string { return st.route(s, 1).PresignURL + "-elsewhere" }, release: make(chan struct{})}
		close(sel.release)
		data := genBytes(82, 4*5*MiB)
		opts, _, _ := routeOpts(4, sel)
		if _, err := UploadReader(context.Background(), f.client(), bytes.NewReader(data), int64(len(data)), "e.bin", opts); err != nil {
			t.Fatal(err)
		}
		checkStoredOnce(t, f, data, 4)
		asked := map[int]bool{}
		for _, c := range st.calls() {
			for _, i := range c {
				asked[i] = true
			}
		}
		if len(asked) != 4 {
			t.Errorf("presign calls %v: the route must ask for all 4 chunks itself", st.calls())
		}
	})
}
