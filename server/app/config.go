// Package app wires the companion server together from its configuration:
// it picks the embedded default (SQLite file and in-process limits under a
// data directory) or production parts (PostgreSQL via DATABASE_URL, Redis
// via REDIS_URL), mounts the AgentCache relay when INTERNAL_WEBHOOK_SECRET
// is set, picks the object store (S3 when LYVE_ENDPOINT is set, files
// under the data directory otherwise), runs the HTTP server and the
// background jobs, and shuts them down gracefully.
//
// cmd/jetty's `server` command is a thin shell around Run.
package app

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/internal/secrets"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// Config is everything `jetty server` needs. FromEnv fills it from the
// environment (seed names); flags override it.
type Config struct {
	Listen  string // host:port; PORT gives ":PORT"
	DataDir string // SQLite file and (later) blobs for the embedded default
	Dev     bool   // generate secrets, provision a demo account, test keys

	DatabaseURL string // DATABASE_URL: PostgreSQL when set, SQLite otherwise
	RedisURL    string // REDIS_URL: shared rate limits and relay cache

	WebhookSecret string // AGENTCACHE_WEBHOOK_SECRET
	// PreviousWebhookSecret (AGENTCACHE_WEBHOOK_SECRET_PREVIOUS) is still
	// accepted while AgentCache moves to a new webhook secret.
	PreviousWebhookSecret string
	// RequireSignature (AGENTCACHE_REQUIRE_SIGNATURE=1) refuses partner
	// calls that are not signed with X-Jetty-Signature.
	RequireSignature bool
	InternalSecret   string // INTERNAL_WEBHOOK_SECRET: mounts the relay
	RelayUpstream    string // JETTYTHUNDER_API_URL (default: this server)
	UpstreamSecret   string // JETTYTHUNDER_WEBHOOK_SECRET (default: WebhookSecret)
	RelayKey         string // JETTY_RELAY_ENCRYPTION_KEY: 64 hex chars (default: derived)
	// TokenSecret signs upload tokens (JETTY_TOKEN_SECRET, else
	// JETTY_EDGE_SECRET). Every server instance and edge must share it;
	// when unset a random one is made per process (one instance only).
	TokenSecret string
	// EdgeSecret (JETTY_EDGE_SECRET) is shared with the edge relays: it
	// authenticates their heartbeats and seals the token key sent to them.
	// Empty: no relay can register (--dev generates one).
	EdgeSecret string
	// DirectUploads offers the object store itself as an edge (presigned
	// part URLs) when the backend is S3 (JETTY_DIRECT_UPLOADS, default on;
	// "off", "false", "0" or "no" turns it off).
	DirectUploads bool

	// S3 is the object store when LYVE_ENDPOINT is set; nil means files
	// under DataDir/blobs.
	S3        *s3blob.Config
	PublicURL string // JETTY_PUBLIC_URL: the base URL clients are told to use

	// JobsInterval is how often background jobs run (JETTY_JOBS_INTERVAL,
	// default 1m); OrphanAge how old unknown multipart uploads and temp
	// files must be before they are removed (default 24h).
	JobsInterval time.Duration
	OrphanAge    time.Duration
	// CompletionLease (JETTY_COMPLETION_LEASE, default 30s) is how long a
	// completion holds its session without renewing: after a server dies
	// inside a completion, the resumed upload takes the session over once
	// it ran out.
	CompletionLease time.Duration

	// RequestLogRetention (JETTY_REQUEST_LOG_RETENTION, default 720h) is
	// how long api_requests rows are kept, AnonRequestLogRetention
	// (JETTY_ANON_REQUEST_LOG_RETENTION, default 168h, never longer) how
	// long those of failed requests without an account are, and
	// DeletedAccountGrace (JETTY_DELETED_ACCOUNT_GRACE, default 720h) how
	// long a deleted account's data is kept before the jobs purge it.
	// 0 takes the default; negative (the variable set to "off" or "0")
	// means never: kept forever. See docs/decisions.md.
	RequestLogRetention     time.Duration
	AnonRequestLogRetention time.Duration
	DeletedAccountGrace     time.Duration
	envErr                  error // a malformed variable, reported by validate

	// StorageMinFree (JETTY_STORAGE_MIN_FREE) is the free space the object
	// store must keep for /readyz to call it ready: a size ("2GiB"), a
	// percentage of the filesystem ("10%"), or "off"; empty: the smaller
	// of 1 GiB and 5% (see api.MinFree).
	StorageMinFree string
	minFree        api.MinFree

	Bucket   string // LYVE_BUCKET_NAME
	LiveKeys bool   // jt_live_ keys; false in --dev or with JETTY_KEY_ENV=test

	LogLevel  string // JETTY_LOG_LEVEL: debug, info, warn, error
	LogFormat string // JETTY_LOG_FORMAT: json or text

	// BodyTimeout (JETTY_BODY_TIMEOUT, default 30s) bounds request
	// bodies: an upload body may send nothing for that long, any other
	// body must arrive whole within it (see internal/connguard).
	BodyTimeout time.Duration
	// Conns caps the connections (see internal/connguard); zero fields
	// follow the file-descriptor limit.
	Conns connguard.Limits

	// MetricsListen (JETTY_METRICS_LISTEN), when set, serves GET /metrics
	// on its own listener (e.g. 127.0.0.1:9090) and not on the main one.
	MetricsListen string
	// Webhooks configures the delivery of status events to partners'
	// webhook_url (JETTY_WEBHOOK_*; see WebhookConfig).
	Webhooks WebhookConfig

	// MetricsToken (JETTY_METRICS_TOKEN), when set, must be sent as
	// Authorization: Bearer to read /metrics, wherever it is served.
	// With neither set the main listener serves /metrics only in --dev.
	MetricsToken string

	// ConsoleToken (JETTY_CONSOLE_TOKEN), when set, mounts the operator
	// console under /console; operators sign in with it (server/console).
	// ConsoleSecureCookie (JETTY_CONSOLE_SECURE_COOKIE=1) marks its
	// session cookie Secure on plain-http requests too: set it behind a
	// TLS-terminating proxy.
	ConsoleToken        string
	ConsoleSecureCookie bool

	// CORSOrigins (JETTY_CORS_ORIGINS, --cors-origins) lists the browser
	// origins allowed to call the user API, comma-separated; empty: no
	// CORS (see api.ParseCORSOrigins).
	CORSOrigins string
	corsOrigins []string // parsed by validate
	// RateLimitMax (RATE_LIMIT_MAX_REQUESTS) calls per RateLimitWindow
	// (RATE_LIMIT_WINDOW_MS, default 1m) is a server-wide ceiling beside
	// the tiers' limits (api.RateCeiling); 0: none.
	RateLimitMax    int
	RateLimitWindow time.Duration
	// JettySpeedDisabled (JETTYSPEED_ENABLED=false) turns chunked uploads
	// off server-wide: files go in one request.
	JettySpeedDisabled bool
	// DrainDelay (JETTY_DRAIN_DELAY; FromEnv's default DefaultDrainDelay,
	// none in --dev unless set) is how long a stopping server keeps
	// serving with /readyz answering 503 "draining", so that its load
	// balancer takes it out of rotation first; 0: none. ShutdownTimeout
	// (JETTY_SHUTDOWN_TIMEOUT, default DefaultShutdownTimeout) bounds
	// the wait for requests in flight after that. See drain.go.
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	unusedEnv       []unusedVar // seed variables set but without effect (seedenv.go)
	drainDelaySet   bool        // JETTY_DRAIN_DELAY was given
}

