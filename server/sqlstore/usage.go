package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
)

// The usage ledger (usage_days) and the daily roll-up into storage_usage;
// see server.UsageStore and docs/decisions.md ("Issue 19: usage and
// cost").

// usageLockKey is the first half of the PostgreSQL advisory lock a day's
// roll-up takes (the second is the day's number since 1970): concurrent
// roll-ups of one day run one after the other.
const usageLockKey = 0x75736167 // "usag"

// Accounts per page of UsageRows.
const maxUsageAccounts = 1000

// dayKey is the ledger's name of the UTC day of t.
func dayKey(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// noteUsage adds in and out bytes to the ledger row of accountID for the
// UTC day of now and, with storage, records the account's
// storage_used_bytes as it stands in tx (after the change tx made). Called
// after the account's row was updated, keeping the lock order asset,
// object, account, ledger.
func (s *Store) noteUsage(ctx context.Context, tx *sql.Tx, accountID string, now time.Time, in, out int64, storage bool) error {
	stored := "NULL"
	args := []any{accountID, dayKey(now), in, out}
	if storage {
		stored = "(SELECT storage_used_bytes FROM agentcache_accounts WHERE id = ?)"
		args = append(args, accountID)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO usage_days (account_id, day, bytes_in, bytes_out, storage_bytes)
VALUES (?, ?, ?, ?, `+stored+`)
ON CONFLICT (account_id, day) DO UPDATE SET
  bytes_in = usage_days.bytes_in + excluded.bytes_in,
  bytes_out = usage_days.bytes_out + excluded.bytes_out,
  storage_bytes = COALESCE(excluded.storage_bytes, usage_days.storage_bytes)`), args...); err != nil {
		return wrap("usage ledger", err)
	}
	return nil
}

// money is the SQL that turns an integer expression of Money units into a
// DECIMAL(10,4) value (NULL stays NULL).
func (s *Store) money(expr string) string {
	if s.dialect == Postgres {
		return "CAST(" + expr + " AS NUMERIC) / 10000"
	}
	return "(" + expr + ") / 10000.0"
}

// units is the SQL that reads a DECIMAL(10,4) column back as Money units.
func moneyUnits(col string) string { return "CAST(round(" + col + " * 10000) AS BIGINT)" }

// RollupUsageDay writes the storage_usage rows of one UTC day; see
// server.UsageStore. In one transaction (on PostgreSQL under an advisory
// lock per day, SQLite's single writer serializes it anyway): nothing when
// the day is already final; else the day's provisional rows are deleted
// (an account that turns out not to have existed that day loses its row)
// and written again from the ledger, the request log and the tier prices,
// and with final the day is recorded in usage_final_days.
func (s *Store) RollupUsageDay(ctx context.Context, day time.Time, final bool) (int, error) {
	const op = "roll up usage"
	start := server.UsageDay(day)
	end := start.AddDate(0, 0, 1)
	key := dayKey(start)
	k, n := server.DayOfMonth(start)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, wrap(op, err)
	}
	defer rollback(tx)
	if s.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, usageLockKey, int32(start.Unix()/86400)); err != nil {
			return 0, wrap(op, err)
		}
	}
	var done int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM usage_final_days WHERE day = ?`), key).Scan(&done); err != nil {
		return 0, wrap(op, err)
	}
	if done > 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM storage_usage WHERE period_start = ? AND final = false`), start); err != nil {
		return 0, wrap(op, err)
	}
	share := `(t.monthly_price_cents * 100 * ?) / ? - (t.monthly_price_cents * 100 * ?) / ?`
	p := s.tsParam()
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO storage_usage (
  id, account_id, tier, storage_bytes, bandwidth_bytes, bytes_in, bytes_out, request_count,
  period_start, period_end, storage_cost, bandwidth_cost, total_cost, final, recorded_at)
SELECT x.id || '@' || ?, x.id, x.tier, x.storage_bytes, x.bytes_out, x.bytes_in, x.bytes_out, x.requests,
  `+p+`, `+p+`, `+s.money(share)+`, CASE WHEN t.monthly_price_cents IS NULL THEN NULL ELSE 0 END, `+s.money(share)+`,
  CAST(? AS BOOLEAN), `+p+`
FROM (
  SELECT a.id,
    COALESCE((SELECT l.tier FROM usage_days l
      WHERE l.account_id = a.id AND l.day <= ? AND l.tier IS NOT NULL ORDER BY l.day DESC LIMIT 1), a.agentcache_tier) AS tier,
    COALESCE((SELECT l.storage_bytes FROM usage_days l
      WHERE l.account_id = a.id AND l.day <= ? AND l.storage_bytes IS NOT NULL ORDER BY l.day DESC LIMIT 1), 0) AS storage_bytes,
    COALESCE(d.bytes_in, 0) AS bytes_in,
    COALESCE(d.bytes_out, 0) AS bytes_out,
    (SELECT count(*) FROM api_requests r WHERE r.account_id = a.id AND r.created_at >= ? AND r.created_at < ?) AS requests
  FROM agentcache_accounts a
  LEFT JOIN usage_days d ON d.account_id = a.id AND d.day = ?
  WHERE a.created_at < ? AND (a.status <> 'deleted' OR a.deleted_at >= ?)
) x
LEFT JOIN tier_configs t ON t.tier = x.tier
WHERE true
ORDER BY x.id
ON CONFLICT (account_id, period_start) DO NOTHING`),
		start.Format(time.RFC3339Nano),
		start, end,
		k, n, k-1, n,
		k, n, k-1, n,
		final, s.nowUTC(),
		key, key, start, end, key,
		end, start)
	if err != nil {
		return 0, wrap(op, err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return 0, wrap(op, err)
	}
	if final {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO usage_final_days (day, finalized_at) VALUES (?, ?)`), key, s.nowUTC()); err != nil {
			return 0, wrap(op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, wrap(op, err)
	}
	return int(rows), nil
}

// UsageWatermark reports the last finalized day and the oldest account's
// creation time.
func (s *Store) UsageWatermark(ctx context.Context) (server.UsageWatermark, error) {
	var w server.UsageWatermark
	var last string
	err := s.rdb.QueryRowContext(ctx, `SELECT day FROM usage_final_days ORDER BY day DESC LIMIT 1`).Scan(&last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return w, wrap("usage watermark", err)
	default:
		t, err := time.Parse(time.DateOnly, last)
		if err != nil {
			return w, wrap("usage watermark", err)
		}
		w.LastFinal = t
	}
	err = s.rdb.QueryRowContext(ctx, `SELECT created_at FROM agentcache_accounts ORDER BY created_at LIMIT 1`).Scan(&w.FirstAccount)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return w, wrap("usage watermark", err)
	}
	w.FirstAccount = w.FirstAccount.UTC()
	return w, nil
}

// usageRange checks a range of days and returns its bounds as stored
// period starts.
func usageRange(from, to time.Time) (time.Time, time.Time, error) {
	from, to = server.UsageDay(from), server.UsageDay(to)
	if to.Before(from) {
		return from, to, server.Errorf(server.EInvalid, "usage range ends (%s) before it starts (%s)", dayKey(to), dayKey(from))
	}
	return from, to, nil
}

const usageRowCols = `a.id, a.agentcache_user_id, COALESCE(u.tier, a.agentcache_tier), u.period_start, u.storage_bytes,
  u.bytes_in, u.bytes_out, u.request_count, ` + `CAST(round(u.storage_cost * 10000) AS BIGINT), CAST(round(u.bandwidth_cost * 10000) AS BIGINT),
  CAST(round(u.total_cost * 10000) AS BIGINT), u.final`

// UsageRows lists the rows of q; see server.UsageStore.
func (s *Store) UsageRows(ctx context.Context, q server.UsageQuery) (server.UsagePage, error) {
	const op = "usage rows"
	page := server.UsagePage{Rows: []server.UsageRow{}}
	if q.Accounts < 1 || q.Accounts > maxUsageAccounts {
		return page, server.Errorf(server.EInvalid, "accounts per page must be 1 to %d, got %d", maxUsageAccounts, q.Accounts)
	}
	from, to, err := usageRange(q.From, q.To)
	if err != nil {
		return page, err
	}
	filter := `u2.period_start >= ? AND u2.period_start <= ? AND a2.agentcache_user_id > ?`
	args := []any{from, to, q.After}
	if q.UserID != "" {
		filter += ` AND a2.agentcache_user_id = ?`
		args = append(args, q.UserID)
	}
	args = append(args, q.Accounts+1, from, to)
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT `+usageRowCols+`
FROM storage_usage u JOIN agentcache_accounts a ON a.id = u.account_id
WHERE a.agentcache_user_id IN (
  SELECT DISTINCT a2.agentcache_user_id FROM storage_usage u2 JOIN agentcache_accounts a2 ON a2.id = u2.account_id
  WHERE `+filter+` ORDER BY a2.agentcache_user_id LIMIT ?)
  AND u.period_start >= ? AND u.period_start <= ?
ORDER BY a.agentcache_user_id, u.period_start`), args...)
	if err != nil {
		return page, wrap(op, err)
	}
	defer rows.Close()
	seen := 0
	last := ""
	for rows.Next() {
		var (
			r          server.UsageRow
			sc, bc, tc sql.NullInt64
		)
		if err := rows.Scan(&r.AccountID, &r.UserID, &r.Tier, &r.Day, &r.StorageBytes, &r.BytesIn, &r.BytesOut, &r.RequestCount,
			&sc, &bc, &tc, &r.Final); err != nil {
			return page, wrap(op, err)
		}
		if r.UserID != last {
			seen++
			last = r.UserID
			if seen > q.Accounts {
				// The first account of the next page.
				page.Next = page.Rows[len(page.Rows)-1].UserID
				break
			}
		}
		r.Day = r.Day.UTC()
		r.Priced = tc.Valid
		r.StorageCost, r.BandwidthCost, r.TotalCost = server.Money(sc.Int64), server.Money(bc.Int64), server.Money(tc.Int64)
		page.Rows = append(page.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return page, wrap(op, err)
	}
	return page, nil
}

