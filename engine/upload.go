package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jettythunder/jetty/engine/upindex"
	"github.com/jettythunder/jetty/protocol"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// DefaultWorkers is the number of parallel chunk PUTs when neither the
// options nor the server say (always capped by the server's ceiling).
const DefaultWorkers = 16

// ErrFileChanged means the bytes read from the file no longer hash to the
// manifest: the file changed after it was planned. The journal is dropped;
// running the upload again plans the new content.
var ErrFileChanged = errors.New("the file changed since it was hashed; run the upload again")

// errSessionClosed wraps a chunk refused because the session takes no
// more chunks (409 conflict): a concurrent upload of the same content,
// which shares the session, is completing it or has. What is left to do
// is to complete: the server answers with that upload's asset, waits for
// its completion, or lists the chunks still missing.
var errSessionClosed = errors.New("the upload session takes no more chunks")

// isSessionClosed reports a chunk PUT (or presign call) refused with 409
// conflict.
func isSessionClosed(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict && ae.Code == protocol.CodeConflict
}

// Options tunes an upload. The zero value is a sensible default.
type Options struct {
	// Workers is the number of parallel chunk PUTs: 0 takes the server's
	// strategy.workers. It is always capped by the server's
	// strategy.max_workers (the tier's ceiling).
	Workers int
	// ChunkSize is the chunk size; 0 means ChooseChunkSize (files) or
	// DefaultChunkSize (streams). Between 5 MiB and 512 MiB.
	ChunkSize int64
	// BandwidthLimit caps the payload bytes per second of all workers
	// together; 0 means no limit.
	BandwidthLimit int64
	// Progress receives events; nil ignores them.
	Progress Progress
	// JournalDir holds resume journals (Upload only): "" is
	// DefaultJournalDir, "-" disables the journal.
	JournalDir string
	// Name is the file name given to the server; Upload defaults it to
	// the path's base name.
	Name string
	// ContentType, CacheKey and TTL are recorded with the asset (TTL 0:
	// the asset does not expire).
	ContentType string
	CacheKey    string
	TTL         time.Duration
	// PipelineID is the AgentCache pipeline (a UUID) recorded with the
	// asset; "" records none.
	PipelineID string
	// Retry is the retry policy.
	Retry RetryPolicy
	// Sleep waits between retries (tests replace it); nil waits for real.
	Sleep func(ctx context.Context, d time.Duration) error
	// Edges chooses the routes of the chunks once the session is open
	// (relays, the object store directly, the origin) and their shares of
	// the workers; nil sends every chunk to the session's chunk_url (the
	// origin). A failing route is left for the others (see router.go);
	// the origin is always kept as the last resort.
	Edges EdgeSelector
	// Index is the local upload index (engine/upindex): Upload looks a
	// file up there first and opens an unchanged file's session with its
	// known manifest, reading nothing (the server then usually
	// deduplicates it before a byte moves); after a success it records
	// the file. nil: no index.
	Index *upindex.Index
	// HashFirst hashes a file whole before opening its session, with
	// the manifest (the path of earlier versions): the server can then
	// deduplicate content it holds before any byte is sent, at the cost
	// of reading the file twice and starting later. By default a new
	// file is hashed and sent in one pass (pipeline.go).
	HashFirst bool
	// SmallFileMax: files of at most this many bytes go in one verified
	// request instead of a session (see DefaultSmallFileMax, the default
	// when 0); -1 always opens a session. Streams always use sessions.
	SmallFileMax int64
}

// Result is the outcome of an upload.
type Result struct {
	Asset protocol.Asset `json:"asset"`
	// Deduplicated is true when the server already held the content
	// (nothing was sent) or found it when completing.
	Deduplicated bool `json:"deduplicated"`
	// BytesSent is the payload bytes sent in this run, retries included.
	BytesSent int64 `json:"bytes_sent"`
	// ChunksTotal is the number of chunks of the file; ChunksSent the
	// chunks stored in this run.
	ChunksTotal int `json:"chunks_total"`
	ChunksSent  int `json:"chunks_sent"`
	// Duration is the wall time of the upload, planning included.
	Duration  time.Duration `json:"-"`
	SessionID string        `json:"session_id,omitempty"`
	// Workers is the size of the worker pool: the requested or suggested
	// number, never above the server's ceiling.
	Workers int `json:"workers"`
	// Resumed is true when the manifest came from the journal.
	Resumed bool `json:"resumed"`
	// Edges is what each route that stored chunks took (by route id), in
	// first-use order.
	Edges []EdgeStat `json:"edges"`
	// Method is how the file went: MethodPipelined, MethodManifest,
	// MethodSingle or MethodStream.
	Method string `json:"method"`
	// DedupAt says where the server found the content it already held
	// (DedupAtOpen: nothing sent; DedupAtComplete: sent, then dropped),
	// "" when it was new.
	DedupAt string `json:"dedup_at,omitempty"`
	// Index is what the local upload index said of the file (IndexHit,
	// IndexChanged, IndexMiss, IndexOff); "" where none was asked.
	Index string `json:"index,omitempty"`

	manifest *protocol.Manifest // the file's manifest, when known (for the index)
}

