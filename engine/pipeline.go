package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jettythunder/jetty/protocol"
	"golang.org/x/sync/errgroup"
)

// The pipelined path (docs/protocol.md, "Pipelined uploads"): a new
// file's chunks are hashed and sent in one pass. The session opens with
// the file's size and chunk size (a sized session: exactly the size
// reserved, the tier's limits checked before any byte moves), one reader
// goroutine reads the chunks in order into pooled buffers and feeds the
// whole-file SHA-256, and each worker hashes the chunk it takes and PUTs
// it with that hash. The manifest, complete once the last chunk is read,
// goes with the completion. Nothing waits for the whole file to be
// hashed: the first PUT leaves one round trip (the open) plus one chunk's
// read and hash after the start.
//
// The journal records the session, the chunk hashes as they are made and
// the whole-file hash state at the longest prefix whose chunks are all
// hashed (pipeJournaler), so that a run after kill -9 asks the session
// which chunks it holds, reads the file from that prefix on only, and
// sends only what the server does not hold.

// Upload methods as Result.Method names them.
const (
	// MethodPipelined: hashed and sent in one pass, manifest at completion.
	MethodPipelined = "pipelined"
	// MethodManifest: hashed first (or known: the journal, the local
	// index), then a session opened with the manifest, which lets the
	// server deduplicate before any byte moves.
	MethodManifest = "manifest"
	// MethodSingle: one verified request (small files).
	MethodSingle = "single_request"
	// MethodStream: a stream of unknown length.
	MethodStream = "stream"
)

// Where the server found the content, as Result.DedupAt names it.
const (
	// DedupAtOpen: the server held the content when the session was
	// asked for with its manifest; no byte of it was sent.
	DedupAtOpen = "open"
	// DedupAtComplete: the content was sent and the server found it
	// already stored when completing (from another machine, or a
	// concurrent upload): the new copy was dropped.
	DedupAtComplete = "complete"
)

// errNoPipeline means the server does not take sized sessions (an older
// server): the upload plans the manifest first, as before.
var errNoPipeline = errors.New("the server takes no sized sessions")

// pipeJob is one chunk handed to a worker: in a buffer read by the reader
// (buf set; the worker hashes it unless sum is known), or, for a chunk
// before the resumed hash state, to send from the file with its
// journaled hash (buf nil).
type pipeJob struct {
	index int
	buf   *chunkBuf
	n     int64
	sum   string
	// hashOnly: the server holds the chunk but the journal lost its hash
	// (killed between the PUT and the journal): hash, do not send.
	hashOnly bool
}

