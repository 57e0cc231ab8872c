package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jettythunder/jetty/internal/idleread"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/chunkadmit"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

// Session timing (docs/protocol.md).
const (
	sessionTTL = 24 * time.Hour
	tokenTTL   = 15 * time.Minute
	// DefaultCompletionLease is how long a completion holds its session
	// without renewing (it renews every third of it while it works): a
	// completion whose server died is taken over once its lease ran out.
	DefaultCompletionLease = 30 * time.Second
	// Workers suggested and allowed: tiers with JettySpeed get parallel
	// chunk streams, the others one.
	jettySpeedWorkers    = 16
	jettySpeedMaxWorkers = 32
	// storeOutageWait bounds how long a step that must not be dropped
	// (see retryStore) waits for the database to come back.
	storeOutageWait = 30 * time.Second
)

// retryStore runs op, a database step that must not be dropped halfway
// through a call (releasing a reservation an open no longer needs,
// recording an asset whose object is assembled, moving a claimed session
// on), again while the database is unreachable, for storeOutageWait at
// most: dropping it would leave a reservation held for a day, or a session
// stuck completing for staleCompletion with its object orphaned. Refusals
// (*server.Error) and failures while the database answers are returned at
// once (the latter after one more try). It ignores the request's
// cancellation: a client that went away must not leave the state half
// changed either.
func (s *Server) retryStore(ctx context.Context, step string, op func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(storeOutageWait)
	delay := 100 * time.Millisecond
	answered := false // the database answered after the previous failure
	for {
		err := op(ctx)
		if err == nil || server.ErrorCode(err) != server.EInternal {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		up := s.store.Ping(pctx) == nil
		cancel()
		if (up && answered) || time.Now().After(deadline) {
			return err
		}
		answered = up
		s.log.Warn("database step failed; retrying", "step", step, "database_up", up, "err", err)
		time.Sleep(delay)
		delay = min(2*delay, 2*time.Second)
	}
}

// workersFor is the strategy a tier gets.
func workersFor(t server.Tier) (suggested, ceiling int) {
	if t.JettySpeedEnabled {
		return jettySpeedWorkers, jettySpeedMaxWorkers
	}
	return 1, 1
}

// DefaultStreamLease is how long a chunk upload's slot under its
// session's ceiling lives without renewal (see Config.StreamLease).
const DefaultStreamLease = 30 * time.Second

// takeStream takes one of a session's ceiling slots for a chunk upload,
// through the Semaphore every instance shares (server/redis with
// REDIS_URL, in-process otherwise). ok is false when the ceiling is held.
// The slot is renewed every third of its lease while the chunk streams,
// so it lapses within a lease of this process dying; release gives it
// back. A Semaphore that fails (Redis down) fails open, as the rate
// limits do: an outage of Redis must not take uploads down with it.
func (s *Server) takeStream(ctx context.Context, sessionID string, ceiling int) (release func(), ok bool) {
	lease := s.streamLease
	id, ok, err := s.streams.Acquire(ctx, sessionID, ceiling, lease)
	if err != nil {
		s.log.Warn("stream ceiling unavailable, allowing the chunk", "session", sessionID, "err", err)
		s.metrics.streamsDown.Inc()
		return func() {}, true
	}
	if !ok {
		return nil, false
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		renew := time.NewTicker(max(lease/3, time.Millisecond))
		defer renew.Stop()
		for s.renewStream(ctx, stop, renew.C, sessionID, id, lease) {
		}
	}()
	return func() {
		close(stop)
		<-done
		if err := s.streams.Release(context.WithoutCancel(ctx), sessionID, id); err != nil {
			s.log.Warn("stream slot not released; it lapses with its lease", "session", sessionID, "lease", lease, "err", err)
		}
	}, true
}

// renewStream waits for the next tick and renews the slot; false when
// the chunk is done (stop) or the slot lapsed (it is not taken back).
func (s *Server) renewStream(ctx context.Context, stop <-chan struct{}, tick <-chan time.Time, sessionID, id string, lease time.Duration) bool {
	select {
	case <-stop:
		return false
	case <-tick:
	}
	held, err := s.streams.Renew(context.WithoutCancel(ctx), sessionID, id, lease)
	switch {
	case err != nil:
		s.log.Warn("stream slot not renewed", "session", sessionID, "err", err)
	case !held:
		s.log.Warn("stream slot lapsed while its chunk streamed", "session", sessionID)
		return false
	}
	return true
}

// manifestCache keeps parsed manifests of recent sessions so chunk PUTs
// do not parse up to a megabyte of JSON each. An entry is used only for
// the very manifest it was parsed from (a keyed hash of the bytes the
// store holds): a stream session's manifest is replaced when a failed
// completion is tried again with another one (SetSessionManifest),
// through whichever instance, so the session's id alone does not name
// one manifest.
type manifestCache struct {
	mu   sync.Mutex
	seed maphash.Seed
	m    map[string]cachedManifest
}

type cachedManifest struct {
	sum uint64 // maphash of the manifest's bytes
	m   *protocol.Manifest
}

const manifestCacheSize = 256

func (c *manifestCache) get(s server.UploadSession) (*protocol.Manifest, error) {
	c.mu.Lock()
	if c.m == nil {
		c.seed = maphash.MakeSeed()
		c.m = map[string]cachedManifest{}
	}
	seed := c.seed
	e, ok := c.m[s.ID]
	c.mu.Unlock()
	sum := maphash.Bytes(seed, s.Manifest)
	if ok && e.sum == sum {
		return e.m, nil
	}
	m, err := protocol.ParseManifest(s.Manifest)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if _, ok := c.m[s.ID]; !ok && len(c.m) >= manifestCacheSize {
		for k := range c.m { // evict one at random
			delete(c.m, k)
			break
		}
	}
	c.m[s.ID] = cachedManifest{sum: sum, m: m}
	c.mu.Unlock()
	return m, nil
}

// handleOpenSession answers POST /api/jetty/sessions.
func (s *Server) handleOpenSession(w http.ResponseWriter, r *http.Request, acct server.Account) {
	if s.jettySpeedOff {
		s.writeError(w, r, errJettySpeedOff)
		return
	}
	ctx := r.Context()
	var req protocol.OpenRequest
	// A manifest (up to 4 MiB) may come slowly: after authentication its
	// body gets the upload bodies' idle timeout instead of the total one.
	r.Body = idleread.Body(w, r, s.bodyIdle)
	if err := decodeJSONLimit(w, r, &req, protocol.MaxManifestBody); err != nil {
		s.writeError(w, r, err)
		return
	}
	if (req.Manifest == nil) == (req.Stream == nil) {
		s.writeError(w, r, server.Errorf(server.EInvalid, "send either \"manifest\" or \"stream\""))
		return
	}
	if err := checkCacheKey(req.CacheKey); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.TTL < 0 || req.TTL > 10*365*24*3600 {
		s.writeError(w, r, server.Errorf(server.EInvalid, "ttl must be 0..315360000 seconds"))
		return
	}
	pipeline, err := server.NormalizePipelineID(req.PipelineID)
	if err != nil {
		s.writeError(w, r, server.Errorf(server.EInvalid, "agentcache_pipeline_id: %s", server.ErrorMessage(err)))
		return
	}
	t, err := s.tier(ctx, acct.Tier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sess := server.UploadSession{
		AccountID:   acct.ID,
		ContentType: req.ContentType,
		CacheKey:    req.CacheKey,
		TTLSeconds:  req.TTL,
		PipelineID:  pipeline,
		ExpiresAt:   s.now().Add(sessionTTL),
	}
	var reserve int64
	if m := req.Manifest; m != nil {
		if err := validateManifest(m); err != nil {
			s.writeError(w, r, err)
			return
		}
		if m.Size > t.MaxFileSizeBytes() {
			s.writeError(w, r, s.tooLarge(ctx, m.Size, t, true))
			return
		}
		// Content the account already holds: a new asset, no byte moves.
		if a, err := s.heldContent(ctx, acct.ID, m); err == nil {
			linked, err := s.store.LinkAsset(ctx, server.NewAsset{
				AccountID: acct.ID, Bucket: a.Bucket, Filename: server.CleanPath(m.Name),
				ContentType: req.ContentType, Size: m.Size, SHA256: m.SHA256, CacheKey: req.CacheKey,
				PipelineID: pipeline, ExpiresAt: s.expiry(req.TTL), UploadedVia: "jettyspeed",
				ContentID: a.ContentID, SHA256Verified: a.ContentID == m.SHA256,
			})
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			s.countUpload(acct, linked.Size, dedupAtOpen)
			body := s.newAssetBody(r, linked)
			writeJSON(w, http.StatusOK, protocol.OpenResponse{Deduplicated: true, Asset: &body})
			return
		} else if server.ErrorCode(err) != server.ENotFound {
			s.writeError(w, r, err)
			return
		}
		// A session for the same content that can take it on (open, or its
		// completion died with its server): resume it. Only the same chunk
		// list resumes; a session that declared the same whole-file hash
		// for other chunks is not this upload's.
		if existing, err := s.resumableSession(ctx, acct.ID, m, req.CacheKey, pipeline); err == nil {
			body, err := s.sessionBody(ctx, r, existing, t)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, protocol.OpenResponse{Session: body})
			return
		} else if server.ErrorCode(err) != server.ENotFound {
			s.writeError(w, r, err)
			return
		}
		raw, _ := jsonMarshal(m)
		sess.Manifest, sess.SHA256, sess.Size = raw, m.SHA256, m.Size
		sess.ChunkSize, sess.ChunkCount = m.ChunkSize, len(m.Chunks)
		sess.Filename = server.CleanPath(m.Name)
		reserve = m.Size
		if reserve > acct.StorageQuotaBytes()-acct.StorageUsedBytes-acct.StorageReservedBytes {
			s.writeError(w, r, s.overQuota(ctx, reserve, acct))
			return
		}
		if err := s.checkRoom(ctx, m.Size, m.ChunkSize); err != nil {
			s.writeError(w, r, err)
			return
		}
	} else {
		cs := req.Stream.ChunkSize
		if cs < protocol.MinChunkSize || cs > protocol.MaxChunkSize {
			s.writeError(w, r, badManifest("stream chunk_size %d is outside %d..%d bytes", cs, protocol.MinChunkSize, protocol.MaxChunkSize))
			return
		}
		sess.Size, sess.ChunkSize = -1, cs
		sess.Filename = server.CleanPath(req.Stream.Name)
		if ref := req.Stream.Ref; ref != "" {
			if !protocol.ValidClientRef(ref) {
				s.writeError(w, r, server.Errorf(server.EInvalid, "stream ref must be 16..64 characters of A-Z, a-z, 0-9, '-' and '_'"))
				return
			}
			// The client's session from an open whose answer it lost.
			existing, err := s.store.OpenSessionByRef(ctx, acct.ID, ref, s.now())
			switch {
			case err == nil:
				if existing.ChunkSize != cs || (req.Stream.Size > 0 && existing.Reserved != req.Stream.Size) {
					s.writeError(w, r, server.Errorf(server.EConflict, "stream ref %s names another open upload (chunk size %d, %d bytes reserved); choose a new ref", ref, existing.ChunkSize, existing.Reserved))
					return
				}
				body, err := s.sessionBody(ctx, r, existing, t)
				if err != nil {
					s.writeError(w, r, err)
					return
				}
				body.Size = req.Stream.Size
				writeJSON(w, http.StatusOK, protocol.OpenResponse{Session: body})
				return
			case server.ErrorCode(err) != server.ENotFound:
				s.writeError(w, r, err)
				return
			}
			sess.ClientRef = ref
		}
		free := acct.StorageQuotaBytes() - acct.StorageUsedBytes - acct.StorageReservedBytes
		if size := req.Stream.Size; size != 0 {
			// A sized session (the pipelined path): exactly size bytes
			// reserved, every limit checked before a byte moves.
			switch {
			case size < 0:
				s.writeError(w, r, badManifest("stream size %d is negative; leave it out for a stream of unknown length", size))
				return
			case size > t.MaxFileSizeBytes():
				s.writeError(w, r, s.tooLarge(ctx, size, t, true))
				return
			case protocol.NumChunks(size, cs) > protocol.MaxChunks:
				s.writeError(w, r, badManifest("%d bytes in chunks of %d is more than %d chunks: use a larger chunk size", size, cs, protocol.MaxChunks))
				return
			case size > free:
				s.writeError(w, r, s.overQuota(ctx, size, acct))
				return
			}
			if err := s.checkRoom(ctx, size, cs); err != nil {
				s.writeError(w, r, err)
				return
			}
			reserve = size
		} else {
			reserve = min(t.MaxFileSizeBytes(), free)
			if reserve <= 0 {
				s.writeError(w, r, s.overQuota(ctx, 1, acct))
				return
			}
		}
	}
	created, err := s.createSession(ctx, acct, sess, reserve)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.sessionBody(ctx, r, created, t)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Stream != nil {
		body.Size = req.Stream.Size
	}
	s.metrics.sessions.WithLabelValues("opened").Inc()
	writeJSON(w, http.StatusCreated, protocol.OpenResponse{Session: body})
}

func (s *Server) expiry(ttl int64) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return s.now().Add(time.Duration(ttl) * time.Second)
}

