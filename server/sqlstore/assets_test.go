package sqlstore

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

func newTestAccount(t *testing.T, s *Store, userID string) server.Account {
	t.Helper()
	a, err := s.CreateAccount(testCtx(t), server.NewAccount{
		UserID: userID, Email: userID + "@example.com", Tier: "pro", APIKey: "jt_" + userID,
		SecretHash: strings.Repeat("ab", 32), S3Bucket: "b", S3Prefix: "users/" + userID + "/",
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func uploadT(t *testing.T, s *Store, a server.Account, content string) server.Asset {
	t.Helper()
	ctx := testCtx(t)
	sum := sha256.Sum256([]byte(content))
	key := "users/" + a.UserID + "/" + hex.EncodeToString(sum[:8]) + "-" + time.Now().Format("150405.000000000")
	if err := s.AddPendingObject(ctx, key, "", s.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	asset, _, err := s.CreateAsset(ctx, server.NewAsset{
		AccountID: a.ID, ObjectKey: key, Bucket: "b", Filename: "f", Size: int64(len(content)),
		SHA256: hex.EncodeToString(sum[:]), SHA256Verified: true,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	return asset
}

// TestBandwidthMonthRollover moves the store's clock across a month
// boundary: the account reports the current month's bandwidth only.
func TestBandwidthMonthRollover(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		var clock atomic.Pointer[time.Time]
		set := func(tm time.Time) { clock.Store(&tm) }
		s.now = func() time.Time { return *clock.Load() }
		set(time.Date(2031, 5, 31, 23, 59, 0, 0, time.UTC))

		a := newTestAccount(t, s, "usr_bw")
		asset := uploadT(t, s, a, "bandwidth")
		if err := s.RecordDownload(ctx, a.ID, asset.ID, 4096, s.now()); err != nil {
			t.Fatal(err)
		}
		if got, err := s.AccountByID(ctx, a.ID); err != nil || got.BandwidthUsedBytes != 4096 {
			t.Fatalf("May: BandwidthUsedBytes = %d, %v; want 4096", got.BandwidthUsedBytes, err)
		}
		set(time.Date(2031, 6, 1, 0, 0, 1, 0, time.UTC))
		for name, get := range map[string]func() (server.Account, error){
			"AccountByID":     func() (server.Account, error) { return s.AccountByID(ctx, a.ID) },
			"AccountByUserID": func() (server.Account, error) { return s.AccountByUserID(ctx, a.UserID) },
			"AccountByAPIKey": func() (server.Account, error) { return s.AccountByAPIKey(ctx, a.APIKey) },
			"ChangeTier":      func() (server.Account, error) { return s.ChangeTier(ctx, a.UserID, "business") },
		} {
			if got, err := get(); err != nil || got.BandwidthUsedBytes != 0 {
				t.Errorf("June: %s BandwidthUsedBytes = %d, %v; want 0", name, got.BandwidthUsedBytes, err)
			}
		}
		// A RecordDownload without a time uses the store's clock.
		if err := s.RecordDownload(ctx, a.ID, asset.ID, 10, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.AccountByID(ctx, a.ID); err != nil || got.BandwidthUsedBytes != 10 {
			t.Fatalf("June after a download: %d, %v; want 10", got.BandwidthUsedBytes, err)
		}
		if n, err := s.BandwidthUsed(ctx, a.ID, s.now()); err != nil || n != 10 {
			t.Fatalf("BandwidthUsed(June) = %d, %v", n, err)
		}
	})
}

// TestAssetSchema checks what the database itself guarantees.
func TestAssetSchema(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		a := newTestAccount(t, s, "usr_schema")
		asset := uploadT(t, s, a, "schema")
		var objectID string
		if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT object_id FROM agentcache_assets WHERE id = ?`), asset.ID).Scan(&objectID); err != nil {
			t.Fatal(err)
		}
		mustFail := func(what, query string, args ...any) {
			t.Helper()
			if _, err := s.db.ExecContext(ctx, s.q(query), args...); err == nil {
				t.Errorf("%s accepted", what)
			}
		}
		mustFail("deleting a referenced object (foreign key)", `DELETE FROM stored_objects WHERE id = ?`, objectID)
		mustFail("negative ref_count", `UPDATE stored_objects SET ref_count = -1 WHERE id = ?`, objectID)
		mustFail("second object of one hash", `INSERT INTO stored_objects (id, account_id, content_hash, object_key, s3_bucket, size_bytes, ref_count, created_at)
SELECT 'x', account_id, content_hash, 'other-key', s3_bucket, size_bytes, 1, created_at FROM stored_objects WHERE id = ?`, objectID)
		mustFail("unknown garbage state", `INSERT INTO blob_garbage (object_key, upload_id, state, not_before, created_at) VALUES ('k', '', 'lost', ?, ?)`, s.nowUTC(), s.nowUTC())
		if _, err := s.RollupUsageDay(ctx, s.now(), false); err != nil {
			t.Fatal(err)
		}
		mustFail("second usage row of one period", `INSERT INTO storage_usage (id, account_id, storage_bytes, bandwidth_bytes, request_count, period_start, period_end)
SELECT 'dup', account_id, 0, 0, 0, period_start, period_end FROM storage_usage`)
		if n := count(t, s, `SELECT count(*) FROM stored_objects WHERE ref_count = 1 AND object_key = ?`, asset.ObjectKey); n != 1 {
			t.Errorf("stored_objects rows for the asset's key with one reference: %d", n)
		}
	})
}

// TestDeleteAssetNeverNegative deletes an asset whose bytes are, for
// whatever reason, no longer all counted: usage stops at zero.
func TestDeleteAssetNeverNegative(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		a := newTestAccount(t, s, "usr_neg")
		asset := uploadT(t, s, a, "0123456789")
		if _, err := s.db.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET storage_used_bytes = 3 WHERE id = ?`), a.ID); err != nil {
			t.Fatal(err)
		}
		if key, err := s.DeleteAsset(ctx, a.ID, asset.ID); err != nil || key != asset.ObjectKey {
			t.Fatalf("DeleteAsset = %q, %v", key, err)
		}
		if got, err := s.AccountByID(ctx, a.ID); err != nil || got.StorageUsedBytes != 0 {
			t.Fatalf("used = %d, %v; want 0", got.StorageUsedBytes, err)
		}
	})
}

// TestMigrationUpgrade applies 0001 alone, stores an account the way the
// previous release did, then opens the database: 0002 is applied on top
// and the account keeps its numbers.
func TestMigrationUpgrade(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		ctx := testCtx(t)
		var (
			db  *sql.DB
			err error
			d   = SQLite
		)
		if strings.HasPrefix(dsn, "postgres") {
			d = Postgres
			db, err = sql.Open("pgx", dsn)
		} else {
			db, err = sql.Open("sqlite", dsn+"?_pragma=foreign_keys(1)&_time_format=sqlite&_txlock=immediate")
		}
		if err != nil {
			t.Fatal(err)
		}
		old := &Store{dialect: d, db: db, rdb: db, now: time.Now}
		ms, err := migrations(d)
		if err != nil || len(ms) < 2 || ms[0].Version != 1 {
			t.Fatalf("migrations = %v, %v", ms, err)
		}
		if err := old.applyMigration(ctx, ms[0]); err != nil {
			t.Fatal(err)
		}
		now := old.nowUTC()
		if _, err := db.ExecContext(ctx, old.q(`INSERT INTO agentcache_accounts (id, agentcache_user_id, agentcache_email, agentcache_tier, api_key, api_secret_hash,
  storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, s3_bucket_name, s3_prefix, status,
  storage_used_bytes, storage_reserved_bytes, bandwidth_used_bytes, created_at, updated_at)
VALUES ('acct-1', 'usr_old', 'o@example.com', 'pro', 'jt_old', ?, 20, 50, true, 'b', 'p/', 'active', 123, 0, 77, ?, ?)`),
			strings.Repeat("cd", 32), now, now); err != nil {
			t.Fatal(err)
		}
		db.Close()

		s := openT(t, dsn)
		defer s.Close()
		if got := appliedMigrations(t, s); len(got) != len(ms) {
			t.Fatalf("applied %v", got)
		}
		a, err := s.AccountByID(ctx, "acct-1")
		if err != nil || a.StorageUsedBytes != 123 || a.BandwidthUsedBytes != 0 {
			t.Fatalf("upgraded account = %+v, %v (bandwidth of an unknown month reads as 0)", a, err)
		}
		asset := uploadT(t, s, a, "after upgrade")
		if err := s.RecordDownload(ctx, a.ID, asset.ID, 5, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if a, err := s.AccountByID(ctx, a.ID); err != nil || a.BandwidthUsedBytes != 5 || a.StorageUsedBytes != 123+int64(len("after upgrade")) {
			t.Fatalf("after an upload and a download: %+v, %v", a, err)
		}
	})
}