// uploadPipelined uploads f in one pass (see above). errNoPipeline when
// the server cannot open a sized session and none was resumed.
func (u *uploader) uploadPipelined(ctx context.Context, f fileUpload) (*Result, error) {
	res := &Result{Method: MethodPipelined}
	cs := u.opts.ChunkSize
	if f.pipe != nil {
		cs = f.pipe.ChunkSize
	} else if cs <= 0 {
		cs = protocol.ChooseChunkSize(f.size)
	}
	if err := protocol.CheckChunkSize(f.size, cs); err != nil {
		return res, err
	}
	n := int(protocol.NumChunks(f.size, cs))
	res.ChunksTotal = n
	var err error

	var s *protocol.Session
	held := map[int]bool{}
	pj := f.pipe
	if pj != nil && f.session != "" {
		st, err := u.c.SessionStatus(ctx, f.session)
		if err == nil && st.State == protocol.StateCompleting && !f.heldTried {
			// Killed while completing (the client, or the server under
			// it): every chunk is held; what is left is the manifest.
			return u.completeHeld(ctx, f, pj, res)
		}
		if err == nil {
			s, held = u.resumeSession(ctx, st, f.size, n, pj)
		}
	}
	if s == nil {
		// The ref names this upload before the server knows it: an
		// earlier run killed before it could journal its session (ref
		// journaled, no session) opens with the same ref and gets that
		// session back instead of reserving another.
		ref := ""
		if pj != nil && f.session == "" && pj.ChunkSize == cs && protocol.ValidClientRef(pj.Ref) {
			ref = pj.Ref
		} else if ref, err = newClientRef(); err != nil {
			return res, err
		}
		pj = &PipeJournal{ChunkSize: cs, Chunks: make([]string, n), Ref: ref}
		held = map[int]bool{}
		if f.savePipe != nil {
			if err := f.savePipe(pj, ""); err != nil {
				u.hub.warn(fmt.Errorf("journal: %w (the upload goes on, but cannot resume)", err))
			}
		}
		resp, err := u.open(ctx, protocol.OpenRequest{Stream: &protocol.StreamSpec{Name: f.name, ChunkSize: cs, Size: f.size, Ref: ref}})
		if err != nil {
			if olderServer(err) {
				return res, fmt.Errorf("%w: %w", errNoPipeline, err)
			}
			return res, err
		}
		if resp.Deduplicated || resp.Session == nil {
			return res, fmt.Errorf("%w: the server answered a sized session with no session", errNoPipeline)
		}
		s = resp.Session
		if s.Strategy.ChunkSize != 0 && s.Strategy.ChunkSize != cs {
			return res, fmt.Errorf("open upload session: the server's session has chunk size %d, asked for %d", s.Strategy.ChunkSize, cs)
		}
		pj.Sized = s.Size == f.size
		if resp.Existing {
			// The session of a run that lost the open's answer: what it
			// holds already counts.
			res.Resumed = true
			if st, err := u.c.SessionStatus(ctx, s.ID); err == nil {
				for _, i := range st.Held {
					if i >= 0 && i < n {
						held[i] = true
					}
				}
			}
		}
	} else {
		res.Resumed = true
	}
	res.SessionID = s.ID
	// What is left to send, as a manifest session's open would list it:
	// the edge selection sizes its choice by it.
	sc := *s
	sc.Missing = make([]int, 0, n-len(held))
	for i := range n {
		if !held[i] {
			sc.Missing = append(sc.Missing, i)
		}
	}
	s = &sc
	jr := newPipeJournaler(pj, s.ID, f.savePipe, u.hub)
	jr.save() // the session, before any chunk: a kill from here on resumes it
	stopJournal := jr.run(time.Second)
	defer stopJournal()

	if pj.Sized {
		// The server presigns parts of a sized session for the hashes
		// named: the direct route works once a chunk is hashed.
		u.sums = func(i int) (string, bool) {
			if i < 0 || i >= n {
				return "", false
			}
			h := jr.chunk(i)
			return h, h != ""
		}
	}
	u.begin(ctx, s, cs, !pj.Sized)
	res.Workers = u.workers
	var heldBytes int64
	for i := range held {
		heldBytes += min(cs, f.size-int64(i)*cs)
	}
	u.hub.start(f.size, heldBytes, n, len(held), u.workers)

	whole, start := jr.resumeWhole()
	g, gctx := errgroup.WithContext(ctx)
	// Chunk buffers in memory: the pool's workers plus the read-ahead
	// (pipeBuffers: one queued, one being read), following the pool as
	// the worker advice grows it.
	extra := pipeBuffers(cs)
	bufs := newBufLimit(cs, func() int { return max(u.rt.poolSize(), u.workers) + extra })
	stopBufs := context.AfterFunc(gctx, bufs.wake)
	defer stopBufs()
	jobs := make(chan pipeJob, 1)
	// The whole-file hash needs the chunks in order: its own goroutine
	// takes them from the reader, off the path to the first PUTs (a
	// worker gets a chunk as soon as it is read, hashes it and sends it).
	wholeCh := make(chan wholeItem, 64)
	// The first round of chunks (one per worker) leaves before the whole
	// hash starts: on a busy machine it would take the CPU the workers'
	// own hashes need to start sending, and it has until the end to catch
	// up (the buffer limit keeps it at most a round behind).
	firstRound := make(chan struct{})
	var firstOnce sync.Once
	endFirstRound := func() { firstOnce.Do(func() { close(firstRound) }) }
	g.Go(func() error {
		select {
		case <-firstRound:
		case <-gctx.Done():
		}
		for it := range wholeCh {
			whole.Write(it.data)
			jr.wholeAt(it.k, whole)
			it.buf.release()
		}
		return nil
	})
	g.Go(func() error { // the reader
		defer close(jobs)
		defer close(wholeCh)
		defer endFirstRound()
		send := func(j pipeJob) error {
			select {
			case jobs <- j:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		// Chunks before the resumed hash state are hashed already: send
		// those the server lacks from the file.
		for i := range start {
			if !held[i] {
				if err := send(pipeJob{index: i, sum: pj.Chunks[i]}); err != nil {
					return err
				}
			}
		}
		for i := start; i < n; i++ {
			bp := bufs.take(gctx)
			if bp == nil {
				return gctx.Err()
			}
			off := int64(i) * cs
			size := min(cs, f.size-off)
			cb := &chunkBuf{bp: bp, bufs: bufs}
			data := (*cb.bp)[:size]
			if err := readFull(f.r, data, off); err != nil {
				cb.refs.Store(1)
				cb.release()
				return &fileReadError{fmt.Errorf("read %s: %w", f.name, err)}
			}
			cb.refs.Store(2) // the whole-file hash and the worker
			wholeCh <- wholeItem{k: i + 1, data: data, buf: cb}
			if i-start+1 >= u.workers {
				// A round read (held chunks included): the buffer limit,
				// at least a round and two, cannot have blocked.
				endFirstRound()
			}
			sum := jr.chunk(i)
			if held[i] && sum != "" {
				cb.release() // held, and hashed in an earlier run
				continue
			}
			if err := send(pipeJob{index: i, buf: cb, n: size, sum: sum, hashOnly: held[i]}); err != nil {
				cb.release()
				return err
			}

		}
		return nil
	})
	// The workers, each bound to a route (router.crew): routes that join
	// while the file is sent take their share, and the pool may grow
	// (worker advice). A chunk that fails on a route is sent by the same
	// worker through another route that is up (sendChunk with no queue),
	// from the buffer it already holds.
	u.rt.crew(u.workers, 0, g.Go, func(w *worker) error {
		for j := range jobs {
			err := u.pipeSend(gctx, w, f, cs, jr, j)
			if err != nil {
				if errors.Is(err, context.Canceled) && ctx.Err() == nil {
					return err // another goroutine failed first
				}
				return fmt.Errorf("chunk %d: %w", j.index, err)
			}
		}
		return nil
	}, nil)
	err = g.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err != nil {
		return res, err
	}

	m, err := pipeManifest(f, cs, jr.chunk, whole)
	if err != nil {
		return res, err
	}
	cr, err := u.complete(ctx, m)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == protocol.CodeChunksMissing && len(ae.Missing) > 0 {
		// The receiver lost chunks it had acknowledged, or a held chunk
		// is not what the file has now: send them once more, from the
		// file, and complete again.
		again, cerr := checkMissing(m, ae.Missing)
		if cerr != nil {
			return res, cerr
		}
		if err = u.sendChunks(ctx, f.r, m, again); err == nil {
			cr, err = u.complete(ctx, m)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("complete upload: %w", err)
	}
	res.Asset, res.Deduplicated = cr.Asset, cr.Deduplicated
	if cr.Deduplicated {
		res.DedupAt = DedupAtComplete
	}
	res.manifest = m
	return res, nil
}

// bufLimit hands out the chunk buffers of a pipelined upload, at most a
// limit that may grow while it runs, and keeps those returned for reuse:
// the upload's buffers are its own, so a garbage collection (which
// empties a sync.Pool) cannot make it allocate a second set while the
// first is still in use.
type bufLimit struct {
	mu    sync.Mutex
	cond  sync.Cond
	n     int // buffers out
	size  int64
	free  []*[]byte
	limit func() int
}

func newBufLimit(size int64, limit func() int) *bufLimit {
	b := &bufLimit{size: size, limit: limit}
	b.cond.L = &b.mu
	return b
}

// take waits for a buffer; nil when ctx ended first.
func (b *bufLimit) take(ctx context.Context) *[]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n >= b.limit() && ctx.Err() == nil {
		b.cond.Wait()
	}
	if ctx.Err() != nil {
		return nil
	}
	b.n++
	if k := len(b.free); k > 0 {
		bp := b.free[k-1]
		b.free = b.free[:k-1]
		return bp
	}
	bp := make([]byte, b.size)
	return &bp
}

// give returns a buffer (nil: one that may not be reused, a refused
// request may still hold it).
func (b *bufLimit) give(bp *[]byte) {
	b.mu.Lock()
	b.n--
	if bp != nil {
		b.free = append(b.free, bp)
	}
	b.mu.Unlock()
	b.cond.Broadcast()
}

// wake wakes a waiting take (the context ended, or the pool grew).
func (b *bufLimit) wake() { b.cond.Broadcast() }

// pipeSend hashes (when needed) and sends one job of the pipeline.
func (u *uploader) pipeSend(ctx context.Context, w *worker, f fileUpload, cs int64, jr *pipeJournaler, j pipeJob) error {
	off := int64(j.index) * cs
	size := min(cs, f.size-off)
	var data payload
	if j.buf != nil {
		defer j.buf.release()
		d := (*j.buf.bp)[:j.n]
		if j.sum == "" {
			h := sha256.Sum256(d)
			j.sum = hex.EncodeToString(h[:])
		}
		data = memPayload(d)
	} else {
		data = filePayload(f.r, off, size)
	}
	jr.setChunk(j.index, j.sum)
	if j.hashOnly || ctx.Err() != nil {
		return ctx.Err()
	}
	st := chunkTry{last: -1}
	_, clean, err := u.sendChunk(ctx, w, nil, j.index, j.sum, data, &st)
	if !clean && j.buf != nil {
		j.buf.dirty.Store(true)
	}
	return err
}

// chunkBuf is a chunk read by the pipeline's reader, shared by the
// whole-file hash and the worker that sends it: the last to release it
// returns the buffer to the pool (unless a refused request may still
// hold it: dirty) and its place to the buffer limit.
type chunkBuf struct {
	bp    *[]byte
	refs  atomic.Int32
	dirty atomic.Bool
	bufs  *bufLimit
}

func (c *chunkBuf) release() {
	if c.refs.Add(-1) == 0 {
		if c.dirty.Load() {
			c.bufs.give(nil)
		} else {
			c.bufs.give(c.bp)
		}
	}
}

// wholeItem is a chunk for the whole-file hash: the state after it
// covers the first k chunks.
type wholeItem struct {
	k    int
	data []byte
	buf  *chunkBuf
}

// resumeSession takes up session id of an earlier pipelined run: its
// state, a fresh token and the chunks it holds. nil when it cannot be
// resumed (gone, expired, completed or aborted, another chunking, or a
// server too old to say where its chunks go): the upload starts over.
func (u *uploader) resumeSession(ctx context.Context, st protocol.SessionState, size int64, n int, pj *PipeJournal) (*protocol.Session, map[int]bool) {
	id := st.ID
	if st.State != protocol.StateOpen || st.ChunkURL == "" || st.Strategy == nil || st.Strategy.ChunkSize != pj.ChunkSize {
		return nil, nil
	}
	var tok protocol.Token
	err := retryControl(ctx, u.policy, u.sleep, u.onControlRetry, func(ctx context.Context) error {
		var err error
		tok, err = u.c.RefreshToken(ctx, id)
		return err
	})
	if err != nil {
		return nil, nil
	}
	held := make(map[int]bool, len(st.Held))
	for _, i := range st.Held {
		if i < 0 || i >= n {
			return nil, nil // not a session of this file's chunking
		}
		held[i] = true
	}
	chunkURL, err := u.c.resolve(st.ChunkURL)
	if err != nil {
		return nil, nil
	}
	s := &protocol.Session{ID: id, ExpiresAt: st.ExpiresAt, ChunkURL: chunkURL, UploadToken: tok.UploadToken,
		TokenExpiresAt: tok.TokenExpiresAt, Missing: []int{}, Strategy: *st.Strategy}
	if pj.Sized {
		s.Size = size
	}
	return s, held
}

// newClientRef is a fresh protocol.StreamSpec.Ref: 128 random bits.
func newClientRef() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("upload ref: %w", err)
	}
	return "r" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// completeHeld completes f's session, whose chunks are all held (it was
// being completed when its client or server died), with the manifest:
// the journal's hashes, and the rest made by reading the file from the
// journaled hash state on, sending nothing. The server takes a dead
// completion over, or answers the one that finished meanwhile.
func (u *uploader) completeHeld(ctx context.Context, f fileUpload, pj *PipeJournal, res *Result) (*Result, error) {
	res.Resumed, res.SessionID = true, f.session
	u.sess = &protocol.Session{ID: f.session}
	jr := newPipeJournaler(pj, f.session, nil, u.hub)
	whole, start := jr.resumeWhole()
	cs := pj.ChunkSize
	buf := getBuf(cs)
	defer putBuf(buf)
	for i := start; i < len(pj.Chunks); i++ {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		off := int64(i) * cs
		data := (*buf)[:min(cs, f.size-off)]
		if err := readFull(f.r, data, off); err != nil {
			return res, &fileReadError{fmt.Errorf("read %s: %w", f.name, err)}
		}
		whole.Write(data)
		if pj.Chunks[i] == "" {
			h := sha256.Sum256(data)
			pj.Chunks[i] = hex.EncodeToString(h[:])
		}
	}
	m, err := pipeManifest(f, cs, func(i int) string { return pj.Chunks[i] }, whole)
	if err != nil {
		return res, err
	}
	cr, err := u.complete(ctx, m)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		switch {
		case IsCode(err, protocol.CodeChunksMissing) && !f.heldTried:
			// The completion failed before the store assembled the parts
			// and some are gone: the session is open again; resume it.
			f.heldTried = true
			return u.uploadPipelined(ctx, f)
		case IsCode(err, protocol.CodeNotFound), IsCode(err, protocol.CodeSessionGone):
			// Not completable after all: start over with a new session.
			f.pipe, f.session = nil, ""
			return u.uploadPipelined(ctx, f)
		}
		return res, fmt.Errorf("complete upload: %w", err)
	}
	res.ChunksTotal, res.manifest = len(m.Chunks), m
	res.Asset, res.Deduplicated = cr.Asset, cr.Deduplicated
	if cr.Deduplicated {
		res.DedupAt = DedupAtComplete
	}
	return res, nil
}

