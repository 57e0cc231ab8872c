package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/server/app"
)

// ServerOptions are the inputs of `jetty server`.
type ServerOptions struct {
	F       *Factory
	Listen  string
	DataDir string
	Dev     bool
	// PublicURL overrides JETTY_PUBLIC_URL.
	PublicURL string
	// CORSOrigins overrides JETTY_CORS_ORIGINS.
	CORSOrigins string
	// Ready, when set, is called with the running app (tests use it).
	Ready func(*app.App)
}

// NewCmdServer builds `jetty server`.
func NewCmdServer(f *Factory, runF func(*ServerOptions) error) *cobra.Command {
	opts := &ServerOptions{F: f}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the companion server (provisioning, quotas, storage)",
		Long: `Run the jetty companion server.

With nothing configured it runs on the embedded default: a SQLite database
and object files under --data-dir, rate limits in memory. In production set:

  DATABASE_URL               PostgreSQL (postgres://...)
  REDIS_URL                  Redis, for rate limits and caches shared by instances
  AGENTCACHE_WEBHOOK_SECRET  shared secret for AgentCache's provisioning calls
  AGENTCACHE_WEBHOOK_SECRET_PREVIOUS  also accepted while that secret is rotated
  AGENTCACHE_REQUIRE_SIGNATURE  1: partner calls must carry X-Jetty-Signature (docs/partner-webhooks.md)
  INTERNAL_WEBHOOK_SECRET    mounts the AgentCache relay (/api/webhooks/jettythunder/provision)
  JETTYTHUNDER_API_URL       where the relay provisions (default: this server)
  LYVE_ENDPOINT              S3-compatible object storage (else files under --data-dir)
  LYVE_REGION, LYVE_ACCESS_KEY_ID, LYVE_SECRET_ACCESS_KEY (or LYVE_ACCESS_KEY, LYVE_SECRET_KEY)
  LYVE_BUCKET_NAME           bucket (default agentcache-assets; created when missing)
  JETTY_PUBLIC_URL           base URL clients are told to use (behind a proxy)
  JETTY_EDGE_SECRET          shared with the edge relays (jetty edge); without it none can register
  JETTY_TOKEN_SECRET         signs upload tokens; the same on every instance (default: JETTY_EDGE_SECRET)
  JETTY_RELAY_ENCRYPTION_KEY 64 hex characters: encrypts the relay's cached credentials (default: derived)
  JETTY_METRICS_LISTEN       serve GET /metrics on this address only, e.g. 127.0.0.1:9090
  JETTY_METRICS_TOKEN        require Authorization: Bearer <token> for /metrics
                             (with neither, /metrics is not served; --dev serves it to anyone)
  JETTY_CONSOLE_TOKEN        turns on the operator console at /console; operators sign in with this
                             token (a secret: at least 32 random characters; docs/console.md)
  JETTY_CONSOLE_SECURE_COOKIE  1: mark the console's session cookie Secure on plain-http requests too
                             (behind a TLS-terminating proxy; requests over TLS get it anyway)
  JETTY_BODY_TIMEOUT         how long an upload body may send nothing, and any other body may
                             take in all (default 30s)
  JETTY_S3_PUBLIC_ENDPOINT   the S3 endpoint as clients reach it, for presigned direct uploads
  JETTY_DIRECT_UPLOADS       off: never offer direct uploads to S3 (default on with LYVE_ENDPOINT)
  JETTY_COMPLETION_LEASE     how long a completion holds its session unrenewed (default 30s): after a crash the
                             resumed upload finishes the same session once it ran out
  JETTY_REQUEST_LOG_RETENTION       keep api_requests rows this long (default 720h; 30d works; off: forever)
  JETTY_ANON_REQUEST_LOG_RETENTION  failed requests without an account: this long (default 168h)
  JETTY_DELETED_ACCOUNT_GRACE       purge a deleted account's objects this long after deletion (default 720h; off: never)
  JETTY_WEBHOOK_ALLOW_HTTP     1: accept http:// webhook_url values (on in --dev)
  JETTY_WEBHOOK_ALLOW_PRIVATE  1: send status events to loopback and private addresses (on in --dev; SSRF risk)
  JETTY_WEBHOOK_TIMEOUT, JETTY_WEBHOOK_RETRY_BASE, JETTY_WEBHOOK_RETRY_MAX, JETTY_WEBHOOK_MAX_AGE,
  JETTY_WEBHOOK_POLL, JETTY_WEBHOOK_RETENTION  delivery of status events (defaults 10s, 10s, 1h, 72h, 1s, 720h)
  JETTY_CORS_ORIGINS         browser origins allowed to call the user API, comma-separated exact origins
                             (https://agentcache.ai,http://localhost:5173); default none: no CORS
  RATE_LIMIT_MAX_REQUESTS    server-wide ceiling beside the tiers' limits: calls per account (and per
                             address for refused credentials) in each RATE_LIMIT_WINDOW_MS (default 60000)
  JETTYSPEED_ENABLED         false: no chunked upload sessions; files go in one request (default true)
  JETTY_DRAIN_DELAY          on SIGTERM, /readyz answers 503 "draining" while the server serves on this long,
                             so a load balancer stops sending first (default 5s; none in --dev unless set;
                             at least the balancer's check interval × fall count, see deploy/haproxy.cfg)
  JETTY_SHUTDOWN_TIMEOUT     then how long it waits for requests in flight, chunk uploads included (default 30s)
  PORT                       listen on :PORT when --listen is not given

Seed variables that mean nothing here (JETTYSPEED_CDN_URL, AGENTCACHE_API_URL,
NODE_ENV, LYVE_* without LYVE_ENDPOINT) are named in a warning at start.

Every secret must be at least 32 characters of random text, without
surrounding spaces or repetition (make one with openssl rand -hex 32); the
server refuses to start with a weaker one. Unset secrets turn their feature
off. Connections are capped from the file-descriptor limit: silent ones that
never authenticated are closed first. When the database or the object store
is down, calls answer 503 with Retry-After.

--dev generates the secrets it lacks, provisions a demo account and prints
how to use it: the jetty login line for its address, and curl examples. The
demo account's key and secret are kept in dev-credentials.json (mode 0600)
in the data directory and reused when the same data directory is served
again (new ones are issued when the account is gone or they no longer
verify); nothing of this is written without --dev.`,
		Example: `  jetty server --dev
  DATABASE_URL=postgres://jetty@db/jetty REDIS_URL=redis://cache:6379 \
    AGENTCACHE_WEBHOOK_SECRET=... jetty server --listen :3001`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return serverRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Listen, "listen", "", "address to listen on (default "+app.DefaultListen+", or :$PORT)")
	cmd.Flags().StringVar(&opts.DataDir, "data-dir", "", "directory for the embedded database and files (default $XDG_DATA_HOME/jetty/server, or .../jetty/dev with --dev)")
	cmd.Flags().StringVar(&opts.PublicURL, "public-url", "", "base URL clients are told to use, when a proxy or load balancer is in front (env JETTY_PUBLIC_URL)")
	cmd.Flags().StringVar(&opts.CORSOrigins, "cors-origins", "", "browser origins allowed to call the user API, comma-separated, such as https://agentcache.ai (env JETTY_CORS_ORIGINS)")
	cmd.AddCommand(NewCmdServerJobs(f, nil))
	cmd.Flags().BoolVar(&opts.Dev, "dev", false, "development mode: generate secrets, provision a demo account, issue jt_test_ keys")
	return cmd
}

