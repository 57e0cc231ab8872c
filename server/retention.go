package server

import (
	"context"
	"time"
)

// Retention defaults (see docs/decisions.md, "Retention and purging").
const (
	// DefaultRequestLogRetention is how long api_requests rows are kept.
	DefaultRequestLogRetention = 30 * 24 * time.Hour
	// DefaultAnonRequestLogRetention is how long rows of failed requests
	// that no account made (404s, bad keys, bad signatures) are kept: the
	// cheapest rows for anyone to create, and the least useful.
	DefaultAnonRequestLogRetention = 7 * 24 * time.Hour
	// MinRequestLogRetention is the shortest retention of rows that belong
	// to an account: the usage roll-up re-reads yesterday's requests until
	// the end of today, so they must live for two days.
	MinRequestLogRetention = 48 * time.Hour
	// DefaultDeletedAccountGrace is how long a deleted account's data is
	// kept before the jobs purge it.
	DefaultDeletedAccountGrace = 30 * 24 * time.Hour
	// MinDeletedAccountGrace is the shortest grace: every upload of the
	// account that was in flight when it was deleted has ended by then
	// (sessions, reservations and pending objects live at most a day).
	MinDeletedAccountGrace = 24 * time.Hour
)

// PurgeItem is something a deleted account still holds in storage: one
// of its stored objects (ObjectID set: the bytes of its assets), or one of
// its upload sessions (SessionID set; UploadID is the multipart upload to
// abort while the session is open or completing, else empty).
type PurgeItem struct {
	ObjectID  string
	SessionID string
	ObjectKey string
	UploadID  string
	Size      int64
}

// RetentionStore is the part of Store that keeps the database from growing
// without bound: request-log retention and the purge of deleted accounts.
//
// A purge goes in this order, so that a crash anywhere resumes on the next
// run and never leaves bytes that no row points at: PurgeBatch names the
// next items, the caller deletes their bytes (and aborts their uploads),
// ForgetPurged drops their rows; when PurgeBatch has nothing left, the
// caller removes whatever else lies under the account's prefix, then
// FinishPurge drops the remaining rows and marks the account purged.
type RetentionStore interface {
	// DeleteRequests deletes up to limit (at least 1) api_requests rows
	// created before `before`, oldest first, in one statement, and reports
	// how many it deleted. A store may delete fewer per call than limit
	// (SQLite: 1000, to free its single writer often), so callers repeat
	// until it deletes none. With anonFailed set only rows of failed
	// requests (status 400 or more) without an account are deleted.
	DeleteRequests(ctx context.Context, before time.Time, anonFailed bool, limit int) (int, error)

	// AccountsToPurge lists up to limit deleted accounts that were deleted
	// before deletedBefore and are not purged yet, deleted longest ago
	// first.
	AccountsToPurge(ctx context.Context, deletedBefore time.Time, limit int) ([]Account, error)
	// PurgeBatch returns up to limit items the deleted account still holds
	// (its stored objects first, then its upload sessions); an empty list
	// when there are none. An account that is not deleted is EConflict,
	// a missing one ENotFound.
	PurgeBatch(ctx context.Context, accountID string, limit int) ([]PurgeItem, error)
	// ForgetPurged drops the rows of items whose bytes are gone, in one
	// transaction: a stored object with the assets that point at it (its
	// size leaves storage_used_bytes, never below zero), a session. Items
	// already forgotten are skipped. Same errors as PurgeBatch.
	ForgetPurged(ctx context.Context, accountID string, items []PurgeItem) error
	// FinishPurge completes the purge of a deleted account, in one
	// transaction: it drops every asset, stored object, session and
	// reservation row of the account left, the pending and garbage
	// records under its prefix, sets used and reserved storage to zero,
	// clears the e-mail address and records PurgedAt (now). The account
	// row stays as a tombstone. Finishing again changes nothing and
	// returns the account. Same errors as PurgeBatch.
	FinishPurge(ctx context.Context, accountID string, now time.Time) (Account, error)
}