// MarshalJSON adds duration_ms.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	if r.Edges == nil {
		r.Edges = []EdgeStat{}
	}
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// uploader is the state of one upload.
type uploader struct {
	c            *Client
	opts         Options
	policy       RetryPolicy
	sleep        func(context.Context, time.Duration) error
	hub          *hub
	lim          *rate.Limiter
	chunkTimeout time.Duration
	started      time.Time

	sess      *protocol.Session
	rt        *router
	early     *presignCache // parts asked for while the routes were chosen (PresignHinter)
	earlyURL  string
	bg        sync.WaitGroup // background calls (presign warm-ups)
	bgCancel  []context.CancelFunc
	tok       *tokenSource
	workers   int
	sent      atomic.Int64 // chunks stored in this run
	chunkSize int64
	// sums gives the chunk hashes of a sized session as they are made
	// (pipeline.go), for the direct route's presign calls; nil otherwise.
	sums func(int) (string, bool)
}

func newUploader(c *Client, opts Options) *uploader {
	u := &uploader{c: c, opts: opts, policy: opts.Retry.withDefaults(), sleep: opts.Sleep, hub: newHub(opts.Progress), started: time.Now()}
	if u.sleep == nil {
		u.sleep = sleepCtx
	}
	u.lim = newBandwidthLimiter(opts.BandwidthLimit)
	return u
}

func (u *uploader) onControlRetry(attempt int, err error, d time.Duration) {
	u.hub.retry(-1, attempt+1, err, d)
}

// open opens a session, with retries.
func (u *uploader) open(ctx context.Context, req protocol.OpenRequest) (Opened, error) {
	req.ContentType, req.CacheKey, req.PipelineID = u.opts.ContentType, u.opts.CacheKey, u.opts.PipelineID
	if u.opts.TTL > 0 {
		req.TTL = int64((u.opts.TTL + time.Second - 1) / time.Second)
	}
	var resp Opened
	err := retryControl(ctx, u.policy, u.sleep, u.onControlRetry, func(ctx context.Context) error {
		var err error
		resp, err = u.c.OpenSession(ctx, req)
		return err
	})
	if err != nil {
		return resp, fmt.Errorf("open upload session: %w", err)
	}
	return resp, nil
}

// begin takes the session: token source, worker count, then the routes
// (Options.Edges; stream: a stream session). It does not wait for the
// edge selection: that runs in the background and its routes join the
// upload as they come (setupRoutes, router.join); u.workers is the pool
// the upload starts with (see WorkerAdvisor).
func (u *uploader) begin(ctx context.Context, s *protocol.Session, chunkSize int64, stream bool) {
	u.sess, u.chunkSize = s, chunkSize
	u.tok = &tokenSource{u: u, id: s.ID, token: s.UploadToken, exp: s.TokenExpiresAt, fetched: time.Now()}
	w := u.opts.Workers
	if w <= 0 {
		w = s.Strategy.Workers
	}
	if w <= 0 {
		w = DefaultWorkers
	}
	if _, advised := u.opts.Edges.(WorkerAdvisor); advised && u.opts.Workers <= 0 && !stream && s.Strategy.MaxWorkers > w && len(s.Missing) >= s.Strategy.MaxWorkers {
		// A file of a round of chunks or more starts with the tier's
		// ceiling rather than wait for the probe's advice: on a path
		// whose connections are each slow the advice came a second late
		// (a fifth of a 256 MiB upload at 4 MB/s per connection), and on
		// a fast one the extra workers cost memory within the ceiling and
		// no measured speed (docs/decisions.md, issue 18).
		w = s.Strategy.MaxWorkers
	}
	if s.Strategy.MaxWorkers > 0 {
		w = min(w, s.Strategy.MaxWorkers)
	}
	u.workers = w
	if !stream && u.sums == nil {
		u.earlyPresign(ctx, s) // a sized session's hashes are not made yet
	}
	ceiling := s.Strategy.MaxWorkers
	if ceiling <= 0 {
		ceiling = max(w, DefaultWorkers)
	}
	u.setupRoutes(ctx, stream, ceiling)
	pool := u.workers // the most workers the pool may reach
	if _, ok := u.opts.Edges.(WorkerAdvisor); ok && u.opts.Workers <= 0 && !stream {
		pool = max(pool, ceiling)
	}
	u.chunkTimeout = u.policy.ChunkTimeout
	if u.chunkTimeout <= 0 {
		u.chunkTimeout = DefaultChunkTimeout
		if u.opts.BandwidthLimit > 0 {
			secs := 2 * float64(chunkSize) * float64(max(pool, 1)) / float64(u.opts.BandwidthLimit)
			u.chunkTimeout += time.Duration(secs * float64(time.Second))
		}
	}
}

// edgeOf is the scheme and host of a chunk URL.
func edgeOf(chunkURL string) string {
	pu, err := url.Parse(ChunkURL(chunkURL, 0))
	if err != nil || pu.Host == "" {
		return chunkURL
	}
	return pu.Scheme + "://" + pu.Host
}

