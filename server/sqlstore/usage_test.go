package sqlstore

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// TestUsageDayEnd moves the store's clock across midnight: the day's row
// holds the bytes stored at the day's end, not those of the roll-up's
// time, and each day the bytes uploaded and downloaded during it; the day
// before the account existed has no row; the cost is the pro plan's
// share of the day.
func TestUsageDayEnd(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		var clock atomic.Pointer[time.Time]
		set := func(tm time.Time) { clock.Store(&tm) }
		s.now = func() time.Time { return *clock.Load() }
		day := time.Date(2031, 3, 10, 0, 0, 0, 0, time.UTC)
		next := day.AddDate(0, 0, 1)

		set(day.Add(9 * time.Hour))
		a := newTestAccount(t, s, "usr_dayend")
		set(day.Add(23*time.Hour + 59*time.Minute))
		big := uploadT(t, s, a, strings.Repeat("x", 100))
		if err := s.RecordDownload(ctx, a.ID, big.ID, 50, s.now()); err != nil {
			t.Fatal(err)
		}
		set(next.Add(30 * time.Second))
		small := uploadT(t, s, a, strings.Repeat("y", 20))
		if _, err := s.DeleteAsset(ctx, a.ID, big.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordDownload(ctx, a.ID, small.ID, 70, s.now()); err != nil {
			t.Fatal(err)
		}
		set(next.Add(2 * 24 * time.Hour))
		for _, d := range []time.Time{day.AddDate(0, 0, -1), day, next} {
			if _, err := s.RollupUsageDay(ctx, d, true); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := s.UsageRows(ctx, server.UsageQuery{From: day.AddDate(0, 0, -1), To: next, Accounts: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows.Rows) != 2 || !rows.Rows[0].Day.Equal(day) || !rows.Rows[1].Day.Equal(next) {
			t.Fatalf("rows %+v; want the 10th and the 11th only (the account was created on the 10th)", rows.Rows)
		}
		d, n := rows.Rows[0], rows.Rows[1]
		if d.StorageBytes != 100 || d.BytesIn != 100 || d.BytesOut != 50 || !d.Final {
			t.Errorf("10th: %+v; want 100 stored at the day's end, 100 in, 50 out, final", d)
		}
		if n.StorageBytes != 20 || n.BytesIn != 20 || n.BytesOut != 70 {
			t.Errorf("11th: %+v; want 20 stored, 20 in, 70 out", n)
		}
		// Pro, $49 a month, March has 31 days: the 10th carries
		// floor(10*490000/31) - floor(9*490000/31) ten-thousandths.
		if d.TotalCost.String() != "1.5806" || d.StorageCost != d.TotalCost || d.BandwidthCost != 0 || !d.Priced {
			t.Errorf("10th costs: storage %s bandwidth %s total %s; want 1.5806, 0.0000, 1.5806", d.StorageCost, d.BandwidthCost, d.TotalCost)
		}
		var stored string
		if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT CAST(total_cost AS TEXT) FROM storage_usage WHERE account_id = ? AND period_start = ?`),
			a.ID, day).Scan(&stored); err != nil || stored != "1.5806" {
			t.Errorf("total_cost as stored = %q, %v; want 1.5806", stored, err)
		}
	})
}

// TestMigrationUsageCosts upgrades a database the old roll-up wrote to:
// the prices of seed 000 are in tier_configs, the row written for the day
// before the account existed is gone, the account's storage and tier and
// the downloads of the request log seed the ledger.
func TestMigrationUsageCosts(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		ctx := testCtx(t)
		migrateUpTo = 8
		old, err := Open(ctx, dsn)
		migrateUpTo = 0
		if err != nil {
			t.Fatal(err)
		}
		created := time.Date(2031, 5, 20, 10, 0, 0, 0, time.UTC)
		old.now = func() time.Time { return created }
		// The account row as that release wrote it (today's CreateAccount
		// writes columns of later migrations).
		a := server.Account{ID: "acct-migusage"}
		if _, err := old.db.ExecContext(ctx, old.q(`INSERT INTO agentcache_accounts (id, agentcache_user_id, agentcache_email, agentcache_tier,
  api_key, api_secret_hash, storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, s3_bucket_name, s3_prefix, status,
  storage_used_bytes, created_at, updated_at)
VALUES (?, 'usr_migusage', 'm@example.com', 'pro', 'jt_usr_migusage', ?, 20, 50, true, 'b', 'users/usr_migusage/', 'active', 7, ?, ?)`),
			a.ID, strings.Repeat("ab", 32), created, created); err != nil {
			t.Fatal(err)
		}
		for _, d := range []time.Time{created.AddDate(0, 0, -1), created} {
			if _, err := old.db.ExecContext(ctx, old.q(`INSERT INTO storage_usage (id, account_id, storage_bytes, bandwidth_bytes, request_count, period_start, period_end, recorded_at)
VALUES (?, ?, 7, 33, 2, ?, ?, ?)`), a.ID+d.String(), a.ID, server.UsageDay(d), server.UsageDay(d).AddDate(0, 0, 1), created); err != nil {
				t.Fatal(err)
			}
		}
		if err := old.LogRequests(ctx, []server.APIRequest{
			{AccountID: a.ID, Method: "GET", Endpoint: DownloadEndpoint, StatusCode: 200, BytesTransferred: 33, CreatedAt: created.Add(time.Hour)},
		}); err != nil {
			t.Fatal(err)
		}
		old.Close()

		s := openT(t, dsn)
		defer s.Close()
		prices := map[string]any{}
		rows, err := s.rdb.QueryContext(ctx, `SELECT tier, monthly_price_cents FROM tier_configs`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var tier string
			var cents *int64
			if err := rows.Scan(&tier, &cents); err != nil {
				t.Fatal(err)
			}
			prices[tier] = nil
			if cents != nil {
				prices[tier] = *cents
			}
		}
		rows.Close()
		want := map[string]any{"free": int64(0), "starter": int64(1900), "pro": int64(4900), "business": int64(14900), "enterprise": nil}
		for tier, p := range want {
			if prices[tier] != p {
				t.Errorf("price of %s = %v, want %v", tier, prices[tier], p)
			}
		}
		if n := count(t, s, `SELECT count(*) FROM storage_usage WHERE account_id = ?`, a.ID); n != 1 {
			t.Errorf("%d usage rows after the migration; want 1 (the row before the account existed deleted)", n)
		}
		s.now = func() time.Time { return created.AddDate(0, 0, 3) }
		if _, err := s.RollupUsageDay(ctx, created, true); err != nil {
			t.Fatal(err)
		}
		p, err := s.UsageRows(ctx, server.UsageQuery{From: created, To: created, Accounts: 1})
		if err != nil || len(p.Rows) != 1 {
			t.Fatalf("rows %+v, %v", p, err)
		}
		if r := p.Rows[0]; r.StorageBytes != 7 || r.BytesOut != 33 || r.RequestCount != 1 || r.Tier != "pro" || !r.Final || r.TotalCost != server.DailyPrice(4900, created) {
			t.Errorf("row rolled up after the migration: %+v", r)
		}
	})
}