// createSession reserves the bytes, starts the multipart upload, records
// the pending object and the session; on failure it undoes what it did.
func (s *Server) createSession(ctx context.Context, acct server.Account, sess server.UploadSession, reserve int64) (server.UploadSession, error) {
	key, err := server.NewObjectKey(acct.UserID, sess.Filename, s.now())
	if err != nil {
		return sess, err
	}
	sess.ObjectKey = key
	undo := []func(){}
	fail := func(err error) (server.UploadSession, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return server.UploadSession{}, err
	}
	bg := context.WithoutCancel(ctx)
	if reserve > 0 {
		res, err := s.store.Reserve(ctx, acct.ID, reserve, sessionTTL)
		if err != nil {
			return fail(err)
		}
		sess.ReservationID, sess.Reserved = res.ID, reserve
		undo = append(undo, func() {
			err := s.retryStore(bg, "release reservation", func(ctx context.Context) error { return s.store.ReleaseReservation(ctx, res.ID) })
			if err != nil {
				s.log.Warn("release reservation of a failed open; it expires with the session", "reservation", res.ID, "err", err)
			}
		})
	}
	if sess.Size != 0 {
		var id string
		var err error
		if su, ok := s.blobs.(blob.SizedUploader); ok && sess.ChunkSize > 0 {
			// Chunks are written in place: completing copies nothing.
			id, err = su.CreateUploadSized(ctx, key, sess.ContentType, sess.ChunkSize)
		} else {
			id, err = s.blobs.CreateUpload(ctx, key, sess.ContentType)
		}
		if err != nil {
			return fail(fmt.Errorf("create upload: %w", err))
		}
		sess.UploadID = id
		undo = append(undo, func() { s.blobs.AbortUpload(bg, key, id) })
	}
	if err := s.store.AddPendingObject(ctx, key, sess.UploadID, sess.ExpiresAt); err != nil {
		return fail(err)
	}
	created, err := s.store.CreateSession(ctx, sess)
	if err != nil {
		return fail(err) // the pending record expires with the session
	}
	return created, nil
}

