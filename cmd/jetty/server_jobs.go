package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/server/app"
)

// ServerJobsOptions are the inputs of `jetty server jobs`.
type ServerJobsOptions struct {
	F         *Factory
	DataDir   string
	OrphanAge time.Duration
	JSON      bool
}

// NewCmdServerJobs builds `jetty server jobs`.
func NewCmdServerJobs(f *Factory, runF func(*ServerJobsOptions) error) *cobra.Command {
	opts := &ServerJobsOptions{F: f}
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Run the server's background jobs once",
		Long: `Run the background jobs once against the server's database and object
storage, configured exactly as for 'jetty server' (DATABASE_URL, LYVE_*,
--data-dir). A running server does the same every minute; this is for
operators and cron. It is safe while servers are running.

The jobs: release expired quota reservations, delete expired assets,
delete garbage objects (abandoned uploads, deduplicated copies, deleted
assets), abort multipart uploads and remove temporary files unknown to the
database and older than --orphan-age, roll usage up into storage_usage
for yesterday and today, delete request logs older than
JETTY_REQUEST_LOG_RETENTION (and failed requests without an account older
than JETTY_ANON_REQUEST_LOG_RETENTION), and purge the objects and rows of
accounts deleted longer ago than JETTY_DELETED_ACCOUNT_GRACE (the account
stays as a tombstone). Deleting a large backlog takes several runs: each
deletes at most 500,000 request rows and 5,000 objects.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return serverJobsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.DataDir, "data-dir", "", "directory of the embedded database and files (as for jetty server)")
	cmd.Flags().DurationVar(&opts.OrphanAge, "orphan-age", 24*time.Hour, "remove unknown multipart uploads and temporary files older than this")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the report as JSON")
	return cmd
}

func serverJobsRun(ctx context.Context, opts *ServerJobsOptions) error {
	cfg := app.FromEnv(opts.F.Getenv)
	if opts.DataDir != "" {
		cfg.DataDir = opts.DataDir
	}
	if opts.OrphanAge <= 0 {
		return usageError("--orphan-age must be positive")
	}
	cfg.OrphanAge = opts.OrphanAge
	log := app.NewLogger(opts.F.IO.ErrOut, cfg.LogLevel, "text")
	rep, err := app.RunJobs(ctx, cfg, log)
	if opts.JSON {
		enc := json.NewEncoder(opts.F.IO.Out)
		if encErr := enc.Encode(rep); encErr != nil {
			return encErr
		}
	} else {
		fmt.Fprintf(opts.F.IO.Out, "reservations released: %d\nfiles expired:         %d\nobjects collected:     %d\norphans removed:       %d\nusage rows written:    %d\n"+
			"requests deleted:      %d\naccounts purged:       %d\npurged objects:        %d\n",
			rep.ReservationsReleased, rep.AssetsExpired, rep.ObjectsCollected, rep.OrphansRemoved, rep.UsageRows,
			rep.RequestsDeleted, rep.AccountsPurged, rep.PurgedObjects)
	}
	return err
}
