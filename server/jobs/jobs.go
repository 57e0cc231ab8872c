// Package jobs runs the server's background work: releasing expired quota
// reservations, deleting expired assets, collecting garbage objects
// (abandoned uploads, deduplicated copies, deleted assets), aborting
// orphaned multipart uploads, rolling usage up into storage_usage,
// forgetting edge relays that stopped heartbeating, deleting request logs
// past their retention, and purging the data of accounts deleted longer
// ago than the grace period.
//
// Every step is idempotent, and a database lease makes one server instance
// at a time run them, so any number of instances can run the loop; `jetty
// server jobs` runs one pass by hand.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
)

// Runner runs the jobs against one store and one blob store.
type Runner struct {
	Store  server.Store
	Blobs  blob.Store
	Log    *slog.Logger
	Holder string           // this instance's lease name (hostname:pid, say)
	Now    func() time.Time // clock; time.Now when nil

	// OrphanAge is how old a multipart upload or temporary file unknown to
	// the database must be before it is removed (default 24h).
	OrphanAge time.Duration

	// RequestLogRetention is how long api_requests rows are kept, and
	// AnonRequestLogRetention how long those of failed requests without
	// an account are (0: kept; the server passes its configuration, see
	// server.DefaultRequestLogRetention).
	RequestLogRetention     time.Duration
	AnonRequestLogRetention time.Duration
	// DeletedAccountGrace is how long after its deletion an account's
	// objects and rows are purged (0: never).
	DeletedAccountGrace time.Duration

	limits limits
}

// Report says what one pass did.
type Report struct {
	ReservationsReleased int `json:"reservations_released"`
	AssetsExpired        int `json:"assets_expired"`
	ObjectsCollected     int `json:"objects_collected"`
	OrphansRemoved       int `json:"orphans_removed"`
	UsageRows            int `json:"usage_rows"`
	EdgesPruned          int `json:"edges_pruned"`
	RequestsDeleted      int `json:"requests_deleted"`
	AccountsPurged       int `json:"accounts_purged"`
	// PurgedObjects counts the objects and multipart uploads of deleted
	// accounts removed from storage.
	PurgedObjects int `json:"purged_objects"`
}

const (
	batch     = 500
	gcLease   = 10 * time.Minute
	leaseName = "server-jobs"
	// edgeMaxAge is how long an edge relay may go without a heartbeat
	// before its row is deleted. It stops being offered much sooner
	// (server.EdgeLiveness); this only keeps edge_nodes from growing with
	// relays that died without deregistering.
	edgeMaxAge = time.Hour
)

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// tempCleaner is implemented by blob stores that keep temporary files.
type tempCleaner interface {
	CleanTemp(olderThan time.Time) (int, error)
}

// RunOnce runs every job once. It keeps going when one step fails and
// returns the first error.
func (r *Runner) RunOnce(ctx context.Context) (Report, error) {
	var rep Report
	var errs []error
	now := r.now()
	orphanAge := r.OrphanAge
	if orphanAge == 0 {
		orphanAge = 24 * time.Hour
	}

	n, err := r.Store.ReleaseExpiredReservations(ctx, now)
	rep.ReservationsReleased = n
	errs = append(errs, wrap("release reservations", err))

	for {
		n, err := r.Store.DeleteExpiredAssets(ctx, now, batch)
		rep.AssetsExpired += n
		if err != nil || n < batch {
			errs = append(errs, wrap("delete expired assets", err))
			break
		}
	}

	n, err = r.collect(ctx, now)
	rep.ObjectsCollected = n
	errs = append(errs, wrap("collect garbage", err))

	n, err = r.orphans(ctx, now.Add(-orphanAge))
	rep.OrphansRemoved = n
	errs = append(errs, wrap("remove orphans", err))

	n, rollupErr := r.rollup(ctx, now)
	rep.UsageRows = n
	errs = append(errs, wrap("roll up usage", rollupErr))

	n, err = r.Store.PruneEdges(ctx, now, edgeMaxAge)
	rep.EdgesPruned = n
	errs = append(errs, wrap("prune edges", err))

	// After the roll-up, which reads the requests of the days not final
	// yet (the retention is never shorter than two days); not at all when
	// it failed, so that no day's requests go before its row is final.
	if rollupErr == nil {
		n, err = r.pruneRequests(ctx, now)
		rep.RequestsDeleted = n
		errs = append(errs, wrap("prune request log", err))
	}

	rep.AccountsPurged, rep.PurgedObjects, err = r.purge(ctx, now)
	errs = append(errs, wrap("purge deleted accounts", err))

	return rep, errors.Join(errs...)
}

