package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
)

const (
	// requestBatch is how many api_requests rows one DELETE removes (the
	// SQLite store takes 1000 at most): each batch is its own short
	// transaction (measured in docs/RELIABILITY.md, section 16), so the
	// table is never locked for long and SQLite's single writer is free
	// for the request log between batches.
	requestBatch = 5000
	// requestsPerPass bounds the rows one pass deletes, so that a first
	// pass over years of logs does not keep the other jobs waiting for
	// minutes; the next pass goes on where this one stopped.
	requestsPerPass = 500_000

	// purgeBatch is how many items of a deleted account are removed and
	// forgotten at a time; purgePerPass bounds the items of one pass (the
	// next pass resumes), purgeWorkers the storage calls in flight.
	purgeBatch    = 500
	purgePerPass  = 5000
	purgeWorkers  = 8
	purgeAccounts = 100
)

// limits are the batch sizes and per-pass budgets of the retention jobs;
// a zero field takes the default above (tests make them small).
type limits struct {
	requestBatch, requestsPerPass, purgeBatch, purgePerPass int
}

func (l limits) get(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// pruneRequests deletes api_requests rows older than the retention, and
// failed requests without an account older than the shorter anonymous
// retention, in batches.
func (r *Runner) pruneRequests(ctx context.Context, now time.Time) (int, error) {
	batch, perPass := r.limits.get(r.limits.requestBatch, requestBatch), r.limits.get(r.limits.requestsPerPass, requestsPerPass)
	total := 0
	for _, step := range []struct {
		keep       time.Duration
		anonFailed bool
	}{
		{r.RequestLogRetention, false},
		{r.AnonRequestLogRetention, true},
	} {
		if step.keep <= 0 {
			continue
		}
		before := now.Add(-step.keep)
		for total < perPass {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			n, err := r.Store.DeleteRequests(ctx, before, step.anonFailed, min(batch, perPass-total))
			total += n
			if err != nil {
				return total, err
			}
			if n == 0 {
				break // (a store may delete fewer than asked per call)
			}
		}
	}
	return total, nil
}

// purge removes the data of accounts deleted more than DeletedAccountGrace
// ago: every object of their assets, the multipart uploads of their
// sessions, anything else under their prefix users/{user_id}/, and then
// their rows; the account row stays as a tombstone. It reports how many
// accounts it finished and how many objects and uploads it removed. Work
// left when the pass's budget runs out is resumed by the next pass, as is
// work cut short by a crash: bytes go before the rows that point at them.
func (r *Runner) purge(ctx context.Context, now time.Time) (accounts, removed int, err error) {
	if r.DeletedAccountGrace <= 0 {
		return 0, 0, nil
	}
	due, err := r.Store.AccountsToPurge(ctx, now.Add(-r.DeletedAccountGrace), purgeAccounts)
	if err != nil {
		return 0, 0, err
	}
	budget := r.limits.get(r.limits.purgePerPass, purgePerPass)
	var errs []error
	for _, a := range due {
		if budget <= 0 || ctx.Err() != nil {
			break
		}
		n, done, err := r.purgeAccount(ctx, a, now, &budget)
		removed += n
		if err != nil {
			// One account's trouble (storage down, a key outside its
			// prefix) does not hold up the others.
			errs = append(errs, fmt.Errorf("account %s: %w", a.ID, err))
			continue
		}
		if done {
			accounts++
			r.log().Info("purged deleted account", "account", a.ID, "user_id", a.UserID, "deleted_at", a.DeletedAt)
		}
	}
	return accounts, removed, errors.Join(errs...)
}

// purgeAccount purges one deleted account within *budget items. done is
// false when the budget ran out first.
func (r *Runner) purgeAccount(ctx context.Context, a server.Account, now time.Time, budget *int) (removed int, done bool, err error) {
	if err := server.ValidateUserID(a.UserID); err != nil {
		// Its prefix could name other accounts' objects: leave it to a person.
		return 0, false, fmt.Errorf("user id %q is not valid, so its objects cannot be told apart: %w", a.UserID, err)
	}
	prefix := server.AccountPrefix(a.UserID)
	for {
		if *budget <= 0 {
			return removed, false, nil
		}
		items, err := r.Store.PurgeBatch(ctx, a.ID, min(r.limits.get(r.limits.purgeBatch, purgeBatch), *budget))
		if err != nil {
			return removed, false, err
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			if !strings.HasPrefix(it.ObjectKey, prefix) {
				return removed, false, fmt.Errorf("object key %q is outside the account's prefix %s; nothing of the account was purged", it.ObjectKey, prefix)
			}
		}
		gone, n, rmErr := r.removeItems(ctx, items)
		removed += n
		*budget -= len(items)
		if len(gone) > 0 {
			if err := r.Store.ForgetPurged(ctx, a.ID, gone); err != nil {
				return removed, false, err
			}
		}
		if rmErr != nil {
			return removed, false, rmErr
		}
	}
	// What no row points at: uploads and objects a crash left between
	// storage and the database.
	n, err := r.sweepPrefix(ctx, prefix)
	removed += n
	if err != nil {
		return removed, false, err
	}
	if _, err := r.Store.FinishPurge(ctx, a.ID, now); err != nil {
		return removed, false, err
	}
	return removed, true, nil
}

// removeItems deletes the bytes of items (aborting open uploads first),
// purgeWorkers at a time. It returns the items whose bytes are gone, how
// many objects or uploads that removed, and the first failure.
func (r *Runner) removeItems(ctx context.Context, items []server.PurgeItem) ([]server.PurgeItem, int, error) {
	var (
		mu      sync.Mutex
		gone    []server.PurgeItem
		removed int
		first   error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, purgeWorkers)
	)
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := r.removeItem(ctx, it)
			mu.Lock()
			defer mu.Unlock()
			removed += n
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			gone = append(gone, it)
		}()
	}
	wg.Wait()
	return gone, removed, first
}

