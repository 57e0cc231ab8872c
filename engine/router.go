package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// Routes, failover and the shared chunk queue.
//
// An upload sends its chunks through one or more routes (Route): the
// origin, relays (same protocol, another host) and the object store
// itself (direct: presigned part URLs). The worker pool is split across
// the routes in proportion to their weights (splitWorkers); every worker
// has a home route but all of them take chunk indexes from one shared
// queue (chunkQueue), so a fast route takes more chunks than a slow one.
//
// Every route has a circuit breaker. A route failure (routeFailure: a
// network error, a timeout, a 5xx; a 503 edge_draining opens the breaker
// at once) counts; breakerThreshold in a row open it. A chunk that failed
// on a route goes back to the queue at once while another route's
// breaker is closed, and is retried with backoff as before when none is.
// A worker whose route is open moves to the closed route with the fewest
// workers per unit of weight; after RetryPolicy.BreakerCooldown one
// request is let through as a trial (half-open), and its success closes
// the breaker (the workers of that home route come back). When every
// route is open the origin takes the chunks regardless of its own
// breaker, with the usual retries: the last route is never removed.
//
// With one route (no EdgeSelector, or it chose the origin alone) there is
// no breaker at all: the upload behaves exactly as it did before routes.
//
// Routes join a running upload (issue 18): the workers start at once on
// the origin (or on the routes RouteStarter names, the best edge
// remembered from the last upload to this server), the EdgeSelector runs
// in the background, and its routes join when it answers (router.join):
// every crew (the worker pool of a send loop, router.crew) has its
// workers re-homed by the new weights, and grows when the WorkerAdvisor
// asks for more workers (router.grow). See "Workers start before the
// probe" in docs/decisions.md.

// breakerThreshold is the number of consecutive failures that open a
// route's breaker.
const breakerThreshold = 3

// presignMargin: a presigned part is reused until this long before its
// expiry.
const presignMargin = time.Minute

// presignBatch is the most parts asked for in one presign call
// (MaxPresign; tests shorten it).
var presignBatch = protocol.MaxPresign

// presignRefreshes bounds how many times one chunk asks for a new
// presigned URL after the store refused one (403: expired, bad signature).
const presignRefreshes = tokenRefreshes

// route is a Route in use, with its breaker. The fields below the line
// are guarded by router.mu.
type route struct {
	Route
	idx    int
	weight float64 // effective weight (all 1 when none was positive)
	url    string  // scheme and host, for statistics (direct: set per part)
	pc     *presignCache

	cur      int     // workers on the route now
	perChunk float64 // moving average of a stored chunk's seconds on one worker (0: none yet)
	fails    int     // consecutive failures
	open     bool
	openedAt time.Time
	trial    bool // a half-open trial request is in flight
}

// router is the routes of an upload and their breakers.
type router struct {
	mu       sync.Mutex
	routes   []*route // only ever grows (joins); a route keeps its index
	origin   *route
	cooldown time.Duration
	now      func() time.Time
	fellBack atomic.Bool // the all-routes-open warning was given

	size     int           // workers a crew wants (grow raises it); 0: as created
	crews    []*crew       // the running crews
	early    *presignCache // parts asked for while the routes were chosen (PresignHinter)
	earlyURL string
	sums     func(int) (string, bool) // a sized session's chunk hashes (presignCache.sums)
}

// worker is one worker's place: the route it was given (home) and the
// one it sends through now. cur is read and changed only by the worker's
// goroutine (under router.mu when it changes); home is changed under
// router.mu, by router.join when routes join (the worker moves there on
// its next request), and read under it.
type worker struct {
	home, cur *route
	att       atomic.Pointer[attempt] // the chunk PUT in flight, if any
}

// attempt is one chunk PUT in flight: its route and how to stop it for
// a faster route (preemptLocked).
type attempt struct {
	rt     *route
	cancel context.CancelCauseFunc
}

// errPreempted cancels a chunk PUT whose worker moved to a much faster
// route: sendChunk sends the chunk again there, at once.
var errPreempted = errors.New("the chunk moves to a faster route")

// preemptRatio is how much more weight a worker's new home must have than
// the route its chunk is on for the chunk to move (preemptLocked).
const preemptRatio = 4

// preemptLocked stops the chunk PUTs that a selection left on a route
// with less than 1/preemptRatio of the weight of their worker's new home:
// the workers started before the probe (on the origin, or a remembered
// edge) must not keep chunks for a long time on a route the selection
// found slow. Sending the whole chunk again on the new home takes at most
// a quarter of the time the old route needs for all of it, so the move
// wins unless the old route was three quarters done. How far it is cannot
// be told from here (the bytes the transport took may still sit in socket
// and proxy buffers: a 5 MiB body is taken at once by a link of 1 MB/s).
// A selection comes early in an upload, once, so the cost is at most one
// chunk per worker; a chunk the old route stored meanwhile is stored
// twice, the same bytes.
func (r *router) preemptLocked(ws []*worker) {
	for _, w := range ws {
		a := w.att.Load()
		if a == nil || w.home == nil || a.rt == w.home || a.rt.weight*preemptRatio >= w.home.weight {
			continue
		}
		a.cancel(errPreempted)
	}
}