// heldContent finds the account's asset for the content a manifest
// describes, by a content id the server verified: the whole-file SHA-256
// (a one-chunk file's, or any file the server hashed whole), else the
// chunk list. The manifest's sizes must agree. ENotFound when there is
// none.
func (s *Server) heldContent(ctx context.Context, accountID string, m *protocol.Manifest) (server.Asset, error) {
	ids := []string{m.SHA256}
	if len(m.Chunks) > 1 {
		ids = append(ids, m.ChunkListID())
	}
	for _, id := range ids {
		a, err := s.store.AssetByContent(ctx, accountID, id)
		if err == nil && a.Size == m.Size {
			return a, nil
		}
		if err != nil && server.ErrorCode(err) != server.ENotFound {
			return a, err
		}
	}
	return server.Asset{}, server.Errorf(server.ENotFound, "no such content")
}

// resumableSession finds a session of the account that can take this
// upload on: the same size and whole-file hash, and the same chunk list,
// for the same entry (file name, cache key and pipeline: the same file
// under another name is another file, with a row of its own).
func (s *Server) resumableSession(ctx context.Context, accountID string, m *protocol.Manifest, cacheKey, pipeline string) (server.UploadSession, error) {
	sess, err := s.store.OpenSessionFor(ctx, accountID, m.SHA256, m.Size, s.now())
	if err != nil {
		return sess, err
	}
	if sess.Filename != server.CleanPath(m.Name) || sess.CacheKey != cacheKey || sess.PipelineID != pipeline {
		return sess, server.Errorf(server.ENotFound, "no resumable session for this name")
	}
	theirs, err := s.manifests.get(sess)
	if err != nil {
		return sess, err
	}
	if theirs.ChunkListID() != m.ChunkListID() {
		return sess, server.Errorf(server.ENotFound, "no resumable session for these chunks")
	}
	return sess, nil
}

