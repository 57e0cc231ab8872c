package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/sqlstore"
)

type fixture struct {
	store server.Store
	blobs blob.Store
	acct  server.Account
}

// each runs fn on SQLite + files and on PostgreSQL + MinIO.
func each(t *testing.T, fn func(t *testing.T, f fixture)) {
	t.Run("sqlite+fs", func(t *testing.T) {
		st, err := sqlstore.Open(context.Background(), testenv.SQLitePath(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fs, err := fsblob.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newFixture(t, st, fs))
	})
	t.Run("postgres+s3", func(t *testing.T) {
		st, err := sqlstore.Open(context.Background(), testenv.PostgresURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		m := testenv.MinIO(t)
		s3, err := s3blob.New(context.Background(), s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newFixture(t, st, s3))
	})
}

func newFixture(t *testing.T, st server.Store, bs blob.Store) fixture {
	t.Helper()
	ctx := context.Background()
	if err := bs.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := apikey.NewKey(false)
	secret, _ := apikey.NewSecret()
	acct, err := st.CreateAccount(ctx, server.NewAccount{
		UserID: "usr_jobs", Email: "jobs@example.com", Tier: "pro", APIKey: key,
		SecretHash: apikey.HashSecret(secret), S3Bucket: "b", S3Prefix: "users/usr_jobs",
	})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{store: st, blobs: bs, acct: acct}
}

func (f fixture) account(t *testing.T) server.Account {
	t.Helper()
	a, err := f.store.AccountByID(context.Background(), f.acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func runner(f fixture, now time.Time) *Runner {
	return &Runner{Store: f.store, Blobs: f.blobs, Holder: "test", Now: func() time.Time { return now }}
}

// TestCrashedUploadIsCollected: an upload that stored its bytes but died
// before recording the asset leaves a reservation and an object; after the
// deadline one pass releases and deletes both.
func TestCrashedUploadIsCollected(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := time.Now()
		res, err := f.store.Reserve(ctx, f.acct.ID, 10, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		key := "users/usr_jobs/1-crashed.bin"
		if err := f.store.AddPendingObject(ctx, key, "", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.blobs.Put(ctx, key, strings.NewReader("0123456789"), 10, ""); err != nil {
			t.Fatal(err)
		}
		// Before the deadline nothing is touched.
		rep, err := runner(f, now).RunOnce(ctx)
		if err != nil || rep.ObjectsCollected != 0 || rep.ReservationsReleased != 0 {
			t.Fatalf("early pass: %+v %v", rep, err)
		}
		if _, err := f.blobs.Stat(ctx, key); err != nil {
			t.Fatalf("object gone before its deadline: %v", err)
		}
		rep, err = runner(f, now.Add(2*time.Hour)).RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.ReservationsReleased != 1 || rep.ObjectsCollected != 1 {
			t.Fatalf("report %+v", rep)
		}
		if _, err := f.blobs.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("object still there: %v", err)
		}
		if a := f.account(t); a.StorageReservedBytes != 0 || a.StorageUsedBytes != 0 {
			t.Fatalf("account after collection: reserved %d used %d", a.StorageReservedBytes, a.StorageUsedBytes)
		}
		if err := f.store.CommitReservation(ctx, res.ID, 10); server.ErrorCode(err) != server.ENotFound {
			t.Fatalf("commit after release: %v", err)
		}
		// A second pass finds nothing to do.
		rep, err = runner(f, now.Add(2*time.Hour)).RunOnce(ctx)
		if err != nil || rep.ObjectsCollected != 0 || rep.ReservationsReleased != 0 {
			t.Fatalf("second pass: %+v %v", rep, err)
		}
	})
}

// TestOrphanedMultipartUploads: unknown multipart uploads older than the
// orphan age are aborted; known ones are left to the collector.
func TestOrphanedMultipartUploads(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		part := bytes.Repeat([]byte("p"), 1024)
		sum := sha256.Sum256(part)
		orphan := "users/usr_jobs/2-orphan.bin"
		known := "users/usr_jobs/3-known.bin"
		var ids []string
		for _, k := range []string{orphan, known} {
			id, err := f.blobs.CreateUpload(ctx, k, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.blobs.PutPart(ctx, k, id, 1, bytes.NewReader(part), int64(len(part)), sum[:]); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		now := time.Now()
		if err := f.store.AddPendingObject(ctx, known, ids[1], now.Add(72*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Younger than the orphan age: kept.
		rep, err := runner(f, now).RunOnce(ctx)
		if err != nil || rep.OrphansRemoved != 0 {
			t.Fatalf("early pass: %+v %v", rep, err)
		}
		rep, err = runner(f, now.Add(25*time.Hour)).RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OrphansRemoved != 1 {
			t.Fatalf("orphans removed %d, want 1", rep.OrphansRemoved)
		}
		ups, err := f.blobs.ListUploads(ctx, "users/", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ups) != 1 || ups[0].Key != known {
			t.Fatalf("uploads left: %+v, want only %s", ups, known)
		}
		// Past its own deadline the known one is collected (aborted).
		rep, err = runner(f, now.Add(73*time.Hour)).RunOnce(ctx)
		if err != nil || rep.ObjectsCollected != 1 {
			t.Fatalf("collect pass: %+v %v", rep, err)
		}
		if ups, _ := f.blobs.ListUploads(ctx, "users/", time.Time{}); len(ups) != 0 {
			t.Fatalf("uploads left after collection: %+v", ups)
		}
	})
}

// storeAsset records an asset the way the upload handler does.
func storeAsset(t *testing.T, f fixture, key, content string, expires time.Time) server.Asset {
	t.Helper()
	ctx := context.Background()
	res, err := f.store.Reserve(ctx, f.acct.ID, int64(len(content)), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.AddPendingObject(ctx, key, "", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, sum, err := f.blobs.Put(ctx, key, strings.NewReader(content), int64(len(content)), "")
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := f.store.CreateAsset(ctx, server.NewAsset{
		AccountID: f.acct.ID, ObjectKey: key, Bucket: "b", Filename: "f", Size: int64(len(content)),
		SHA256: hex.EncodeToString(sum), SHA256Verified: true, ExpiresAt: expires,
	}, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestExpiredAssets: assets past expires_at are deleted with their bytes
// and their quota; others stay.
func TestExpiredAssets(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := time.Now()
		short := storeAsset(t, f, "users/usr_jobs/4-short.txt", "short-lived", now.Add(time.Minute))
		keep := storeAsset(t, f, "users/usr_jobs/5-keep.txt", "kept", time.Time{})
		rep, err := runner(f, now.Add(2*time.Minute)).RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.AssetsExpired != 1 || rep.ObjectsCollected != 1 {
			t.Fatalf("report %+v", rep)
		}
		if _, err := f.store.AssetByID(ctx, f.acct.ID, short.ID); server.ErrorCode(err) != server.ENotFound {
			t.Fatalf("expired asset still there: %v", err)
		}
		if _, err := f.blobs.Stat(ctx, short.ObjectKey); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("expired object still there: %v", err)
		}
		if _, err := f.blobs.Stat(ctx, keep.ObjectKey); err != nil {
			t.Fatalf("kept object gone: %v", err)
		}
		if a := f.account(t); a.StorageUsedBytes != int64(len("kept")) {
			t.Fatalf("used %d after expiry", a.StorageUsedBytes)
		}
	})
}

// TestStaleEdgesPruned: relays not seen for more than an hour are
// deleted; recent ones, draining or not, stay.
func TestStaleEdgesPruned(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Microsecond)
		beat := func(id string, at time.Time, draining bool) {
			t.Helper()
			_, err := f.store.EdgeHeartbeat(ctx, server.EdgeNode{
				ID: id, URL: "https://" + id + ".example.com", LocationID: "fra", Mode: "relay",
				Capacity: 8, Interval: 5 * time.Second, Draining: draining,
			}, at)
			if err != nil {
				t.Fatal(err)
			}
		}
		beat("edge_dead", now.Add(-2*time.Hour), false)
		beat("edge_gone", now.Add(-time.Hour-time.Second), true)
		beat("edge_quiet", now.Add(-30*time.Minute), false) // not offered, but kept
		beat("edge_live", now.Add(-time.Second), false)
		beat("edge_draining", now, true)

		rep, err := runner(f, now).RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.EdgesPruned != 2 {
			t.Fatalf("report %+v, want 2 edges pruned", rep)
		}
		live, err := f.store.LiveEdges(ctx, now)
		if err != nil || len(live) != 1 || live[0].ID != "edge_live" {
			t.Fatalf("LiveEdges = %+v, %v; want edge_live", live, err)
		}
		// A second pass finds nothing to do; 31 minutes later the quiet one goes.
		if rep, err := runner(f, now).RunOnce(ctx); err != nil || rep.EdgesPruned != 0 {
			t.Fatalf("second pass: %+v %v", rep, err)
		}
		if rep, err := runner(f, now.Add(31*time.Minute)).RunOnce(ctx); err != nil || rep.EdgesPruned != 1 {
			t.Fatalf("pass 31 minutes later: %+v %v; want edge_quiet pruned", rep, err)
		}
		// What is left: edge_live and edge_draining, both seen within the hour.
		if n, err := f.store.PruneEdges(ctx, now.Add(24*time.Hour), 0); err != nil || n != 2 {
			t.Fatalf("nodes left = %d, %v; want 2", n, err)
		}
	})
}

// TestLoopTakesLeaseAndStops: the loop runs a pass when it holds the
// lease, skips when another instance holds it, and stops with its context.
func TestLoopTakesLeaseAndStops(t *testing.T) {
	st, err := sqlstore.Open(context.Background(), testenv.SQLitePath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st, fs)
	ctx := context.Background()
	if _, err := st.Reserve(ctx, f.acct.ID, 5, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	// Another instance holds the lease: this one does nothing.
	if ok, err := st.TryLease(ctx, leaseName, "other", time.Hour); !ok || err != nil {
		t.Fatalf("lease for other: %v %v", ok, err)
	}
	r := &Runner{Store: st, Blobs: fs, Holder: "me"}
	r.tick(ctx, time.Minute)
	if a := f.account(t); a.StorageReservedBytes != 5 {
		t.Fatalf("ran without the lease: reserved %d", a.StorageReservedBytes)
	}
	// With the lease free, the loop runs at once and stops on cancel.
	r.Holder = "other"
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Loop(lctx, time.Hour); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for f.account(t).StorageReservedBytes != 0 {
		if time.Now().After(deadline) {
			t.Fatal("loop did not release the expired reservation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not stop")
	}
}