// multi reports whether the upload has more than one route now (a route
// may join later: then it becomes true, and stays so).
func (r *router) multi() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.routes) > 1
}

// route is the route of index i.
func (r *router) route(i int) *route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.routes[i]
}

// snapshot is the routes now.
func (r *router) snapshot() []*route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.routes)
}

// workers makes n workers, their homes split across the routes by weight.
func (r *router) workers(n int) []*worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workersLocked(n)
}

func (r *router) workersLocked(n int) []*worker {
	weights := make([]float64, len(r.routes))
	for i, rt := range r.routes {
		weights[i] = rt.weight
	}
	split := splitWorkers(weights, n)
	out := make([]*worker, 0, n)
	for i, k := range split {
		for range k {
			rt := r.routes[i]
			rt.cur++
			out = append(out, &worker{home: rt, cur: rt})
		}
	}
	// Interleave the routes, so that the first workers started are not
	// all of one route.
	return interleave(out)
}

// interleave orders workers round-robin by home route.
func interleave(ws []*worker) []*worker {
	by := map[*route][]*worker{}
	var order []*route
	for _, w := range ws {
		if by[w.home] == nil {
			order = append(order, w.home)
		}
		by[w.home] = append(by[w.home], w)
	}
	out := make([]*worker, 0, len(ws))
	for len(out) < len(ws) {
		for _, rt := range order {
			if l := by[rt]; len(l) > 0 {
				out = append(out, l[0])
				by[rt] = l[1:]
			}
		}
	}
	return out
}

// leave takes a worker off its route.
func (r *router) leave(w *worker) {
	r.mu.Lock()
	w.cur.cur--
	r.mu.Unlock()
}

func (r *router) moveLocked(w *worker, to *route) {
	if w.cur != to {
		w.cur.cur--
		to.cur++
		w.cur = to
	}
}

// allowLocked reports whether rt takes a request now: its breaker is
// closed, or it is open, its cooldown is over and no trial is in flight
// (the request is then that trial).
func (r *router) allowLocked(rt *route, now time.Time) (ok, trial bool) {
	if !rt.open {
		return true, false
	}
	if !rt.trial && now.Sub(rt.openedAt) >= r.cooldown {
		rt.trial = true
		return true, true
	}
	return false, false
}

// assign chooses the route of w's next request, moving w when needed:
// its home route if that takes requests (closed, or the half-open
// trial), else the route it is on if closed, else the closed route with
// the fewest workers per unit of weight. avoid (may be nil) is a route
// the chunk just failed on: another closed route is preferred to it.
// With every route open it is the origin (fellBack).
func (r *router) assign(w *worker, avoid *route) (rt *route, trial, fellBack bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.routes) == 1 {
		return r.routes[0], false, false
	}
	now := r.now()
	if w.home != avoid {
		if ok, trial := r.allowLocked(w.home, now); ok {
			r.moveLocked(w, w.home)
			return w.home, trial, false
		}
	}
	if w.cur != avoid && !w.cur.open {
		return w.cur, false, false
	}
	if best := r.bestLocked(avoid); best != nil {
		r.moveLocked(w, best)
		return best, false, false
	}
	if avoid != nil && !avoid.open { // the only closed route
		r.moveLocked(w, avoid)
		return avoid, false, false
	}
	r.moveLocked(w, r.origin)
	return r.origin, false, true
}

// bestLocked is the closed route other than avoid where one more worker
// makes the fewest workers per unit of weight (nil: none is closed).
func (r *router) bestLocked(avoid *route) *route {
	var best *route
	var bestLoad float64
	for _, rt := range r.routes {
		if rt == avoid || rt.open {
			continue
		}
		load := math.Inf(1)
		if rt.weight > 0 {
			load = float64(rt.cur+1) / rt.weight
		}
		if best == nil || load < bestLoad || (load == bestLoad && rt.cur < best.cur) {
			best, bestLoad = rt, load
		}
	}
	return best
}

