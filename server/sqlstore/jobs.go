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
// downloads; RollupUsage sums their bytes_transferred as bandwidth.
const DownloadEndpoint = "GET /api/storage/assets/{id}/download"

// Limits of UsageRows, as RecentRequests.
const (
	defaultUsageLimit = 100
	maxUsageLimit     = 1000
)

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

// RollupUsage writes, in one statement, one storage_usage row per active
// or suspended account (a suspended account still stores its bytes;
// deleted ones are left out) for the period [start, end): storage_used_bytes
// now, the bytes_transferred of the period's downloads (DownloadEndpoint)
// and the number of the period's requests of the account in api_requests.
// Rows are keyed by (account, start): running it again replaces them,
// concurrently too. It reports how many rows it wrote.
func (s *Store) RollupUsage(ctx context.Context, start, end time.Time) (int, error) {
	start, end = ts(start), ts(end)
	if !start.Before(end) {
		return 0, server.Errorf(server.EInvalid, "usage period must end after it starts")
	}
	p := s.tsParam()
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO storage_usage (
  id, account_id, storage_bytes, bandwidth_bytes, request_count, period_start, period_end, recorded_at)
SELECT a.id || '@' || ?, a.id, a.storage_used_bytes,
  COALESCE((SELECT SUM(r.bytes_transferred) FROM api_requests r
    WHERE r.account_id = a.id AND r.created_at >= ? AND r.created_at < ? AND r.endpoint = ?), 0),
  (SELECT count(*) FROM api_requests r
    WHERE r.account_id = a.id AND r.created_at >= ? AND r.created_at < ?),
  `+p+`, `+p+`, `+p+`
FROM agentcache_accounts a
WHERE a.status IN ('active', 'suspended')
ORDER BY a.id
ON CONFLICT (account_id, period_start) DO UPDATE SET
  storage_bytes = excluded.storage_bytes,
  bandwidth_bytes = excluded.bandwidth_bytes,
  request_count = excluded.request_count,
  period_end = excluded.period_end,
  recorded_at = excluded.recorded_at`),
		start.Format(time.RFC3339Nano),
		start, end, DownloadEndpoint,
		start, end,
		start, end, s.nowUTC())
	if err != nil {
		return 0, wrap("roll up usage", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("roll up usage", err)
	}
	return int(n), nil
}

// UsageRows lists the storage_usage rows of an account, newest period
// first. limit <= 0 means 100; at most 1000 are returned.
func (s *Store) UsageRows(ctx context.Context, accountID string, limit int) ([]server.UsageRow, error) {
	if limit <= 0 {
		limit = defaultUsageLimit
	}
	limit = min(limit, maxUsageLimit)
	if !validKey(accountID) {
		return []server.UsageRow{}, nil
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT account_id, storage_bytes, bandwidth_bytes, request_count, period_start, period_end
FROM storage_usage WHERE account_id = ? ORDER BY period_start DESC LIMIT ?`), accountID, limit)
	if err != nil {
		return nil, wrap("usage rows", err)
	}
	defer rows.Close()
	out := []server.UsageRow{}
	for rows.Next() {
		var u server.UsageRow
		if err := rows.Scan(&u.AccountID, &u.StorageBytes, &u.BandwidthBytes, &u.RequestCount, &u.PeriodStart, &u.PeriodEnd); err != nil {
			return nil, wrap("usage rows", err)
		}
		u.PeriodStart, u.PeriodEnd = u.PeriodStart.UTC(), u.PeriodEnd.UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("usage rows", err)
	}
	return out, nil
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