// FromEnv reads the configuration from getenv (os.Getenv in production).
func FromEnv(getenv func(string) string) Config {
	c := Config{
		DataDir:        getenv("JETTY_DATA_DIR"),
		DatabaseURL:    getenv("DATABASE_URL"),
		RedisURL:       getenv("REDIS_URL"),
		WebhookSecret:  getenv("AGENTCACHE_WEBHOOK_SECRET"),
		InternalSecret: getenv("INTERNAL_WEBHOOK_SECRET"),
		RelayUpstream:  getenv("JETTYTHUNDER_API_URL"),
		UpstreamSecret: getenv("JETTYTHUNDER_WEBHOOK_SECRET"),
		RelayKey:       getenv("JETTY_RELAY_ENCRYPTION_KEY"),
		TokenSecret:    getenv("JETTY_TOKEN_SECRET"),
		Bucket:         getenv("LYVE_BUCKET_NAME"),
		LiveKeys:       getenv("JETTY_KEY_ENV") != "test",
		LogLevel:       getenv("JETTY_LOG_LEVEL"),
		LogFormat:      getenv("JETTY_LOG_FORMAT"),
		StorageMinFree: getenv("JETTY_STORAGE_MIN_FREE"),
	}
	c.EdgeSecret = getenv("JETTY_EDGE_SECRET")
	c.PreviousWebhookSecret = getenv("AGENTCACHE_WEBHOOK_SECRET_PREVIOUS")
	c.RequireSignature = isTrue(getenv("AGENTCACHE_REQUIRE_SIGNATURE"))
	if c.TokenSecret == "" {
		c.TokenSecret = c.EdgeSecret
	}
	switch strings.ToLower(strings.TrimSpace(getenv("JETTY_DIRECT_UPLOADS"))) {
	case "off", "false", "0", "no":
	default:
		c.DirectUploads = true
	}
	c.PublicURL = getenv("JETTY_PUBLIC_URL")
	if s3cfg, ok := s3blob.ConfigFromEnv(getenv); ok {
		c.S3 = &s3cfg
	}
	c.JobsInterval, _ = time.ParseDuration(getenv("JETTY_JOBS_INTERVAL"))
	if v := getenv("JETTY_COMPLETION_LEASE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			c.CompletionLease = d
		} else {
			c.CompletionLease = -1 // refused by validate
		}
	}
	c.RequestLogRetention = retentionEnv(getenv, "JETTY_REQUEST_LOG_RETENTION", &c.envErr)
	c.AnonRequestLogRetention = retentionEnv(getenv, "JETTY_ANON_REQUEST_LOG_RETENTION", &c.envErr)
	c.DeletedAccountGrace = retentionEnv(getenv, "JETTY_DELETED_ACCOUNT_GRACE", &c.envErr)
	if v := getenv("JETTY_BODY_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > time.Hour {
			c.envErr = fmt.Errorf("JETTY_BODY_TIMEOUT must be a duration between 100ms and 1h, such as 30s (got %q)", v)
		}
		c.BodyTimeout = d
	}
	c.Webhooks = webhooksFromEnv(getenv, &c.envErr)
	c.MetricsListen = getenv("JETTY_METRICS_LISTEN")
	c.MetricsToken = getenv("JETTY_METRICS_TOKEN")
	c.ConsoleToken = getenv("JETTY_CONSOLE_TOKEN")
	c.ConsoleSecureCookie = isTrue(getenv("JETTY_CONSOLE_SECURE_COOKIE"))
	c.CORSOrigins = getenv("JETTY_CORS_ORIGINS")
	c.DrainDelay, c.ShutdownTimeout = DefaultDrainDelay, DefaultShutdownTimeout
	if v := getenv("JETTY_DRAIN_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 10*time.Minute {
			c.envErr = fmt.Errorf("JETTY_DRAIN_DELAY must be a duration between 0s and 10m, such as 5s (got %q)", v)
		}
		c.DrainDelay, c.drainDelaySet = d, true
	}
	if v := getenv("JETTY_SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > time.Hour {
			c.envErr = fmt.Errorf("JETTY_SHUTDOWN_TIMEOUT must be a duration between 1s and 1h, such as 30s (got %q)", v)
		}
		c.ShutdownTimeout = d
	}
	c.seedEnv(getenv)
	if p := getenv("PORT"); p != "" {
		c.Listen = ":" + p
	}
	if c.Bucket == "" {
		c.Bucket = "agentcache-assets"
	}
	return c
}