// observe records that one chunk took d through rt.
func (r *router) observe(rt *route, d time.Duration) {
	if d <= 0 {
		return // (with one route too: a route may join later)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sec := d.Seconds()
	if rt.perChunk == 0 {
		rt.perChunk = sec
	} else {
		rt.perChunk = 0.7*rt.perChunk + 0.3*sec
	}
}

// hold reports whether the worker w should leave the queued chunks to
// the other routes rather than take one: when the other workers would
// send every queued chunk, finish those they hold, and then send this
// one before w's route could send it alone. It keeps a slow route from holding the last chunks of
// an upload while fast routes idle (the tail), while a slow route still
// takes its share when there is plenty to do.
//
// Speeds are chunks per second per worker: measured (1/perChunk) once
// every closed route with workers has stored a chunk, else the routes'
// weights (the selector's estimate of the same thing, up to a factor).
// Routes whose breaker is open count for nothing, so a held worker
// takes chunks again as soon as the fast routes fail.
func (r *router) hold(w *worker, queued int) bool {
	if !r.multi() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	mine := w.cur
	if !w.home.open {
		mine = w.home // assign sends it home (re-homed by a join)
	}
	if mine.open {
		return false // assign moves it; do not strand the chunk
	}
	measured := true
	for _, rt := range r.routes {
		if !rt.open && rt.cur > 0 && rt.perChunk == 0 {
			measured = false
		}
	}
	speed := func(rt *route) float64 {
		if measured {
			if rt.perChunk == 0 {
				return 0
			}
			return 1 / rt.perChunk
		}
		return rt.weight
	}
	sMine := speed(mine)
	var others, best float64
	for _, rt := range r.routes {
		if rt.open || rt.cur == 0 {
			continue
		}
		s := speed(rt)
		n := rt.cur
		if rt == w.cur { // w itself is counted there
			n--
		}
		others += float64(n) * s
		best = max(best, s)
	}
	if sMine <= 0 || others <= 0 || sMine >= best {
		return false
	}
	// The others drain the queue, finish what they hold (one chunk time
	// of the best route, conservatively) and then send this chunk.
	return 1/sMine > float64(queued)/others+2/best
}

// otherClosed reports whether a route other than rt has its breaker
// closed.
func (r *router) otherClosed(rt *route) bool {
	if !r.multi() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.routes {
		if o != rt && !o.open {
			return true
		}
	}
	return false
}

// success records a request rt carried: it resets the failure count of a
// closed breaker and closes the breaker when the request was its trial.
func (r *router) success(rt *route, trial bool) {
	if !r.multi() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if trial || !rt.open {
		rt.open, rt.trial, rt.fails = false, false, 0
	}
}

// failure records a route failure of rt; now opens the breaker at once.
// It reports whether the breaker opened (it was closed). A failed trial
// keeps it open for another cooldown.
func (r *router) failure(rt *route, trial, now bool) bool {
	if !r.multi() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rt.fails++
	if trial {
		rt.trial, rt.openedAt = false, r.now()
		return false
	}
	if rt.open || (!now && rt.fails < breakerThreshold) {
		return false
	}
	rt.open, rt.openedAt = true, r.now()
	return true
}

// release gives back a trial whose request ended neither in success nor
// in a route failure (a refused token, a canceled upload).
func (r *router) release(rt *route, trial bool) {
	if !trial {
		return
	}
	r.mu.Lock()
	rt.trial = false
	r.mu.Unlock()
}

// routeFailure reports whether err counts against the route that gave it
// (a network error, a timeout, a 5xx answer) and whether it opens the
// route's breaker at once (503 edge_draining). The caller has checked
// that the upload's own context is not done.
func routeFailure(err error) (failed, now bool) {
	if err == nil || errors.Is(err, context.Canceled) {
		return false, false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusServiceUnavailable && ae.Code == protocol.CodeEdgeDraining {
			return true, true
		}
		if IsStorageFull(err) {
			return false, false // the storage every route writes to, not this route
		}
		return ae.Status >= 500, false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true, false
	}
	return isNetError(err), false
}

// splitWorkers shares n workers among routes in proportion to their
// weights: largest-remainder rounding, and every route with a positive
// weight gets at least one worker while n is at least the number of
// such routes; with fewer workers than routes the heaviest routes get
// one each. Routes of weight ≤ 0 get none (unless no weight is positive:
// then all weigh the same).
func splitWorkers(weights []float64, n int) []int {
	out := make([]int, len(weights))
	if n <= 0 || len(weights) == 0 {
		return out
	}
	w := make([]float64, len(weights))
	var act []int
	top := 0.0
	for i, x := range weights {
		if x > 0 && !math.IsInf(x, 0) && !math.IsNaN(x) {
			w[i] = x
			act = append(act, i)
			top = max(top, x)
		}
	}
	if len(act) == 0 {
		for i := range w {
			w[i] = 1
			act = append(act, i)
		}
		top = 1
	}
	if n < len(act) {
		heavy := slices.Clone(act)
		sort.SliceStable(heavy, func(a, b int) bool { return w[heavy[a]] > w[heavy[b]] })
		for _, i := range heavy[:n] {
			out[i] = 1
		}
		return out
	}
	sum := 0.0
	for _, i := range act {
		w[i] /= top // no overflow whatever the scale
		sum += w[i]
	}
	quota := make([]float64, len(w))
	rem := make([]float64, len(w))
	given := 0
	for _, i := range act {
		quota[i] = float64(n) * w[i] / sum
		out[i] = int(math.Floor(quota[i]))
		rem[i] = quota[i] - float64(out[i])
		given += out[i]
	}
	order := slices.Clone(act)
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for k := 0; given < n; k++ {
		out[order[k%len(order)]]++
		given++
	}
	for _, i := range act {
		for out[i] == 0 { // take one from the route most above its quota
			from := -1
			for _, j := range act {
				if out[j] >= 2 && (from < 0 || float64(out[j])-quota[j] > float64(out[from])-quota[from]) {
					from = j
				}
			}
			out[from]--
			out[i]++
		}
	}
	return out
}

// chunkTry is what one chunk has been through, across routes and
// re-queues.
type chunkTry struct {
	tries int // failed attempts, counted against RetryPolicy.MaxAttempts
	last  int // index of the route of its last route failure, -1: none
}

// chunkQueue is the indexes of the chunks still to send, shared by all
// the workers of a file upload. A chunk that failed on a route comes
// back (requeue) at the front; pop prefers chunks that did not last fail
// on the taker's route. Workers stop when every chunk is stored (done)
// or the queue is closed (the upload failed or was canceled).
type chunkQueue struct {
	mu       sync.Mutex
	cond     sync.Cond
	requeued []int // chunks back from a failed route, oldest first
	fresh    []int // chunks not tried yet
	pending  int   // chunks not stored yet: queued or in a worker's hands
	closed   bool
	state    []chunkTry // by chunk index; a chunk's entry belongs to whoever holds it
}

func newChunkQueue(idx []int, chunks int) *chunkQueue {
	q := &chunkQueue{fresh: slices.Clone(idx), pending: len(idx), state: make([]chunkTry, chunks)}
	q.cond.L = &q.mu
	for i := range q.state {
		q.state[i].last = -1
	}
	return q
}

// pop takes a chunk, waiting while the queue is empty but chunks are
// still out; false when every chunk is stored or the queue is closed.
// avoid is the taker's route index.
func (q *chunkQueue) pop(avoid int) (int, bool) { return q.popUnless(avoid, nil) }

// popUnless is pop, except that while hold(queued chunks) is true the
// taker leaves the queue to others and waits (a slow route's worker at
// the tail of an upload, see router.hold); it is asked again whenever
// the queue changes or wake is called.
func (q *chunkQueue) popUnless(avoid int, hold func(queued int) bool) (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed || q.pending == 0 {
			return 0, false
		}
		if n := len(q.requeued) + len(q.fresh); n > 0 && hold != nil && hold(n) {
			q.cond.Wait()
			continue
		}
		for k, i := range q.requeued {
			if q.state[i].last != avoid {
				q.requeued = slices.Delete(q.requeued, k, k+1)
				return i, true
			}
		}
		if len(q.fresh) > 0 {
			i := q.fresh[0]
			q.fresh = q.fresh[1:]
			return i, true
		}
		if len(q.requeued) > 0 { // only chunks that failed here: take one all the same
			i := q.requeued[0]
			q.requeued = q.requeued[1:]
			return i, true
		}
		q.cond.Wait()
	}
}

