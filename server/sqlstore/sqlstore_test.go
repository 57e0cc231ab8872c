package sqlstore

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/storetest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openT(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(testCtx(t), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store {
		return openT(t, testenv.SQLitePath(t))
	})
}

func TestPostgres(t *testing.T) {
	testenv.PostgresURL(t) // skips (or fails) early when PostgreSQL is down
	storetest.Run(t, func(t *testing.T) server.Store {
		return openT(t, testenv.PostgresURL(t))
	})
}

// dialects runs fn once per dialect with a fresh database's DSN.
func dialects(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, testenv.SQLitePath(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, testenv.PostgresURL(t)) })
}

func appliedMigrations(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.rdb.QueryContext(testCtx(t), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func count(t *testing.T, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.rdb.QueryRowContext(testCtx(t), s.q(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestMigrationsApplyOnce(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		ctx := testCtx(t)
		s1 := openT(t, dsn)
		defer s1.Close()
		ms, err := migrations(s1.Dialect())
		if err != nil || len(ms) == 0 {
			t.Fatalf("migrations = %v, %v", ms, err)
		}
		a, err := s1.CreateAccount(ctx, server.NewAccount{
			UserID: "usr_test_123", Email: "a@example.com", Tier: "pro", APIKey: "jt_key",
			SecretHash: strings.Repeat("ab", 32), S3Bucket: "b", S3Prefix: "users/usr_test_123/",
		})
		if err != nil {
			t.Fatal(err)
		}

		// Open the same database again, then a third time concurrently
		// from several goroutines: nothing is re-applied, data survives.
		s2 := openT(t, dsn)
		defer s2.Close()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(ctx, dsn)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Open: %v", err)
			}
		}
		got := appliedMigrations(t, s2)
		if len(got) != len(ms) {
			t.Fatalf("schema_migrations = %v, want %d versions", got, len(ms))
		}
		for i, m := range ms {
			if got[i] != m.Version {
				t.Errorf("schema_migrations[%d] = %d, want %d", i, got[i], m.Version)
			}
		}
		if n := count(t, s2, `SELECT count(*) FROM tier_configs`); n != 5 {
			t.Errorf("tier_configs has %d rows after reopening, want 5", n)
		}
		if b, err := s2.AccountByUserID(ctx, "usr_test_123"); err != nil || b.ID != a.ID {
			t.Errorf("account after reopen = %+v, %v", b, err)
		}
	})
}

// TestMigrationsConcurrentFresh opens one empty database from several
// goroutines at once, as several processes would: each migration is applied once.
func TestMigrationsConcurrentFresh(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		ctx := testCtx(t)
		var wg sync.WaitGroup
		stores := make([]*Store, 6)
		errs := make([]error, len(stores))
		for i := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stores[i], errs[i] = Open(ctx, dsn)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Open %d: %v", i, err)
			}
			defer stores[i].Close()
		}
		ms, _ := migrations(stores[0].Dialect())
		if got := appliedMigrations(t, stores[0]); len(got) != len(ms) {
			t.Fatalf("schema_migrations = %v after %d concurrent opens, want %d rows", got, len(stores), len(ms))
		}
		if n := count(t, stores[0], `SELECT count(*) FROM tier_configs`); n != 5 {
			t.Errorf("tier_configs has %d rows, want 5", n)
		}
	})
}

func TestSchema(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		var cols []string
		var query string
		if s.Dialect() == Postgres {
			query = `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'agentcache_accounts'`
		} else {
			query = `SELECT name FROM pragma_table_info('agentcache_accounts')`
		}
		rows, err := s.rdb.QueryContext(testCtx(t), query)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, c)
		}
		rows.Close()
		have := map[string]bool{}
		for _, c := range cols {
			have[c] = true
		}
		for _, c := range []string{"api_secret_hash", "storage_used_bytes", "storage_reserved_bytes", "bandwidth_used_bytes", "agentcache_user_id"} {
			if !have[c] {
				t.Errorf("agentcache_accounts lacks %s (has %v)", c, cols)
			}
		}
		if have["api_secret"] {
			t.Error("agentcache_accounts has a plain api_secret column")
		}
		for _, table := range []string{"storage_usage", "agentcache_assets", "api_requests", "quota_reservations", "tier_configs", "schema_migrations",
			"stored_objects", "blob_garbage", "job_leases"} {
			if n := count(t, s, `SELECT count(*) FROM `+table); n < 0 {
				t.Errorf("%s: %d", table, n)
			}
		}

		// The database itself refuses negative counters and plain secrets.
		ctx := testCtx(t)
		a, err := s.CreateAccount(ctx, server.NewAccount{
			UserID: "usr_schema", Email: "s@example.com", Tier: "starter", APIKey: "jt_schema",
			SecretHash: strings.Repeat("0", 64), S3Bucket: "b", S3Prefix: "p/",
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET storage_reserved_bytes = -1 WHERE id = ?`), a.ID); err == nil {
			t.Error("negative storage_reserved_bytes accepted")
		}
		if _, err := s.db.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET api_secret_hash = 'hunter2' WHERE id = ?`), a.ID); err == nil {
			t.Error("short api_secret_hash accepted")
		}
		if _, err := s.db.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET agentcache_tier = 'gold' WHERE id = ?`), a.ID); err == nil {
			t.Error("tier outside tier_configs accepted (foreign key)")
		}
		// Deduplication is per account: two accounts may store one hash.
		b, err := s.CreateAccount(ctx, server.NewAccount{
			UserID: "usr_schema2", Email: "s2@example.com", Tier: "starter", APIKey: "jt_schema2",
			SecretHash: strings.Repeat("1", 64), S3Bucket: "b", S3Prefix: "p2/",
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, acct := range []string{a.ID, b.ID} {
			if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO agentcache_assets (id, account_id, s3_key, s3_bucket, filename, size_bytes, content_hash)
VALUES (?, ?, 'k', 'b', 'f', 1, 'samehash')`), "asset"+string(rune('0'+i)), acct); err != nil {
				t.Fatalf("same content_hash for account %d: %v", i, err)
			}
		}
	})
}

func TestSQLiteSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "jetty.db")
	s := openT(t, path)
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
	if s.Dialect() != SQLite {
		t.Fatalf("dialect %s", s.Dialect())
	}
	ctx := testCtx(t)
	for _, db := range []*sql.DB{s.db, s.rdb} {
		var mode string
		var fk, busy int
		if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if strings.ToLower(mode) != "wal" || fk != 1 || busy != int(SQLiteBusyTimeout.Milliseconds()) {
			t.Errorf("journal_mode=%s foreign_keys=%d busy_timeout=%d", mode, fk, busy)
		}
	}
	if _, err := s.rdb.ExecContext(ctx, `DELETE FROM tier_configs`); err == nil {
		t.Error("read pool accepted a write")
	}
	for _, bad := range []string{"", ":memory:", "file:x.db", filepath.Join(t.TempDir(), "a?b.db")} {
		if s, err := OpenSQLite(ctx, bad); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) succeeded", bad)
		}
	}
}

// TestSQLiteTwoStores runs writers through two Stores (two pools, as two
// processes would have) on one file: the busy timeout and BEGIN
// IMMEDIATE keep them from failing, and the quota still holds.
func TestSQLiteTwoStores(t *testing.T) {
	path := testenv.SQLitePath(t)
	s1 := openT(t, path)
	defer s1.Close()
	s2 := openT(t, path)
	defer s2.Close()
	ctx := testCtx(t)
	a, err := s1.CreateAccount(ctx, server.NewAccount{
		UserID: "usr_two", Email: "t@example.com", Tier: "starter", APIKey: "jt_two",
		SecretHash: strings.Repeat("c", 64), S3Bucket: "b", S3Prefix: "p/",
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := s1
			if i%2 == 1 {
				s = s2
			}
			_, err := s.Reserve(ctx, a.ID, 100*server.MiB, time.Hour)
			switch server.ErrorCode(err) {
			case "":
				mu.Lock()
				ok++
				mu.Unlock()
			case server.EQuotaExceeded:
			default:
				t.Errorf("Reserve: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 20 { // 2 GiB / 100 MiB = 20.48
		t.Errorf("%d reservations of 100 MiB fit in 2 GiB, want 20", ok)
	}
	got, err := s2.AccountByID(ctx, a.ID)
	if err != nil || got.StorageReservedBytes != 20*100*server.MiB {
		t.Errorf("reserved = %d, %v", got.StorageReservedBytes, err)
	}
}

func TestOpenDispatch(t *testing.T) {
	ctx := testCtx(t)
	s := openT(t, testenv.PostgresURL(t))
	if s.Dialect() != Postgres {
		t.Errorf("postgres:// opened %s", s.Dialect())
	}
	s.Close()
	if _, err := Open(ctx, "postgresql://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"); err == nil {
		t.Error("Open of an unreachable PostgreSQL succeeded")
	}
	s = openT(t, testenv.SQLitePath(t))
	if s.Dialect() != SQLite {
		t.Errorf("file path opened %s", s.Dialect())
	}
	s.Close()
}

func TestRebind(t *testing.T) {
	cases := map[string]string{
		`SELECT ? , ?`:                       `SELECT $1 , $2`,
		`SELECT '?' , ?, "a?" -- x?` + "\n?": `SELECT '?' , $1, "a?" -- x?` + "\n$2",
		`no params`:                          `no params`,
	}
	for in, want := range cases {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	cases := map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		20 * server.GiB: "20.0 GiB", 1000 * server.GiB: "1000.0 GiB", 2048 * server.GiB: "2.0 TiB",
	}
	for n, want := range cases {
		if got := units.HumanBytes(n); got != want {
			t.Errorf("units.HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	if got := clean("a\x00b\xffc", 100); got != "ab\uFFFDc" {
		t.Errorf("clean = %q", got)
	}
	if got := clean("ééé", 3); got != "é" {
		t.Errorf("clean cut = %q, want %q", got, "é")
	}
}

func TestLogRequestsUnknownAccount(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		err := s.LogRequests(ctx, []server.APIRequest{
			{AccountID: "gone", Method: "GET", Endpoint: "/x", StatusCode: 401, UserAgent: "bad\xff\x00agent"},
		})
		if err != nil {
			t.Fatalf("LogRequests: %v", err)
		}
		got, err := s.RecentRequests(ctx, "", 10)
		if err != nil || len(got) != 1 || got[0].AccountID != "" || got[0].UserAgent != "bad\uFFFDagent" {
			t.Fatalf("RecentRequests = %+v, %v", got, err)
		}
	})
}

func TestInternalErrorsArePrefixed(t *testing.T) {
	s := openT(t, testenv.SQLitePath(t))
	s.Close()
	_, err := s.AccountByID(context.Background(), "x")
	if err == nil || server.ErrorCode(err) != server.EInternal || !strings.HasPrefix(err.Error(), "sqlstore: ") {
		t.Fatalf("error on closed store = %v", err)
	}
	if msg := server.ErrorMessage(err); msg != "internal error" {
		t.Fatalf("client message %q", msg)
	}
}

// TestMigrationVerifiedContent upgrades a database written before the
// server verified whole-file hashes (migration 7): single-request uploads
// keep their hash as verified and their deduplication; an object any
// chunked upload touched is never a deduplication target again (its
// declared hash was taken on trust), and its assets say their hash is
// unverified.
func TestMigrationVerifiedContent(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		ctx := testCtx(t)
		migrateUpTo = 6
		old, err := Open(ctx, dsn)
		migrateUpTo = 0
		if err != nil {
			t.Fatal(err)
		}
		// The account row as that release wrote it (today's CreateAccount
		// writes columns of later migrations).
		a := server.Account{ID: "acct-mig"}
		if _, err := old.db.ExecContext(ctx, old.q(`INSERT INTO agentcache_accounts (id, agentcache_user_id, agentcache_email, agentcache_tier,
  api_key, api_secret_hash, storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, s3_bucket_name, s3_prefix, status, created_at, updated_at)
VALUES (?, 'usr_mig', 'm@example.com', 'pro', 'jt_key_mig', ?, 20, 50, true, 'b', 'users/usr_mig/', 'active', ?, ?)`),
			a.ID, strings.Repeat("ab", 32), time.Now().UTC(), time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		apiHash, chunkedHash := strings.Repeat("1a", 32), strings.Repeat("2b", 32)
		now := time.Now().UTC()
		for _, row := range []struct{ obj, asset, hash, via string }{
			{"obj-api", "asset-api", apiHash, "api"},
			{"obj-chunked", "asset-chunked", chunkedHash, "jettyspeed"},
		} {
			if _, err := old.db.ExecContext(ctx, old.q(`INSERT INTO stored_objects (id, account_id, content_hash, object_key, s3_bucket, size_bytes, ref_count, created_at)
VALUES (?, ?, ?, ?, 'b', 10, 1, ?)`), row.obj, a.ID, row.hash, "users/usr_mig/"+row.obj, now); err != nil {
				t.Fatal(err)
			}
			if _, err := old.db.ExecContext(ctx, old.q(`INSERT INTO agentcache_assets (id, account_id, object_id, s3_key, s3_bucket, filename, size_bytes, content_hash, uploaded_via, created_at)
VALUES (?, ?, ?, ?, 'b', 'f', 10, ?, ?, ?)`), row.asset, a.ID, row.obj, "users/usr_mig/"+row.obj, row.hash, row.via, now); err != nil {
				t.Fatal(err)
			}
		}
		old.Close()

		s := openT(t, dsn)
		defer s.Close()
		api, err := s.AssetByID(ctx, a.ID, "asset-api")
		if err != nil || !api.SHA256Verified || api.ContentID != apiHash || api.SHA256 != apiHash {
			t.Errorf("single-request asset after migration = %+v, %v; want verified, content id = its hash", api, err)
		}
		chunked, err := s.AssetByID(ctx, a.ID, "asset-chunked")
		if err != nil || chunked.SHA256Verified || chunked.ContentID != "unverified-obj-chunked" || chunked.SHA256 != chunkedHash {
			t.Errorf("chunked asset after migration = %+v, %v; want unverified, unmatchable content id, hash kept", chunked, err)
		}
		if got, err := s.AssetByContent(ctx, a.ID, apiHash); err != nil || got.ID != "asset-api" {
			t.Errorf("AssetByContent(verified) = %+v, %v", got, err)
		}
		if _, err := s.AssetByContent(ctx, a.ID, chunkedHash); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("AssetByContent(hash taken on trust) = %v; want not found", err)
		}
		// The real content behind the trusted hash now gets its own object.
		if err := s.AddPendingObject(ctx, "users/usr_mig/new", "", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, dedup, err := s.CreateAsset(ctx, server.NewAsset{AccountID: a.ID, ObjectKey: "users/usr_mig/new", Bucket: "b",
			Filename: "real", Size: 10, SHA256: chunkedHash, SHA256Verified: true}, "")
		if err != nil || dedup || got.ObjectKey != "users/usr_mig/new" {
			t.Errorf("upload of the content a chunked upload claimed = %+v, dedup %v, %v; want a new object", got, dedup, err)
		}
	})
}