// isTrue reads a boolean environment variable: 1, true, yes or on.
func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// retentionEnv reads a retention variable: unset is 0 (the default), "off"
// or "0" is -1 (never), otherwise a Go duration ("720h") or whole days
// ("30d"). A malformed value is recorded in *errp for validate.
func retentionEnv(getenv func(string) string, name string, errp *error) time.Duration {
	v := strings.ToLower(strings.TrimSpace(getenv(name)))
	switch v {
	case "":
		return 0
	case "off", "0", "never":
		return -1
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 && n < 100*365 {
			return time.Duration(n) * 24 * time.Hour
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		if *errp == nil {
			*errp = fmt.Errorf("%s=%q: give a duration such as 720h or 30d, or off", name, v)
		}
		return 0
	}
	return d
}

// retention fills the retention defaults and checks the minimums.
func (c *Config) retention() error {
	if c.RequestLogRetention == 0 {
		c.RequestLogRetention = server.DefaultRequestLogRetention
	}
	if c.AnonRequestLogRetention == 0 {
		c.AnonRequestLogRetention = server.DefaultAnonRequestLogRetention
		if c.RequestLogRetention < 0 {
			c.AnonRequestLogRetention = -1 // keeping every request means these too
		}
	}
	if c.RequestLogRetention > 0 && c.AnonRequestLogRetention > c.RequestLogRetention {
		c.AnonRequestLogRetention = c.RequestLogRetention
	}
	if c.DeletedAccountGrace == 0 {
		c.DeletedAccountGrace = server.DefaultDeletedAccountGrace
	}
	switch {
	case c.RequestLogRetention > 0 && c.RequestLogRetention < server.MinRequestLogRetention:
		return fmt.Errorf("JETTY_REQUEST_LOG_RETENTION must be at least %s (the usage roll-up reads two days of requests), or off", server.MinRequestLogRetention)
	case c.AnonRequestLogRetention > 0 && c.AnonRequestLogRetention < time.Hour:
		return fmt.Errorf("JETTY_ANON_REQUEST_LOG_RETENTION must be at least 1h, or off")
	case c.DeletedAccountGrace > 0 && c.DeletedAccountGrace < server.MinDeletedAccountGrace:
		return fmt.Errorf("JETTY_DELETED_ACCOUNT_GRACE must be at least %s (uploads in flight at the deletion end within a day), or off", server.MinDeletedAccountGrace)
	}
	return nil
}

// DefaultListen is where the server listens when neither --listen nor
// PORT says otherwise: loopback only, port 3001 as in the seeds.
const DefaultListen = "127.0.0.1:3001"

// DefaultDataDir is $XDG_DATA_HOME/jetty (or ~/.local/share/jetty), with
// a separate "dev" directory for --dev runs.
func DefaultDataDir(dev bool) string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		if home, err := os.UserHomeDir(); err == nil {
			base = filepath.Join(home, ".local", "share")
		} else {
			base = os.TempDir()
		}
	}
	if dev {
		return filepath.Join(base, "jetty", "dev")
	}
	return filepath.Join(base, "jetty", "server")
}

