package sqlstore

import (
	"context"
	"time"

	"github.com/jettythunder/jetty/server"
)

// The figures of the operator console (server.OverviewStore). Days are
// UTC days, grouped in SQL by dayOf; percentiles of upload speeds are
// left to the caller (the dialects' percentile functions differ).

// provisionRoute is the request log's endpoint of provisioning calls.
const provisionRoute = "POST /api/agentcache/provision"

// dayOf is the SQL of the UTC day (YYYY-MM-DD) of a timestamp column.
func (s *Store) dayOf(col string) string {
	if s.dialect == Postgres {
		return "to_char(" + col + " AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
	}
	return "substr(" + col + ", 1, 10)"
}

// Overview reads the console's figures; see server.OverviewStore.
func (s *Store) Overview(ctx context.Context, now time.Time) (server.Overview, error) {
	const op = "overview"
	from, to := server.OverviewWindow(now)
	end := to.AddDate(0, 0, 1)
	o := server.Overview{From: from, To: to}
	var err error
	if o.Accounts, err = s.accountCounts(ctx); err != nil {
		return o, wrap(op, err)
	}
	prov := map[string]*server.ProvisionDay{}
	up := map[string]*server.UploadDay{}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		o.Provisioning = append(o.Provisioning, server.ProvisionDay{Day: d})
		o.Uploads = append(o.Uploads, server.UploadDay{Day: d})
	}
	for i := range o.Provisioning {
		prov[dayKey(o.Provisioning[i].Day)] = &o.Provisioning[i]
		up[dayKey(o.Uploads[i].Day)] = &o.Uploads[i]
	}

	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT `+s.dayOf("created_at")+`, count(*),
  COALESCE(SUM(CASE WHEN status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END), 0)
FROM api_requests WHERE endpoint = ? AND created_at >= ? AND created_at < ?
GROUP BY 1`), provisionRoute, from, end)
	if err != nil {
		return o, wrap(op, err)
	}
	for rows.Next() {
		var day string
		var calls, ok int64
		if err := rows.Scan(&day, &calls, &ok); err != nil {
			rows.Close()
			return o, wrap(op, err)
		}
		if p := prov[day]; p != nil {
			p.Calls, p.OK = calls, ok
		}
	}
	if err := closeRows(rows); err != nil {
		return o, wrap(op, err)
	}

	// A deduplicated asset points at an object recorded by another
	// transaction: the first asset of an object is inserted with it, at
	// the same instant.
	rows, err = s.rdb.QueryContext(ctx, s.q(`SELECT `+s.dayOf("a.created_at")+`, count(*), CAST(COALESCE(SUM(a.size_bytes), 0) AS BIGINT),
  COALESCE(SUM(CASE WHEN o.created_at <> a.created_at THEN 1 ELSE 0 END), 0),
  CAST(COALESCE(SUM(CASE WHEN o.created_at <> a.created_at THEN a.size_bytes ELSE 0 END), 0) AS BIGINT)
FROM agentcache_assets a LEFT JOIN stored_objects o ON o.id = a.object_id
WHERE a.created_at >= ? AND a.created_at < ?
GROUP BY 1`), from, end)
	if err != nil {
		return o, wrap(op, err)
	}
	for rows.Next() {
		var day string
		var d server.UploadDay
		if err := rows.Scan(&day, &d.Uploads, &d.Bytes, &d.DedupHits, &d.DedupBytes); err != nil {
			rows.Close()
			return o, wrap(op, err)
		}
		if u := up[day]; u != nil {
			d.Day = u.Day
			*u = d
		}
	}
	if err := closeRows(rows); err != nil {
		return o, wrap(op, err)
	}

	rows, err = s.rdb.QueryContext(ctx, s.q(`SELECT upload_speed_mbps FROM agentcache_assets
WHERE created_at >= ? AND created_at < ? AND upload_speed_mbps IS NOT NULL AND upload_speed_mbps > 0
ORDER BY created_at DESC LIMIT ?`), from, end, server.MaxOverviewSpeeds)
	if err != nil {
		return o, wrap(op, err)
	}
	o.Speeds = []float64{}
	for rows.Next() {
		var v float64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return o, wrap(op, err)
		}
		o.Speeds = append(o.Speeds, v)
	}
	if err := closeRows(rows); err != nil {
		return o, wrap(op, err)
	}

	rows, err = s.rdb.QueryContext(ctx, `SELECT agentcache_tier, count(*),
  CAST(COALESCE(SUM(storage_used_bytes), 0) AS BIGINT), CAST(COALESCE(SUM(storage_reserved_bytes), 0) AS BIGINT),
  CAST(COALESCE(SUM(storage_quota_gb), 0) AS BIGINT)
FROM agentcache_accounts WHERE status <> 'deleted'
GROUP BY agentcache_tier ORDER BY agentcache_tier`)
	if err != nil {
		return o, wrap(op, err)
	}
	o.Storage = []server.TierStorage{}
	for rows.Next() {
		var t server.TierStorage
		var quotaGB int64
		if err := rows.Scan(&t.Tier, &t.Accounts, &t.UsedBytes, &t.ReservedBytes, &quotaGB); err != nil {
			rows.Close()
			return o, wrap(op, err)
		}
		t.QuotaBytes = quotaGB * server.GiB
		o.Storage = append(o.Storage, t)
	}
	if err := closeRows(rows); err != nil {
		return o, wrap(op, err)
	}

	err = s.rdb.QueryRowContext(ctx, `SELECT
  COALESCE(SUM(CASE WHEN state = 'pending' AND attempts = 0 THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN state = 'pending' AND attempts > 0 THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), 0)
FROM webhook_events`).Scan(&o.Outbox.Pending, &o.Outbox.Failing, &o.Outbox.Failed, &o.Outbox.Delivered)
	if err != nil {
		return o, wrap(op, err)
	}
	return o, nil
}

// accountCounts counts accounts by tier and status.
func (s *Store) accountCounts(ctx context.Context) ([]server.AccountCount, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT agentcache_tier, status, count(*) FROM agentcache_accounts
GROUP BY agentcache_tier, status ORDER BY agentcache_tier, status`)
	if err != nil {
		return nil, err
	}
	out := []server.AccountCount{}
	for rows.Next() {
		var c server.AccountCount
		if err := rows.Scan(&c.Tier, &c.Status, &c.Count); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, c)
	}
	return out, closeRows(rows)
}

// closeRows closes rows and reports the error that ended them, if any.
func closeRows(rows interface {
	Err() error
	Close() error
}) error {
	if err := rows.Err(); err != nil {
		rows.Close()
		return err
	}
	return rows.Close()
}

// EdgeNodes lists every recorded relay; see server.OverviewStore.
func (s *Store) EdgeNodes(ctx context.Context) ([]server.EdgeNode, error) {
	return s.edgeNodes(ctx, "edge nodes", `SELECT `+edgeNodeCols+` FROM edge_nodes ORDER BY id`)
}
