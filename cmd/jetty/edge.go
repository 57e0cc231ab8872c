package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/internal/secrets"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/relay"
)

// EdgeOptions are the inputs of `jetty edge`.
type EdgeOptions struct {
	F         *Factory
	Origin    string
	Listen    string
	PublicURL string
	Location  string
	ID        string
	Capacity  int
	Interval  time.Duration
	// NoS3 forwards chunks to the origin even when LYVE_* is set.
	NoS3 bool
	// Ready, when set, is called with the relay once it is registered
	// and listening (tests use it).
	Ready func(*relay.Relay, net.Addr)

	ctx context.Context
}

// DefaultEdgeListen is where a relay listens by default.
const DefaultEdgeListen = "127.0.0.1:3002"

// NewCmdEdge builds `jetty edge`.
func NewCmdEdge(f *Factory, runF func(*EdgeOptions) error) *cobra.Command {
	opts := &EdgeOptions{F: f}
	cmd := &cobra.Command{
		Use:   "edge --origin URL",
		Short: "Run an edge relay that takes upload chunks for an origin server",
		Long: `Run a JettySpeed edge relay: a stateless node that takes chunk uploads for
the origin server (jetty server) and writes them to storage.

The relay registers with the origin and heartbeats its load; the origin
offers it to clients (POST /api/jetty/optimal-edges) while the heartbeats
keep coming. It keeps no database: it checks the origin-signed upload token
of every chunk and the chunk's SHA-256 while it streams, and stores nothing
unverified.

Where chunks go:
  - with LYVE_ENDPOINT and the S3 credentials set (the same as the
    server's), straight into the object store;
  - otherwise (or with --no-s3) forwarded to the origin.

JETTY_EDGE_SECRET must be set, the same as on the server: at least 32
characters of random text (make one with openssl rand -hex 32).
JETTY_BODY_TIMEOUT (default 30s) is how long a chunk body may send nothing,
and how long any other request body may take in all. Connections are capped
from the file-descriptor limit: silent ones that never authenticated are
closed first (see docs/decisions.md).

--public-url is the address clients are told to use (a proxy or load
balancer in front of the relay); by default the listen address. On SIGTERM
or Ctrl-C the relay stops taking new chunks, finishes those in flight,
deregisters and exits.`,
		Example: `  JETTY_EDGE_SECRET=... jetty edge --origin https://jetty.example.com --listen :3002 \
      --public-url https://fra.edge.jetty.example.com --location fra`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Origin == "" {
				return usageError("jetty edge needs --origin URL, the base URL of the jetty server it relays for")
			}
			if opts.Capacity < 0 {
				return usageError("--capacity must be positive")
			}
			if opts.Interval < 0 || (opts.Interval > 0 && (opts.Interval < 100*time.Millisecond || opts.Interval > time.Minute)) {
				return usageError("--heartbeat must be between 100ms and 1m")
			}
			opts.ctx = cmd.Context()
			if runF != nil {
				return runF(opts)
			}
			return edgeRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Origin, "origin", "", "base URL of the origin server (required)")
	fl.StringVar(&opts.Listen, "listen", "", "address to listen on (default "+DefaultEdgeListen+", or :$PORT)")
	fl.StringVar(&opts.PublicURL, "public-url", "", "base URL clients are told to use (default: the listen address)")
	fl.StringVar(&opts.Location, "location", "", "edge catalogue location this relay serves, e.g. fra (see jetty edges --locations)")
	fl.StringVar(&opts.ID, "id", "", "relay id (default: edge_ and random hex)")
	fl.IntVar(&opts.Capacity, "capacity", relay.DefaultCapacity, "chunks taken at once; more are sent elsewhere")
	fl.DurationVar(&opts.Interval, "heartbeat", relay.DefaultInterval, "heartbeat period")
	fl.BoolVar(&opts.NoS3, "no-s3", false, "forward chunks to the origin even when LYVE_ENDPOINT is set")
	return cmd
}

func edgeRun(ctx context.Context, opts *EdgeOptions) error {
	getenv := opts.F.Getenv
	secret := getenv("JETTY_EDGE_SECRET")
	if secret == "" {
		return &ExitError{Code: ExitAuth, Err: fmt.Errorf("JETTY_EDGE_SECRET is not set: give the relay the same secret as the server (jetty server --dev prints one)")}
	}
	if err := secrets.Check("JETTY_EDGE_SECRET", secret); err != nil {
		return &ExitError{Code: ExitAuth, Err: fmt.Errorf("%w (the same on the relay and the server)", err)}
	}
	listen := opts.Listen
	if listen == "" {
		listen = DefaultEdgeListen
		if p := getenv("PORT"); p != "" {
			listen = ":" + p
		}
	}
	format := getenv("JETTY_LOG_FORMAT")
	if format == "" {
		format = "text"
	}
	log := app.NewLogger(opts.F.IO.ErrOut, getenv("JETTY_LOG_LEVEL"), format)
	cfg := relay.Config{
		Origin:    opts.Origin,
		PublicURL: opts.PublicURL,
		Location:  opts.Location,
		ID:        opts.ID,
		Secret:    secret,
		Capacity:  opts.Capacity,
		Interval:  opts.Interval,
		Logger:    log,
		Version:   version,
	}
	if v := getenv("JETTY_BODY_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > time.Hour {
			return usageError("JETTY_BODY_TIMEOUT must be a duration between 100ms and 1h, such as 30s (got %q)", v)
		}
		cfg.BodyIdle = d
	}
	if s3cfg, ok := s3blob.ConfigFromEnv(getenv); ok && !opts.NoS3 {
		cfg.S3 = &s3cfg
	}
	r, err := relay.New(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	defer ln.Close()
	if opts.Ready != nil {
		r.OnRegistered = func() { opts.Ready(r, ln.Addr()) }
	}
	return r.Serve(ctx, ln)
}
