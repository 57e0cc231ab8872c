// Package api is the companion server's HTTP control plane: partner
// (AgentCache) provisioning calls, user calls authenticated by API key and
// secret, health, readiness and Prometheus metrics.
//
// Handlers speak only server.Store, server.Limiter and server.Cache, so
// the same code runs on the embedded default (SQLite, in-process limits)
// and in production (PostgreSQL, Redis). Errors are *server.Error; protocol.StatusFor
// maps each code to one HTTP status and every error body is
// {"error": "...", "code": "..."}.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jettythunder/jetty/internal/idleread"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/protocol/edgeauth"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/probe"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

// Config is what a Server is built from. Store and Limiter are required.
type Config struct {
	Store   server.Store
	Limiter server.Limiter
	Logger  *slog.Logger

	// WebhookSecret is AGENTCACHE_WEBHOOK_SECRET. When empty every partner
	// call is refused.
	WebhookSecret string
	// PreviousWebhookSecret (AGENTCACHE_WEBHOOK_SECRET_PREVIOUS) is
	// accepted as well while the partner moves to a new secret.
	PreviousWebhookSecret string
	// RequireSignature refuses partner calls without an X-Jetty-Signature
	// (AGENTCACHE_REQUIRE_SIGNATURE): the secret then never travels.
	RequireSignature bool
	// Cache remembers signed partner calls for 10 minutes to refuse
	// replays (Redis in production, so every instance sees them); an
	// in-process cache when nil.
	Cache server.Cache
	// LiveKeys makes provisioning issue jt_live_ keys (jt_test_ otherwise).
	LiveKeys bool
	// Bucket is the object-storage bucket named in provisioning answers.
	Bucket string
	// Relay, when set, serves POST /api/webhooks/jettythunder/provision,
	// /upgrade and /rotate (the AgentCache-side relay of seed 000, which
	// tells them apart by path).
	Relay http.Handler
	// Blobs is where object bytes live. Required for the storage API.
	Blobs blob.Store
	// PublicURL, when set, is the base URL clients are told to use (a
	// proxy or load balancer in front); otherwise the request's Host.
	PublicURL string
	// TokenSigner signs upload tokens; every instance (and edge) must
	// share its key. Required for the session API.
	TokenSigner *uploadtoken.Signer
	// EdgeKeys, when set (JETTY_EDGE_SECRET), lets relays register and
	// heartbeat, look up sessions, and receive the token key.
	EdgeKeys *edgeauth.Keys
	// Backend is "s3" or "fs": where objects live (told to relays).
	Backend string
	// DirectURL, when set and Blobs can presign parts, is the storage
	// endpoint clients reach; optimal-edges then offers the direct route.
	DirectURL string
	// StorageMinFree is the free space the object store must keep for
	// /readyz to call it ready (JETTY_STORAGE_MIN_FREE; see MinFree).
	StorageMinFree MinFree
	// BodyIdleTimeout is how long an upload body may send nothing before
	// the request fails with 408 (idleread.DefaultIdle, 30 s, when 0).
	BodyIdleTimeout time.Duration
	// CompletionLease is how long a completion holds its session without
	// renewing (DefaultCompletionLease when 0): after a crash, the upload
	// resumes and completes the same session once it ran out.
	CompletionLease time.Duration
	// Registry receives the server's metrics; a new one when nil.
	Registry *prometheus.Registry
	// MetricsToken, when set (JETTY_METRICS_TOKEN), must be sent as
	// Authorization: Bearer to read GET /metrics.
	MetricsToken string
	// MetricsPublic serves GET /metrics on Handler to anyone when no
	// MetricsToken is set (--dev). Otherwise, without a token, Handler
	// answers 404 there and MetricsHandler serves them (a listener of
	// their own).
	MetricsPublic bool
	// TierCacheTTL bounds how long tier rows are cached (default 30s).
	TierCacheTTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	// WebhookURLs says which webhook_url values partners may register
	// (https only, public addresses only, unless it allows more).
	WebhookURLs server.WebhookURLPolicy
	// WebhookNotify, when set, is called after a partner call that may
	// have recorded a status event (the delivery worker's Notify).
	WebhookNotify func()
	// CORSOrigins are the browser origins allowed to call the user API
	// (JETTY_CORS_ORIGINS, as ParseCORSOrigins answers them); none: no
	// CORS at all (cors.go).
	CORSOrigins []string
	// RateCeiling is the server-wide ceiling beside the tiers' limits
	// (RATE_LIMIT_MAX_REQUESTS per RATE_LIMIT_WINDOW_MS; ceiling.go).
	RateCeiling RateCeiling
	// Streams holds the slots of the per-session ceiling on concurrent
	// chunk uploads (the token's max workers): server/redis's with
	// REDIS_URL, so that every instance counts the same slots; an
	// in-process one when nil (the embedded default, one instance).
	Streams server.Semaphore
	// StreamLease is how long a chunk's slot lives without renewal
	// (DefaultStreamLease when 0): the slots of an instance that died
	// mid-chunk are free again within it.
	StreamLease time.Duration
	// JettySpeedDisabled (JETTYSPEED_ENABLED=false) turns chunked uploads
	// off: opening a session answers 403 jettyspeed_disabled, and quota,
	// whoami and optimal-edges report JettySpeed off.
	JettySpeedDisabled bool
}

