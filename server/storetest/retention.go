package storetest

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// retentionTests cover server.RetentionStore.
var retentionTests = []storeTest{
	{"DeleteRequests", testDeleteRequests},
	{"DeleteRequestsBatches", testDeleteRequestsBatches},
	{"DeletedAt", testDeletedAt},
	{"AccountsToPurge", testAccountsToPurge},
	{"PurgeAccount", testPurgeAccount},
	{"PurgeRefusesLiveAccounts", testPurgeRefusesLiveAccounts},
}

// loggedEndpoints lists the endpoints of every logged request, sorted.
func loggedEndpoints(t *testing.T, s server.Store) []string {
	t.Helper()
	rows, err := s.RecentRequests(ctxFor(t), "", 1000)
	if err != nil {
		t.Fatalf("RecentRequests: %v", err)
	}
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Endpoint)
	}
	sort.Strings(out)
	return out
}

func wantEndpoints(t *testing.T, s server.Store, want ...string) {
	t.Helper()
	got, w := loggedEndpoints(t, s), sorted(want...)
	if fmt.Sprint(got) != fmt.Sprint(w) {
		t.Fatalf("requests left: %v\nwant:          %v", got, w)
	}
}

// testDeleteRequests: rows older than the cut-off go, newer ones and the
// one exactly at it stay; the anonymous variant takes only failed requests
// without an account.
func testDeleteRequests(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	row := func(name, account string, status int, age time.Duration) server.APIRequest {
		return server.APIRequest{AccountID: account, Method: "GET", Endpoint: name, StatusCode: status, CreatedAt: now.Add(-age)}
	}
	reqs := []server.APIRequest{
		row("acct-40d", a.ID, 200, 40*day),
		row("acct-40d-failed", a.ID, 404, 40*day),
		row("acct-10d-failed", a.ID, 403, 10*day),
		row("acct-1d", a.ID, 200, day),
		row("anon-40d-ok", "", 200, 40*day),
		row("anon-40d-404", "", 404, 40*day),
		row("anon-10d-ok", "", 201, 10*day),
		row("anon-10d-401", "", 401, 10*day),
		row("anon-10d-399", "", 399, 10*day),
		row("anon-3d-401", "", 401, 3*day),
		row("anon-at-cutoff-404", "", 404, 7*day),
		row("acct-at-cutoff", a.ID, 200, 30*day),
	}
	if err := s.LogRequests(ctx, reqs); err != nil {
		t.Fatalf("LogRequests: %v", err)
	}
	n, err := s.DeleteRequests(ctx, now.Add(-30*day), false, 1000)
	if err != nil || n != 4 {
		t.Fatalf("DeleteRequests(30 days) = %d, %v; want 4", n, err)
	}
	wantEndpoints(t, s, "acct-10d-failed", "acct-1d", "anon-10d-ok", "anon-10d-401", "anon-10d-399", "anon-3d-401",
		"anon-at-cutoff-404", "acct-at-cutoff")
	n, err = s.DeleteRequests(ctx, now.Add(-7*day), true, 1000)
	if err != nil || n != 1 {
		t.Fatalf("DeleteRequests(anonymous failures, 7 days) = %d, %v; want 1", n, err)
	}
	wantEndpoints(t, s, "acct-10d-failed", "acct-1d", "anon-10d-ok", "anon-10d-399", "anon-3d-401",
		"anon-at-cutoff-404", "acct-at-cutoff")
	// Running again finds nothing.
	if n, err := s.DeleteRequests(ctx, now.Add(-30*day), false, 1000); err != nil || n != 0 {
		t.Fatalf("DeleteRequests(30 days) again = %d, %v", n, err)
	}
	if n, err := s.DeleteRequests(ctx, now.Add(-7*day), true, 1000); err != nil || n != 0 {
		t.Fatalf("DeleteRequests(anonymous failures) again = %d, %v", n, err)
	}
	_, err = s.DeleteRequests(ctx, now, false, 0)
	wantCode(t, err, server.EInvalid)
}

// testDeleteRequestsBatches: each call deletes at most limit rows, the
// oldest first, so a crash between batches leaves a clean cut.
func testDeleteRequestsBatches(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	var reqs []server.APIRequest
	for i := range 25 {
		reqs = append(reqs, server.APIRequest{Method: "GET", Endpoint: fmt.Sprintf("old-%02d", i), StatusCode: 200,
			CreatedAt: now.Add(-time.Hour - time.Duration(25-i)*time.Second)})
	}
	reqs = append(reqs, server.APIRequest{Method: "GET", Endpoint: "new", StatusCode: 200, CreatedAt: now})
	if err := s.LogRequests(ctx, reqs); err != nil {
		t.Fatalf("LogRequests: %v", err)
	}
	var got []int
	for {
		n, err := s.DeleteRequests(ctx, now.Add(-time.Minute), false, 10)
		if err != nil {
			t.Fatalf("DeleteRequests: %v", err)
		}
		got = append(got, n)
		if len(got) == 1 {
			// The ten oldest went first.
			left := loggedEndpoints(t, s)
			if len(left) != 16 || left[0] != "new" || left[1] != "old-10" {
				t.Fatalf("after the first batch: %v", left)
			}
		}
		if n < 10 {
			break
		}
	}
	if fmt.Sprint(got) != "[10 10 5]" {
		t.Fatalf("batches deleted %v, want [10 10 5]", got)
	}
	wantEndpoints(t, s, "new")
}

