package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"time"

	"github.com/jettythunder/jetty/server"
)

// DownloadEndpoint is the route pattern that request logs carry for asset
// downloads (migration 0010 took their bytes_transferred as the bytes out
// of the days before the usage ledger).
const DownloadEndpoint = "GET /api/storage/assets/{id}/download"

// ClaimGarbage claims up to limit (at least 1) objects due at now: garbage
// whose not_before is not after now, and pending uploads whose deadline
// has come (they become garbage, so CreateAsset can no longer record
// them), skipping those another collector holds a lease on. Each is leased
// until now+lease and returned, oldest due first. On PostgreSQL the rows
// are locked with FOR UPDATE SKIP LOCKED, on SQLite the single writer
// serializes claims, so concurrent collectors never get the same object.
func (s *Store) ClaimGarbage(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]server.GarbageObject, error) {
	if limit < 1 {
		return nil, server.Errorf(server.EInvalid, "limit must be positive, got %d", limit)
	}
	if lease <= 0 {
		return nil, server.Errorf(server.EInvalid, "lease must be positive, got %s", lease)
	}
	now = ts(now)
	lock := ""
	if s.dialect == Postgres {
		lock = ` FOR UPDATE SKIP LOCKED`
	}
	rows, err := s.db.QueryContext(ctx, s.q(`UPDATE blob_garbage SET state = 'garbage', claimed_until = ?
WHERE object_key IN (
  SELECT object_key FROM blob_garbage
  WHERE not_before <= ? AND (claimed_until IS NULL OR claimed_until < ?)
  ORDER BY not_before, object_key LIMIT ?`+lock+`)
RETURNING object_key, upload_id, not_before`), ts(now.Add(lease)), now, now, limit)
	if err != nil {
		return nil, wrap("claim garbage", err)
	}
	defer rows.Close()
	out := []server.GarbageObject{}
	for rows.Next() {
		var g server.GarbageObject
		if err := rows.Scan(&g.ObjectKey, &g.UploadID, &g.NotBefore); err != nil {
			return nil, wrap("claim garbage", err)
		}
		g.NotBefore = g.NotBefore.UTC()
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("claim garbage", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NotBefore.Equal(out[j].NotBefore) {
			return out[i].NotBefore.Before(out[j].NotBefore)
		}
		return out[i].ObjectKey < out[j].ObjectKey
	})
	return out, nil
}

// ObjectCollected forgets the garbage object key once its bytes are gone.
// A key that is not recorded as garbage is left alone (a pending upload
// is never forgotten this way), without error.
func (s *Store) ObjectCollected(ctx context.Context, key string) error {
	if !validKey(key) {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM blob_garbage WHERE object_key = ? AND state = 'garbage'`), key); err != nil {
		return wrap("object collected", err)
	}
	return nil
}

// IsKnownObject reports whether key is an asset's object or is pending or
// garbage.
func (s *Store) IsKnownObject(ctx context.Context, key string) (bool, error) {
	if !validKey(key) {
		return false, nil
	}
	var known bool
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT EXISTS (SELECT 1 FROM stored_objects WHERE object_key = ?)
  OR EXISTS (SELECT 1 FROM blob_garbage WHERE object_key = ?)`), key, key).Scan(&known)
	if err != nil {
		return false, wrap("is known object", err)
	}
	return known, nil
}

// TryLease takes the lease name for holder until now+ttl when it is free,
// expired (expires_at not after now) or already holder's, in one
// statement, and reports whether holder has it.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || !validText(name, 255) || !validText(holder, 255) {
		return false, server.Errorf(server.EInvalid, "lease name and holder must be 1 to 255 bytes of UTF-8")
	}
	if ttl <= 0 {
		return false, server.Errorf(server.EInvalid, "lease ttl must be positive, got %s", ttl)
	}
	now := s.nowUTC()
	var got string
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO job_leases (name, holder, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= ?
RETURNING holder`), name, holder, ts(now.Add(ttl)), now).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap("try lease", err)
	}
	return got == holder, nil
}
