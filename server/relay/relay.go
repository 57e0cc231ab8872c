// Package relay is the edge relay behind `jetty edge`: a stateless node
// that takes JettySpeed chunk PUTs for the origin.
//
// A relay keeps no database. It registers with the origin and heartbeats
// its load (chunks in flight, capacity) with requests signed by a key
// derived from JETTY_EDGE_SECRET; each heartbeat's answer carries the
// upload-token key, sealed with that secret, so the relay verifies upload
// tokens itself. For each session it asks the origin once (signed) for
// the manifest, the object key and the multipart upload id, and caches
// the answer briefly.
//
// A chunk is admitted as on the origin, by the same code (server/chunkadmit:
// the token, the session's state, the index, the hash header, the size
// against the manifest or a stream's reservation) before a byte is read,
// and every refusal is answered with the status protocol.StatusFor gives
// its code; then it is streamed while its SHA-256 is computed:
//
//   - mode "s3" (the relay has the S3 settings): straight into the
//     session's multipart upload as a part carrying its SHA-256, which the
//     store verifies; a mismatch stores nothing;
//   - mode "relay" (no S3 settings, or an origin keeping files): forwarded
//     to the origin's own chunk endpoint with the same token; when the
//     hash differs the forwarded body is cut before its end, so the origin
//     (which checks the hash too) stores nothing.
//
// On shutdown the relay heartbeats "draining" (the origin stops offering
// it at once), answers new chunks 503 edge_draining (clients move them to
// another route at once), waits for the chunks in flight, deregisters and
// stops.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/internal/secrets"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/protocol/edgeauth"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/chunkadmit"
	"github.com/jettythunder/jetty/server/probe"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

// Defaults of Config.
const (
	DefaultCapacity     = 64
	DefaultInterval     = 2 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	// DefaultSessionCache is how long a session lookup is reused: a
	// suspension, deletion or completion reaches a relay at most this late.
	DefaultSessionCache = 30 * time.Second
)

// Config is a relay's configuration.
type Config struct {
	// Origin is the origin server's base URL (required).
	Origin string
	// PublicURL is the base URL clients are told to use (a proxy or load
	// balancer in front); default: the listener's address.
	PublicURL string
	// Location is the catalogue id the relay serves ("" for none).
	Location string
	// ID names the relay; default "edge_" and random hex.
	ID string
	// Secret is JETTY_EDGE_SECRET, the same as the origin's (required).
	Secret string
	// Capacity is how many chunks it takes at once (DefaultCapacity);
	// more are answered 503 so that clients use another route.
	Capacity int
	// Interval is the heartbeat period (DefaultInterval).
	Interval time.Duration
	// DrainTimeout bounds the wait for chunks in flight at shutdown.
	DrainTimeout time.Duration
	// SessionCache is how long a session lookup is reused
	// (DefaultSessionCache).
	SessionCache time.Duration
	// BodyIdle is how long a chunk body may send nothing before the
	// request fails with 408 and frees its slot, and how long any other
	// request body may take in all (idleread.DefaultIdle, 30 s).
	BodyIdle time.Duration
	// Conns caps the relay's connections (see internal/connguard); zero
	// fields follow the file-descriptor limit.
	Conns connguard.Limits
	// S3, when set, makes the relay write parts to the S3 backend itself
	// (mode s3); otherwise chunks are forwarded to the origin.
	S3 *s3blob.Config
	// Blobs replaces the S3 store built from S3 (tests).
	Blobs blob.Store
	// HTTP talks to the origin; nil: a client with no overall timeout.
	HTTP *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
	// Version is reported in heartbeats.
	Version string
}

// Relay is a running edge relay.
type Relay struct {
	// OnRegistered, when set before Serve, is called once the relay is
	// registered and serving.
	OnRegistered func()

	cfg    Config
	origin *url.URL
	keys   *edgeauth.Keys
	blobs  blob.Store
	mode   string
	hc     *http.Client
	log    *slog.Logger

	ready    chan struct{} // closed once registered and serving
	done     chan error    // Serve's result, for Start and Wait
	signer   atomic.Pointer[uploadtoken.Signer]
	inflight atomic.Int64
	draining atomic.Bool
	wg       sync.WaitGroup // chunks in flight

	mu       sync.Mutex
	sessions map[string]*sessionEntry

	stored   atomic.Int64 // chunks taken, and refused, reported when the relay stops
	refused  atomic.Int64
	lastBeat atomic.Int64 // unix nanos of the last accepted heartbeat

	storedBytes atomic.Int64 // payload bytes of the chunks taken
	rateMu      sync.Mutex   // the heartbeats' throughput measure
	rateBytes   int64        // storedBytes at the previous heartbeat
	rateAt      time.Time    // when the previous heartbeat was sent
}