// validate fills defaults and checks the configuration.
func (c *Config) validate() error {
	if c.envErr != nil {
		return c.envErr
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = connguard.DefaultBodyTimeout
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir(c.Dev)
	}
	if c.Dev {
		c.LiveKeys = false
		// A developer's receiver is on this machine, over plain http.
		c.Webhooks.AllowHTTP, c.Webhooks.AllowPrivate = true, true
		// No load balancer to wait for: Ctrl-C stops at once.
		if !c.drainDelaySet {
			c.DrainDelay = 0
		}
	}
	if c.JobsInterval <= 0 {
		c.JobsInterval = time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.OrphanAge <= 0 {
		c.OrphanAge = 24 * time.Hour
	}
	if err := c.retention(); err != nil {
		return err
	}
	if err := c.checkSeedEnv(); err != nil {
		return err
	}
	if c.S3 != nil && c.S3.Bucket != "" {
		c.Bucket = c.S3.Bucket
	}
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("the public URL must start with http:// or https:// (got %q)", c.PublicURL)
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return fmt.Errorf("DATABASE_URL must be a postgres:// URL (leave it unset for the embedded SQLite database)")
	}
	if c.RelayKey != "" {
		if _, err := hex.DecodeString(c.RelayKey); err != nil || len(c.RelayKey) != 64 {
			return fmt.Errorf("JETTY_RELAY_ENCRYPTION_KEY must be 64 hex characters (32 bytes); %s", secrets.HowToMake)
		}
	}
	if c.CompletionLease != 0 && (c.CompletionLease < time.Second || c.CompletionLease > time.Hour) {
		return fmt.Errorf("JETTY_COMPLETION_LEASE must be a duration from 1s to 1h, such as 30s")
	}
	mf, err := api.ParseMinFree(c.StorageMinFree)
	if err != nil {
		return fmt.Errorf("JETTY_STORAGE_MIN_FREE: %w", err)
	}
	c.minFree = mf
	return c.checkSecrets()
}

// CheckShared refuses, for a `jetty server` process configured from the
// environment, what breaks as soon as a second instance runs: Redis is
// what instances share, so with REDIS_URL several are meant, and each
// must verify the upload tokens the others sign. A per-process key
// passes a one-instance test and fails every chunk the balancer sends
// to another instance. (Tests that build a Config in code pick their
// own keys and do not call it.)
func (c Config) CheckShared() error {
	if c.RedisURL != "" && c.TokenSecret == "" && !c.Dev {
		return fmt.Errorf("REDIS_URL is set (instances share it) but neither JETTY_TOKEN_SECRET nor JETTY_EDGE_SECRET is: every instance must sign upload tokens with the same key; set JETTY_TOKEN_SECRET to the same value on every instance (%s)", secrets.HowToMake)
	}
	return nil
}