// pipeManifest is the manifest of a pipelined upload of f, from the chunk
// hashes (chunk) and the whole-file hash; ErrFileChanged when the file
// changed while it was read: what was sent is what the manifest says, but
// not one version of the file, so nothing is recorded.
func pipeManifest(f fileUpload, cs int64, chunk func(int) string, whole hash.Hash) (*protocol.Manifest, error) {
	m := protocol.NewManifest(f.name, f.size, cs)
	for i := range m.Chunks {
		m.Chunks[i].SHA256 = chunk(i)
	}
	m.SHA256 = hex.EncodeToString(whole.Sum(nil))
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("pipelined manifest: %w", err)
	}
	if f.changed != nil && f.changed() {
		return nil, ErrFileChanged
	}
	return m, nil
}

// olderServer reports an open refused because the server does not know
// sized sessions (it has no stream sessions, or refuses the field): the
// upload falls back to planning the manifest first.
func olderServer(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return true
	case http.StatusBadRequest:
		return ae.Code == protocol.CodeInvalid || ae.Code == ""
	}
	return false
}

// pipeJournaler keeps a pipelined upload's journal: the chunk hashes as
// workers make them and the whole-file hash states the reader passes,
// written at most every interval (and once more when the run ends), so
// that a kill at any point loses at most the last interval's hashes, which
// the next run makes again.
type pipeJournaler struct {
	mu      sync.Mutex
	pj      *PipeJournal
	session string
	saveFn  func(*PipeJournal, string) error
	hub     *hub
	// states are the whole-file hash states by chunk count, kept until a
	// longer prefix has all its chunks hashed.
	states map[int][]byte
	dirty  bool
	warned bool
}