// requeue puts chunk i back, after a failure on route routeIdx.
func (q *chunkQueue) requeue(i, routeIdx int) {
	q.mu.Lock()
	q.state[i].last = routeIdx
	q.requeued = append(q.requeued, i)
	q.mu.Unlock()
	q.cond.Broadcast() // held workers decide again
}

// wake makes the waiting workers decide again (their routes' figures
// changed).
func (q *chunkQueue) wake() { q.cond.Broadcast() }

// done records that a chunk taken was stored.
func (q *chunkQueue) done() {
	q.mu.Lock()
	q.pending--
	last := q.pending == 0
	q.mu.Unlock()
	if last {
		q.cond.Broadcast()
	}
}

// close wakes every waiting worker for good.
func (q *chunkQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// peek lists up to n queued indexes, in the order they would be taken,
// that skip does not reject (skip runs under the queue's lock).
func (q *chunkQueue) peek(n int, skip func(int) bool) []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []int
	for _, l := range [][]int{q.requeued, q.fresh} {
		for _, i := range l {
			if len(out) >= n {
				return out
			}
			if !skip(i) {
				out = append(out, i)
			}
		}
	}
	return out
}

// presignCache holds the presigned parts of a direct route. One presign
// call runs at a time; it asks for the chunk its caller needs, the
// chunks other workers are waiting for and the next chunks of the queue,
// up to presignBatch.
type presignCache struct {
	mu     sync.Mutex
	parts  map[int]protocol.PresignedPart
	warmed map[int]bool // parts fetched by warm and not handed out yet
	want   map[int]int  // chunk → workers waiting for its part
	// sums gives the hash of a chunk of a sized session (pipeline.go),
	// which its presign call must name; nil for a manifest session.
	sums func(int) (string, bool)
	gen  int // presign calls answered
	sem  chan struct{}
}

// hashes is batch with the hashes a sized session's presign call names
// (nil for a manifest session), leaving out the chunks whose hash is not
// known yet; the first chunk (the caller's own) always has one.
func (pc *presignCache) hashes(batch []int) ([]int, []string) {
	if pc.sums == nil {
		return batch, nil
	}
	out, sums := make([]int, 0, len(batch)), make([]string, 0, len(batch))
	for _, i := range batch {
		if h, ok := pc.sums(i); ok {
			out, sums = append(out, i), append(sums, h)
		}
	}
	return out, sums
}

func newPresignCache() *presignCache {
	return &presignCache{parts: map[int]protocol.PresignedPart{}, warmed: map[int]bool{}, want: map[int]int{}, sem: make(chan struct{}, 1)}
}

// warmedMin is the least life a part fetched by warm must have left to be
// handed out once although it expires within presignMargin: it was asked
// for this chunk's first attempt, as the worker's own call would have.
const warmedMin = 5 * time.Second