type sessionEntry struct {
	ready   chan struct{}
	info    protocol.SessionInfo
	err     error
	fetched time.Time
}

// New checks cfg and makes a relay (nothing is started).
func New(ctx context.Context, cfg Config) (*Relay, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Origin, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--origin must be the origin server's http(s) base URL, got %q", cfg.Origin)
	}
	if err := secrets.Check("JETTY_EDGE_SECRET", cfg.Secret); err != nil {
		return nil, fmt.Errorf("%w (the same on the relay and the server)", err)
	}
	keys, err := edgeauth.NewKeys(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("%w: set it to the server's JETTY_EDGE_SECRET", err)
	}
	if cfg.PublicURL != "" {
		pu, err := url.Parse(cfg.PublicURL)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil {
			return nil, fmt.Errorf("--public-url must be an absolute http(s) URL, got %q", cfg.PublicURL)
		}
		cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	}
	if cfg.ID == "" {
		var b [8]byte
		rand.Read(b[:])
		cfg.ID = "edge_" + hex.EncodeToString(b[:])
	}
	if len(cfg.ID) > 128 || strings.ContainsAny(cfg.ID, "/?#%, \t\r\n=") {
		return nil, fmt.Errorf("relay id %q: at most 128 characters, no '/', '?', '#', '%%', ',', '=' or spaces", cfg.ID)
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.SessionCache <= 0 {
		cfg.SessionCache = DefaultSessionCache
	}
	r := &Relay{cfg: cfg, origin: u, keys: keys, hc: cfg.HTTP, log: cfg.Logger, sessions: map[string]*sessionEntry{}, mode: protocol.ModeRelay,
		ready: make(chan struct{}), done: make(chan error, 1)}
	if r.hc == nil {
		r.hc = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			WriteBufferSize:     256 << 10,
			ReadBufferSize:      64 << 10,
		}}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Blobs != nil:
		r.blobs, r.mode = cfg.Blobs, protocol.ModeS3
	case cfg.S3 != nil:
		st, err := s3blob.New(ctx, *cfg.S3)
		if err != nil {
			return nil, fmt.Errorf("object storage at LYVE_ENDPOINT: %w", err)
		}
		r.blobs, r.mode = st, protocol.ModeS3
	}
	return r, nil
}

// ID is the relay's id.
func (r *Relay) ID() string { return r.cfg.ID }

// Mode is protocol.ModeS3 or protocol.ModeRelay.
func (r *Relay) Mode() string { return r.mode }

// Handler serves chunk PUTs, probes and /healthz.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /api/jetty/sessions/{id}/chunks/{index}", r.handleChunk)
	mux.Handle("POST "+protocol.PathProbe, probe.Handler())
	mux.HandleFunc("GET /healthz", r.handleHealthz)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.refuse(w, server.Errorf(server.ENotFound, "a relay takes chunk PUTs (/api/jetty/sessions/{id}/chunks/{index}), probes and /healthz only"))
	})
	return mux
}

func (r *Relay) handleHealthz(w http.ResponseWriter, req *http.Request) {
	switch {
	case r.draining.Load():
		r.refuse(w, server.Errorf(protocol.CodeEdgeDraining, "this relay is shutting down"))
	case r.signer.Load() == nil:
		r.refuse(w, errNotRegistered)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "id": r.cfg.ID, "mode": r.mode, "inflight": r.inflight.Load(), "capacity": r.cfg.Capacity})
	}
}