// complete completes the session, with retries.
func (u *uploader) complete(ctx context.Context, m *protocol.Manifest) (protocol.CompleteResponse, error) {
	var resp protocol.CompleteResponse
	err := retryControl(ctx, u.policy, u.sleep, u.onControlRetry, func(ctx context.Context) error {
		var err error
		resp, err = u.c.Complete(ctx, u.sess.ID, m)
		return err
	})
	return resp, err
}

// tokenSource holds the session's upload token and renews it once for
// all workers (single flight): a worker that saw its token refused asks
// for a refresh naming the generation it used, and whoever comes second
// gets the token the first one fetched.
type tokenSource struct {
	u       *uploader
	id      string
	mu      sync.Mutex
	token   string
	exp     time.Time
	fetched time.Time
	gen     int
}

// tokenMargin is how long before its expiry a token is renewed.
const tokenMargin = 30 * time.Second

// get returns the current token, renewing it first when it is about to
// expire (but not again within tokenMargin of the last renewal, so a
// skewed clock cannot make every request refresh).
func (t *tokenSource) get(ctx context.Context) (string, int, error) {
	t.mu.Lock()
	tok, gen, exp, fetched := t.token, t.gen, t.exp, t.fetched
	t.mu.Unlock()
	if !exp.IsZero() && time.Until(exp) < tokenMargin && time.Since(fetched) > tokenMargin {
		return t.refresh(ctx, gen)
	}
	return tok, gen, nil
}

// refresh renews the token unless someone already renewed generation gen.
func (t *tokenSource) refresh(ctx context.Context, gen int) (string, int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gen != gen {
		return t.token, t.gen, nil
	}
	var tok protocol.Token
	err := retryControl(ctx, t.u.policy, t.u.sleep, t.u.onControlRetry, func(ctx context.Context) error {
		var err error
		tok, err = t.u.c.RefreshToken(ctx, t.id)
		return err
	})
	if err != nil {
		return "", gen, fmt.Errorf("refresh upload token: %w", err)
	}
	t.token, t.exp, t.fetched = tok.UploadToken, tok.TokenExpiresAt, time.Now()
	t.gen++
	t.u.hub.emit(Event{Kind: EventTokenRefresh})
	return t.token, t.gen, nil
}

// sendChunk sends one chunk through the routes (assigned to worker w,
// see router.go) until it is stored, fails for good or runs out of
// attempts (st counts them across routes and re-queues). After a route
// failure while another route is up, a chunk of a file (q not nil) goes
// back to the queue at once (requeued: the caller lets go of it and
// takes another); a stream's chunk, which cannot be read again, is sent
// at once through another route by the same worker. With no other route
// up it is retried with backoff. data is not modified (a file's chunk
// is read from the file by each attempt). clean reports whether the
// transport has released data (false only when a refused request still
// held it after the wait; a buffer behind it must then not be reused for
// another chunk).
func (u *uploader) sendChunk(ctx context.Context, w *worker, q *chunkQueue, index int, sum string, data payload, st *chunkTry) (requeued, clean bool, err error) {
	var refreshes, mismatches, crowded, presigns int
	clean = true
	var avoid *route
	if st.last >= 0 {
		avoid = u.rt.route(st.last)
	}
	for {
		rt, trial, fellBack := u.rt.assign(w, avoid)
		avoid = nil
		if fellBack && u.rt.fellBack.CompareAndSwap(false, true) {
			u.hub.warn(errors.New("every route is failing: sending through the origin, with retries"))
		}
		tok, gen, err := u.tok.get(ctx)
		if err != nil {
			u.rt.release(rt, trial)
			return false, clean, err
		}
		tctx, cancelTimeout := context.WithTimeout(ctx, u.chunkTimeout)
		actx, cancel := context.WithCancelCause(tctx)
		at := &attempt{rt: rt, cancel: cancel}
		w.att.Store(at)
		t0 := time.Now()
		edge, br, stale, err := u.put(actx, rt, q, index, sum, data, tok)
		took := time.Since(t0)
		w.att.Store(nil)
		preempted := err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errPreempted)
		cancel(nil) // a refused request may still be writing its body: stop it
		cancelTimeout()
		if br != nil {
			clean = waitReleased(ctx, br) && clean
			br.flush()
		}
		if preempted {
			// A much faster route joined and this worker now lives there
			// (router.preemptLocked): the chunk goes that way, at once; the
			// route that lost it did not fail.
			u.rt.release(rt, trial)
			u.hub.retry(index, st.tries+1, errPreempted, 0)
			continue
		}
		if err == nil {
			u.rt.success(rt, trial)
			u.rt.observe(rt, took)
			if rt.pc != nil {
				rt.pc.drop(index)
			}
			u.sent.Add(1)
			u.hub.chunkDone(index, data.size(), rt.ID, rt.Kind, edge, rt.Location)
			return false, clean, nil
		}
		if ctx.Err() != nil {
			u.rt.release(rt, trial)
			return false, clean, ctx.Err()
		}
		if fe := (*fileReadError)(nil); errors.As(err, &fe) {
			u.rt.release(rt, trial)
			return false, clean, fe
		}
		failed, now := routeFailure(err)
		if failed {
			if u.rt.failure(rt, trial, now) {
				why := fmt.Sprintf("%d failures in a row", breakerThreshold)
				if now {
					why = "it is draining"
				}
				u.hub.warn(fmt.Errorf("route %s (%s, %s) is left out for now (%s; last: %w); its chunks go through the other routes", rt.ID, rt.Kind, rt.url, why, err))
			}
		} else {
			u.rt.release(rt, trial)
		}
		counts := true // the attempt counts against MaxAttempts
		switch {
		case IsCode(err, protocol.CodeTokenExpired), IsCode(err, protocol.CodeTokenInvalid):
			// Invalid too: a server restarted with a new token secret
			// (--dev) still knows the session.
			if refreshes++; refreshes > tokenRefreshes {
				return false, clean, err
			}
			if _, _, err := u.tok.refresh(ctx, gen); err != nil {
				return false, clean, err
			}
			continue // a refused token is not a failed attempt
		case stale:
			// The store refused the presigned URL (expired, or a
			// signature it does not accept): ask for a new one, a few
			// times at most; not a failed attempt.
			if presigns++; presigns > presignRefreshes {
				return false, clean, err
			}
			rt.pc.drop(index)
			continue
		case IsCode(err, protocol.CodeTooManyStreams):
			// The session's ceiling is shared (another process uploading
			// the same content, or PUTs the server has not noticed
			// ending): wait as told; not a failed attempt, but bounded.
			if crowded++; crowded > maxCrowdedWaits {
				return false, clean, err
			}
			counts = false
		case isChecksumMismatch(err):
			// The engine sends the manifest's hash. If the bytes in
			// memory still have it, they were damaged on the way: worth
			// a couple more tries. If not, the file changed under us.
			if now, err := data.sum(); err != nil {
				return false, clean, err
			} else if now != sum {
				return false, clean, ErrFileChanged
			}
			if mismatches++; mismatches > checksumRetries {
				return false, clean, err
			}
		case isSessionClosed(err):
			return false, clean, fmt.Errorf("%w: %w", errSessionClosed, err)
		case failed && !Retryable(err):
			// A route failure not worth retrying on the same route (501
			// from a relay): another route may take it; with none, the
			// upload fails as it always did.
			if !u.rt.otherClosed(rt) {
				return false, clean, err
			}
		case !Retryable(err):
			return false, clean, err
		}
		if counts {
			st.tries++
		}
		if st.tries >= u.policy.MaxAttempts {
			return false, clean, fmt.Errorf("gave up after %d attempts: %w", st.tries, err)
		}
		if failed && u.rt.otherClosed(rt) {
			// Fail over at once, no backoff: another route is up.
			u.hub.retry(index, st.tries+1, err, 0)
			if q != nil {
				q.requeue(index, rt.idx)
				return true, clean, nil
			}
			avoid = rt
			continue
		}
		d := u.policy.backoff(max(st.tries, 1), err)
		u.hub.retry(index, st.tries+1, err, d)
		if err := u.sleep(ctx, d); err != nil {
			return false, clean, err
		}
	}
}

