package engine

import (
	"math"
	"sync"
	"time"
)

// Progress receives the events of an upload. The engine never calls Event
// from two goroutines at once, but it does call it from worker goroutines:
// an implementation must return quickly (hand the figures to a renderer
// rather than draw).
type Progress interface {
	Event(Event)
}

// ProgressFunc adapts a function to Progress.
type ProgressFunc func(Event)

// Event calls f(e).
func (f ProgressFunc) Event(e Event) { f(e) }

// NopProgress ignores every event.
type NopProgress struct{}

// Event does nothing.
func (NopProgress) Event(Event) {}

// EventKind says what happened.
type EventKind int

// The kinds of Event.
const (
	// EventPlan: hashing the file; Done of Total bytes hashed.
	EventPlan EventKind = iota + 1
	// EventStart: the session is open; Total, Chunks, Done (bytes the
	// server already held), Workers are set. A deduplicated upload has no
	// EventStart.
	EventStart
	// EventSent: payload bytes were written to a request (Sent grows);
	// emitted about every 1 MiB per worker, for smooth progress bars.
	EventSent
	// EventChunkDone: the receiver stored chunk Index (Bytes long) through
	// the route Edge describes.
	EventChunkDone
	// EventRetry: a request for chunk Index (-1: a control call) failed
	// with Err; attempt Attempt follows after Delay.
	EventRetry
	// EventTokenRefresh: the upload token was renewed.
	EventTokenRefresh
	// EventWarning: something went wrong that does not stop the upload
	// (for example the journal could not be written); Err says what.
	EventWarning
	// EventDone: the upload ended; Err is nil on success.
	EventDone
)

func (k EventKind) String() string {
	switch k {
	case EventPlan:
		return "plan"
	case EventStart:
		return "start"
	case EventSent:
		return "sent"
	case EventChunkDone:
		return "chunk_done"
	case EventRetry:
		return "retry"
	case EventTokenRefresh:
		return "token_refresh"
	case EventWarning:
		return "warning"
	case EventDone:
		return "done"
	}
	return "unknown"
}

// Event is one progress report. The running totals (Total, Done, Sent,
// Chunks, ChunksDone) are set in every event after EventStart.
type Event struct {
	Kind EventKind
	Time time.Time
	// Total is the file size; -1 while a stream's length is unknown.
	Total int64
	// Done is the bytes the receiver holds: chunks stored in this run and
	// before it.
	Done int64
	// Sent is the payload bytes written in this run, retries included.
	Sent int64
	// Chunks is the number of chunks (so far, for a stream); ChunksDone
	// how many the receiver holds.
	Chunks, ChunksDone int
	// Workers is the number of parallel chunk PUTs (EventStart).
	Workers int
	// Index and Bytes name the chunk of EventChunkDone and EventRetry.
	Index int
	Bytes int64
	// Edge is the figures of the route that took the chunk, so far
	// (EventChunkDone).
	Edge EdgeStat
	// Attempt, Delay and Err describe a retry; Err also a warning or the
	// end of a failed upload.
	Attempt int
	Delay   time.Duration
	Err     error
}

// EdgeStat is what one route (the origin, a relay or the object store
// reached directly) took: the chunks it stored and their bytes.
type EdgeStat struct {
	// ID is the route's ID ("origin", an edge id, "direct"); Kind its
	// kind (RouteOrigin, RouteRelay, RouteDirect).
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// URL is the receiver's scheme and host, e.g. "https://jetty.example"
	// (for a direct route, the storage's host).
	URL string `json:"url"`
	// Location is the edge catalogue location of a relay ("fra"), if
	// it names one: what `jetty upload` shows for it.
	Location string `json:"location,omitempty"`
	Chunks   int    `json:"chunks"`
	Bytes    int64  `json:"bytes"`
}

// Rate estimates a throughput from running totals with an exponentially
// weighted moving average, for progress renderers. The zero value uses a
// 3-second half-life. It is not safe for concurrent use.
type Rate struct {
	// HalfLife is how long until an old measurement weighs half.
	HalfLife time.Duration

	started bool
	lastT   time.Time
	lastN   int64
	rate    float64
	hasRate bool
}