func wrap(step string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", step, err)
}

// collect deletes the bytes of garbage objects and forgets them.
func (r *Runner) collect(ctx context.Context, now time.Time) (int, error) {
	done := 0
	for {
		items, err := r.Store.ClaimGarbage(ctx, now, gcLease, batch)
		if err != nil {
			return done, err
		}
		for _, g := range items {
			if g.UploadID != "" {
				if err := r.Blobs.AbortUpload(ctx, g.ObjectKey, g.UploadID); err != nil {
					r.log().Warn("abort upload", "key", g.ObjectKey, "err", err)
					continue
				}
			}
			if err := r.Blobs.Delete(ctx, g.ObjectKey); err != nil {
				r.log().Warn("delete garbage object", "key", g.ObjectKey, "err", err)
				continue // claimed for gcLease; retried after it
			}
			if err := r.Store.ObjectCollected(ctx, g.ObjectKey); err != nil {
				return done, err
			}
			done++
		}
		if len(items) < batch {
			return done, nil
		}
	}
}

// orphans aborts multipart uploads and removes temporary files that the
// database does not know and that are older than cutoff: the remains of a
// crash between the blob store and the database.
func (r *Runner) orphans(ctx context.Context, cutoff time.Time) (int, error) {
	removed := 0
	ups, err := r.Blobs.ListUploads(ctx, server.AccountsRoot, cutoff)
	if err != nil {
		return 0, err
	}
	for _, u := range ups {
		known, err := r.Store.IsKnownObject(ctx, u.Key)
		if err != nil {
			return removed, err
		}
		if known {
			continue // the collector owns it
		}
		if err := r.Blobs.AbortUpload(ctx, u.Key, u.UploadID); err != nil {
			r.log().Warn("abort orphaned upload", "key", u.Key, "err", err)
			continue
		}
		removed++
	}
	if tc, ok := r.Blobs.(tempCleaner); ok {
		n, err := tc.CleanTemp(cutoff)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// Loop runs a pass every interval until ctx ends, when this instance holds
// the jobs lease.
func (r *Runner) Loop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.tick(ctx, interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) tick(ctx context.Context, interval time.Duration) {
	ok, err := r.Store.TryLease(ctx, leaseName, r.Holder, 2*interval)
	if err != nil {
		if ctx.Err() == nil {
			r.log().Warn("jobs lease", "err", err)
		}
		return
	}
	if !ok {
		return
	}
	rep, err := r.RunOnce(ctx)
	if err != nil && ctx.Err() == nil {
		r.log().Warn("background jobs", "err", err)
	}
	level := slog.LevelDebug
	if rep.ReservationsReleased+rep.AssetsExpired+rep.ObjectsCollected+rep.OrphansRemoved+rep.EdgesPruned+
		rep.RequestsDeleted+rep.AccountsPurged+rep.PurgedObjects > 0 {
		level = slog.LevelInfo
	}
	r.log().Log(ctx, level, "background jobs", "reservations_released", rep.ReservationsReleased, "assets_expired", rep.AssetsExpired,
		"objects_collected", rep.ObjectsCollected, "orphans_removed", rep.OrphansRemoved, "usage_rows", rep.UsageRows,
		"edges_pruned", rep.EdgesPruned, "requests_deleted", rep.RequestsDeleted, "accounts_purged", rep.AccountsPurged,
		"purged_objects", rep.PurgedObjects)
}
