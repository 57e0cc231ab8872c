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
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/agentcache"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/apikey"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/redis"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// App is a running companion server.
type App struct {
	cfg     Config
	log     *slog.Logger
	store   server.Store
	redis   *goredis.Client
	api     *api.Server
	http    *http.Server
	ln      net.Listener
	closers []func()
}

// URL is the base URL the server answers on.
func (a *App) URL() string {
	addr := a.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
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
	a := &App{cfg: cfg, log: log}
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
	}
	if a.cfg.WebhookSecret == "" {
		log.Warn("AGENTCACHE_WEBHOOK_SECRET is not set: partner calls (provision, upgrade, suspend, delete) will be refused")
	}

	// Database.
	dsn := a.cfg.DatabaseURL
	if dsn == "" {
		if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		dsn = filepath.Join(a.cfg.DataDir, "jetty.db")
	}
	st, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	a.store = st
	a.closers = append(a.closers, func() { st.Close() })

	// Limiter and cache.
	var limiter server.Limiter
	var cache server.Cache
	if a.cfg.RedisURL != "" {
		opt, err := goredis.ParseURL(a.cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		a.redis = goredis.NewClient(opt)
		a.closers = append(a.closers, func() { a.redis.Close() })
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = a.redis.Ping(pctx).Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connect to Redis at REDIS_URL: %w", err)
		}
		limiter = redis.NewLimiter(a.redis, "jetty:rl:")
		cache = redis.NewCache(a.redis, "jetty:cache:")
	} else {
		ml := memory.NewLimiter()
		mc := memory.NewCache()
		a.closers = append(a.closers, func() { ml.Close(); mc.Close() })
		limiter, cache = ml, mc
	}

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
			Cache:          cache,
			Logger:         log,
			EncryptionKey:  key,
		})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		relay = r
	}

	a.api = api.New(api.Config{
		Store:         a.store,
		Limiter:       limiter,
		Logger:        log,
		WebhookSecret: a.cfg.WebhookSecret,
		LiveKeys:      a.cfg.LiveKeys,
		Bucket:        a.cfg.Bucket,
		Relay:         relay,
	})
	a.http = &http.Server{
		Handler:           a.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ok = true
	return a, nil
}

// Serve serves HTTP until ctx ends, then shuts down gracefully: it stops
// accepting, waits up to 30 seconds for requests in flight, flushes the
// request log and closes the database.
func (a *App) Serve(ctx context.Context) error {
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	go a.api.SweepReservations(sweepCtx, time.Minute)

	errc := make(chan error, 1)
	go func() { errc <- a.http.Serve(a.ln) }()
	a.log.Info("jetty server listening", "url", a.URL(), "dev", a.cfg.Dev)

	var serveErr error
	select {
	case err := <-errc:
		serveErr = err
	case <-ctx.Done():
		a.log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := a.http.Shutdown(sctx); err != nil {
			a.log.Warn("graceful shutdown incomplete", "err", err)
		}
		cancel()
		<-errc
	}
	stopSweep()
	a.api.Close()
	a.closeParts()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// Close releases everything without serving (for a New that is not
// followed by Serve).
func (a *App) Close() {
	if a.api != nil {
		a.api.Close()
	}
	a.closeParts()
}

func (a *App) closeParts() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// DemoAccount provisions (or, when it exists, re-keys) the dev demo
// account and returns its key and secret.
func (a *App) DemoAccount(ctx context.Context) (server.Account, string, error) {
	key, err := apikey.NewKey(a.cfg.LiveKeys)
	if err != nil {
		return server.Account{}, "", err
	}
	secret, err := apikey.NewSecret()
	if err != nil {
		return server.Account{}, "", err
	}
	const demoUser = "demo"
	acct, err := a.store.CreateAccount(ctx, server.NewAccount{
		UserID:     demoUser,
		Email:      "demo@example.com",
		Tier:       "pro",
		APIKey:     key,
		SecretHash: apikey.HashSecret(secret),
		S3Bucket:   a.cfg.Bucket,
		S3Prefix:   "users/" + demoUser,
	})
	if server.ErrorCode(err) == server.EAccountExists {
		acct, err = a.store.RotateCredentials(ctx, demoUser, key, apikey.HashSecret(secret))
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
	return prefix + strings.TrimPrefix(s, apikey.SecretPrefix)
}