// Serve runs the relay on ln until ctx ends: it registers (the first
// heartbeat must succeed within the interval's retries, else Serve fails
// with the origin's answer), heartbeats, serves, then drains and
// deregisters.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	if r.cfg.PublicURL == "" {
		r.cfg.PublicURL = listenURL(ln)
	}
	if err := r.register(ctx); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	guard := connguard.New(r.cfg.Conns, r.log)
	ln = guard.Install(srv, ln, r.cfg.BodyIdle)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	beatCtx, stopBeats := context.WithCancel(context.Background())
	beatsDone := make(chan struct{})
	go func() {
		defer close(beatsDone)
		r.heartbeatLoop(beatCtx)
	}()
	close(r.ready)
	if r.OnRegistered != nil {
		r.OnRegistered()
	}
	lim := guard.Limits()
	r.log.Info("jetty edge relay serving", "id", r.cfg.ID, "url", r.cfg.PublicURL, "origin", r.origin.String(), "mode", r.mode, "location", r.cfg.Location,
		"max_conns", lim.MaxConns, "max_unauthenticated_conns", lim.MaxUnauth)

	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	stopBeats()
	<-beatsDone
	r.drain(srv)
	if serveErr == nil {
		<-errc
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// Start runs Serve in the background and returns once the relay is
// registered and serving (nil), or with the error that stopped it first.
// Wait then returns Serve's result, after ctx ends.
func (r *Relay) Start(ctx context.Context, ln net.Listener) error {
	go func() { r.done <- r.Serve(ctx, ln) }()
	select {
	case <-r.ready:
		return nil
	case err := <-r.done:
		r.done <- err
		if err == nil {
			err = errors.New("relay stopped before it registered")
		}
		return err
	}
}

// Wait returns the result of the Serve that Start began.
func (r *Relay) Wait() error {
	err := <-r.done
	r.done <- err
	return err
}

// drain stops new chunks, tells the origin, waits for chunks in flight,
// deregisters and closes the server.
func (r *Relay) drain(srv *http.Server) {
	r.draining.Store(true)
	bctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := r.heartbeat(bctx); err != nil {
		r.log.Warn("draining heartbeat", "err", err)
	}
	cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.cfg.DrainTimeout):
		r.log.Warn("drain timed out with chunks in flight", "inflight", r.inflight.Load())
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := r.deregister(dctx); err != nil {
		r.log.Warn("deregister", "err", err)
	}
	cancel()
	// The chunks in flight are done: what is left are idle connections,
	// and connections opened but never used, which Shutdown would wait 5 s
	// for.
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if srv.Shutdown(sctx) != nil {
		srv.Close()
	}
	cancel()
	r.log.Info("jetty edge relay stopped", "id", r.cfg.ID, "stored", r.stored.Load(), "refused", r.refused.Load())
}

// register sends the first heartbeat, retrying network errors and 5xx a
// few times; a refusal (4xx) ends it at once.
func (r *Relay) register(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = r.heartbeat(ctx); err == nil {
			return nil
		}
		var oe *originError
		if errors.As(err, &oe) && oe.status < 500 {
			return fmt.Errorf("the origin refused this relay: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
	return fmt.Errorf("cannot register with the origin at %s: %w", r.origin, err)
}

func (r *Relay) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, max(r.cfg.Interval, time.Second))
		err := r.heartbeat(hctx)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			r.log.Warn("heartbeat failed; the origin stops offering this relay until one succeeds", "err", err)
			failing = true
		case err == nil && failing:
			r.log.Info("heartbeat accepted again")
			failing = false
		}
	}
}

// heartbeat reports the relay's load and takes the token key.
func (r *Relay) heartbeat(ctx context.Context) error {
	bytesIn, rate := r.throughput(time.Now())
	hb := protocol.Heartbeat{
		ID: r.cfg.ID, URL: r.cfg.PublicURL, Location: r.cfg.Location, Mode: r.mode,
		Capacity: r.cfg.Capacity, InFlight: int(r.inflight.Load()), IntervalMS: r.cfg.Interval.Milliseconds(),
		Draining: r.draining.Load(), Version: r.cfg.Version, BytesIn: bytesIn, ThroughputBps: rate,
	}
	if r.mode == protocol.ModeS3 && r.cfg.S3 != nil {
		hb.Bucket = r.cfg.S3.Bucket
	}
	body, _ := json.Marshal(hb)
	var resp protocol.HeartbeatResponse
	if err := r.signed(ctx, http.MethodPost, protocol.PathEdgeHeartbeat, "", body, &resp); err != nil {
		return err
	}
	key, err := r.keys.Open(resp.TokenKey)
	if err != nil {
		return err
	}
	s, err := uploadtoken.NewSignerKey(key)
	if err != nil {
		return fmt.Errorf("token key from the origin: %w", err)
	}
	r.signer.Store(s)
	r.lastBeat.Store(time.Now().UnixNano())
	return nil
}