func newPipeJournaler(pj *PipeJournal, session string, save func(*PipeJournal, string) error, h *hub) *pipeJournaler {
	return &pipeJournaler{pj: pj, session: session, saveFn: save, hub: h, states: map[int][]byte{}}
}

// resumeWhole is the whole-file hash to go on with and the chunk it
// stands at: the journaled state, or a new hash at chunk 0.
func (j *pipeJournaler) resumeWhole() (hash.Hash, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	h := sha256.New()
	if j.pj.WholeChunks > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(j.pj.Whole); err == nil {
			return h, j.pj.WholeChunks
		}
		h.Reset()
		j.pj.Whole, j.pj.WholeChunks = nil, 0
	}
	return h, 0
}

// wholeAt records the whole-file hash state after k chunks.
func (j *pipeJournaler) wholeAt(k int, h hash.Hash) {
	if j.saveFn == nil {
		return
	}
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return
	}
	j.mu.Lock()
	j.states[k] = st
	j.mu.Unlock()
}

func (j *pipeJournaler) chunk(i int) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pj.Chunks[i]
}

func (j *pipeJournaler) setChunk(i int, sum string) {
	j.mu.Lock()
	if j.pj.Chunks[i] != sum {
		j.pj.Chunks[i], j.dirty = sum, true
	}
	j.mu.Unlock()
}