// UsageByTier adds up rows per tier; see server.UsageStore.
func (s *Store) UsageByTier(ctx context.Context, from, to time.Time, userID string) ([]server.TierUsage, error) {
	const op = "usage by tier"
	from, to, err := usageRange(from, to)
	if err != nil {
		return nil, err
	}
	where := `u.period_start >= ? AND u.period_start <= ?`
	args := []any{from, to}
	if userID != "" {
		where += ` AND a.agentcache_user_id = ?`
		args = append(args, userID)
	}
	sum := func(expr string) string { return "CAST(COALESCE(SUM(" + expr + "), 0) AS BIGINT)" }
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT COALESCE(u.tier, a.agentcache_tier) AS tier,
  count(DISTINCT u.account_id), count(*), count(u.total_cost),
  `+strings.Join([]string{sum("u.storage_bytes"), sum("u.bytes_in"), sum("u.bytes_out"), sum("u.request_count"),
		sum(moneyUnits("u.storage_cost")), sum(moneyUnits("u.bandwidth_cost")), sum(moneyUnits("u.total_cost"))}, ", ")+`
FROM storage_usage u JOIN agentcache_accounts a ON a.id = u.account_id
WHERE `+where+`
GROUP BY COALESCE(u.tier, a.agentcache_tier)
ORDER BY 1`), args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	out := []server.TierUsage{}
	for rows.Next() {
		var (
			t          server.TierUsage
			priced     int64
			sc, bc, tc int64
		)
		if err := rows.Scan(&t.Tier, &t.Accounts, &t.Days, &priced, &t.StorageByteDays, &t.BytesIn, &t.BytesOut, &t.RequestCount,
			&sc, &bc, &tc); err != nil {
			return nil, wrap(op, err)
		}
		t.Priced = priced == t.Days
		t.StorageCost, t.BandwidthCost, t.TotalCost = server.Money(sc), server.Money(bc), server.Money(tc)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}