// Server is the HTTP API. Create it with New, serve Handler, and Close it
// after the HTTP server has shut down so the request log is flushed.
type Server struct {
	store      server.Store
	limiter    server.Limiter
	log        *slog.Logger
	secret     string
	prevSecret string
	requireSig bool
	replays    server.Cache
	liveKeys   bool
	bucket     string
	relay      http.Handler
	now        func() time.Time
	blobs      blob.Store
	publicURL  string
	tokens     *uploadtoken.Signer
	edgeKeys   *edgeauth.Keys
	backend    string
	directURL  string
	streams    server.Semaphore
	// streamLease: see Config.StreamLease.
	streamLease time.Duration
	bodyIdle    time.Duration
	manifests   manifestCache
	// completionLease: see Config.CompletionLease.
	completionLease time.Duration
	minFree         MinFree
	fullUntil       atomic.Int64 // unix ns: a write was refused for lack of space (storage_full.go)
	// draining: the server is shutting down (SetDraining); /readyz
	// answers 503 so load balancers stop sending it new requests.
	draining atomic.Bool

	metrics       *metrics
	promHandler   http.Handler
	metricsToken  string
	metricsPublic bool
	reqlog        *requestLog
	handler       http.Handler

	tierMu    sync.Mutex
	tiers     map[string]server.Tier
	tiersAt   time.Time
	tierTTL   time.Duration
	closeOnce sync.Once
	ownCache  *memory.Cache // closed by Close when New made it

	webhookPolicy server.WebhookURLPolicy
	webhookNotify func()
	rateCeiling   RateCeiling
	jettySpeedOff bool
}