// testDeletedAt: deleting records when; deleting again does not move it
// (the grace period runs from the first deletion); other states have none.
func testDeletedAt(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	if a.DeletedAt != (time.Time{}) || a.PurgedAt != (time.Time{}) {
		t.Fatalf("new account deleted at %v, purged at %v", a.DeletedAt, a.PurgedAt)
	}
	if got, err := s.SetStatus(ctx, a.UserID, server.StatusSuspended); err != nil || !got.DeletedAt.IsZero() {
		t.Fatalf("suspended: deleted at %v, %v", got.DeletedAt, err)
	}
	before := time.Now().Add(-time.Second)
	del, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted)
	if err != nil {
		t.Fatal(err)
	}
	if del.DeletedAt.Before(before) || del.DeletedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("deleted at %v, want about now", del.DeletedAt)
	}
	time.Sleep(2 * time.Millisecond)
	again, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted)
	if err != nil || !again.DeletedAt.Equal(del.DeletedAt) {
		t.Fatalf("deleted again: deleted at %v, %v; want %v", again.DeletedAt, err, del.DeletedAt)
	}
	if got := mustAccount(t, s, a.ID); !got.DeletedAt.Equal(del.DeletedAt) || !got.PurgedAt.IsZero() {
		t.Fatalf("stored: deleted at %v, purged at %v", got.DeletedAt, got.PurgedAt)
	}
}

func accountIDs(as []server.Account) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