// put makes one attempt at chunk index through rt: a chunk PUT (origin,
// relay), or a presigned part (direct: from the cache or a presign call)
// then the PUT to the store. It returns the receiver's scheme and host,
// the body given to the transport (nil: none) and, for a direct route,
// whether the store refused the URL itself (403: presign again).
func (u *uploader) put(ctx context.Context, rt *route, q *chunkQueue, index int, sum string, data payload, tok string) (edge string, br *bodyReader, stale bool, err error) {
	var part protocol.PresignedPart
	if rt.Kind == RouteDirect {
		if part, err = rt.pc.get(ctx, u.c, rt.PresignURL, tok, q, index); err != nil {
			return "", nil, false, fmt.Errorf("presign chunk %d: %w", index, err)
		}
	}
	var body io.Reader
	if data.size() > 0 {
		br = newBodyReader(ctx, data.reader(), u.lim, u.hub)
		body = br
	}
	if rt.Kind != RouteDirect {
		return rt.url, br, false, u.c.PutChunk(ctx, rt.ChunkURL, tok, index, sum, body, data.size())
	}
	err = u.c.PutPresigned(ctx, part, body, data.size())
	var ae *APIError
	stale = errors.As(err, &ae) && ae.Status == http.StatusForbidden
	return edgeOf(part.URL), br, stale, err
}

// waitReleased waits until the transport closed the body (it must, see
// http.RoundTripper; the wait is bounded all the same), and reports
// whether it did. When ctx ends first it waits a little more.
func waitReleased(ctx context.Context, br *bodyReader) bool {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-br.closed:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
	}
	t.Reset(5 * time.Second)
	select {
	case <-br.closed:
		return true
	case <-t.C:
		return false
	}
}

// Chunk buffers, pooled by size so that consecutive uploads reuse them.
// A worker holds one at a time, so an upload's buffers take at most
// workers × chunk size.
var bufPools sync.Map // int64 → *sync.Pool

func getBuf(size int64) *[]byte {
	p, _ := bufPools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool).Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if p, ok := bufPools.Load(int64(cap(*b))); ok {
		*b = (*b)[:cap(*b)]
		p.(*sync.Pool).Put(b)
	}
}