// New builds a Server.
func New(cfg Config) *Server {
	s := &Server{
		store:      cfg.Store,
		limiter:    cfg.Limiter,
		log:        cfg.Logger,
		secret:     cfg.WebhookSecret,
		prevSecret: cfg.PreviousWebhookSecret,
		requireSig: cfg.RequireSignature,
		replays:    cfg.Cache,
		liveKeys:   cfg.LiveKeys,
		bucket:     cfg.Bucket,
		relay:      cfg.Relay,
		now:        cfg.Now,
		tierTTL:    cfg.TierCacheTTL,
		blobs:      cfg.Blobs,
		publicURL:  strings.TrimRight(cfg.PublicURL, "/"),
		tokens:     cfg.TokenSigner,
		edgeKeys:   cfg.EdgeKeys,
		backend:    cfg.Backend,
		directURL:  strings.TrimRight(cfg.DirectURL, "/"),
		bodyIdle:   cfg.BodyIdleTimeout,
		streams:    cfg.Streams,

		streamLease: cfg.StreamLease,
		minFree:     cfg.StorageMinFree,

		completionLease: cfg.CompletionLease,
		webhookPolicy:   cfg.WebhookURLs,
		webhookNotify:   cfg.WebhookNotify,
		rateCeiling:     cfg.RateCeiling,
		jettySpeedOff:   cfg.JettySpeedDisabled,
	}
	if s.streams == nil {
		s.streams = memory.NewSemaphore()
	}
	if s.streamLease <= 0 {
		s.streamLease = DefaultStreamLease
	}
	if s.completionLease <= 0 {
		s.completionLease = DefaultCompletionLease
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.replays == nil {
		mc := memory.NewCache()
		s.ownCache = mc
		s.replays = mc
	}
	if s.tierTTL == 0 {
		s.tierTTL = 30 * time.Second
	}
	if s.bucket == "" {
		s.bucket = "agentcache-assets"
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(reg)
	s.reqlog = newRequestLog(s.store, s.log, s.metrics)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/agentcache/provision", s.partner(s.handleProvision))
	mux.HandleFunc("POST /api/agentcache/upgrade", s.partner(s.handleUpgrade))
	mux.HandleFunc("POST /api/agentcache/suspend", s.partner(s.handleStatus(server.StatusSuspended)))
	mux.HandleFunc("POST /api/agentcache/reactivate", s.partner(s.handleStatus(server.StatusActive)))
	mux.HandleFunc("POST /api/agentcache/delete", s.partner(s.handleStatus(server.StatusDeleted)))
	mux.HandleFunc("POST /api/agentcache/rotate", s.partner(s.handleRotate))
	mux.HandleFunc("POST /api/agentcache/revoke", s.partner(s.handleRevoke))
	mux.HandleFunc("GET /api/agentcache/usage", s.partner(s.handleUsage))
	mux.HandleFunc("POST /api/agentcache/webhook-url", s.partner(s.handleSetWebhookURL))
	mux.HandleFunc("GET /api/agentcache/webhooks", s.partner(s.handleListWebhooks))

	mux.HandleFunc("GET /api/agentcache/quota", s.user(s.handleQuota))
	mux.HandleFunc("GET /api/whoami", s.user(s.handleWhoami))

	if s.blobs != nil {
		mux.HandleFunc("POST /api/storage/upload", s.user(s.handleUpload))
		mux.HandleFunc("GET /api/storage/assets", s.user(s.handleList))
		mux.HandleFunc("GET /api/storage/assets/{id}", s.user(s.handleGetAsset))
		mux.HandleFunc("GET /api/storage/assets/{id}/download", s.user(s.handleDownload))
		mux.HandleFunc("DELETE /api/storage/assets/{id}", s.user(s.handleDeleteAsset))
	}
	if s.blobs != nil && s.tokens != nil {
		mux.HandleFunc("POST /api/jetty/sessions", s.user(s.handleOpenSession))
		mux.HandleFunc("GET /api/jetty/sessions/{id}", s.user(s.handleSessionStatus))
		mux.HandleFunc("POST /api/jetty/sessions/{id}/token", s.user(s.handleRefreshToken))
		mux.HandleFunc("POST /api/jetty/sessions/{id}/complete", s.user(s.handleComplete))
		mux.HandleFunc("DELETE /api/jetty/sessions/{id}", s.user(s.handleAbort))
		// The data plane: authorised by the upload token, not rate limited.
		mux.HandleFunc("PUT /api/jetty/sessions/{id}/chunks/{index}", s.handlePutChunk)
		mux.HandleFunc("POST /api/jetty/sessions/{id}/presign", s.handlePresign)

		// Edges: clients ask for candidates; relays (edge-authenticated)
		// heartbeat, deregister and look sessions up.
		mux.HandleFunc("POST "+protocol.PathOptimalEdges, s.user(s.handleOptimalEdges))
		mux.HandleFunc("GET "+protocol.PathEdgeLocations, s.user(s.handleEdgeLocations))
		mux.HandleFunc("POST "+protocol.PathEdgeHeartbeat, s.handleEdgeHeartbeat)
		mux.HandleFunc("DELETE "+protocol.PathEdgeNode+"{id}", s.handleEdgeDeregister)
		mux.HandleFunc("GET "+protocol.PathEdgeSession+"{id}", s.handleEdgeSession)
	}
	mux.Handle("POST "+protocol.PathProbe, probe.Handler())

	if s.relay != nil {
		mux.Handle("POST /api/webhooks/jettythunder/provision", s.relay)
		mux.Handle("POST /api/webhooks/jettythunder/upgrade", s.relay)
		mux.Handle("POST /api/webhooks/jettythunder/rotate", s.relay)
	}

	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	s.promHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	s.metricsToken, s.metricsPublic = cfg.MetricsToken, cfg.MetricsPublic
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allowed := allowedMethods(mux, r); len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, protocol.ErrorBody{
				Error: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")),
				Code:  "method_not_allowed",
			})
			return
		}
		s.writeError(w, r, server.Errorf(server.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})

	var h http.Handler = mux
	if len(cfg.CORSOrigins) > 0 {
		h = s.cors(cfg.CORSOrigins, mux, mux)
	}
	s.handler = s.observe(h)
	return s
}

// bodyIdleOrDefault is the body idle timeout in force.
func (s *Server) bodyIdleOrDefault() time.Duration {
	if s.bodyIdle > 0 {
		return s.bodyIdle
	}
	return idleread.DefaultIdle
}

// Handler returns the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Close flushes the request log and stops its writer. Call it after the
// HTTP server has shut down.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.reqlog.close()
		if s.ownCache != nil {
			s.ownCache.Close()
		}
	})
	return nil
}

// tier returns a tier row, cached for tierTTL.
func (s *Server) tier(ctx context.Context, name string) (server.Tier, error) {
	s.tierMu.Lock()
	if s.tiers != nil && s.now().Sub(s.tiersAt) < s.tierTTL {
		t, ok := s.tiers[name]
		s.tierMu.Unlock()
		if !ok {
			return server.Tier{}, server.Errorf(server.EUnknownTier, "unknown tier %q", name)
		}
		return t, nil
	}
	s.tierMu.Unlock()
	list, err := s.store.Tiers(ctx)
	if err != nil {
		return server.Tier{}, err
	}
	m := make(map[string]server.Tier, len(list))
	for _, t := range list {
		m[t.Name] = t
	}
	s.tierMu.Lock()
	s.tiers, s.tiersAt = m, s.now()
	s.tierMu.Unlock()
	t, ok := m[name]
	if !ok {
		return server.Tier{}, server.Errorf(server.EUnknownTier, "unknown tier %q", name)
	}
	return t, nil
}

// allowedMethods lists the methods that have a route for r's path (other
// than the catch-all), for 405 answers.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allowed = append(allowed, m)
		}
	}
	return allowed
}