// heldParts lists the parts storage holds for a session. assembled
// reports that the session's multipart upload is gone because an earlier
// completion of this session assembled the object (it is there, with the
// session's size) and then died before recording it: everything is held.
func (s *Server) heldParts(ctx context.Context, sess server.UploadSession) (held map[int]blob.Part, assembled bool, err error) {
	held = map[int]blob.Part{}
	if sess.UploadID == "" {
		return held, false, nil
	}
	parts, err := s.blobs.ListParts(ctx, sess.ObjectKey, sess.UploadID)
	if errors.Is(err, blob.ErrNotFound) && s.assembledEarlier(ctx, sess) {
		return held, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list parts: %w", err)
	}
	for _, p := range parts {
		held[p.Number-1] = p
	}
	return held, false, nil
}

// assembledEarlier reports whether a completing session's object exists
// with the session's size while its upload is gone: a completion that
// died after the store assembled the parts. The object key is the
// session's own, written only by its completion, from parts verified
// against its manifest.
func (s *Server) assembledEarlier(ctx context.Context, sess server.UploadSession) bool {
	if sess.State != server.SessionCompleting || sess.Size < 0 {
		return false
	}
	info, err := s.blobs.Stat(ctx, sess.ObjectKey)
	return err == nil && info.Size == sess.Size
}

// missingChunks compares a manifest with the parts held.
func missingChunks(m *protocol.Manifest, held map[int]blob.Part) []int {
	missing := []int{}
	for _, c := range m.Chunks {
		p, ok := held[c.Index]
		if !ok || p.Size != c.Size || hex.EncodeToString(p.SHA256) != c.SHA256 {
			if c.Size == 0 && len(m.Chunks) == 1 {
				continue // an empty file has nothing to send
			}
			missing = append(missing, c.Index)
		}
	}
	return missing
}

// sessionBody describes an open session with a fresh token.
func (s *Server) sessionBody(ctx context.Context, r *http.Request, sess server.UploadSession, t server.Tier) (*protocol.Session, error) {
	workers, ceiling := workersFor(t)
	missing := []int{}
	if sess.Manifest != nil {
		m, err := s.manifests.get(sess)
		if err != nil {
			return nil, err
		}
		held, assembled, err := s.heldParts(ctx, sess)
		if err != nil {
			return nil, err
		}
		if !assembled {
			missing = missingChunks(m, held)
		}
	}
	tok, exp := s.issueToken(sess, ceiling)
	return &protocol.Session{
		ID:             sess.ID,
		ExpiresAt:      sess.ExpiresAt.UTC(),
		ChunkURL:       s.chunkURL(r, sess.ID),
		UploadToken:    tok,
		TokenExpiresAt: exp,
		Missing:        missing,
		Strategy:       protocol.Strategy{Workers: workers, MaxWorkers: ceiling, ChunkSize: sess.ChunkSize},
	}, nil
}

// chunkURL is the chunk PUT address of session id at this server.
func (s *Server) chunkURL(r *http.Request, id string) string {
	return s.baseURL(r) + "/api/jetty/sessions/" + url.PathEscape(id) + "/chunks/{index}"
}

func (s *Server) issueToken(sess server.UploadSession, ceiling int) (string, time.Time) {
	exp := s.now().Add(tokenTTL)
	if exp.After(sess.ExpiresAt) {
		exp = sess.ExpiresAt
	}
	exp = exp.UTC().Truncate(time.Second)
	return s.tokens.Sign(uploadtoken.Claims{SessionID: sess.ID, AccountID: sess.AccountID, MaxWorkers: ceiling, Expires: exp.Unix()}), exp
}

