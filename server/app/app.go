package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/protocol/edgeauth"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/agentcache"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/apikey"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/console"
	"github.com/jettythunder/jetty/server/jobs"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/redis"
	"github.com/jettythunder/jetty/server/sqlstore"
	"github.com/jettythunder/jetty/server/uploadtoken"
	"github.com/jettythunder/jetty/server/webhooks"
)

// App is a running companion server.
type App struct {
	*parts
	cfg   Config
	log   *slog.Logger
	api   *api.Server
	http  *http.Server
	ln    net.Listener
	guard *connguard.Guard
	jobs  *jobs.Runner
	hooks *webhooks.Worker // nil without AGENTCACHE_WEBHOOK_SECRET
	drain *drainTracker
	// endDelay, closed by EndDrainDelay, cuts the drain delay short.
	endDelay     chan struct{}
	endDelayOnce sync.Once
	// The metrics listener (JETTY_METRICS_LISTEN); nil when unset.
	metricsHTTP *http.Server
	metricsLn   net.Listener
}

// parts are the server's connections to its database, object store,
// limiter and cache.
type parts struct {
	store   server.Store
	blobs   blob.Store
	limiter server.Limiter
	cache   server.Cache
	streams server.Semaphore // the per-session stream ceiling's slots
	redis   *goredis.Client
	closers []func()
}

func (p *parts) closeParts() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// openParts connects to everything cfg names (cfg must be validated).
func openParts(ctx context.Context, cfg Config, log *slog.Logger) (_ *parts, err error) {
	p := &parts{}
	defer func() {
		if err != nil {
			p.closeParts()
		}
	}()

	// Database.
	dsn := cfg.DatabaseURL
	if dsn == "" || cfg.S3 == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	if dsn == "" {
		dsn = filepath.Join(cfg.DataDir, "jetty.db")
	}
	st, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	p.store = st
	p.closers = append(p.closers, func() { st.Close() })

	// Object storage.
	if cfg.S3 != nil {
		s3, err := s3blob.New(ctx, *cfg.S3)
		if err != nil {
			return nil, fmt.Errorf("object storage at LYVE_ENDPOINT: %w", err)
		}
		p.blobs = s3
	} else {
		fs, err := fsblob.New(filepath.Join(cfg.DataDir, "blobs"))
		if err != nil {
			return nil, fmt.Errorf("object storage in %s: %w", cfg.DataDir, err)
		}
		p.blobs = fs
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = p.blobs.Setup(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("set up object storage: %w", err)
	}

	// Limiter and cache.
	if cfg.RedisURL != "" {
		opt, err := goredis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		// Deadlines of the callers (the limiter's own, see
		// redis.AllowTimeout) bound socket reads too, so a hung Redis
		// cannot hold a request up for the client's full read timeouts.
		opt.ContextTimeoutEnabled = true
		p.redis = goredis.NewClient(opt)
		p.closers = append(p.closers, func() { p.redis.Close() })
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = p.redis.Ping(pctx).Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connect to Redis at REDIS_URL: %w", err)
		}
		p.limiter = redis.NewLimiter(p.redis, "jetty:rl:")
		p.cache = redis.NewCache(p.redis, "jetty:cache:")
		p.streams = redis.NewSemaphore(p.redis, "jetty:streams:")
	} else {
		ml := memory.NewLimiter()
		mc := memory.NewCache()
		p.closers = append(p.closers, func() { ml.Close(); mc.Close() })
		p.limiter, p.cache = ml, mc
		p.streams = memory.NewSemaphore()
	}
	return p, nil
}

// URL is the base URL the server answers on.
func (a *App) URL() string { return baseURL(a.ln.Addr()) }

// baseURL is the http URL of a listener's address (loopback for an
// unspecified host).
func baseURL(a net.Addr) string {
	addr := a.(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// MetricsURL is the base URL of the metrics listener ("" without
// JETTY_METRICS_LISTEN).
func (a *App) MetricsURL() string {
	if a.metricsLn == nil {
		return ""
	}
	return baseURL(a.metricsLn.Addr())
}

// ConnStats reports the connections of the main listener.
func (a *App) ConnStats() connguard.Stats { return a.guard.Stats() }

// registerConnMetrics exports the connection guard's figures.
func registerConnMetrics(reg prometheus.Registerer, g *connguard.Guard) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jetty_connections_open", Help: "Open connections of the main listener.",
		}, func() float64 { return float64(g.Stats().Open) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jetty_connections_unauthenticated", Help: "Open connections on which no request has authenticated yet.",
		}, func() float64 { return float64(g.Stats().Unauth) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "jetty_connections_evicted_total", Help: "Silent connections closed to make room at the connection caps.",
		}, func() float64 { return float64(g.Stats().Evicted) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "jetty_connections_refused_total", Help: "Connections closed on arrival at a cap with nothing to evict.",
		}, func() float64 { return float64(g.Stats().Refused) }),
	)
}