// usableLocked reports whether a cached part may be used now.
func (pc *presignCache) usableLocked(i int, now time.Time) (protocol.PresignedPart, bool) {
	p, ok := pc.parts[i]
	return p, ok && p.ExpiresAt.Sub(now) > presignMargin
}

// takeLocked is the part of chunk i when it may be handed out now:
// usable, or fetched by warm (once, while it has warmedMin left).
func (pc *presignCache) takeLocked(i int, now time.Time) (protocol.PresignedPart, bool) {
	p, ok := pc.parts[i]
	switch {
	case !ok:
		return p, false
	case pc.warmed[i] && p.ExpiresAt.Sub(now) > warmedMin:
		delete(pc.warmed, i)
		return p, true
	}
	return p, p.ExpiresAt.Sub(now) > presignMargin
}

// get returns the presigned part of chunk i, from the cache or from a
// presign call made with token. q (nil for none) lends its next chunks
// to the batch.
func (pc *presignCache) get(ctx context.Context, c *Client, presignURL, token string, q *chunkQueue, i int) (protocol.PresignedPart, error) {
	pc.mu.Lock()
	if p, ok := pc.takeLocked(i, time.Now()); ok {
		pc.mu.Unlock()
		return p, nil
	}
	pc.want[i]++
	gen := pc.gen
	pc.mu.Unlock()
	defer func() {
		pc.mu.Lock()
		if pc.want[i]--; pc.want[i] <= 0 {
			delete(pc.want, i)
		}
		pc.mu.Unlock()
	}()
	select {
	case pc.sem <- struct{}{}:
	case <-ctx.Done():
		return protocol.PresignedPart{}, ctx.Err()
	}
	defer func() { <-pc.sem }()

	pc.mu.Lock()
	now := time.Now()
	if p, ok := pc.takeLocked(i, now); ok {
		pc.mu.Unlock()
		return p, nil
	}
	if p, ok := pc.parts[i]; ok && pc.gen != gen && p.ExpiresAt.After(now) {
		pc.mu.Unlock() // fetched while this worker waited
		return p, nil
	}
	batch := []int{i}
	in := map[int]bool{i: true}
	waiting := make([]int, 0, len(pc.want))
	for j := range pc.want {
		waiting = append(waiting, j)
	}
	slices.Sort(waiting)
	for _, j := range waiting {
		if _, ok := pc.usableLocked(j, now); !ok && !in[j] && len(batch) < presignBatch {
			batch, in[j] = append(batch, j), true
		}
	}
	valid := map[int]bool{}
	for j, p := range pc.parts {
		switch {
		case !p.ExpiresAt.After(now):
			delete(pc.parts, j)
			delete(pc.warmed, j)
		case p.ExpiresAt.Sub(now) > presignMargin:
			valid[j] = true
		}
	}
	pc.mu.Unlock()
	if q != nil && len(batch) < presignBatch {
		for _, j := range q.peek(presignBatch-len(batch), func(j int) bool { return in[j] || valid[j] }) {
			batch, in[j] = append(batch, j), true
		}
	}

	batch, sums := pc.hashes(batch)
	resp, err := c.Presign(ctx, presignURL, token, batch, sums)
	if err != nil {
		return protocol.PresignedPart{}, err
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.gen++
	var mine *protocol.PresignedPart
	for _, p := range resp.Parts {
		pc.parts[p.Index] = p
		delete(pc.warmed, p.Index)
		if p.Index == i {
			mine = &p
		}
	}
	if mine == nil {
		// A server that cannot presign the part right now: a failure of
		// the route (it goes elsewhere), not of the upload.
		return protocol.PresignedPart{}, &APIError{Status: http.StatusBadGateway, Message: fmt.Sprintf("the presign answer has no part for chunk %d", i)}
	}
	return *mine, nil
}

// warm presigns chunks (the first of the queue) in one call before the
// workers start, so that the direct route's workers find their parts
// waiting instead of each asking once the queue has been emptied: with
// one round of chunks, every worker pops at once and the first presign
// call, seeing an empty queue, covers only the workers already waiting
// (the others wait for a second call). It takes the call slot at once;
// the call itself runs through bg (the uploader's background calls,
// which end with the upload). A failure is left to the workers, which
// ask again as usual.
func (pc *presignCache) warm(bg func(func(context.Context)), c *Client, presignURL, token string, chunks []int) {
	pc.mu.Lock()
	now := time.Now()
	chunks = slices.DeleteFunc(slices.Clone(chunks), func(i int) bool { _, ok := pc.usableLocked(i, now); return ok })
	pc.mu.Unlock()
	if len(chunks) == 0 {
		return
	}
	select {
	case pc.sem <- struct{}{}:
	default:
		return // a call is already running
	}
	bg(func(ctx context.Context) {
		defer func() { <-pc.sem }()
		batch, sums := pc.hashes(chunks[:min(len(chunks), presignBatch)])
		if len(batch) == 0 {
			return
		}
		resp, err := c.Presign(ctx, presignURL, token, batch, sums)
		if err != nil {
			return
		}
		pc.mu.Lock()
		defer pc.mu.Unlock()
		pc.gen++
		for _, p := range resp.Parts {
			pc.parts[p.Index], pc.warmed[p.Index] = p, true
		}
	})
}

// drop forgets the part of chunk i (stored, or refused by the store).
func (pc *presignCache) drop(i int) {
	pc.mu.Lock()
	delete(pc.parts, i)
	delete(pc.warmed, i)
	pc.mu.Unlock()
}

// crew is the worker pool of one send loop (a file's sendChunks, a
// stream's): its workers, each bound to a home route, kept in step with
// the routes as they join (see router.crew).
type crew struct {
	limit  int                // most workers (≤ 0: no limit)
	spawn  func(func() error) // starts a worker goroutine (errgroup.Group.Go)
	run    func(*worker) error
	joined func([]*route)

	mu       sync.Mutex // guards running and finished; taken before router.mu
	running  int        // workers whose run has not returned
	finished bool       // every worker returned: nothing more is started

	ws []*worker // guarded by router.mu
}

// crew starts the worker pool of a send loop and keeps it in step with
// the routes for as long as it runs:
//
//   - It starts min(pool size, limit) workers at once (limit ≤ 0: no
//     limit; the pool size is the n of the first crew, or what grow
//     raised it to), their homes split across the routes known now by
//     weight (as workers does), each running run(w) in a goroutine
//     started by spawn (an errgroup.Group's Go). run is the worker's
//     loop: it takes work (a queue, a channel) and sends each item with
//     sendChunk(w, ...) until there is none left or it fails; it must
//     not call leave, the crew does when run returns.
//   - When routes join (join), the workers are re-homed by the new
//     weights (each moves on its next request; a chunk in flight
//     finishes where it is), and joined, when not nil, is called with
//     the routes that joined, from the joining goroutine, while the crew
//     runs (never after): it must not block (start a presign warm-up,
//     wake held workers).
//   - When the pool grows (grow), more workers are started through
//     spawn, up to limit, homed where the split wants them.
//
// The crew is finished when the run of its last worker has returned;
// nothing is started or called for it after that. Every spawn happens
// while one of its runs has not returned, so the group of spawn can be
// waited on as usual (errgroup.Group.Wait): once Wait returns, the crew
// is finished.
func (r *router) crew(n, limit int, spawn func(func() error), run func(*worker) error, joined func([]*route)) *crew {
	c := &crew{limit: limit, spawn: spawn, run: run, joined: joined}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.mu.Lock()
	if r.size <= 0 {
		r.size = n
	}
	k := r.size
	if limit > 0 {
		k = min(k, limit)
	}
	c.ws = r.workersLocked(max(k, 1))
	r.crews = append(r.crews, c)
	ws := slices.Clone(c.ws)
	r.mu.Unlock()
	for _, w := range ws {
		r.startLocked(c, w)
	}
	return c
}

// startLocked starts worker w of c (c.mu held, c not finished).
func (r *router) startLocked(c *crew, w *worker) {
	c.running++
	c.spawn(func() error {
		err := c.run(w)
		r.retire(c, w)
		return err
	})
}

// retire takes worker w of c off its route and out of c; the last one
// finishes c.
func (r *router) retire(c *crew, w *worker) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	w.cur.cur--
	c.ws = slices.DeleteFunc(c.ws, func(x *worker) bool { return x == w })
	if c.running--; c.running == 0 {
		c.finished = true
		r.crews = slices.DeleteFunc(r.crews, func(x *crew) bool { return x == c })
	}
}