// checkSecrets refuses secrets too weak to start with (see
// internal/secrets). Unset ones stay allowed: their feature is off, or
// --dev generates them.
func (c *Config) checkSecrets() error {
	tokenVar := "JETTY_TOKEN_SECRET"
	if c.TokenSecret != "" && subtle.ConstantTimeCompare([]byte(c.TokenSecret), []byte(c.EdgeSecret)) == 1 {
		tokenVar = "JETTY_EDGE_SECRET" // FromEnv's default
	}
	for _, s := range []struct{ name, value string }{
		{"AGENTCACHE_WEBHOOK_SECRET", c.WebhookSecret},
		{"AGENTCACHE_WEBHOOK_SECRET_PREVIOUS", c.PreviousWebhookSecret},
		{"INTERNAL_WEBHOOK_SECRET", c.InternalSecret},
		{"JETTYTHUNDER_WEBHOOK_SECRET", c.UpstreamSecret},
		{"JETTY_EDGE_SECRET", c.EdgeSecret},
		{tokenVar, c.TokenSecret},
		{"JETTY_RELAY_ENCRYPTION_KEY", c.RelayKey},
		{"JETTY_METRICS_TOKEN", c.MetricsToken},
		{"JETTY_CONSOLE_TOKEN", c.ConsoleToken},
	} {
		if err := secrets.Check(s.name, s.value); err != nil {
			return err
		}
	}
	return nil
}

// WebhookConfig is how status events are delivered (server/webhooks).
// Zero durations take the package's defaults.
type WebhookConfig struct {
	// AllowHTTP (JETTY_WEBHOOK_ALLOW_HTTP=1; on in --dev) accepts http://
	// webhook URLs; otherwise only https://.
	AllowHTTP bool
	// AllowPrivate (JETTY_WEBHOOK_ALLOW_PRIVATE=1; on in --dev) lets the
	// server call loopback, private and link-local addresses. Off in
	// production: a partner-supplied URL must not reach the server's own
	// network (SSRF).
	AllowPrivate bool
	Poll         time.Duration // JETTY_WEBHOOK_POLL (1s)
	RetryBase    time.Duration // JETTY_WEBHOOK_RETRY_BASE (10s): the first retry's delay, doubled each time
	RetryMax     time.Duration // JETTY_WEBHOOK_RETRY_MAX (1h): the longest delay between attempts
	MaxAge       time.Duration // JETTY_WEBHOOK_MAX_AGE (72h): then the event is marked failed
	Timeout      time.Duration // JETTY_WEBHOOK_TIMEOUT (10s): each HTTP call
	Retention    time.Duration // JETTY_WEBHOOK_RETENTION (720h, or off): delivered and failed events kept
}

// webhooksFromEnv reads JETTY_WEBHOOK_*; a malformed value is recorded in
// *errp for validate.
func webhooksFromEnv(getenv func(string) string, errp *error) WebhookConfig {
	w := WebhookConfig{
		AllowHTTP:    isTrue(getenv("JETTY_WEBHOOK_ALLOW_HTTP")),
		AllowPrivate: isTrue(getenv("JETTY_WEBHOOK_ALLOW_PRIVATE")),
	}
	for _, d := range []struct {
		name     string
		dst      *time.Duration
		min, max time.Duration
	}{
		{"JETTY_WEBHOOK_POLL", &w.Poll, 10 * time.Millisecond, time.Hour},
		{"JETTY_WEBHOOK_RETRY_BASE", &w.RetryBase, 10 * time.Millisecond, 24 * time.Hour},
		{"JETTY_WEBHOOK_RETRY_MAX", &w.RetryMax, 10 * time.Millisecond, 7 * 24 * time.Hour},
		{"JETTY_WEBHOOK_MAX_AGE", &w.MaxAge, time.Second, 30 * 24 * time.Hour},
		{"JETTY_WEBHOOK_TIMEOUT", &w.Timeout, 100 * time.Millisecond, 5 * time.Minute},
	} {
		v := strings.TrimSpace(getenv(d.name))
		if v == "" {
			continue
		}
		x, err := time.ParseDuration(v)
		if err != nil || x < d.min || x > d.max {
			if *errp == nil {
				*errp = fmt.Errorf("%s must be a duration from %s to %s (got %q)", d.name, d.min, d.max, v)
			}
			continue
		}
		*d.dst = x
	}
	w.Retention = retentionEnv(getenv, "JETTY_WEBHOOK_RETENTION", errp)
	return w
}