// Update records that total bytes had been moved at t.
func (r *Rate) Update(t time.Time, total int64) {
	if !r.started {
		r.started, r.lastT, r.lastN = true, t, total
		return
	}
	dt := t.Sub(r.lastT).Seconds()
	if dt <= 0.05 { // too close to measure; keep accumulating
		return
	}
	inst := float64(total-r.lastN) / dt
	hl := r.HalfLife
	if hl <= 0 {
		hl = 3 * time.Second
	}
	alpha := 1 - math.Exp2(-dt/hl.Seconds())
	if !r.hasRate {
		r.rate, r.hasRate = inst, true
	} else {
		r.rate += alpha * (inst - r.rate)
	}
	r.lastT, r.lastN = t, total
}

// BytesPerSecond is the current estimate (0 before two updates).
func (r *Rate) BytesPerSecond() float64 { return max(r.rate, 0) }

// ETA estimates the time to move remaining more bytes (0 when unknown).
func (r *Rate) ETA(remaining int64) time.Duration {
	bps := r.BytesPerSecond()
	if bps <= 0 || remaining <= 0 {
		return 0
	}
	return time.Duration(float64(remaining) / bps * float64(time.Second))
}

// hub keeps the running totals of an upload and serialises events.
type hub struct {
	mu         sync.Mutex
	p          Progress
	now        func() time.Time
	total      int64
	done       int64
	sent       int64
	chunks     int
	chunksDone int
	workers    int
	edges      map[string]*EdgeStat // by route id
	edgeOrder  []string
	ended      bool // EventDone was delivered: nothing follows it
}

func newHub(p Progress) *hub {
	if p == nil {
		p = NopProgress{}
	}
	return &hub{p: p, now: time.Now, edges: map[string]*EdgeStat{}}
}

// emitLocked fills in the totals and delivers e. Callers hold h.mu.
func (h *hub) emitLocked(e Event) {
	if h.ended {
		return // e.g. a transport releasing a refused body late
	}
	h.ended = e.Kind == EventDone
	e.Time = h.now()
	e.Total, e.Done, e.Sent = h.total, h.done, h.sent
	e.Chunks, e.ChunksDone = h.chunks, h.chunksDone
	if e.Workers == 0 {
		e.Workers = h.workers
	}
	h.p.Event(e)
}

func (h *hub) emit(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.emitLocked(e)
}

func (h *hub) plan(hashed, total int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.p.Event(Event{Kind: EventPlan, Time: h.now(), Total: total, Done: hashed})
}

func (h *hub) start(total, done int64, chunks, chunksDone, workers int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total, h.done, h.chunks, h.chunksDone, h.workers = total, done, chunks, chunksDone, workers
	h.emitLocked(Event{Kind: EventStart, Workers: workers})
}

func (h *hub) addSent(n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent += n
	h.emitLocked(Event{Kind: EventSent})
}

func (h *hub) grow(bytes int64, chunks int) { // a stream read more
	h.mu.Lock()
	defer h.mu.Unlock()
	h.chunks += chunks
	if h.total >= 0 {
		h.total += bytes
	}
}

// chunkDone records that chunk index was stored through the route id (of
// that kind, at url): the figures are kept per route id.
func (h *hub) chunkDone(index int, size int64, id, kind, url, location string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done += size
	h.chunksDone++
	es := h.edges[id]
	if es == nil {
		es = &EdgeStat{ID: id, Kind: kind, URL: url, Location: location}
		h.edges[id] = es
		h.edgeOrder = append(h.edgeOrder, id)
	}
	if es.URL == "" {
		es.URL = url
	}
	es.Chunks++
	es.Bytes += size
	h.emitLocked(Event{Kind: EventChunkDone, Index: index, Bytes: size, Edge: *es})
}

func (h *hub) retry(index, attempt int, err error, d time.Duration) {
	h.emit(Event{Kind: EventRetry, Index: index, Attempt: attempt, Err: err, Delay: d})
}

func (h *hub) warn(err error) { h.emit(Event{Kind: EventWarning, Err: err}) }

func (h *hub) edgeStats() []EdgeStat {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]EdgeStat, 0, len(h.edgeOrder))
	for _, k := range h.edgeOrder {
		out = append(out, *h.edges[k])
	}
	return out
}

func (h *hub) sentBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent
}

func (h *hub) setTotal(n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total = n
}