// refresh brings every running crew in step with the routes and the pool
// size: new workers up to the size, homes re-split by weight; joined
// (the routes that joined, may be empty) is handed to the crews' hooks.
// After a selection (join), chunks left on a much slower route than
// their worker's new home move (preemptLocked).
func (r *router) refresh(joined []*route, selection bool) {
	r.mu.Lock()
	crews := slices.Clone(r.crews)
	r.mu.Unlock()
	for _, c := range crews {
		c.mu.Lock()
		if c.finished {
			c.mu.Unlock()
			continue
		}
		r.mu.Lock()
		want := r.size
		if c.limit > 0 {
			want = min(want, c.limit)
		}
		var fresh []*worker
		for len(c.ws)+len(fresh) < want {
			fresh = append(fresh, &worker{})
		}
		c.ws = append(c.ws, fresh...)
		r.rehomeLocked(c.ws)
		if selection {
			r.preemptLocked(c.ws)
		}
		r.mu.Unlock()
		for _, w := range fresh {
			r.startLocked(c, w)
		}
		if len(joined) > 0 && c.joined != nil {
			c.joined(joined)
		}
		c.mu.Unlock()
	}
}

// rehomeLocked splits ws across the routes by weight (splitWorkers),
// moving as few workers as it can: a worker stays home unless its route
// has more than its share. Workers without a home (new) get one and are
// put on it.
func (r *router) rehomeLocked(ws []*worker) {
	weights := make([]float64, len(r.routes))
	for i, rt := range r.routes {
		weights[i] = rt.weight
	}
	want := splitWorkers(weights, len(ws))
	have := make([]int, len(r.routes))
	for _, w := range ws {
		if w.home != nil {
			have[w.home.idx]++
		}
	}
	for _, w := range ws {
		if w.home != nil && have[w.home.idx] <= want[w.home.idx] {
			continue
		}
		to := -1
		for j := range want { // the route furthest below its share
			if have[j] < want[j] && (to < 0 || want[j]-have[j] > want[to]-have[to]) {
				to = j
			}
		}
		if to < 0 {
			continue // (a homeless worker always finds a place)
		}
		if w.home != nil {
			have[w.home.idx]--
		}
		have[to]++
		w.home = r.routes[to]
		if w.cur == nil {
			w.cur = w.home
			w.home.cur++
		}
	}
}