func serverRun(ctx context.Context, opts *ServerOptions) error {
	cfg := app.FromEnv(opts.F.Getenv)
	if opts.Listen != "" {
		cfg.Listen = opts.Listen
	}
	if opts.DataDir != "" {
		cfg.DataDir = opts.DataDir
	}
	if opts.PublicURL != "" {
		cfg.PublicURL = opts.PublicURL
	}
	if opts.CORSOrigins != "" {
		cfg.CORSOrigins = opts.CORSOrigins
	}
	cfg.Dev = opts.Dev
	if err := cfg.CheckShared(); err != nil {
		return err
	}
	format := cfg.LogFormat
	if format == "" && opts.Dev {
		format = "text"
	}
	log := app.NewLogger(opts.F.IO.ErrOut, cfg.LogLevel, format)

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if opts.Dev {
		if err := printDevBanner(ctx, opts.F.IO.Out, a); err != nil {
			a.Close()
			return err
		}
	}
	if opts.Ready != nil {
		opts.Ready(a)
	}
	return a.Serve(ctx)
}

// printDevBanner provisions the demo account and tells the newcomer what
// to do with it.
func printDevBanner(ctx context.Context, w io.Writer, a *app.App) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	acct, secret, err := a.DemoAccount(dctx)
	if err != nil {
		return fmt.Errorf("provision demo account: %w", err)
	}
	cfg := a.Config()
	u := a.URL()
	db := "SQLite " + cfg.DataDir + "/jetty.db"
	if cfg.DatabaseURL != "" {
		db = "PostgreSQL (DATABASE_URL)"
	}
	objects := "files under " + cfg.DataDir + "/blobs"
	if cfg.S3 != nil {
		objects = "S3 bucket " + cfg.S3.Bucket + " at " + cfg.S3.Endpoint
	}
	_, err = fmt.Fprintf(w, `jetty server (dev mode) on %[1]s
  database:  %[2]s
  objects:   %[9]s

Secrets generated for this run (set them yourself to keep them stable):
  export AGENTCACHE_WEBHOOK_SECRET=%[3]s
  export INTERNAL_WEBHOOK_SECRET=%[4]s
  export JETTY_EDGE_SECRET=%[10]s   # for relays: jetty edge --origin %[1]s

Demo account %[5]q (tier %[6]s); its key and secret stay the same when this
data directory is served again (kept in %[11]s, mode 0600):
  export JETTY_SERVER=%[1]s
  export JETTY_API_KEY=%[7]s
  export JETTY_API_SECRET=%[8]s

Use it with jetty, in another terminal:
  jetty login --server %[1]s
      (paste the key and the secret above; or without prompts, after the exports:
       echo "$JETTY_API_KEY:$JETTY_API_SECRET" | jetty login --server %[1]s --with-token)
  or skip the login: with the three exports above set, every jetty command uses them.
  echo "Hello JettyThunder!" > test.txt && jetty upload test.txt && jetty ls

Or with curl:
  curl -s $JETTY_SERVER/api/agentcache/quota -H "Authorization: Bearer $JETTY_API_KEY" -H "X-API-Secret: $JETTY_API_SECRET"
  echo "Hello JettyThunder!" > test.txt
  curl -s -X POST $JETTY_SERVER/api/storage/upload -H "Authorization: Bearer $JETTY_API_KEY" -H "X-API-Secret: $JETTY_API_SECRET" \
       -H "X-Filename: test.txt" --data-binary @test.txt
  curl -s $JETTY_SERVER/api/storage/assets -H "Authorization: Bearer $JETTY_API_KEY" -H "X-API-Secret: $JETTY_API_SECRET"
  curl -s -X POST $JETTY_SERVER/api/agentcache/provision -H "Authorization: Bearer $AGENTCACHE_WEBHOOK_SECRET" \
       -H "Content-Type: application/json" -d '{"agentcache_user_id":"usr_test_123","agentcache_email":"test@example.com","tier":"pro"}'

Press Ctrl-C to stop.
`, u, db, cfg.WebhookSecret, cfg.InternalSecret, acct.UserID, acct.Tier, acct.APIKey, secret, objects, cfg.EdgeSecret,
		filepath.Join(cfg.DataDir, app.DevCredentialsFile))
	return err
}