// sendChunks sends the chunks listed of a file: the workers (a crew, see
// router.crew), each bound to a route, pull indexes from one shared
// queue and send each chunk straight from the file (see payload). A
// chunk that failed on a route while another is up goes back to the
// queue and is read again by whoever takes it. Routes that join while it
// runs take their share of the workers (a direct one asks for its first
// parts as it joins), and the pool grows when the WorkerAdvisor asks.
func (u *uploader) sendChunks(ctx context.Context, r io.ReaderAt, m *protocol.Manifest, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	q := newChunkQueue(idx, len(m.Chunks))
	g, gctx := errgroup.WithContext(ctx)
	stop := context.AfterFunc(gctx, q.close) // wake the waiting workers on failure
	defer stop()
	if u.rt.multi() || u.opts.Edges != nil {
		// Held workers (router.hold) decide again as the routes' figures
		// change, not only when the queue does.
		tick := time.NewTicker(200 * time.Millisecond)
		stopTick, tickDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(tickDone)
			for {
				select {
				case <-stopTick:
					return
				case <-tick.C:
					q.wake()
				}
			}
		}()
		defer func() { tick.Stop(); close(stopTick); <-tickDone }()
	}
	var warms sync.WaitGroup // presign warm-ups, which end with gctx
	defer warms.Wait()
	warm := u.warmer(gctx, q, &warms)
	warm(u.rt.snapshot())
	u.rt.crew(u.workers, len(idx), g.Go, func(w *worker) error {
		for {
			i, ok := q.popUnless(w.cur.idx, func(queued int) bool { return u.rt.hold(w, queued) })
			if !ok {
				return nil // all stored, or the upload failed
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
			c := m.Chunks[i]
			requeued, _, err := u.sendChunk(gctx, w, q, i, c.SHA256, filePayload(r, c.Offset, c.Size), &q.state[i])
			if err != nil {
				if errors.Is(err, context.Canceled) && ctx.Err() == nil {
					return err // another worker failed first
				}
				return fmt.Errorf("chunk %d: %w", i, err)
			}
			if !requeued {
				q.done()
			}
		}
	}, warm)
	err := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// earlyPresign asks for the parts of the session's first missing chunks
// at the URL the EdgeSelector hints at (PresignHinter), in the
// background, before the selection is known; router.join hands them to
// the direct route with that URL.
func (u *uploader) earlyPresign(ctx context.Context, s *protocol.Session) {
	h, ok := u.opts.Edges.(PresignHinter)
	if !ok || len(s.Missing) < 2 {
		return
	}
	raw := h.PresignHint(s)
	if raw == "" {
		return
	}
	abs, err := u.c.resolve(raw)
	if err != nil {
		return
	}
	u.early, u.earlyURL = newPresignCache(), abs
	u.early.warm(u.background(ctx), u.c, abs, s.UploadToken, s.Missing[:min(len(s.Missing), presignBatch)])
}

// background returns a runner of background calls of this upload: each
// runs in its own goroutine, at most backgroundTimeout, and finish
// cancels and waits for those still running. Only the upload's own
// goroutine starts them.
func (u *uploader) background(ctx context.Context) func(func(context.Context)) {
	return func(f func(context.Context)) {
		bctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
		u.bgCancel = append(u.bgCancel, cancel)
		u.bg.Add(1)
		go func() {
			defer u.bg.Done()
			defer cancel()
			f(bctx)
		}()
	}
}

// backgroundTimeout bounds a background call (a presign warm-up).
const backgroundTimeout = 30 * time.Second

// checkMissing validates a server's missing list against m.
func checkMissing(m *protocol.Manifest, missing []int) ([]int, error) {
	seen := make(map[int]bool, len(missing))
	out := make([]int, 0, len(missing))
	for _, i := range missing {
		if i < 0 || i >= len(m.Chunks) {
			return nil, fmt.Errorf("the server asks for chunk %d of a %d-chunk manifest", i, len(m.Chunks))
		}
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out, nil
}

// journalFunc records the manifest and session of an upload (nil: no
// journal).
type journalFunc func(m *protocol.Manifest, sessionID string) error

// fileUpload is the common path of Upload and UploadReader.
type fileUpload struct {
	r       io.ReaderAt
	size    int64
	name    string
	m       *protocol.Manifest // from the journal, or nil
	session string             // the session the journal names ("" for none)
	resumed bool
	save    journalFunc
	drop    func()
	// pipe is the journal of an earlier pipelined run (session names its
	// session); savePipe records a pipelined run's progress (nil: none).
	pipe     *PipeJournal
	savePipe func(*PipeJournal, string) error
	// heldTried: a pipelined run already tried to complete the session
	// with every chunk held (completeHeld); it does not again.
	heldTried bool
	// changed reports whether the file changed since the upload began
	// (nil: cannot tell); a pipelined upload asks before completing.
	changed func() bool
}

// uploadAny uploads a file by the pipelined path, unless its manifest is
// known already (an earlier manifest-first run's journal, the local
// index), Options.HashFirst asks for the manifest first, or the server
// is too old for sized sessions.
func (u *uploader) uploadAny(ctx context.Context, f fileUpload) (*Result, error) {
	if done, ok := u.completedBefore(ctx, f.session); ok {
		// An earlier run's completion went through but its answer was
		// lost (killed, disconnected): that is the result. Opening again
		// would record the content a second time, as another asset.
		res := &Result{Method: MethodPipelined, SessionID: f.session, Resumed: true}
		if f.m != nil {
			res.Method, res.ChunksTotal = MethodManifest, len(f.m.Chunks)
		} else if f.pipe != nil {
			res.ChunksTotal = len(f.pipe.Chunks)
		}
		res.Asset, res.Deduplicated = done.Asset, done.Deduplicated
		if done.Deduplicated {
			res.DedupAt = DedupAtComplete
		}
		return res, nil
	}
	if f.m == nil && !u.opts.HashFirst {
		res, err := u.uploadPipelined(ctx, f)
		if errors.Is(err, ErrFileChanged) && f.drop != nil {
			f.drop()
		}
		if IsJettySpeedOff(err) {
			return u.uploadWholeInstead(ctx, f, err)
		}
		if !errors.Is(err, errNoPipeline) {
			return res, err
		}
		u.hub.warn(fmt.Errorf("the server does not take sized sessions (an older server): hashing the file first (%w)", err))
		f.pipe, f.session = nil, ""
	}
	res, err := u.uploadFile(ctx, f)
	if IsJettySpeedOff(err) {
		return u.uploadWholeInstead(ctx, f, err)
	}
	return res, err
}

func (u *uploader) uploadFile(ctx context.Context, f fileUpload) (*Result, error) {
	res := &Result{Method: MethodManifest}
	plan := func(chunkSize int64) (*protocol.Manifest, error) {
		m, err := Plan(ctx, f.r, f.size, chunkSize, PlanOptions{Name: f.name, Progress: func(n int64) { u.hub.plan(n, f.size) }})
		if err != nil {
			return nil, fmt.Errorf("hash %s: %w", f.name, err)
		}
		if f.save != nil {
			if err := f.save(m, ""); err != nil {
				u.hub.warn(fmt.Errorf("journal: %w (the upload goes on, but cannot resume)", err))
			}
		}
		return m, nil
	}
	if pf, ok := u.opts.Edges.(Prefetcher); ok {
		// Probe the edges while the file is hashed.
		cs := u.opts.ChunkSize
		if f.m != nil {
			cs = f.m.ChunkSize
		} else if cs <= 0 {
			cs = protocol.ChooseChunkSize(f.size)
		}
		w := u.opts.Workers
		if w <= 0 {
			w = DefaultWorkers
		}
		pf.Prefetch(ctx, f.size, cs, w)
	}
	m := f.m
	res.Resumed = m != nil && f.session != ""
	if m == nil {
		var err error
		if m, err = plan(u.opts.ChunkSize); err != nil {
			return res, err
		}
	} else {
		m.Name = f.name
	}
	resp, err := u.open(ctx, protocol.OpenRequest{Manifest: m})
	if err != nil {
		return res, err
	}
	// The server found an open session for this content cut differently
	// (another chunk size): adopt its chunking, so the chunks it holds
	// count, rather than start over.
	if s := resp.Session; s != nil && len(m.Chunks) > 1 && s.Strategy.ChunkSize != 0 && s.Strategy.ChunkSize != m.ChunkSize {
		if m, err = plan(s.Strategy.ChunkSize); err != nil {
			return res, err
		}
		res.Resumed = false
		if resp, err = u.open(ctx, protocol.OpenRequest{Manifest: m}); err != nil {
			return res, err
		}
		if s := resp.Session; s != nil && s.Strategy.ChunkSize != 0 && s.Strategy.ChunkSize != m.ChunkSize && len(m.Chunks) > 1 {
			return res, fmt.Errorf("open upload session: the server's session has chunk size %d, the manifest %d", s.Strategy.ChunkSize, m.ChunkSize)
		}
	}
	res.ChunksTotal, res.manifest = len(m.Chunks), m
	if resp.Deduplicated {
		res.Asset, res.Deduplicated, res.DedupAt = *resp.Asset, true, DedupAtOpen
		return res, nil
	}
	s := resp.Session
	res.SessionID = s.ID
	if f.save != nil {
		if err := f.save(m, s.ID); err != nil {
			u.hub.warn(fmt.Errorf("journal: %w (the upload goes on, but cannot resume)", err))
		}
	}
	missing, err := checkMissing(m, s.Missing)
	if err != nil {
		return res, err
	}
	u.begin(ctx, s, m.ChunkSize, false)
	res.Workers = u.workers
	pending := m.MissingBytes(missing)
	u.hub.start(m.Size, m.Size-pending, len(m.Chunks), len(m.Chunks)-len(missing), u.workers)

	err = u.sendChunks(ctx, f.r, m, missing)
	if errors.Is(err, errSessionClosed) {
		err = nil // complete, as the concurrent upload did
	}
	var cr protocol.CompleteResponse
	if err == nil {
		cr, err = u.complete(ctx, nil)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == protocol.CodeChunksMissing && len(ae.Missing) > 0 {
			// The receiver lost chunks it had acknowledged (or held
			// chunks the session no longer counts): send them once more.
			again, cerr := checkMissing(m, ae.Missing)
			if cerr != nil {
				return res, cerr
			}
			if err = u.sendChunks(ctx, f.r, m, again); err == nil || errors.Is(err, errSessionClosed) {
				cr, err = u.complete(ctx, nil)
			}
		}
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("complete upload: %w", err)
		}
	}
	if err != nil {
		if errors.Is(err, ErrFileChanged) && f.drop != nil {
			f.drop()
		}
		return res, err
	}
	res.Asset, res.Deduplicated = cr.Asset, cr.Deduplicated
	if cr.Deduplicated {
		res.DedupAt = DedupAtComplete
	}
	return res, nil
}

// completedBefore asks whether session (from the journal; "" for none)
// is completed, and if so answers its completion (completing again is
// idempotent). Any failure is no: the upload goes on as usual.
func (u *uploader) completedBefore(ctx context.Context, session string) (protocol.CompleteResponse, bool) {
	if session == "" {
		return protocol.CompleteResponse{}, false
	}
	st, err := u.c.SessionStatus(ctx, session)
	if err != nil || st.State != "completed" {
		return protocol.CompleteResponse{}, false
	}
	var resp protocol.CompleteResponse
	err = retryControl(ctx, u.policy, u.sleep, u.onControlRetry, func(ctx context.Context) error {
		var err error
		resp, err = u.c.Complete(ctx, session, nil)
		return err
	})
	return resp, err == nil && resp.Asset.ID != ""
}

// finish fills in the figures every result has and reports the end.
func (u *uploader) finish(res *Result, err error) (*Result, error) {
	for _, cancel := range u.bgCancel {
		cancel()
	}
	u.bg.Wait()
	res.BytesSent = u.hub.sentBytes()
	res.ChunksSent = int(u.sent.Load())
	res.Duration = time.Since(u.started)
	res.Edges = u.hub.edgeStats()
	if err != nil && IsStorageFull(err) && !errors.Is(err, ErrStorageFull) {
		err = fmt.Errorf("%w: %w", ErrStorageFull, err)
	}
	u.hub.emit(Event{Kind: EventDone, Err: err})
	return res, err
}

// UploadReader uploads size bytes of r as name: plan, open a session,
// send the missing chunks with a bounded worker pool, complete. It keeps
// no journal. On error the Result holds the figures so far.
func UploadReader(ctx context.Context, c *Client, r io.ReaderAt, size int64, name string, opts Options) (*Result, error) {
	u := newUploader(c, opts)
	if opts.Name != "" {
		name = opts.Name
	}
	if m := u.smallFileMax(); size >= 0 && size <= m {
		res, err := u.uploadSmall(ctx, r, size, name)
		return u.finish(res, err)
	}
	res, err := u.uploadAny(ctx, fileUpload{r: r, size: size, name: name})
	return u.finish(res, err)
}

// Upload uploads the file at path. It keeps a journal (see Options) so
// that running it again after a crash, Ctrl-C or a network failure neither
// hashes the file again nor sends the chunks the server already holds.
// The journal is valid while the file keeps its size, modification time
// and fingerprint; it is deleted once the upload succeeds.
func Upload(ctx context.Context, c *Client, path string, opts Options) (*Result, error) {
	u := newUploader(c, opts)
	res, err := u.uploadPath(ctx, path)
	return u.finish(res, err)
}

func (u *uploader) uploadPath(ctx context.Context, path string) (*Result, error) {
	res := &Result{}
	abs, err := filepath.Abs(path)
	if err != nil {
		return res, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return res, err
	}
	defer f.Close()
	statAt := time.Now() // the index's Recorded: before the file is read
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	if !st.Mode().IsRegular() {
		return res, fmt.Errorf("%s is not a regular file (upload streams with UploadStream)", path)
	}
	name := u.opts.Name
	if name == "" {
		name = filepath.Base(abs)
	}
	if m := u.smallFileMax(); st.Size() <= m {
		return u.uploadSmall(ctx, f, st.Size(), name)
	}
	fu := fileUpload{r: f, size: st.Size(), name: name, changed: func() bool {
		now, err := f.Stat()
		return err != nil || now.Size() != st.Size() || !now.ModTime().Equal(st.ModTime())
	}}

	var ik upindex.Key
	var ist upindex.Stat
	var indexed bool // the manifest came from the index
	ix := u.opts.Index
	if ix != nil {
		ik, ist = upindex.Key{Server: u.c.serverKey(), Account: u.c.accountKey(), Path: abs}, upindex.StatOf(st)
		var how string
		fu.m, how = u.fromIndex(ctx, ix, ik, ist, f, st.Size(), name)
		indexed = fu.m != nil
		defer func() {
			if res != nil {
				res.Index = how
			}
		}()
	}
	dir := u.opts.JournalDir
	if indexed {
		// A file the index knows (unchanged, or checked by hashing): its
		// manifest is known, and nothing more of it is read (a journal's
		// fingerprint reads 2 MiB). No journal is needed: a run after an
		// interruption opens with the same manifest, by which the server
		// finds the session again.
		dir = "-"
	}
	if dir == "" {
		if dir, err = DefaultJournalDir(); err != nil {
			u.hub.warn(fmt.Errorf("journal: %w (the upload goes on, but cannot resume)", err))
			dir = "-"
		}
	}
	if dir != "-" {
		jpath := JournalPath(dir, u.c.serverKey(), abs)
		want := Journal{Version: journalVersion, Server: u.c.serverKey(), Path: abs, Size: st.Size(), MTime: st.ModTime().UnixNano()}
		if want.Fingerprint, err = fileFingerprint(f, st.Size()); err != nil {
			return res, fmt.Errorf("read %s: %w", path, err)
		}
		j, err := loadJournal(jpath, want)
		if err != nil {
			u.hub.warn(fmt.Errorf("journal: %w", err))
		}
		// A journal cut with another chunk size than the one asked for
		// is planned again.
		switch {
		case j != nil && j.Manifest != nil && (u.opts.ChunkSize == 0 || u.opts.ChunkSize == j.Manifest.ChunkSize):
			fu.m, fu.session = j.Manifest, j.SessionID
			want.Created = j.Created
		case j != nil && j.Pipe != nil && (u.opts.ChunkSize == 0 || u.opts.ChunkSize == j.Pipe.ChunkSize):
			fu.pipe, fu.session = j.Pipe, j.SessionID
			want.Created = j.Created
		default:
			want.Created = time.Now().UTC()
		}
		fu.save = func(m *protocol.Manifest, sessionID string) error {
			jj := want
			jj.Manifest, jj.SessionID = m, sessionID
			return jj.save(jpath)
		}
		fu.savePipe = func(p *PipeJournal, sessionID string) error {
			jj := want
			jj.Pipe, jj.SessionID = p, sessionID
			return jj.save(jpath)
		}
		fu.drop = func() {
			if err := removeJournal(jpath); err != nil {
				u.hub.warn(fmt.Errorf("journal: %w", err))
			}
		}
	}
	res, err = u.uploadAny(ctx, fu)
	if err == nil && fu.drop != nil {
		fu.drop()
	}
	if ix != nil {
		switch {
		case errors.Is(err, ErrFileChanged) && indexed:
			if rerr := ix.Remove(ik); rerr != nil {
				u.hub.warn(fmt.Errorf("upload index: %w", rerr))
			}
		case err == nil && res.manifest != nil && !indexed && res.Asset.Hash == res.manifest.SHA256 && !fu.changed():
			// Recorded with the Stat taken before the file was read, and
			// at that time: a change while it was read makes the next
			// lookup miss, and a file modified just before the upload
			// stays in doubt however long the upload took.
			m := res.manifest
			e := upindex.Entry{Key: ik, Stat: ist, Recorded: statAt, SHA256: m.SHA256, ChunkSize: m.ChunkSize, Chunks: make([]string, len(m.Chunks))}
			for i, c := range m.Chunks {
				e.Chunks[i] = c.SHA256
			}
			if perr := ix.Put(e); perr != nil {
				u.hub.warn(fmt.Errorf("upload index: %w (the next upload of this file reads it again)", perr))
			}
		}
	}
	return res, err
}

// What the local index said of a file, as Result.Index names it.
const (
	// IndexHit: the file is unchanged since this machine uploaded it; its
	// manifest came from the index, nothing was read to hash it.
	IndexHit = "hit"
	// IndexChecked: an entry in doubt (the file changed within the
	// timestamps' granularity of its recording) was checked by hashing
	// the file, and held.
	IndexChecked = "checked"
	// IndexChanged: an entry in doubt did not hold: the file was hashed
	// and its new manifest used.
	IndexChanged = "changed"
	// IndexMiss: no entry for this file as it is now.
	IndexMiss = "miss"
)

// fromIndex is the manifest of the file as the index knows it (nil: not
// known) and what the index said. An entry in doubt is checked by
// hashing the file: the manifest so made is used either way.
func (u *uploader) fromIndex(ctx context.Context, ix *upindex.Index, k upindex.Key, st upindex.Stat, r io.ReaderAt, size int64, name string) (*protocol.Manifest, string) {
	e, doubt, err := ix.Lookup(k, st)
	if err != nil {
		u.hub.warn(fmt.Errorf("upload index: %w (the file is read as a new one)", err))
		return nil, IndexMiss
	}
	if e == nil {
		return nil, IndexMiss
	}
	m := e.Manifest(name)
	if m == nil || (u.opts.ChunkSize != 0 && u.opts.ChunkSize != e.ChunkSize) {
		return nil, IndexMiss // (another chunking asked for: read it again)
	}
	if !doubt {
		return m, IndexHit
	}
	hashAt := time.Now()
	planned, err := Plan(ctx, r, size, e.ChunkSize, PlanOptions{Name: name, Progress: func(n int64) { u.hub.plan(n, size) }})
	if err != nil {
		return nil, IndexMiss // the upload reads it again and says why
	}
	if planned.SHA256 == m.SHA256 && planned.ChunkListID() == m.ChunkListID() {
		if err := ix.Confirm(*e, hashAt); err != nil {
			u.hub.warn(fmt.Errorf("upload index: %w", err))
		}
		return planned, IndexChecked
	}
	if err := ix.Remove(k); err != nil {
		u.hub.warn(fmt.Errorf("upload index: %w", err))
	}
	return planned, IndexChanged
}