// poolSize is the number of workers the crews may run now (the first
// crew's n, or what grow set since); 0 before any crew.
func (r *router) poolSize() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// grow raises the pool size to n workers (never lowers it) and starts
// the new workers of the running crews.
func (r *router) grow(n int) {
	r.mu.Lock()
	more := n > r.size
	if more {
		r.size = n
	}
	r.mu.Unlock()
	if more {
		r.refresh(nil, false)
	}
}

// join merges a selection's routes (checked by checkRoutes) into the
// router: a route it already has (same id, kind and URL) takes its new
// weight, a new one joins (a direct route gets its presign cache: the
// early one when its URL is the hinted one), the routes the selection
// does not name keep their place with weight 0, as reserves, the origin
// among them: it stays the last resort. Then every running crew is
// re-homed (refresh). It returns the routes that joined, and warns
// (through warn) of those left out.
func (r *router) join(sel []Route, warn func(error)) []*route {
	r.mu.Lock()
	byID := map[string]*route{}
	for _, rt := range r.routes {
		byID[rt.ID] = rt
	}
	weight := map[*route]float64{}
	var joined []*route
	haveOrigin := false
	for _, s := range sel {
		var err error
		rt := byID[s.ID]
		switch {
		case s.Kind == RouteOrigin && haveOrigin:
			err = errors.New("a second origin")
		case s.Kind == RouteOrigin:
			haveOrigin, rt = true, r.origin
		case rt != nil && (rt.Kind != s.Kind || rt.ChunkURL != s.ChunkURL || rt.PresignURL != s.PresignURL):
			err = errors.New("its id is taken by another route")
		}
		if err == nil && rt != nil {
			if _, dup := weight[rt]; dup {
				err = errors.New("its id is taken by another route")
			}
		}
		if err != nil {
			r.mu.Unlock()
			warn(fmt.Errorf("edge selection: route %q left out: %w", s.ID, err))
			r.mu.Lock()
			continue
		}
		if rt == nil {
			rt = &route{Route: s, idx: len(r.routes)}
			switch s.Kind {
			case RouteDirect:
				if r.early != nil && s.PresignURL == r.earlyURL {
					rt.pc, r.early = r.early, nil
				} else {
					rt.pc = newPresignCache()
				}
				rt.pc.sums = r.sums
			default:
				rt.url = edgeOf(s.ChunkURL)
			}
			r.routes = append(r.routes, rt)
			byID[s.ID] = rt
			joined = append(joined, rt)
		}
		weight[rt] = s.Weight
	}
	positive := false
	for _, rt := range r.routes {
		rt.weight = weight[rt] // 0 for the routes not named: reserves
		positive = positive || rt.weight > 0
	}
	if !positive {
		for _, rt := range r.routes {
			rt.weight = 1
		}
	}
	r.mu.Unlock()
	r.refresh(joined, true)
	return joined
}

// checkRoutes checks and completes the routes of a selection: resolved
// URLs, default ids; routes that cannot be used are dropped with a
// warning. stream leaves direct routes out: a presign call names chunks
// by index only and the server signs the manifest's SHA-256 and size of
// each into its URL, but a stream session has no manifest until it
// completes; a stream's chunks go through the origin and relays only.
func (u *uploader) checkRoutes(sel []Route, stream bool) []Route {
	var out []Route
	seen := map[string]bool{}
	for _, r := range sel {
		if math.IsNaN(r.Weight) || math.IsInf(r.Weight, 0) || r.Weight < 0 {
			r.Weight = 0
		}
		var err error
		switch r.Kind {
		case RouteOrigin:
			// The origin is the session's chunk_url, the route the upload
			// started on; the selection sets its weight.
			r.ID, r.ChunkURL = "origin", u.sess.ChunkURL
		case RouteRelay:
			if r.ChunkURL == "" {
				err = errors.New("no chunk URL")
			} else if r.ChunkURL, err = u.c.resolve(r.ChunkURL); err != nil {
				err = fmt.Errorf("chunk URL: %w", err)
			}
			if r.ID == "" {
				r.ID = edgeOf(r.ChunkURL)
			}
		case RouteDirect:
			if stream {
				continue // see above
			}
			if r.PresignURL == "" {
				err = errors.New("no presign URL")
			} else if r.PresignURL, err = u.c.resolve(r.PresignURL); err != nil {
				err = fmt.Errorf("presign URL: %w", err)
			}
			if r.ID == "" {
				r.ID = "direct"
			}
		default:
			err = fmt.Errorf("unknown kind %q", r.Kind)
		}
		if err == nil && r.Kind != RouteOrigin && seen[r.ID] {
			err = errors.New("its id is taken by another route")
		}
		if err != nil {
			u.hub.warn(fmt.Errorf("edge selection: route %q left out: %w", r.ID, err))
			continue
		}
		seen[r.ID] = true
		out = append(out, r)
	}
	return out
}