func (r *Runner) removeItem(ctx context.Context, it server.PurgeItem) (int, error) {
	n := 0
	if it.UploadID != "" {
		if err := r.Blobs.AbortUpload(ctx, it.ObjectKey, it.UploadID); err != nil {
			return 0, fmt.Errorf("abort upload of %s: %w", it.ObjectKey, err)
		}
		n++
	}
	// A session's key is its object's once completed (gone with the
	// object) or a leftover of a crash; deleting a missing object is fine.
	if err := r.Blobs.Delete(ctx, it.ObjectKey); err != nil {
		return n, fmt.Errorf("delete %s: %w", it.ObjectKey, err)
	}
	if it.ObjectID != "" {
		n++
	}
	return n, nil
}

// sweepPrefix aborts every multipart upload and deletes every object
// under prefix (users/{user_id}/, which only one account's keys start
// with).
func (r *Runner) sweepPrefix(ctx context.Context, prefix string) (int, error) {
	removed := 0
	ups, err := r.Blobs.ListUploads(ctx, prefix, time.Time{})
	if err != nil {
		return 0, err
	}
	for _, u := range ups {
		if !strings.HasPrefix(u.Key, prefix) {
			continue
		}
		if err := r.Blobs.AbortUpload(ctx, u.Key, u.UploadID); err != nil {
			return removed, fmt.Errorf("abort upload of %s: %w", u.Key, err)
		}
		removed++
	}
	objs, err := r.Blobs.List(ctx, prefix)
	if err != nil {
		return removed, err
	}
	for _, o := range objs {
		if !strings.HasPrefix(o.Key, prefix) {
			continue
		}
		if err := r.Blobs.Delete(ctx, o.Key); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return removed, fmt.Errorf("delete %s: %w", o.Key, err)
		}
		removed++
	}
	return removed, nil
}
