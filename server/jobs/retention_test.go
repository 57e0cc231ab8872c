package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
	"github.com/jettythunder/jetty/server/blob"
)

const day = 24 * time.Hour

func endpoints(t *testing.T, st server.Store) []string {
	t.Helper()
	rows, err := st.RecentRequests(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Endpoint)
	}
	sort.Strings(out)
	return out
}

// TestRequestLogRetention: requests older than the retention are gone,
// newer ones kept; failed requests without an account go after the
// shorter anonymous retention; a backlog goes in batches, at most a
// budget per pass, the next pass going on; running again is harmless; a
// retention of 0 keeps everything.
func TestRequestLogRetention(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := time.Now().UTC()
		row := func(name, account string, status int, age time.Duration) server.APIRequest {
			return server.APIRequest{AccountID: account, Method: "GET", Endpoint: name, StatusCode: status, CreatedAt: now.Add(-age)}
		}
		reqs := []server.APIRequest{
			row("acct-31d", f.acct.ID, 200, 31*day),
			row("acct-29d", f.acct.ID, 200, 29*day),
			row("acct-8d-failed", f.acct.ID, 404, 8*day),
			row("anon-31d-partner-ok", "", 200, 31*day),
			row("anon-8d-partner-ok", "", 200, 8*day),
			row("anon-8d-404", "", 404, 8*day),
			row("anon-8d-401", "", 401, 8*day),
			row("anon-6d-401", "", 401, 6*day),
		}
		if err := f.store.LogRequests(ctx, reqs); err != nil {
			t.Fatal(err)
		}
		// A backlog of 40-day-old rows: batches of 4, 20 rows per pass.
		backlog := make([]server.APIRequest, 25)
		for i := range backlog {
			backlog[i] = row("backlog", f.acct.ID, 200, 40*day+time.Duration(i)*time.Millisecond)
		}
		if err := f.store.LogRequests(ctx, backlog); err != nil {
			t.Fatal(err)
		}

		// Retention off: nothing goes.
		rep, err := runner(f, now).RunOnce(ctx)
		if err != nil || rep.RequestsDeleted != 0 {
			t.Fatalf("pass without retention: %+v %v", rep, err)
		}

		r := runner(f, now)
		r.RequestLogRetention, r.AnonRequestLogRetention = 30*day, 7*day
		r.limits = limits{requestBatch: 4, requestsPerPass: 20}
		// The oldest 20 first (the backlog), then the other 5 of the
		// backlog, the two 31-day-old rows and the two anonymous failures.
		for i, want := range []int{20, 9} {
			rep, err = r.RunOnce(ctx)
			if err != nil || rep.RequestsDeleted != want {
				t.Fatalf("pass %d: %+v %v; want %d requests deleted", i+1, rep, err, want)
			}
		}
		want := []string{"acct-29d", "acct-8d-failed", "anon-6d-401", "anon-8d-partner-ok"}
		if got := endpoints(t, f.store); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("requests left %v, want %v", got, want)
		}
		rep, err = r.RunOnce(ctx)
		if err != nil || rep.RequestsDeleted != 0 {
			t.Fatalf("second pass: %+v %v", rep, err)
		}
		// A day and a minute later the 29-day-old row and the 6-day-old
		// anonymous failure have passed their retentions.
		r.Now = func() time.Time { return now.Add(day + time.Minute) }
		if rep, err := r.RunOnce(ctx); err != nil || rep.RequestsDeleted != 2 {
			t.Fatalf("a day later: %+v %v; want 2 requests deleted", rep, err)
		}
		want = []string{"acct-8d-failed", "anon-8d-partner-ok"}
		if got := endpoints(t, f.store); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("requests left %v, want %v", got, want)
		}
	})
}

// tenant is an account with objects in storage, for the purge tests.
type tenant struct {
	acct    server.Account
	objects map[string]string // key -> content of the account's stored objects
	upload  blob.Upload       // its open session's multipart upload
	session server.UploadSession
}