// selectGrace is how long begin waits for a selection that is decided
// at once (scores reused from the command's last probe, a prefetched
// probe already over, a selector with nothing to probe), so that the
// workers start on its routes instead of moving there: well below one
// probe (at least 100 ms), so it never waits for a probe itself.
const selectGrace = 15 * time.Millisecond

// selectionTimeout bounds a background selection: past it the upload
// goes on with the routes it has, as with a failed selection.
const selectionTimeout = backgroundTimeout

// setupRoutes makes the router of the upload and starts the selection of
// its routes; called by begin once the session is open, after the worker
// count w is known. The upload starts on the origin (the session's
// chunk_url), with the routes the selector's RouteStarter names (checked
// as Select's are). The EdgeSelector, if any, runs in the background:
// when it answers within selectGrace its routes and the WorkerAdvisor's
// count are taken here, as before issue 18 (the advice may then lower
// the count too); when later, its routes join the running upload
// (router.join) and the advice can only grow the pool (router.grow),
// up to ceiling. A failed or empty selection warns and leaves the routes
// as they are (the origin alone, unless a remembered route is in use).
func (u *uploader) setupRoutes(ctx context.Context, stream bool, ceiling int) {
	origin := &route{Route: Route{ID: "origin", Kind: RouteOrigin, ChunkURL: u.sess.ChunkURL}, weight: 1}
	origin.url = edgeOf(origin.ChunkURL)
	u.rt = &router{routes: []*route{origin}, origin: origin, cooldown: u.policy.BreakerCooldown, now: time.Now, size: u.workers, early: u.early, earlyURL: u.earlyURL, sums: u.sums}
	u.early = nil
	if st, ok := u.opts.Edges.(RouteStarter); ok {
		if start := u.checkRoutes(st.StartRoutes(u.sess), stream); len(start) > 0 {
			u.rt.join(start, u.hub.warn)
		}
	}
	if u.opts.Edges == nil {
		return
	}
	type outcome struct {
		routes []Route
		err    error
	}
	var (
		mu      sync.Mutex
		decided *outcome
		late    bool
	)
	ready := make(chan struct{})
	sess, chunkSize, w := u.sess, u.chunkSize, u.workers
	adv, advise := u.opts.Edges.(WorkerAdvisor)
	advise = advise && u.opts.Workers <= 0
	u.background(ctx)(func(bctx context.Context) {
		routes, err := u.opts.Edges.Select(bctx, sess, chunkSize, w)
		if errors.Is(bctx.Err(), context.Canceled) {
			return // the upload is over (finish), or canceled
		}
		mu.Lock()
		if !late {
			decided = &outcome{routes, err}
			mu.Unlock()
			close(ready)
			return
		}
		mu.Unlock()
		if !u.selected(routes, err, stream) {
			return
		}
		if advise {
			if n := min(max(adv.AdviseWorkers(w, ceiling), 1), ceiling); n > w {
				u.rt.grow(n)
			}
		}
	})
	t := time.NewTimer(selectGrace)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
	case <-ctx.Done():
	}
	mu.Lock()
	late = decided == nil
	mu.Unlock()
	if late {
		return
	}
	if u.selected(decided.routes, decided.err, stream) && advise {
		u.workers = min(max(adv.AdviseWorkers(w, ceiling), 1), ceiling)
		u.rt.mu.Lock()
		u.rt.size = u.workers
		u.rt.mu.Unlock()
	}
}

// selected takes a selection's answer: its routes join, or a warning
// says the upload goes on without them. It reports whether routes
// joined.
func (u *uploader) selected(routes []Route, err error, stream bool) bool {
	switch {
	case err != nil:
		if u.rt.multi() {
			u.hub.warn(fmt.Errorf("edge selection failed (sending through the routes the upload started on): %w", err))
		} else {
			u.hub.warn(fmt.Errorf("edge selection failed (sending through the origin only): %w", err))
		}
		return false
	case len(routes) == 0:
		// No relay, no direct route, or a file too small to spread: the
		// origin alone is the normal case, not worth a warning.
		return false
	}
	u.rt.join(u.checkRoutes(routes, stream), u.hub.warn)
	return true
}

// warmer returns the joined hook of a file's crew: each direct route
// (joining, or there when the crew starts) asks for the parts of the
// first chunks of q at once (presignCache.warm), in a goroutine counted
// by wg; held workers are woken to decide again. ctx is the send loop's,
// which ends with it.
func (u *uploader) warmer(ctx context.Context, q *chunkQueue, wg *sync.WaitGroup) func([]*route) {
	bg := func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	return func(rts []*route) {
		defer q.wake()
		var first []int
		for _, rt := range rts {
			if rt.pc == nil {
				continue
			}
			if first == nil {
				first = q.peek(presignBatch, func(int) bool { return false })
			}
			tok, _, err := u.tok.get(ctx)
			if err != nil {
				return
			}
			rt.pc.warm(bg, u.c, rt.PresignURL, tok, first)
		}
	}
}