// openSession loads a session of acct that can still take chunks.
func (s *Server) openSession(ctx context.Context, accountID, id string) (server.UploadSession, error) {
	sess, err := s.store.SessionByID(ctx, accountID, id)
	if err != nil {
		if server.ErrorCode(err) == server.ENotFound {
			return sess, server.Errorf(server.ENotFound, "no such upload session")
		}
		return sess, err
	}
	return sess, chunkadmit.Live(sess.State, sess.ExpiresAt, s.now())
}

// handleRefreshToken answers POST /api/jetty/sessions/{id}/token.
func (s *Server) handleRefreshToken(w http.ResponseWriter, r *http.Request, acct server.Account) {
	sess, err := s.openSession(r.Context(), acct.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.tier(r.Context(), acct.Tier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	_, ceiling := workersFor(t)
	tok, exp := s.issueToken(sess, ceiling)
	writeJSON(w, http.StatusOK, protocol.Token{UploadToken: tok, TokenExpiresAt: exp})
}

// chunkSession is the origin's lookup for chunk admission
// (server/chunkadmit): the session of the token's account, then the
// account, which must be usable (a suspended or deleted account's
// sessions take no more bytes, from the next chunk on, though its token
// works for 15 min). The same order as a relay's lookup at the origin
// (handleEdgeSession), so that both answer alike.
func (s *Server) chunkSession(ctx context.Context, claims uploadtoken.Claims) (server.UploadSession, chunkadmit.Session, error) {
	if info := requestInfoFrom(ctx); info != nil {
		info.accountID = claims.AccountID
	}
	sess, view, err := s.sessionView(ctx, claims)
	if err != nil {
		return sess, view, err
	}
	if _, err := s.activeAccount(ctx, claims.AccountID); err != nil {
		return sess, view, err
	}
	return sess, view, nil
}

// sessionView looks up the session a token names, and what admission
// reads of it.
func (s *Server) sessionView(ctx context.Context, claims uploadtoken.Claims) (server.UploadSession, chunkadmit.Session, error) {
	sess, err := s.store.SessionByID(ctx, claims.AccountID, claims.SessionID)
	if err != nil {
		if server.ErrorCode(err) == server.ENotFound {
			err = server.Errorf(server.ENotFound, "no such upload session")
		}
		return sess, chunkadmit.Session{}, err
	}
	view := chunkadmit.Session{State: sess.State, ExpiresAt: sess.ExpiresAt, ChunkSize: sess.ChunkSize, Reserved: sess.Reserved}
	if sess.Manifest != nil {
		m, err := s.manifests.get(sess)
		if err != nil {
			return sess, view, err
		}
		view.Chunks = chunkadmit.ManifestChunks(m.Chunks)
	}
	return sess, view, nil
}

// handlePutChunk answers PUT /api/jetty/sessions/{id}/chunks/{index}:
// admitted (server/chunkadmit, as on relays), the bytes stream into
// storage while their SHA-256 is checked; a mismatch stores nothing.
func (s *Server) handlePutChunk(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var sess server.UploadSession
	lookup := func(ctx context.Context, claims uploadtoken.Claims) (chunkadmit.Session, error) {
		var view chunkadmit.Session
		var err error
		sess, view, err = s.chunkSession(ctx, claims)
		return view, err
	}
	c, err := chunkadmit.Admit(r, s.tokens, s.now(), lookup)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	release, ok := s.takeStream(ctx, sess.ID, max(c.Claims.MaxWorkers, 1))
	if !ok {
		s.metrics.chunks.WithLabelValues("too_many_streams").Inc()
		s.writeError(w, r, &rateLimitError{
			err:        server.Errorf(server.ETooManyStreams, "more than %d chunk uploads at once on this session (your tier's ceiling); retry after the Retry-After seconds", c.Claims.MaxWorkers),
			retryAfter: time.Second,
		})
		return
	}
	defer release()
	body := c.Body(w, r, s.bodyIdle, false) // the blob store checks the hash
	if _, err := s.blobs.PutPart(ctx, sess.ObjectKey, sess.UploadID, c.Index+1, body, c.Size, c.Digest); err != nil {
		if ref := body.Failed(ctx, err, s.now(), lookup); ref != nil {
			if server.ErrorCode(ref) == server.EChecksumMismatch {
				s.metrics.chunks.WithLabelValues("checksum_mismatch").Inc()
			}
			err = ref
		} else {
			err = fmt.Errorf("put part: %w", err) // an outage (503) or a bug (500)
		}
		if server.ErrorCode(err) == server.EInsufficientStorage {
			// The store refused before reading the chunk: read it
			// out so the client reads this answer, not a reset.
			body.Discard()
		}
		s.writeError(w, r, err)
		return
	}
	s.metrics.chunks.WithLabelValues("stored").Inc()
	s.metrics.uploadedBytes.Add(float64(c.Size))
	writeJSON(w, http.StatusOK, protocol.ChunkAck{Index: c.Index, Size: c.Size, SHA256: c.SHA256})
}

// handleSessionStatus answers GET /api/jetty/sessions/{id}.
func (s *Server) handleSessionStatus(w http.ResponseWriter, r *http.Request, acct server.Account) {
	ctx := r.Context()
	sess, err := s.store.SessionByID(ctx, acct.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := protocol.SessionState{ID: sess.ID, State: string(sess.State), ExpiresAt: sess.ExpiresAt.UTC(), AssetID: sess.AssetID, Held: []int{}, Missing: []int{}}
	if sess.State == server.SessionOpen && !s.now().Before(sess.ExpiresAt) {
		out.State = "expired"
	}
	if sess.State == server.SessionOpen || sess.State == server.SessionCompleting {
		held, assembled, err := s.heldParts(ctx, sess)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if assembled {
			for i := range sess.ChunkCount {
				held[i] = blob.Part{}
			}
		}
		for i := 0; i < protocol.MaxChunks && len(out.Held) < len(held); i++ {
			if _, ok := held[i]; ok {
				out.Held = append(out.Held, i)
			}
		}
		if sess.Manifest != nil && !assembled {
			m, err := s.manifests.get(sess)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			out.Missing = missingChunks(m, held)
		}
	}
	if out.State == protocol.StateOpen {
		t, err := s.tier(ctx, acct.Tier)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		workers, ceiling := workersFor(t)
		out.ChunkURL = s.chunkURL(r, sess.ID)
		out.Strategy = &protocol.Strategy{Workers: workers, MaxWorkers: ceiling, ChunkSize: sess.ChunkSize}
	}
	writeJSON(w, http.StatusOK, out)
}

type missingError struct {
	err     *server.Error
	missing []int
}

func (e *missingError) Error() string { return e.err.Error() }
func (e *missingError) Unwrap() error { return e.err }

// handleComplete answers POST /api/jetty/sessions/{id}/complete.
func (s *Server) handleComplete(w http.ResponseWriter, r *http.Request, acct server.Account) {
	ctx := r.Context()
	id := r.PathValue("id")
	var req protocol.CompleteRequest
	if r.ContentLength != 0 {
		r.Body = idleread.Body(w, r, s.bodyIdle)
		if err := decodeJSONLimit(w, r, &req, protocol.MaxManifestBody); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	sess, claimed, err := s.store.BeginCompletion(ctx, acct.ID, id, s.now(), s.completionLease)
	if err != nil {
		if server.ErrorCode(err) == server.EGone {
			err = server.Errorf(server.EGone, "upload session expired; start the upload again")
		}
		s.writeError(w, r, err)
		return
	}
	if !claimed {
		// Another completion holds the session: wait for its result, or
		// take over when its lease runs out (its server died).
		sess, claimed, err = s.awaitCompletion(ctx, acct.ID, sess)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !claimed {
			s.writeCompleted(w, r, acct, sess)
			return
		}
	}
	// The completion is claimed: it runs to its end even when the client
	// goes away (killed, disconnected, its attempt timed out). Cancelled
	// half way, it could leave the parts assembled into the object and
	// the session reopened on an upload that no longer exists, which
	// could then be neither resumed nor completed. A retry or a resume
	// finds the result. Its lease is renewed while it runs; if this
	// server dies, the lease runs out and the next complete (or the
	// resumed upload's open) takes the session over.
	stopRenewing := s.renewLease(sess.ID)
	asset, dedup, err := s.complete(context.WithoutCancel(ctx), acct, sess, req.Manifest)
	stopRenewing()
	if err != nil {
		var gone *sessionEnded
		if !errors.As(err, &gone) {
			if ferr := s.retryStore(ctx, "fail completion", func(ctx context.Context) error { return s.store.FailCompletion(ctx, sess.ID) }); ferr != nil {
				s.log.Warn("reopen session after failed completion", "session", sess.ID, "err", ferr)
			}
		}
		var me *missingError
		if errors.As(err, &me) {
			writeJSON(w, protocol.StatusFor(server.EChunksMissing), protocol.ErrorBody{Error: me.err.Message, Code: server.EChunksMissing, Missing: me.missing})
			if info := requestInfoFrom(ctx); info != nil {
				info.errMsg = me.err.Message
			}
			return
		}
		s.writeError(w, r, err)
		return
	}
	if err := s.retryStore(ctx, "finish completion", func(ctx context.Context) error { return s.store.FinishCompletion(ctx, sess.ID, asset.ID, dedup) }); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.metrics.sessions.WithLabelValues("completed").Inc()
	s.countUpload(acct, asset.Size, dedupStage(dedup, dedupAtUpload))
	body := s.newAssetBody(r, asset)
	writeJSON(w, http.StatusOK, protocol.OpenResponse{Deduplicated: dedup, Asset: &body})
}

// renewLease renews the completion lease of session id every third of
// the lease until the returned stop is called (and returns).
func (s *Server) renewLease(id string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	every := max(s.completionLease/3, time.Millisecond)
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), every)
			err := s.store.RenewCompletion(ctx, id, s.now().Add(s.completionLease))
			cancel()
			if server.ErrorCode(err) == server.EConflict {
				return // the session moved on (completed by CreateAsset)
			}
			if err != nil {
				s.log.Warn("renew completion lease", "session", id, "err", err)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// sessionEnded is a completion error after which the session is no
// longer completing (it was aborted): it is not handed back as open.
type sessionEnded struct{ err error }

func (e *sessionEnded) Error() string { return e.err.Error() }
func (e *sessionEnded) Unwrap() error { return e.err }

// awaitCompletion waits (up to a minute) for another request completing
// the same session. When that completion's lease runs out (its server
// died), it takes the session over and returns it with claimed true: the
// caller completes it.
func (s *Server) awaitCompletion(ctx context.Context, accountID string, sess server.UploadSession) (server.UploadSession, bool, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		switch sess.State {
		case server.SessionCompleted:
			return sess, false, nil
		case server.SessionAborted:
			return sess, false, server.Errorf(server.EGone, "upload session was aborted; start the upload again")
		case server.SessionOpen:
			return sess, false, server.Errorf(server.EConflict, "completion failed in a concurrent request; retry")
		case server.SessionCompleting:
			if sess.CompletionDead(s.now()) {
				taken, claimed, err := s.store.BeginCompletion(ctx, accountID, sess.ID, s.now(), s.completionLease)
				if err != nil {
					return sess, false, err
				}
				if claimed {
					s.log.Info("took over a completion whose lease ran out", "session", sess.ID)
					return taken, true, nil
				}
				sess = taken
				continue
			}
		}
		if time.Now().After(deadline) {
			return sess, false, server.Errorf(server.EConflict, "upload session is still being completed; retry later")
		}
		select {
		case <-ctx.Done():
			return sess, false, ctx.Err()
		case <-time.After(time.Duration(100+rand.IntN(100)) * time.Millisecond):
		}
		var err error
		if sess, err = s.store.SessionByID(ctx, accountID, sess.ID); err != nil {
			return sess, false, err
		}
	}
}

func (s *Server) writeCompleted(w http.ResponseWriter, r *http.Request, acct server.Account, sess server.UploadSession) {
	asset, err := s.store.AssetByID(r.Context(), acct.ID, sess.AssetID)
	if err != nil {
		s.writeError(w, r, assetNotFound(err))
		return
	}
	body := s.newAssetBody(r, asset)
	writeJSON(w, http.StatusOK, protocol.OpenResponse{Deduplicated: sess.Deduplicated, Asset: &body})
}

// complete checks every chunk against storage's own record, assembles the
// object, settles what the server verified of it and records the asset.
func (s *Server) complete(ctx context.Context, acct server.Account, sess server.UploadSession, streamManifest *protocol.Manifest) (server.Asset, bool, error) {
	held, assembled, err := s.heldParts(ctx, sess)
	if err != nil {
		return server.Asset{}, false, err
	}
	var m *protocol.Manifest
	if sess.Stream && !assembled && (streamManifest != nil || sess.Manifest == nil) {
		if streamManifest == nil {
			return server.Asset{}, false, server.Errorf(server.EInvalid, "a stream session is completed with its manifest")
		}
		if err := validateManifest(streamManifest); err != nil {
			return server.Asset{}, false, err
		}
		if streamManifest.ChunkSize != sess.ChunkSize && len(streamManifest.Chunks) > 1 {
			return server.Asset{}, false, badManifest("chunk_size %d differs from the session's %d", streamManifest.ChunkSize, sess.ChunkSize)
		}
		if streamManifest.Size > sess.Reserved {
			return server.Asset{}, false, server.Errorf(server.ETooLarge, "stream is %s, more than the %s reserved for it", units.HumanBytes(streamManifest.Size), units.HumanBytes(sess.Reserved))
		}
		raw, _ := jsonMarshal(streamManifest)
		if err := s.store.SetSessionManifest(ctx, sess.ID, raw, streamManifest.SHA256, streamManifest.Size, len(streamManifest.Chunks)); err != nil {
			return server.Asset{}, false, err
		}
		m = streamManifest
	} else {
		if m, err = s.manifests.get(sess); err != nil {
			return server.Asset{}, false, err
		}
		// Assembled by an earlier attempt: from the manifest it recorded,
		// which a stream's second manifest may not replace.
		if assembled && streamManifest != nil && (streamManifest.SHA256 != m.SHA256 || streamManifest.ChunkListID() != m.ChunkListID()) {
			return server.Asset{}, false, server.Errorf(server.EConflict, "this stream was already assembled from another manifest; complete it with the manifest sent before")
		}
	}
	if !assembled {
		if missing := missingChunks(m, held); len(missing) > 0 {
			return server.Asset{}, false, &missingError{
				err:     server.Errorf(server.EChunksMissing, "%d of %d chunks are not stored yet; send them and complete again", len(missing), len(m.Chunks)),
				missing: missing,
			}
		}
	}
	// whole is the SHA-256 of the object, where the store computed it
	// while writing it.
	var whole []byte
	switch {
	case m.Size == 0:
		info, sum, err := s.blobs.Put(ctx, sess.ObjectKey, strings.NewReader(""), 0, sess.ContentType)
		if err != nil {
			return server.Asset{}, false, fmt.Errorf("store empty object: %w", err)
		}
		whole = sum
		if info.SHA256 != nil {
			whole = info.SHA256
		}
	case assembled:
		s.log.Info("object was assembled by an earlier completion of this session", "session", sess.ID)
	default:
		parts := make([]blob.Part, len(m.Chunks))
		for i := range m.Chunks {
			parts[i] = held[i]
		}
		info, err := s.blobs.CompleteUpload(ctx, sess.ObjectKey, sess.UploadID, parts)
		switch {
		case errors.Is(err, blob.ErrNotFound) && s.assembledEarlier(ctx, sess):
			// A concurrent or earlier attempt assembled it meanwhile.
		case err != nil:
			return server.Asset{}, false, fmt.Errorf("complete upload: %w", err)
		default:
			whole = info.SHA256
		}
	}
	verified, contentID := contentIdentity(m, whole)
	if whole != nil && hex.EncodeToString(whole) != m.SHA256 {
		return server.Asset{}, false, s.refuseWholeFile(ctx, sess, hex.EncodeToString(whole), m.SHA256)
	}
	secs := s.now().Sub(sess.CreatedAt).Seconds()
	speed := 0.0
	if secs > 0 {
		speed = float64(m.Size) * 8 / 1e6 / secs
	}
	// The object is assembled (the multipart upload is gone): recording it
	// must not be dropped on a database outage.
	var asset server.Asset
	var dedup bool
	err = s.retryStore(ctx, "create asset", func(ctx context.Context) error {
		var err error
		asset, dedup, err = s.store.CreateAsset(ctx, server.NewAsset{
			AccountID: acct.ID, ObjectKey: sess.ObjectKey, Bucket: acct.S3Bucket, Filename: sess.Filename,
			ContentType: sess.ContentType, Size: m.Size, SHA256: m.SHA256, CacheKey: sess.CacheKey,
			PipelineID:     sess.PipelineID,
			SHA256Verified: verified, ContentID: contentID,
			ExpiresAt: s.expiry(sess.TTLSeconds), UploadedVia: "jettyspeed", UploadSpeedMbps: speed,
			SessionID: sess.ID, // completed with the asset, atomically
		}, sess.ReservationID)
		return err
	})
	if err != nil {
		return server.Asset{}, false, err
	}
	if dedup {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := s.blobs.Delete(cctx, sess.ObjectKey); err == nil {
			s.store.ObjectCollected(cctx, sess.ObjectKey)
		}
		cancel()
	}
	return asset, dedup, nil
}

// contentIdentity settles what the server verified of an assembled file
// (docs/protocol.md, "What the server verifies"): every chunk's size and
// SHA-256 always (storage checked each part), hence the chunk list; the
// whole-file SHA-256 when the file is one chunk (the file is its chunk)
// or the store hashed every byte in order while assembling (whole). The
// content id is the whole-file SHA-256 when verified, else the chunk-list
// id. The caller compares whole with the manifest first.
func contentIdentity(m *protocol.Manifest, whole []byte) (verified bool, contentID string) {
	if len(m.Chunks) == 1 || whole != nil {
		return true, m.SHA256
	}
	return false, m.ChunkListID()
}

// refuseWholeFile ends a completion whose assembled object does not hash
// to the manifest's whole-file SHA-256: the chunks were each right, the
// declared file hash was not. Nothing is recorded: the object is
// deleted, the session aborted and its reservation released (the parts
// went into the object, so there is nothing left to resume).
func (s *Server) refuseWholeFile(ctx context.Context, sess server.UploadSession, got, declared string) error {
	bg := context.WithoutCancel(ctx)
	s.metrics.chunks.WithLabelValues("checksum_mismatch").Inc()
	if err := s.blobs.Delete(bg, sess.ObjectKey); err != nil {
		s.log.Warn("delete object of a refused completion; the collector removes it at the session's expiry", "session", sess.ID, "err", err)
	}
	err := s.retryStore(bg, "fail completion", func(ctx context.Context) error { return s.store.FailCompletion(ctx, sess.ID) })
	if err == nil {
		_, err = s.store.AbortSession(bg, sess.AccountID, sess.ID)
	}
	if err == nil && sess.ReservationID != "" {
		err = s.retryStore(bg, "release reservation", func(ctx context.Context) error { return s.store.ReleaseReservation(ctx, sess.ReservationID) })
	}
	if err != nil {
		s.log.Warn("abort session after a whole-file hash mismatch; it expires with the session", "session", sess.ID, "err", err)
	}
	return &sessionEnded{err: server.Errorf(server.EChecksumMismatch,
		"the chunks received assemble into a file whose SHA-256 is %s, not the manifest's %s; nothing was stored and the session was aborted: upload the file again", got, declared)}
}

// handleAbort answers DELETE /api/jetty/sessions/{id}.
func (s *Server) handleAbort(w http.ResponseWriter, r *http.Request, acct server.Account) {
	ctx := r.Context()
	sess, err := s.store.AbortSession(ctx, acct.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	bg := context.WithoutCancel(ctx)
	if sess.UploadID != "" {
		if err := s.blobs.AbortUpload(bg, sess.ObjectKey, sess.UploadID); err != nil {
			s.log.Warn("abort upload; the collector will retry", "session", sess.ID, "err", err)
		}
	}
	if sess.ReservationID != "" {
		if err := s.store.ReleaseReservation(bg, sess.ReservationID); err != nil && server.ErrorCode(err) != server.ENotFound {
			s.log.Warn("release reservation", "session", sess.ID, "err", err)
		}
	}
	s.metrics.sessions.WithLabelValues("aborted").Inc()
	writeJSON(w, http.StatusOK, protocol.AbortResponse{Success: true, ID: sess.ID, State: string(sess.State)})
}