// save writes the journal (nil saveFn: none is kept).
func (j *pipeJournaler) save() {
	if j.saveFn == nil {
		return
	}
	j.mu.Lock()
	// The longest prefix whose chunks are all hashed, and its state.
	k := j.pj.WholeChunks
	for k < len(j.pj.Chunks) && j.pj.Chunks[k] != "" {
		k++
	}
	for ; k > j.pj.WholeChunks; k-- {
		if st, ok := j.states[k]; ok {
			j.pj.Whole, j.pj.WholeChunks = st, k
			break
		}
	}
	for c := range j.states {
		if c <= j.pj.WholeChunks {
			delete(j.states, c)
		}
	}
	cp := *j.pj
	cp.Chunks = append([]string(nil), j.pj.Chunks...)
	j.dirty = false
	j.mu.Unlock()
	if err := j.saveFn(&cp, j.session); err != nil && !j.warned {
		j.warned = true
		j.hub.warn(fmt.Errorf("journal: %w (the upload goes on, but cannot resume)", err))
	}
}

// run saves the journal every interval while it changed; the returned
// function stops it and saves once more.
func (j *pipeJournaler) run(interval time.Duration) func() {
	if j.saveFn == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				j.mu.Lock()
				dirty := j.dirty
				j.mu.Unlock()
				if dirty {
					j.save()
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		j.save()
	}
}