// throughput returns the payload bytes stored since the relay started
// and the bytes per second stored since the previous heartbeat (0 at the
// first).
func (r *Relay) throughput(now time.Time) (total, perSecond int64) {
	total = r.storedBytes.Load()
	r.rateMu.Lock()
	defer r.rateMu.Unlock()
	if !r.rateAt.IsZero() {
		if secs := now.Sub(r.rateAt).Seconds(); secs > 0 {
			perSecond = int64(float64(total-r.rateBytes) / secs)
		}
	}
	r.rateBytes, r.rateAt = total, now
	return total, perSecond
}

func (r *Relay) deregister(ctx context.Context) error {
	return r.signed(ctx, http.MethodDelete, protocol.PathEdgeNode+url.PathEscape(r.cfg.ID), "", nil, nil)
}

// originError is a refusal from the origin.
type originError struct {
	status int
	code   string
	msg    string
}

func (e *originError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("origin answered %d", e.status)
	}
	return fmt.Sprintf("origin answered %d %s: %s", e.status, e.code, e.msg)
}

// signed makes an edge-authenticated call to the origin.
func (r *Relay) signed(ctx context.Context, method, path, query string, body []byte, out any) error {
	u := *r.origin
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return err
	}
	r.keys.Sign(req, r.cfg.ID, body, time.Now())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode/100 != 2 {
		oe := &originError{status: resp.StatusCode}
		var e protocol.ErrorBody
		if json.Unmarshal(b, &e) == nil {
			oe.code, oe.msg = e.Code, e.Error
		}
		return oe
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("origin's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// session looks a session up at the origin (cached for SessionCache, one
// lookup at a time per session).
func (r *Relay) session(ctx context.Context, accountID, id string, fresh bool) (protocol.SessionInfo, error) {
	r.mu.Lock()
	e := r.sessions[id]
	if e != nil {
		select {
		case <-e.ready:
			if fresh || e.err != nil || time.Since(e.fetched) > r.cfg.SessionCache || e.info.AccountID != accountID {
				e = nil
			}
		default:
		}
	}
	if e == nil {
		e = &sessionEntry{ready: make(chan struct{})}
		r.sessions[id] = e
		if len(r.sessions) > 10000 {
			for k, old := range r.sessions {
				select {
				case <-old.ready:
					if time.Since(old.fetched) > r.cfg.SessionCache {
						delete(r.sessions, k)
					}
				default:
				}
			}
		}
		r.mu.Unlock()
		// Other requests may wait for this lookup: it must not end with
		// the request that started it.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		e.err = r.signed(lctx, http.MethodGet, protocol.PathEdgeSession+url.PathEscape(id), "account="+url.QueryEscape(accountID), nil, &e.info)
		cancel()
		e.fetched = time.Now()
		close(e.ready)
	} else {
		r.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return protocol.SessionInfo{}, ctx.Err()
		}
	}
	return e.info, e.err
}

// errNotRegistered answers before the first heartbeat was accepted: the
// relay has no token key yet.
var errNotRegistered = server.Errorf(server.EUnavailable, "this relay has not registered with its origin yet")

// handleChunk takes PUT /api/jetty/sessions/{id}/chunks/{index}.
func (r *Relay) handleChunk(w http.ResponseWriter, req *http.Request) {
	if r.draining.Load() {
		r.refuse(w, server.Errorf(protocol.CodeEdgeDraining, "this relay is shutting down: send the chunk through another route"))
		return
	}
	signer := r.signer.Load()
	if signer == nil {
		r.refuse(w, errNotRegistered)
		return
	}
	if n := r.inflight.Add(1); n > int64(r.cfg.Capacity) {
		r.inflight.Add(-1)
		w.Header().Set(protocol.HeaderRetryAfter, "1")
		r.refuse(w, server.Errorf(protocol.CodeEdgeBusy, "this relay takes %d chunks at once; send it through another route", r.cfg.Capacity))
		return
	}
	r.wg.Add(1)
	defer func() { r.inflight.Add(-1); r.wg.Done() }()
	if err := r.takeChunk(w, req, signer); err != nil {
		r.refused.Add(1)
		r.refuse(w, err)
	}
}

// takeChunk admits one chunk (server/chunkadmit, as the origin does) and
// stores it: as a part of the session's multipart upload (mode s3), or
// forwarded to the origin (mode relay). It answers success itself and
// returns the refusal otherwise.
func (r *Relay) takeChunk(w http.ResponseWriter, req *http.Request, signer *uploadtoken.Signer) error {
	ctx := req.Context()
	var info protocol.SessionInfo
	c, err := chunkadmit.Admit(req, signer, time.Now(), func(ctx context.Context, claims uploadtoken.Claims) (chunkadmit.Session, error) {
		var err error
		info, err = r.lookup(ctx, claims, false)
		return r.admitted(info), err
	})
	if err != nil {
		return err
	}
	body := c.Body(w, req, r.cfg.BodyIdle, true)
	if r.mode != protocol.ModeS3 {
		return r.forward(w, req, c, info, body)
	}
	if _, err := r.blobs.PutPart(ctx, info.ObjectKey, info.UploadID, c.Index+1, body, c.Size, c.Digest); err != nil {
		// The session may have moved on since it was looked up (completed
		// or aborted: its multipart upload is gone): look it up again.
		recheck := func(ctx context.Context, claims uploadtoken.Claims) (chunkadmit.Session, error) {
			info, err := r.lookup(ctx, claims, true)
			return r.admitted(info), err
		}
		if ref := body.Failed(ctx, err, time.Now(), recheck); ref != nil {
			if errors.Is(ref, blob.ErrNoSpace) {
				r.log.Warn("storage full: a chunk was refused", "session", info.ID, "index", c.Index, "err", err)
			}
			return ref
		}
		if errors.Is(err, blob.ErrNotFound) {
			return server.Errorf(server.EGone, "the session's upload is gone from storage; start the upload again")
		}
		r.log.Warn("put part", "session", info.ID, "index", c.Index, "err", err)
		return server.Errorf(protocol.CodeBadGateway, "storage did not take the chunk; send it again")
	}
	r.stored.Add(1)
	r.storedBytes.Add(c.Size)
	writeJSON(w, http.StatusOK, protocol.ChunkAck{Index: c.Index, Size: c.Size, SHA256: c.SHA256, Edge: r.cfg.ID})
	return nil
}

// lookup finds the session a chunk's token names, for admission: from
// the cache, looked up again when fresh or when the cached state is no
// longer open (it may have moved on). The origin's refusals are passed
// on: no such session (404), the account suspended or deleted (403); any
// other failure is this route's (502 bad_gateway: the client sends the
// chunk elsewhere).
func (r *Relay) lookup(ctx context.Context, claims uploadtoken.Claims, fresh bool) (protocol.SessionInfo, error) {
	info, err := r.session(ctx, claims.AccountID, claims.SessionID, fresh)
	if err == nil && info.State != string(server.SessionOpen) && !fresh {
		info, err = r.session(ctx, claims.AccountID, claims.SessionID, true)
	}
	if err == nil {
		return info, nil
	}
	var oe *originError
	if errors.As(err, &oe) && oe.status < 500 {
		switch {
		case oe.status == http.StatusNotFound:
			return info, server.Errorf(server.ENotFound, "no such upload session")
		case oe.status == http.StatusForbidden && protocol.StatusFor(oe.code) == http.StatusForbidden:
			// The account was suspended or deleted: its chunks stop here too.
			return info, &server.Error{Code: oe.code, Message: oe.msg}
		}
		return info, server.Errorf(protocol.CodeBadGateway, "the origin refused this relay's session lookup: %s", oe.Error())
	}
	r.log.Warn("session lookup", "session", claims.SessionID, "err", err)
	return info, server.Errorf(protocol.CodeBadGateway, "the origin could not be reached for the session; send the chunk through another route")
}

// admitted is what admission reads of a session lookup.
func (r *Relay) admitted(info protocol.SessionInfo) chunkadmit.Session {
	s := chunkadmit.Session{State: server.SessionState(info.State), ExpiresAt: info.ExpiresAt, ChunkSize: info.ChunkSize, Reserved: r.streamBound(info)}
	if info.Chunks != nil {
		s.Chunks = chunkadmit.InfoChunks(info.Chunks)
	}
	return s
}

// streamBound is how many bytes a stream session may hold, as the relay
// checks it: the reservation the origin reported. An origin that predates
// the field reports none: a relay forwarding to it leaves the check to the
// origin; a relay writing to storage itself refuses the chunk rather than
// take bytes no reservation covers.
func (r *Relay) streamBound(info protocol.SessionInfo) int64 {
	if info.Reserved == 0 && r.mode != protocol.ModeS3 {
		return math.MaxInt64
	}
	return info.Reserved
}

// forward relays an admitted chunk to the origin's own chunk endpoint,
// with the client's token, and passes the origin's answer on: its
// success, its refusals and its 507 as they are, its other 5xx as this
// route's failure (502). A body that hashes otherwise is cut before its
// end, so the origin (which checks too) stores nothing.
func (r *Relay) forward(w http.ResponseWriter, req *http.Request, c chunkadmit.Chunk, info protocol.SessionInfo, body *chunkadmit.Body) error {
	ctx := req.Context()
	u := *r.origin
	u.Path = strings.TrimRight(u.Path, "/") + protocol.PathSessions + "/" + info.ID + "/chunks/" + strconv.Itoa(c.Index)
	u.RawPath = strings.TrimRight(r.origin.EscapedPath(), "/") + protocol.PathSessions + "/" + url.PathEscape(info.ID) + "/chunks/" + strconv.Itoa(c.Index)
	var rb io.Reader = body
	if c.Size == 0 {
		rb = http.NoBody
	}
	out, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), rb)
	if err != nil {
		return fmt.Errorf("forward request: %w", err)
	}
	out.ContentLength = c.Size
	out.Header.Set("Authorization", "Bearer "+c.Token)
	out.Header.Set(protocol.HeaderChunkSHA256, c.SHA256)
	out.Header.Set("Content-Type", "application/octet-stream")
	out.Header.Set(protocol.HeaderForwardedBy, r.cfg.ID)
	resp, err := r.hc.Do(out)
	if err != nil || body.Mismatch() {
		if resp != nil {
			resp.Body.Close()
		}
		// The transport's error says nothing of the client's body: the
		// body itself tells whether the chunk was the client's fault.
		if ref := body.Refusal(ctx); ref != nil {
			return ref
		}
		r.log.Warn("forward chunk", "session", info.ID, "index", c.Index, "err", err)
		return server.Errorf(protocol.CodeBadGateway, "the origin could not be reached; send the chunk through another route")
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		r.stored.Add(1)
		r.storedBytes.Add(c.Size)
	} else if resp.StatusCode >= 500 && resp.StatusCode != http.StatusInsufficientStorage {
		if ref := body.Refusal(ctx); ref != nil {
			return ref
		}
		// The origin's trouble is this route's: tell the client in a way
		// that moves the chunk elsewhere, without the origin's details.
		r.log.Warn("origin refused a forwarded chunk", "session", info.ID, "index", c.Index, "status", resp.StatusCode)
		return server.Errorf(protocol.CodeBadGateway, "the origin did not take the chunk; send it again")
	}
	for _, h := range []string{"Content-Type", protocol.HeaderRetryAfter} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
	return nil
}

func listenURL(ln net.Listener) string {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return "http://" + ln.Addr().String()
	}
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// refuse answers err with its code and the one status protocol.StatusFor
// gives it. An error that is no refusal is the relay's own failure: it is
// logged and answered 500 without its text.
func (r *Relay) refuse(w http.ResponseWriter, err error) {
	code, msg := server.ErrorCode(err), server.ErrorMessage(err)
	if code == server.EInternal {
		r.log.Error("internal error", "err", err)
	}
	writeJSON(w, protocol.StatusFor(code), protocol.ErrorBody{Error: msg, Code: code})
}