// testAccountsToPurge: only deleted, unpurged accounts deleted before the
// cut-off are due, oldest deletion first.
func testAccountsToPurge(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	mustCreate(t, s, "pro") // active
	sus := mustCreate(t, s, "pro")
	if _, err := s.SetStatus(ctx, sus.UserID, server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	var deleted []server.Account
	for range 3 {
		a := mustCreate(t, s, "pro")
		d, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted)
		if err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, d)
		time.Sleep(2 * time.Millisecond)
	}
	due, err := s.AccountsToPurge(ctx, time.Now().Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := accountIDs(deleted); fmt.Sprint(accountIDs(due)) != fmt.Sprint(want) {
		t.Fatalf("AccountsToPurge = %v, want %v (oldest deletion first)", accountIDs(due), want)
	}
	if due[0].Status != server.StatusDeleted || due[0].UserID != deleted[0].UserID {
		t.Fatalf("AccountsToPurge returned %+v", due[0])
	}
	if due, err := s.AccountsToPurge(ctx, deleted[0].DeletedAt, 10); err != nil || len(due) != 0 {
		t.Fatalf("AccountsToPurge(at the first deletion) = %v, %v; want none (strictly before)", accountIDs(due), err)
	}
	if due, err := s.AccountsToPurge(ctx, time.Now().Add(time.Hour), 2); err != nil || len(due) != 2 || due[0].ID != deleted[0].ID {
		t.Fatalf("AccountsToPurge(limit 2) = %v, %v", accountIDs(due), err)
	}
	if _, err := s.FinishPurge(ctx, deleted[0].ID, time.Now()); err != nil {
		t.Fatalf("FinishPurge of an empty account: %v", err)
	}
	due, err = s.AccountsToPurge(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || fmt.Sprint(accountIDs(due)) != fmt.Sprint(accountIDs(deleted[1:])) {
		t.Fatalf("after a purge AccountsToPurge = %v, %v; want %v", accountIDs(due), err, accountIDs(deleted[1:]))
	}
	_, err = s.AccountsToPurge(ctx, time.Now(), 0)
	wantCode(t, err, server.EInvalid)
}

// holdings gives account a two assets sharing one object, a third asset,
// an open session, a completed one and a reservation, and returns the
// object keys it stores and the open session.
func holdings(t *testing.T, s server.Store, a server.Account, tag string) (keys []string, open server.UploadSession) {
	t.Helper()
	ctx := ctxFor(t)
	x, _, _ := mustUpload(t, s, a, tag+"-shared", "")
	if _, dedup, _ := mustUpload(t, s, a, tag+"-shared", ""); !dedup {
		t.Fatal("second upload of the same content was not deduplicated")
	}
	y, _, _ := mustUpload(t, s, a, tag+"-other!", "")
	done := mustSession(t, s, newSession(a, tag+"-session"))
	mustBegin(t, s, a.ID, done.ID)
	z, _, _ := mustUpload(t, s, a, tag+"-session", "", func(n *server.NewAsset) { n.ObjectKey, n.SessionID = done.ObjectKey, done.ID })
	open = mustSession(t, s, newSession(a, tag+"-open-upload"))
	mustReserve(t, s, a.ID, 1000)
	if err := s.AddPendingObject(ctx, newObjectKey(a), "upload-"+randHex(4), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return sorted(x.ObjectKey, y.ObjectKey, z.ObjectKey), open
}

// testPurgeAccount: a deleted account's objects and sessions come out in
// batches, each forgotten with its assets and its bytes of usage; the
// finish drops what is left and keeps the row as a tombstone with its
// usage history; another account is never touched; every step can run
// again.
func testPurgeAccount(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	aKeys, aOpen := holdings(t, s, a, "a")
	bKeys, bOpen := holdings(t, s, b, "b")
	now := time.Now().UTC()
	if _, err := s.RollupUsageDay(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	bBefore := mustAccount(t, s, b.ID)
	aUsed := mustAccount(t, s, a.ID).StorageUsedBytes
	if aUsed != int64(len("a-shared")+len("a-other!")+len("a-session")) {
		t.Fatalf("a uses %d bytes before the purge", aUsed)
	}
	if _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}

	// Finishing before the objects are gone is refused.
	_, err := s.FinishPurge(ctx, a.ID, now)
	wantCode(t, err, server.EConflict)

	var objects, sessions []server.PurgeItem
	for round := 0; ; round++ {
		items, err := s.PurgeBatch(ctx, a.ID, 2)
		if err != nil {
			t.Fatalf("PurgeBatch: %v", err)
		}
		if len(items) == 0 {
			break
		}
		if round > 5 {
			t.Fatalf("PurgeBatch keeps returning items: %+v", items)
		}
		if len(items) > 2 {
			t.Fatalf("PurgeBatch(limit 2) returned %d items", len(items))
		}
		// Asking again before forgetting gives the same items (a crash
		// between deleting the bytes and forgetting them repeats them).
		again, err := s.PurgeBatch(ctx, a.ID, 2)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(items) {
			t.Fatalf("PurgeBatch again = %+v, %v; want %+v", again, err, items)
		}
		var freed int64
		for _, it := range items {
			if it.ObjectID != "" {
				objects = append(objects, it)
				freed += it.Size
			} else {
				sessions = append(sessions, it)
			}
		}
		used := mustAccount(t, s, a.ID).StorageUsedBytes
		if err := s.ForgetPurged(ctx, a.ID, items); err != nil {
			t.Fatalf("ForgetPurged: %v", err)
		}
		if got := mustAccount(t, s, a.ID).StorageUsedBytes; got != used-freed {
			t.Fatalf("used %d after forgetting %d bytes of %d", got, freed, used)
		}
		// Forgetting twice changes nothing.
		if err := s.ForgetPurged(ctx, a.ID, items); err != nil {
			t.Fatalf("ForgetPurged again: %v", err)
		}
	}
	var objKeys []string
	for _, o := range objects {
		objKeys = append(objKeys, o.ObjectKey)
		wantKnown(t, s, o.ObjectKey, false)
	}
	if fmt.Sprint(sorted(objKeys...)) != fmt.Sprint(aKeys) {
		t.Fatalf("purged objects %v, want %v", sorted(objKeys...), aKeys)
	}
	if len(sessions) != 2 {
		t.Fatalf("purged sessions %+v, want 2", sessions)
	}
	for _, it := range sessions {
		want := ""
		if it.SessionID == aOpen.ID {
			want = aOpen.UploadID
		}
		if it.UploadID != want {
			t.Fatalf("session %s: upload id %q, want %q (only an open session has an upload to abort)", it.SessionID, it.UploadID, want)
		}
	}
	if page, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 100); err != nil || len(page.Assets) != 0 {
		t.Fatalf("assets left: %d, %v", len(page.Assets), err)
	}
	if _, err := s.SessionByID(ctx, a.ID, aOpen.ID); server.ErrorCode(err) != server.ENotFound {
		t.Fatalf("open session after the purge: %v", err)
	}

	done, err := s.FinishPurge(ctx, a.ID, now)
	if err != nil {
		t.Fatalf("FinishPurge: %v", err)
	}
	if done.Status != server.StatusDeleted || done.PurgedAt.IsZero() || done.Email != "" ||
		done.StorageUsedBytes != 0 || done.StorageReservedBytes != 0 || done.UserID != a.UserID {
		t.Fatalf("tombstone %+v", done)
	}
	// The pending and garbage records under the account's prefix are gone
	// with it; b's (its deduplicated copy and its pending upload) stay.
	gs, err := s.ClaimGarbage(ctx, now.Add(48*time.Hour), time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 {
		t.Fatalf("garbage records %+v, want b's two", gs)
	}
	for _, g := range gs {
		if !strings.HasPrefix(g.ObjectKey, server.AccountPrefix(b.UserID)) {
			t.Fatalf("garbage record %s is not b's", g.ObjectKey)
		}
	}
	again, err := s.FinishPurge(ctx, a.ID, now.Add(time.Hour))
	if err != nil || !again.PurgedAt.Equal(done.PurgedAt) {
		t.Fatalf("FinishPurge again: purged at %v, %v; want %v unchanged", again.PurgedAt, err, done.PurgedAt)
	}
	if items, err := s.PurgeBatch(ctx, a.ID, 10); err != nil || len(items) != 0 {
		t.Fatalf("PurgeBatch after the purge = %+v, %v", items, err)
	}
	// The tombstone keeps the user id: it cannot be provisioned again.
	n := newAccount("pro")
	n.UserID = a.UserID
	_, err = s.CreateAccount(ctx, n)
	wantCode(t, err, server.EAccountExists)
	// Usage history stays.
	if p, err := s.UsageRows(ctx, server.UsageQuery{From: now, To: now, UserID: a.UserID, Accounts: 1}); err != nil || len(p.Rows) != 1 || p.Rows[0].StorageBytes != aUsed {
		t.Fatalf("usage history of the purged account: %+v, %v", p.Rows, err)
	}

	// b is untouched.
	bAfter := mustAccount(t, s, b.ID)
	if bAfter.StorageUsedBytes != bBefore.StorageUsedBytes || bAfter.StorageReservedBytes != bBefore.StorageReservedBytes || bAfter.Email != bBefore.Email {
		t.Fatalf("b changed: %+v, was %+v", bAfter, bBefore)
	}
	for _, k := range bKeys {
		wantKnown(t, s, k, true)
	}
	if page, err := s.ListAssets(ctx, b.ID, server.AssetFilter{}, "", 100); err != nil || len(page.Assets) != 4 {
		t.Fatalf("b's assets: %d, %v; want 4", len(page.Assets), err)
	}
	wantState(t, s, b.ID, bOpen.ID, server.SessionOpen)
}

// testPurgeRefusesLiveAccounts: nothing of an active or suspended account
// is ever purged, and one account's purge cannot forget another's rows.
func testPurgeRefusesLiveAccounts(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	bKeys, bOpen := holdings(t, s, b, "b")
	if _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	for _, st := range []server.AccountStatus{server.StatusActive, server.StatusSuspended} {
		if _, err := s.SetStatus(ctx, b.UserID, st); err != nil {
			t.Fatal(err)
		}
		_, err := s.PurgeBatch(ctx, b.ID, 10)
		wantCode(t, err, server.EConflict)
		wantCode(t, s.ForgetPurged(ctx, b.ID, nil), server.EConflict)
		_, err = s.FinishPurge(ctx, b.ID, time.Now())
		wantCode(t, err, server.EConflict)
	}
	_, err := s.PurgeBatch(ctx, "no-such-account", 10)
	wantCode(t, err, server.ENotFound)
	_, err = s.PurgeBatch(ctx, a.ID, 0)
	wantCode(t, err, server.EInvalid)

	// Another deleted account's items named under a's: nothing happens
	// to them.
	c := mustCreate(t, s, "pro")
	holdings(t, s, c, "c")
	if _, err := s.SetStatus(ctx, c.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	cUsed := mustAccount(t, s, c.ID).StorageUsedBytes
	items, err := s.PurgeBatch(ctx, c.ID, 100)
	if err != nil || len(items) != 5 {
		t.Fatalf("PurgeBatch(c) = %+v, %v; want 3 objects and 2 sessions", items, err)
	}
	if err := s.ForgetPurged(ctx, a.ID, items); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishPurge(ctx, a.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if again, err := s.PurgeBatch(ctx, c.ID, 100); err != nil || len(again) != 5 {
		t.Fatalf("c's items after a's purge: %+v, %v; want all 5", again, err)
	}
	if got := mustAccount(t, s, c.ID).StorageUsedBytes; got != cUsed {
		t.Fatalf("c uses %d bytes, was %d", got, cUsed)
	}
	for _, k := range bKeys {
		wantKnown(t, s, k, true)
	}
	wantState(t, s, b.ID, bOpen.ID, server.SessionOpen)
}