// Store is the server's database.
func (a *App) Store() server.Store { return a.store }

// Config is the configuration in force, defaults filled in.
func (a *App) Config() Config { return a.cfg }

// NewLogger makes the server's slog logger.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if strings.ToLower(format) == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// New opens the server's parts and starts listening, without serving yet.
// In dev mode missing secrets are generated (and kept in cfg).
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: log, parts: &parts{}}
	ok := false
	defer func() {
		if !ok {
			a.closeParts()
		}
	}()

	if a.cfg.Dev {
		if a.cfg.WebhookSecret == "" {
			a.cfg.WebhookSecret = randomSecret("whsec_")
		}
		if a.cfg.InternalSecret == "" {
			a.cfg.InternalSecret = randomSecret("inwh_")
		}
		if a.cfg.EdgeSecret == "" {
			a.cfg.EdgeSecret = randomSecret("edge_")
		}
	}
	a.cfg.warnUnused(log)
	if a.cfg.JettySpeedDisabled {
		log.Info("chunked uploads (JettySpeed) are turned off (JETTYSPEED_ENABLED=false): files go in one request")
	}
	if len(a.cfg.corsOrigins) > 0 {
		log.Info("CORS on for the user API", "origins", strings.Join(a.cfg.corsOrigins, ","))
	}
	if a.cfg.RateLimitMax > 0 {
		log.Info("server-wide rate limit ceiling", "max_requests", a.cfg.RateLimitMax, "window", a.cfg.RateLimitWindow.String())
	}
	if a.cfg.WebhookSecret == "" {
		log.Warn("AGENTCACHE_WEBHOOK_SECRET is not set: partner calls (provision, upgrade, suspend, delete) will be refused")
	}

	p, err := openParts(ctx, a.cfg, log)
	if err != nil {
		return nil, err
	}
	a.parts = p

	// Listener first, so the relay can default to this server's own URL.
	a.ln, err = net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
	}
	a.closers = append(a.closers, func() { a.ln.Close() })

	var relay http.Handler
	if a.cfg.InternalSecret != "" {
		upstream := a.cfg.RelayUpstream
		if upstream == "" {
			upstream = a.URL()
		}
		upSecret := a.cfg.UpstreamSecret
		if upSecret == "" {
			upSecret = a.cfg.WebhookSecret
		}
		var key []byte
		if a.cfg.RelayKey != "" {
			if key, err = hex.DecodeString(a.cfg.RelayKey); err != nil {
				return nil, fmt.Errorf("JETTY_RELAY_ENCRYPTION_KEY: %w", err)
			}
		}
		r, err := agentcache.NewRelay(agentcache.RelayConfig{
			InternalSecret: a.cfg.InternalSecret,
			UpstreamURL:    strings.TrimRight(upstream, "/"),
			UpstreamSecret: upSecret,
			Cache:          a.cache,
			Logger:         log,
			EncryptionKey:  key,
		})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		relay = r
	}

	if a.cfg.TokenSecret == "" {
		if !a.cfg.Dev {
			log.Warn("JETTY_TOKEN_SECRET is not set: upload tokens are signed with a per-process key, so run one instance only")
		}
		a.cfg.TokenSecret = randomSecret("tok_")
	}
	signer, err := uploadtoken.NewSigner([]byte(a.cfg.TokenSecret))
	if err != nil {
		return nil, err
	}
	var edgeKeys *edgeauth.Keys
	if a.cfg.EdgeSecret != "" {
		if edgeKeys, err = edgeauth.NewKeys(a.cfg.EdgeSecret); err != nil {
			return nil, err
		}
	}
	backend, direct := "fs", ""
	if a.cfg.S3 != nil {
		backend = "s3"
		if a.cfg.DirectUploads {
			direct = a.cfg.S3.PublicEndpoint
			if direct == "" {
				direct = a.cfg.S3.Endpoint
			}
			if !strings.Contains(direct, "://") {
				direct = "https://" + direct
			}
		}
	}
	a.guard = connguard.New(a.cfg.Conns, log)
	reg := prometheus.NewRegistry()
	registerConnMetrics(reg, a.guard)
	var notify func()
	if a.cfg.WebhookSecret != "" {
		a.hooks = newWebhookWorker(a.cfg, a.store, log, reg)
		notify = a.hooks.Notify
	}
	a.api = api.New(api.Config{
		Registry:              reg,
		BodyIdleTimeout:       a.cfg.BodyTimeout,
		MetricsToken:          a.cfg.MetricsToken,
		MetricsPublic:         a.cfg.Dev && a.cfg.MetricsListen == "",
		EdgeKeys:              edgeKeys,
		Backend:               backend,
		DirectURL:             direct,
		TokenSigner:           signer,
		Store:                 a.store,
		Limiter:               a.limiter,
		Blobs:                 a.blobs,
		PublicURL:             a.cfg.PublicURL,
		Logger:                log,
		WebhookSecret:         a.cfg.WebhookSecret,
		PreviousWebhookSecret: a.cfg.PreviousWebhookSecret,
		RequireSignature:      a.cfg.RequireSignature,
		Cache:                 a.cache,
		Streams:               a.streams,
		LiveKeys:              a.cfg.LiveKeys,
		Bucket:                a.cfg.Bucket,
		Relay:                 relay,
		CompletionLease:       a.cfg.CompletionLease,
		StorageMinFree:        a.cfg.minFree,
		WebhookURLs:           server.WebhookURLPolicy{AllowHTTP: a.cfg.Webhooks.AllowHTTP, AllowPrivate: a.cfg.Webhooks.AllowPrivate},
		WebhookNotify:         notify,
		CORSOrigins:           a.cfg.corsOrigins,
		RateCeiling:           api.RateCeiling{Max: a.cfg.RateLimitMax, Window: a.cfg.RateLimitWindow},
		JettySpeedDisabled:    a.cfg.JettySpeedDisabled,
	})
	handler, err := a.withConsole(a.api.Handler())
	if err != nil {
		return nil, err
	}
	a.drain = newDrainTracker(reg)
	a.endDelay = make(chan struct{})
	a.http = &http.Server{
		Handler:           a.drain.wrap(handler),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	a.ln = a.guard.Install(a.http, a.ln, a.cfg.BodyTimeout)
	if a.cfg.MetricsListen != "" {
		if a.metricsLn, err = net.Listen("tcp", a.cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("JETTY_METRICS_LISTEN: listen on %s: %w", a.cfg.MetricsListen, err)
		}
		a.closers = append(a.closers, func() { a.metricsLn.Close() })
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.api.MetricsHandler())
		a.metricsHTTP = &http.Server{
			Handler:           connguard.Bodies(mux, a.cfg.BodyTimeout),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	a.jobs = newRunner(a.cfg, a.parts, log)
	ok = true
	return a, nil
}

// withConsole mounts the operator console (server/console) beside the
// API under /console when JETTY_CONSOLE_TOKEN is set; otherwise the API
// alone answers (404 under /console).
func (a *App) withConsole(apiHandler http.Handler) (http.Handler, error) {
	if a.cfg.ConsoleToken == "" {
		return apiHandler, nil
	}
	cs, ok := a.store.(console.Store)
	if !ok {
		return nil, fmt.Errorf("console: the store %T keeps no console sessions", a.store)
	}
	c, err := console.New(console.Config{
		Token:        a.cfg.ConsoleToken,
		SecureCookie: a.cfg.ConsoleSecureCookie,
	}, console.Deps{
		Store:   cs,
		Limiter: a.limiter,
		Accounts: console.AccountOps{
			ChangeTier:     a.api.ChangeTier,
			SetStatus:      a.api.SetAccountStatus,
			Rotate:         a.api.RotateCredentials,
			RevokePrevious: a.api.RevokePreviousCredentials,
		},
		Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	a.log.Info("operator console on", "path", console.Prefix+"/")
	mux := http.NewServeMux()
	mux.Handle(console.Prefix+"/", c.Handler())
	mux.Handle(console.Prefix, c.Handler())
	mux.Handle("/", apiHandler)
	return mux, nil
}

// Serve serves HTTP until ctx ends, then drains and shuts down
// gracefully: /readyz answers 503 "draining" while it serves on for the
// drain delay (JETTY_DRAIN_DELAY), then it stops accepting, waits up to
// the shutdown timeout (JETTY_SHUTDOWN_TIMEOUT) for requests in flight,
// flushes the request log and closes the database (drain.go).
func (a *App) Serve(ctx context.Context) error {
	jobsCtx, stopJobs := context.WithCancel(context.Background())
	jobsDone := make(chan struct{})
	go func() {
		defer close(jobsDone)
		a.jobs.Loop(jobsCtx, a.cfg.JobsInterval)
	}()
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		if a.hooks != nil {
			a.hooks.Run(jobsCtx)
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- a.http.Serve(a.ln) }()
	if a.metricsHTTP != nil {
		go a.metricsHTTP.Serve(a.metricsLn)
		a.log.Info("metrics listening", "url", a.MetricsURL()+"/metrics")
	}
	lim := a.guard.Limits()
	a.log.Info("jetty server listening", "url", a.URL(), "dev", a.cfg.Dev,
		"max_conns", lim.MaxConns, "max_unauthenticated_conns", lim.MaxUnauth, "body_timeout", a.cfg.BodyTimeout.String())

	var serveErr error
	select {
	case err := <-errc:
		serveErr = err
	case <-ctx.Done():
		a.shutdown(errc)
		<-errc
	}
	if a.metricsHTTP != nil {
		a.metricsHTTP.Close()
	}
	stopJobs()
	<-jobsDone
	<-hooksDone
	a.api.Close()
	a.closeParts()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// shutdown drains the server (see drain.go): not ready at once, serving
// on for the drain delay, then no new connections and a bounded wait for
// the requests in flight. errc is Serve's: a listener failing during the
// delay ends it.
func (a *App) shutdown(errc chan error) {
	inflight, puts := a.drain.begin()
	a.api.SetDraining()
	// Every answer from now on closes its connection, so clients and
	// the balancer open their next one elsewhere.
	a.http.SetKeepAlivesEnabled(false)
	a.log.Info("draining: /readyz answers 503, serving on until the load balancer stops sending",
		"drain_delay", a.cfg.DrainDelay.String(), "in_flight", inflight, "puts_in_flight", puts)
	if a.cfg.DrainDelay > 0 {
		t := time.NewTimer(a.cfg.DrainDelay)
		select {
		case <-t.C:
		case <-a.endDelay:
		case err := <-errc:
			errc <- err
		}
		t.Stop()
	}
	a.log.Info("shutting down: no new connections, waiting for requests in flight",
		"timeout", a.cfg.ShutdownTimeout.String(), "in_flight", a.drain.inflightNow())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.http.Shutdown(sctx); err != nil {
		a.log.Warn("graceful shutdown incomplete", "err", err)
	}
	rep := a.drain.report()
	a.log.Info("drained", "in_flight_at_drain", rep.InFlight, "puts_in_flight_at_drain", rep.PutsInFlight,
		"ok", rep.OK, "failed", rep.Failed, "client_gone", rep.Gone, "unfinished", rep.Unfinished)
}

// EndDrainDelay cuts the drain delay short (tests; a second signal).
func (a *App) EndDrainDelay() { a.endDelayOnce.Do(func() { close(a.endDelay) }) }

// DrainReport is how the requests in flight when the drain began ended.
func (a *App) DrainReport() DrainReport { return a.drain.report() }

// Start makes a server (New) and serves it in the background (Serve)
// until stop is called; stop shuts it down gracefully and returns Serve's
// error. Tests and embedders that run a server beside other work use it.
func Start(cfg Config, log *slog.Logger) (a *App, stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	a, err = New(ctx, cfg, log)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	var once sync.Once
	var serveErr error
	return a, func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}, nil
}

// Close releases everything without serving (for a New that is not
// followed by Serve).
func (a *App) Close() {
	if a.api != nil {
		a.api.Close()
	}
	a.closeParts()
}

// newWebhookWorker makes the sender of status events (server/webhooks).
func newWebhookWorker(cfg Config, st server.Store, log *slog.Logger, reg prometheus.Registerer) *webhooks.Worker {
	host, _ := os.Hostname()
	w := cfg.Webhooks
	return webhooks.New(webhooks.Config{
		Store:          st,
		Secret:         cfg.WebhookSecret,
		PreviousSecret: cfg.PreviousWebhookSecret,
		Log:            log,
		Holder:         fmt.Sprintf("%s:%d:%s", host, os.Getpid(), randomSecret("")[:8]),
		Registerer:     reg,
		Poll:           w.Poll,
		RetryBase:      w.RetryBase,
		RetryMax:       w.RetryMax,
		MaxAge:         w.MaxAge,
		Timeout:        w.Timeout,
		Retention:      w.Retention,
		AllowPrivate:   w.AllowPrivate,
	})
}

func newRunner(cfg Config, p *parts, log *slog.Logger) *jobs.Runner {
	host, _ := os.Hostname()
	return &jobs.Runner{
		Store:     p.store,
		Blobs:     p.blobs,
		Log:       log,
		Holder:    fmt.Sprintf("%s:%d", host, os.Getpid()),
		OrphanAge: cfg.OrphanAge,
		// Negative (off) is 0 for the runner: never.
		RequestLogRetention:     max(cfg.RequestLogRetention, 0),
		AnonRequestLogRetention: max(cfg.AnonRequestLogRetention, 0),
		DeletedAccountGrace:     max(cfg.DeletedAccountGrace, 0),
	}
}

// RunJobs runs the background jobs once against the configured parts
// (`jetty server jobs`).
func RunJobs(ctx context.Context, cfg Config, log *slog.Logger) (jobs.Report, error) {
	if err := cfg.validate(); err != nil {
		return jobs.Report{}, err
	}
	p, err := openParts(ctx, cfg, log)
	if err != nil {
		return jobs.Report{}, err
	}
	defer p.closeParts()
	return newRunner(cfg, p, log).RunOnce(ctx)
}

// Blobs is the server's object store.
func (a *App) Blobs() blob.Store { return a.blobs }

// DemoAccount returns the dev demo account and its key and secret: the
// ones kept in the data directory by an earlier run when the account
// still has that key and they verify (so a restart of the same data
// directory keeps the credentials), else a new key and secret (the
// account provisioned, or re-keyed when it exists), which are then kept
// (devcreds.go). Only in dev mode.
func (a *App) DemoAccount(ctx context.Context) (server.Account, string, error) {
	if !a.cfg.Dev {
		return server.Account{}, "", errors.New("the demo account exists only in dev mode (--dev)")
	}
	if acct, secret, ok := a.keptDemoAccount(ctx); ok {
		return acct, secret, nil
	}
	acct, secret, err := a.newDemoAccount(ctx)
	if err != nil {
		return acct, secret, err
	}
	if err := keepDevCredentials(a.cfg.DataDir, acct.APIKey, secret); err != nil {
		a.log.Warn("the demo account's credentials could not be kept for the next run", "error", err)
	}
	return acct, secret, nil
}

// demoUser is the dev demo account's user id.
const demoUser = "demo"

// newDemoAccount provisions (or, when it exists, re-keys) the demo
// account with a new key and secret.
func (a *App) newDemoAccount(ctx context.Context) (server.Account, string, error) {
	key, err := apikey.NewKey(a.cfg.LiveKeys)
	if err != nil {
		return server.Account{}, "", err
	}
	secret, err := apikey.NewSecret()
	if err != nil {
		return server.Account{}, "", err
	}
	acct, err := a.store.CreateAccount(ctx, server.NewAccount{
		UserID:     demoUser,
		Email:      "demo@example.com",
		Tier:       "pro",
		APIKey:     key,
		SecretHash: apikey.HashSecret(secret),
		S3Bucket:   a.cfg.Bucket,
		S3Prefix:   server.S3PrefixFor(demoUser),
	})
	if server.ErrorCode(err) == server.EAccountExists {
		acct, err = a.store.RotateCredentials(ctx, demoUser, key, apikey.HashSecret(secret), time.Time{})
	}
	if err != nil {
		return server.Account{}, "", err
	}
	return acct, secret, nil
}

func randomSecret(prefix string) string {
	s, err := apikey.NewSecret()
	if err != nil {
		panic(err)
	}
	return prefix + strings.TrimPrefix(s, protocol.SecretPrefix)
}