func newTenant(t *testing.T, f fixture, userID string) *tenant {
	t.Helper()
	if userID == f.acct.UserID {
		return &tenant{acct: f.acct, objects: map[string]string{}}
	}
	key, _ := apikey.NewKey(false)
	secret, _ := apikey.NewSecret()
	a, err := f.store.CreateAccount(context.Background(), server.NewAccount{
		UserID: userID, Email: userID + "@example.com", Tier: "pro", APIKey: key,
		SecretHash: apikey.HashSecret(secret), S3Bucket: "b", S3Prefix: server.AccountPrefix(userID),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &tenant{acct: a, objects: map[string]string{}}
}

// put stores content as an asset of the tenant the way the upload handler
// does (reservation, pending record, bytes, CreateAsset). When the tenant
// already holds the content the copy is deduplicated and deleted.
func (tn *tenant) put(t *testing.T, f fixture, name, content string) server.Asset {
	t.Helper()
	ctx := context.Background()
	key, err := server.NewObjectKey(tn.acct.UserID, name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.store.Reserve(ctx, tn.acct.ID, int64(len(content))+1, time.Hour)
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
	a, dedup, err := f.store.CreateAsset(ctx, server.NewAsset{
		AccountID: tn.acct.ID, ObjectKey: key, Bucket: "b", Filename: name, Size: int64(len(content)),
		SHA256: hex.EncodeToString(sum), SHA256Verified: true,
	}, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if dedup {
		if err := f.blobs.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := f.store.ObjectCollected(ctx, key); err != nil {
			t.Fatal(err)
		}
	} else {
		tn.objects[key] = content
	}
	return a
}

// openSession opens an upload session with one part stored, as the
// session handler does.
func (tn *tenant) openSession(t *testing.T, f fixture) {
	t.Helper()
	ctx := context.Background()
	key, err := server.NewObjectKey(tn.acct.UserID, "big.bin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.blobs.CreateUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("s"), 2048)
	sum := sha256.Sum256(part)
	if _, err := f.blobs.PutPart(ctx, key, id, 1, bytes.NewReader(part), int64(len(part)), sum[:]); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(day)
	if err := f.store.AddPendingObject(ctx, key, id, expires); err != nil {
		t.Fatal(err)
	}
	res, err := f.store.Reserve(ctx, tn.acct.ID, 2*int64(len(part)), day)
	if err != nil {
		t.Fatal(err)
	}
	whole := append(bytes.Clone(part), part...)
	wsum := sha256.Sum256(whole)
	manifest := fmt.Sprintf(`{"version":1,"name":"big.bin","size":%d,"chunk_size":%d,"sha256":%q,"chunks":[{"index":0,"offset":0,"size":%d,"sha256":%q},{"index":1,"offset":%d,"size":%d,"sha256":%q}]}`,
		len(whole), len(part), hex.EncodeToString(wsum[:]), len(part), hex.EncodeToString(sum[:]), len(part), len(part), hex.EncodeToString(sum[:]))
	s, err := f.store.CreateSession(ctx, server.UploadSession{
		AccountID: tn.acct.ID, ObjectKey: key, UploadID: id, Manifest: []byte(manifest), SHA256: hex.EncodeToString(wsum[:]),
		Size: int64(len(whole)), ChunkSize: int64(len(part)), ChunkCount: 2, ReservationID: res.ID, Reserved: res.Bytes,
		Filename: "big.bin", ExpiresAt: expires,
	})
	if err != nil {
		t.Fatal(err)
	}
	tn.session = s
	tn.upload = blob.Upload{Key: key, UploadID: id}
}

// holdings gives the tenant three assets over two objects and an open
// session with a part stored.
func (tn *tenant) holdings(t *testing.T, f fixture) {
	t.Helper()
	tn.put(t, f, "a.txt", tn.acct.UserID+": first file")
	tn.put(t, f, "a-again.txt", tn.acct.UserID+": first file")
	tn.put(t, f, "b.txt", tn.acct.UserID+": second file, longer")
	tn.openSession(t, f)
}

// listed returns the keys of objects and of multipart uploads under prefix.
func listed(t *testing.T, bs blob.Store, prefix string) (objects, uploads []string) {
	t.Helper()
	ctx := context.Background()
	infos, err := bs.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		objects = append(objects, i.Key)
	}
	ups, err := bs.ListUploads(ctx, prefix, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		uploads = append(uploads, u.Key+"#"+u.UploadID)
	}
	return objects, uploads
}

// wantIntact checks that every object of tn reads back as stored and its
// session's upload is still there.
func (tn *tenant) wantIntact(t *testing.T, f fixture) {
	t.Helper()
	ctx := context.Background()
	for key, content := range tn.objects {
		rc, _, err := f.blobs.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatalf("%s's object %s: %v", tn.acct.UserID, key, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != content {
			t.Fatalf("%s's object %s reads %q, %v; want %q", tn.acct.UserID, key, b, err, content)
		}
	}
	parts, err := f.blobs.ListParts(ctx, tn.upload.Key, tn.upload.UploadID)
	if err != nil || len(parts) != 1 {
		t.Fatalf("%s's upload: parts %+v, %v", tn.acct.UserID, parts, err)
	}
	if _, err := f.store.SessionByID(ctx, tn.acct.ID, tn.session.ID); err != nil {
		t.Fatalf("%s's session: %v", tn.acct.UserID, err)
	}
}

// TestDeletedAccountPurge: a deleted account's objects, its session's
// upload and strays under its prefix are kept during the grace period and
// gone after it, with its rows; the account stays as a purged tombstone
// with zero usage; another account (whose user id the victim's is a
// prefix of) keeps every byte; running again is harmless.
func TestDeletedAccountPurge(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		const grace = 2 * time.Hour // sessions live a day: the bystander's stays open
		victim := newTenant(t, f, "usr_job")
		bystander := newTenant(t, f, f.acct.UserID) // usr_jobs: "usr_job" is a prefix of it
		victim.holdings(t, f)
		bystander.holdings(t, f)
		prefix := server.AccountPrefix(victim.acct.UserID)
		// Leftovers of crashes that no row knows: an object and an upload.
		stray := prefix + "1-stray.bin"
		if _, _, err := f.blobs.Put(ctx, stray, strings.NewReader("stray"), 5, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.blobs.CreateUpload(ctx, prefix+"2-stray-upload.bin", ""); err != nil {
			t.Fatal(err)
		}
		bUsed := f.account(t).StorageUsedBytes

		deleted, err := f.store.SetStatus(ctx, victim.acct.UserID, server.StatusDeleted)
		if err != nil {
			t.Fatal(err)
		}
		r := runner(f, deleted.DeletedAt.Add(grace-time.Minute))
		r.DeletedAccountGrace = grace
		rep, err := r.RunOnce(ctx)
		if err != nil || rep.AccountsPurged != 0 || rep.PurgedObjects != 0 {
			t.Fatalf("pass within the grace: %+v %v", rep, err)
		}
		victim.wantIntact(t, f)
		bystander.wantIntact(t, f)

		r.Now = func() time.Time { return deleted.DeletedAt.Add(grace + time.Minute) }
		rep, err = r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Two objects, the session's upload, the stray object and upload.
		if rep.AccountsPurged != 1 || rep.PurgedObjects != 5 {
			t.Fatalf("pass after the grace: %+v, want 1 account and 5 objects and uploads", rep)
		}
		if objs, ups := listed(t, f.blobs, prefix); len(objs) != 0 || len(ups) != 0 {
			t.Fatalf("left under %s: objects %v, uploads %v", prefix, objs, ups)
		}
		tomb, err := f.store.AccountByID(ctx, victim.acct.ID)
		if err != nil {
			t.Fatal(err)
		}
		if tomb.Status != server.StatusDeleted || tomb.PurgedAt.IsZero() || tomb.StorageUsedBytes != 0 ||
			tomb.StorageReservedBytes != 0 || tomb.Email != "" || !tomb.DeletedAt.Equal(deleted.DeletedAt) {
			t.Fatalf("tombstone %+v", tomb)
		}
		if page, err := f.store.ListAssets(ctx, victim.acct.ID, server.AssetFilter{}, "", 100); err != nil || len(page.Assets) != 0 {
			t.Fatalf("victim's assets left: %+v, %v", page.Assets, err)
		}
		if _, err := f.store.SessionByID(ctx, victim.acct.ID, victim.session.ID); server.ErrorCode(err) != server.ENotFound {
			t.Fatalf("victim's session after the purge: %v", err)
		}
		for key := range victim.objects {
			if known, err := f.store.IsKnownObject(ctx, key); err != nil || known {
				t.Fatalf("victim's object %s still known: %v %v", key, known, err)
			}
		}
		bystander.wantIntact(t, f)
		if used := f.account(t).StorageUsedBytes; used != bUsed {
			t.Fatalf("bystander uses %d bytes, was %d", used, bUsed)
		}

		rep, err = r.RunOnce(ctx)
		if err != nil || rep.AccountsPurged != 0 || rep.PurgedObjects != 0 {
			t.Fatalf("second pass: %+v %v", rep, err)
		}
		bystander.wantIntact(t, f)
	})
}

// failingBlobs is the real store with deletes failing after some number
// of them, as when storage goes away in the middle of a purge.
type failingBlobs struct {
	blob.Store
	left atomic.Int64
}

var errStorageDown = errors.New("storage unreachable")

func (b *failingBlobs) Delete(ctx context.Context, key string) error {
	if b.left.Add(-1) < 0 {
		return errStorageDown
	}
	return b.Store.Delete(ctx, key)
}

// TestPurgeResumesAfterFailure: storage failing half way through a purge
// leaves the account unpurged, with exactly the rows whose bytes are
// still there; the next pass finishes, and usage stays the sum of what is
// left at every step.
func TestPurgeResumesAfterFailure(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		victim := newTenant(t, f, "usr_crash")
		for i := range 6 {
			victim.put(t, f, fmt.Sprintf("f%d.txt", i), fmt.Sprintf("content number %d", i))
		}
		deleted, err := f.store.SetStatus(ctx, victim.acct.UserID, server.StatusDeleted)
		if err != nil {
			t.Fatal(err)
		}
		fb := &failingBlobs{Store: f.blobs}
		fb.left.Store(3)
		r := &Runner{Store: f.store, Blobs: fb, Holder: "test", DeletedAccountGrace: time.Hour,
			Now: func() time.Time { return deleted.DeletedAt.Add(2 * time.Hour) }}
		rep, err := r.RunOnce(ctx)
		if !errors.Is(err, errStorageDown) || rep.AccountsPurged != 0 || rep.PurgedObjects != 3 {
			t.Fatalf("pass with storage failing: %+v %v", rep, err)
		}
		objs, _ := listed(t, f.blobs, server.AccountPrefix(victim.acct.UserID))
		items, err := f.store.PurgeBatch(ctx, victim.acct.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		var rowKeys []string
		for _, it := range items {
			rowKeys = append(rowKeys, it.ObjectKey)
			used += it.Size
		}
		sort.Strings(rowKeys)
		if fmt.Sprint(rowKeys) != fmt.Sprint(objs) || len(objs) != 3 {
			t.Fatalf("after the failure: rows %v, objects in storage %v; want the same 3", rowKeys, objs)
		}
		a, err := f.store.AccountByID(ctx, victim.acct.ID)
		if err != nil || a.StorageUsedBytes != used || !a.PurgedAt.IsZero() {
			t.Fatalf("after the failure: %+v %v; want %d bytes used, not purged", a, err, used)
		}

		r.Blobs = f.blobs
		rep, err = r.RunOnce(ctx)
		if err != nil || rep.AccountsPurged != 1 || rep.PurgedObjects != 3 {
			t.Fatalf("resumed pass: %+v %v", rep, err)
		}
		if objs, ups := listed(t, f.blobs, server.AccountPrefix(victim.acct.UserID)); len(objs) != 0 || len(ups) != 0 {
			t.Fatalf("left: %v %v", objs, ups)
		}
	})
}

// TestPurgeRefusesForeignKeys: a deleted account whose rows name an object
// outside its prefix (which the server never writes) is not purged at
// all, and the other account's object stays.
func TestPurgeRefusesForeignKeys(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		other := newTenant(t, f, f.acct.UserID)
		other.put(t, f, "mine.txt", "the bystander's file")
		victim := newTenant(t, f, "usr_odd")
		victim.put(t, f, "own.txt", "the victim's own file")
		// A row of the victim pointing into the other account's prefix.
		odd := server.AccountPrefix(other.acct.UserID) + "9-odd.txt"
		if _, _, err := f.blobs.Put(ctx, odd, strings.NewReader("not the victim's"), 16, ""); err != nil {
			t.Fatal(err)
		}
		if err := f.store.AddPendingObject(ctx, odd, "", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte("not the victim's"))
		if _, _, err := f.store.CreateAsset(ctx, server.NewAsset{AccountID: victim.acct.ID, ObjectKey: odd, Bucket: "b",
			Filename: "odd.txt", Size: 16, SHA256: hex.EncodeToString(sum[:]), SHA256Verified: true}, ""); err != nil {
			t.Fatal(err)
		}
		deleted, err := f.store.SetStatus(ctx, victim.acct.UserID, server.StatusDeleted)
		if err != nil {
			t.Fatal(err)
		}
		r := runner(f, deleted.DeletedAt.Add(2*time.Hour))
		r.DeletedAccountGrace = time.Hour
		rep, err := r.RunOnce(ctx)
		if err == nil || !strings.Contains(err.Error(), "outside the account's prefix") || rep.AccountsPurged != 0 {
			t.Fatalf("pass: %+v %v; want the account refused", rep, err)
		}
		if _, err := f.blobs.Stat(ctx, odd); err != nil {
			t.Fatalf("the object outside the prefix was touched: %v", err)
		}
		other.objects[odd] = "not the victim's"
		for key, content := range other.objects {
			rc, _, err := f.blobs.Get(ctx, key, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != content {
				t.Fatalf("%s reads %q", key, b)
			}
		}
	})
}

// TestPurgeBudgetResumes: a pass removes at most its budget of a deleted
// account's objects; the next pass goes on, and the one that finds
// nothing left finishes the account.
func TestPurgeBudgetResumes(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		victim := newTenant(t, f, "usr_big")
		for i := range 6 {
			victim.put(t, f, fmt.Sprintf("f%d.txt", i), fmt.Sprintf("content number %d", i))
		}
		deleted, err := f.store.SetStatus(ctx, victim.acct.UserID, server.StatusDeleted)
		if err != nil {
			t.Fatal(err)
		}
		r := runner(f, deleted.DeletedAt.Add(2*time.Hour))
		r.DeletedAccountGrace = time.Hour
		r.limits = limits{purgeBatch: 2, purgePerPass: 3}
		prefix := server.AccountPrefix(victim.acct.UserID)
		for i, want := range []struct{ objects, accounts, left int }{{3, 0, 3}, {3, 0, 0}, {0, 1, 0}, {0, 0, 0}} {
			rep, err := r.RunOnce(ctx)
			if err != nil || rep.PurgedObjects != want.objects || rep.AccountsPurged != want.accounts {
				t.Fatalf("pass %d: %+v %v; want %d objects, %d accounts", i+1, rep, err, want.objects, want.accounts)
			}
			if objs, _ := listed(t, f.blobs, prefix); len(objs) != want.left {
				t.Fatalf("pass %d left %v, want %d objects", i+1, objs, want.left)
			}
		}
		if a, err := f.store.AccountByID(ctx, victim.acct.ID); err != nil || a.PurgedAt.IsZero() || a.StorageUsedBytes != 0 {
			t.Fatalf("account after the passes: %+v %v", a, err)
		}
	})
}
