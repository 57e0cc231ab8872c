package storetest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// assetTests cover server.AssetStore.
var assetTests = []storeTest{
	{"AssetRoundTrip", testAssetRoundTrip},
	{"AssetValidation", testAssetValidation},
	{"AddPendingObject", testAddPendingObject},
	{"Dedup", testDedup},
	{"DedupConcurrent", testDedupConcurrent},
	{"DedupRacesDelete", testDedupRacesDelete},
	{"NoCrossAccountDedup", testNoCrossAccountDedup},
	{"DedupOnVerifiedContent", testDedupOnVerifiedContent},
	{"CreateAssetAfterDeadline", testCreateAssetAfterDeadline},
	{"CreateAssetReservation", testCreateAssetReservation},
	{"CreateAssetWithoutReservation", testCreateAssetWithoutReservation},
	{"LinkAsset", testLinkAsset},
	{"AssetIsolation", testAssetIsolation},
	{"ListAssets", testListAssets},
	{"DeleteExpiredAssets", testDeleteExpiredAssets},
	{"DeleteExpiredRacesDelete", testDeleteExpiredRacesDelete},
	{"RecordDownload", testRecordDownload},
	{"ClaimGarbage", testClaimGarbage},
	{"ClaimGarbageConcurrent", testClaimGarbageConcurrent},
	{"TryLease", testTryLease},
}

// downloadEndpoint is the route pattern of downloads in api_requests.
const downloadEndpoint = "GET /api/storage/assets/{id}/download"

func hashOf(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

func newObjectKey(a server.Account) string {
	return fmt.Sprintf("users/%s/%d-%s.bin", a.UserID, time.Now().UnixMilli(), randHex(8))
}

// newUpload describes an upload of content by account a to a fresh key.
func newUpload(a server.Account, content string) server.NewAsset {
	return server.NewAsset{
		AccountID:   a.ID,
		ObjectKey:   newObjectKey(a),
		Bucket:      a.S3Bucket,
		Filename:    "file-" + randHex(3) + ".txt",
		ContentType: "text/plain",
		Size:        int64(len(content)),
		SHA256:      hashOf(content),
		// Recorded as the server records a single-request upload: it
		// hashed every byte, so the SHA-256 is the content id.
		SHA256Verified: true,
		UploadedVia:    "api",
	}
}

func mustPending(t *testing.T, s server.Store, key string) {
	t.Helper()
	if err := s.AddPendingObject(ctxFor(t), key, "", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("AddPendingObject(%s): %v", key, err)
	}
}

// mustUpload records a finished upload of content (pending object, then
// CreateAsset with reservationID) and returns the asset and its dedup flag.
func mustUpload(t *testing.T, s server.Store, a server.Account, content, reservationID string, change ...func(*server.NewAsset)) (server.Asset, bool, server.NewAsset) {
	t.Helper()
	n := newUpload(a, content)
	for _, c := range change {
		c(&n)
	}
	mustPending(t, s, n.ObjectKey)
	got, dedup, err := s.CreateAsset(ctxFor(t), n, reservationID)
	if err != nil {
		t.Fatalf("CreateAsset: %v", err)
	}
	return got, dedup, n
}

func mustReserve(t *testing.T, s server.Store, accountID string, bytes int64) server.Reservation {
	t.Helper()
	r, err := s.Reserve(ctxFor(t), accountID, bytes, time.Hour)
	if err != nil {
		t.Fatalf("Reserve(%d): %v", bytes, err)
	}
	return r
}

func mustAsset(t *testing.T, s server.Store, accountID, id string) server.Asset {
	t.Helper()
	a, err := s.AssetByID(ctxFor(t), accountID, id)
	if err != nil {
		t.Fatalf("AssetByID(%s): %v", id, err)
	}
	return a
}

// sameAsset compares assets, times by instant.
func sameAsset(a, b server.Asset) bool {
	ta := []time.Time{a.LastAccessed, a.ExpiresAt, a.CreatedAt}
	tb := []time.Time{b.LastAccessed, b.ExpiresAt, b.CreatedAt}
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.LastAccessed, a.ExpiresAt, a.CreatedAt = time.Time{}, time.Time{}, time.Time{}
	b.LastAccessed, b.ExpiresAt, b.CreatedAt = time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func wantKnown(t *testing.T, s server.Store, key string, want bool) {
	t.Helper()
	got, err := s.IsKnownObject(ctxFor(t), key)
	if err != nil {
		t.Fatalf("IsKnownObject: %v", err)
	}
	if got != want {
		t.Fatalf("IsKnownObject(%s) = %v, want %v", key, got, want)
	}
}

// claimAll claims every garbage object due at now, with a one-minute lease.
func claimAll(t *testing.T, s server.Store, now time.Time) []string {
	t.Helper()
	gs, err := s.ClaimGarbage(ctxFor(t), now, time.Minute, 1000)
	if err != nil {
		t.Fatalf("ClaimGarbage: %v", err)
	}
	keys := []string{}
	for _, g := range gs {
		keys = append(keys, g.ObjectKey)
	}
	sort.Strings(keys)
	return keys
}

func sorted(keys ...string) []string {
	out := slices.Clone(keys)
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func testAssetRoundTrip(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := "hello, round trip"
	n := server.NewAsset{
		AccountID:       a.ID,
		ObjectKey:       newObjectKey(a),
		Bucket:          "jetty-test",
		Filename:        "rapport d'été ü.txt",
		ContentType:     "text/plain; charset=utf-8",
		Size:            int64(len(content)),
		SHA256:          hashOf(content),
		CacheKey:        "pipeline-7:step-3",
		ExpiresAt:       time.Date(2040, 2, 3, 4, 5, 6, 123456789, time.FixedZone("X", -7200)),
		UploadedVia:     "jettyspeed",
		UploadSpeedMbps: 123.45,
		// A chunked upload on S3: every chunk verified, the whole-file
		// hash not (upper case: stored canonical).
		ContentID: "m1-" + strings.ToUpper(hashOf("chunk list of "+content)),
	}
	mustPending(t, s, n.ObjectKey)
	before := time.Now().Add(-time.Second)
	got, dedup, err := s.CreateAsset(ctx, n, "")
	if err != nil {
		t.Fatalf("CreateAsset: %v", err)
	}
	after := time.Now().Add(time.Second)
	if dedup {
		t.Error("first upload of a content reported deduplicated")
	}
	want := server.Asset{
		ID: got.ID, AccountID: a.ID, ObjectKey: n.ObjectKey, Bucket: n.Bucket, Filename: n.Filename,
		ContentType: n.ContentType, Size: n.Size, SHA256: n.SHA256, CacheKey: n.CacheKey,
		ExpiresAt: n.ExpiresAt.Truncate(time.Microsecond), UploadedVia: "jettyspeed", UploadSpeedMbps: 123.45,
		CreatedAt: got.CreatedAt, SHA256Verified: false, ContentID: "m1-" + hashOf("chunk list of "+content),
	}
	if len(got.ID) != 36 || !sameAsset(got, want) {
		t.Fatalf("CreateAsset = %+v\nwant %+v", got, want)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.After(after) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want UTC between %v and %v", got.CreatedAt, before, after)
	}
	if got.ExpiresAt.Location() != time.UTC {
		t.Errorf("ExpiresAt %v is not UTC", got.ExpiresAt)
	}
	if b := mustAsset(t, s, a.ID, got.ID); !sameAsset(b, got) {
		t.Errorf("AssetByID = %+v\nwant %+v", b, got)
	}
	for _, h := range []string{want.ContentID, strings.ToUpper(want.ContentID)} {
		if b, err := s.AssetByContent(ctx, a.ID, h); err != nil || !sameAsset(b, got) {
			t.Errorf("AssetByContent(%s) = %+v, %v", h, b, err)
		}
	}
	// The declared, unverified whole-file hash finds nothing.
	if _, err := s.AssetByContent(ctx, a.ID, n.SHA256); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("AssetByContent(unverified SHA-256) = %v; want not found", err)
	}
	page, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 10)
	if err != nil || len(page.Assets) != 1 || !sameAsset(page.Assets[0], got) || page.Next != "" {
		t.Errorf("ListAssets = %+v, %v", page, err)
	}
	wantUsage(t, s, a.ID, n.Size, 0)

	// Zero values round-trip as zero: no expiry, no content type, no cache
	// key, no speed; "api" is the default channel.
	content2 := "second"
	got2, _, _ := mustUpload(t, s, a, content2, "", func(n *server.NewAsset) {
		n.ContentType, n.CacheKey, n.UploadedVia, n.UploadSpeedMbps, n.ExpiresAt = "", "", "", 0, time.Time{}
	})
	b := mustAsset(t, s, a.ID, got2.ID)
	if !sameAsset(b, got2) || !b.ExpiresAt.IsZero() || !b.LastAccessed.IsZero() || b.ContentType != "" ||
		b.CacheKey != "" || b.UploadSpeedMbps != 0 || b.UploadedVia != "api" || b.HitCount != 0 ||
		!b.SHA256Verified || b.ContentID != hashOf(content2) {
		t.Errorf("zero-valued asset = %+v (returned %+v)", b, got2)
	}

	// A download shows up on the asset.
	at := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.RecordDownload(ctx, a.ID, got.ID, 5, at); err != nil {
		t.Fatal(err)
	}
	c := mustAsset(t, s, a.ID, got.ID)
	if c.HitCount != 1 || !c.LastAccessed.Equal(at) || c.LastAccessed.Location() != time.UTC {
		t.Errorf("after a download: hits %d, last accessed %v; want 1, %v", c.HitCount, c.LastAccessed, at)
	}
	c.HitCount, c.LastAccessed = got.HitCount, got.LastAccessed
	if !sameAsset(c, got) {
		t.Errorf("download changed more than hits and last access: %+v", c)
	}
}

func testAssetValidation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	cases := []struct {
		name   string
		change func(*server.NewAsset)
	}{
		{"bad hash", func(n *server.NewAsset) { n.SHA256 = "abc" }},
		{"non-hex hash", func(n *server.NewAsset) { n.SHA256 = strings.Repeat("g", 64) }},
		{"negative size", func(n *server.NewAsset) { n.Size = -1 }},
		{"unknown channel", func(n *server.NewAsset) { n.UploadedVia = "ftp" }},
		{"invalid UTF-8 name", func(n *server.NewAsset) { n.Filename = "a\xffb" }},
		{"NUL in name", func(n *server.NewAsset) { n.Filename = "a\x00b" }},
		{"long content type", func(n *server.NewAsset) { n.ContentType = strings.Repeat("x", 101) }},
		{"negative speed", func(n *server.NewAsset) { n.UploadSpeedMbps = -1 }},
		{"empty key", func(n *server.NewAsset) { n.ObjectKey = "" }},
		// Deduplication keys only on what the server verified.
		{"unverified hash, no content id", func(n *server.NewAsset) { n.SHA256Verified = false }},
		{"unverified hash as content id", func(n *server.NewAsset) { n.SHA256Verified, n.ContentID = false, n.SHA256 }},
		{"content id another hash", func(n *server.NewAsset) { n.ContentID = hashOf("other") }},
		{"malformed content id", func(n *server.NewAsset) { n.ContentID = "m1-xyz" }},
		{"content id of another kind", func(n *server.NewAsset) { n.ContentID = "m2-" + n.SHA256 }},
	}
	for _, c := range cases {
		n := newUpload(a, "validation")
		mustPending(t, s, n.ObjectKey)
		c.change(&n)
		_, _, err := s.CreateAsset(ctx, n, "")
		if server.ErrorCode(err) != server.EInvalid {
			t.Errorf("%s: got %v, want %s", c.name, err, server.EInvalid)
		}
	}
	if page, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 100); err != nil || len(page.Assets) != 0 {
		t.Fatalf("invalid uploads were recorded: %+v, %v", page, err)
	}
	wantUsage(t, s, a.ID, 0, 0)
	// Nothing consumed the pending records: a valid attempt still works.
	n := newUpload(a, "validation")
	mustPending(t, s, n.ObjectKey)
	bad := n
	bad.UploadedVia = "ftp"
	if _, _, err := s.CreateAsset(ctx, bad, ""); server.ErrorCode(err) != server.EInvalid {
		t.Fatalf("CreateAsset(ftp) = %v", err)
	}
	if _, _, err := s.CreateAsset(ctx, n, ""); err != nil {
		t.Fatalf("CreateAsset after a refused attempt: %v", err)
	}
	// An unknown account.
	n = newUpload(server.Account{ID: "no-such-account", UserID: "ghost"}, "x")
	mustPending(t, s, n.ObjectKey)
	_, _, err := s.CreateAsset(ctx, n, "")
	wantCode(t, err, server.ENotFound)
}

func testAddPendingObject(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	key := newObjectKey(a)
	wantKnown(t, s, key, false)
	if err := s.AddPendingObject(ctx, key, "mpu-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("AddPendingObject: %v", err)
	}
	wantKnown(t, s, key, true)
	// A key is recorded once.
	wantCode(t, s.AddPendingObject(ctx, key, "", time.Now().Add(time.Hour)), server.EConflict)
	wantCode(t, s.AddPendingObject(ctx, "", "", time.Now().Add(time.Hour)), server.EInvalid)
	// The key of a stored object cannot become pending (it would be
	// collected while assets point at it).
	asset, _, _ := mustUpload(t, s, a, "pending test", "")
	wantCode(t, s.AddPendingObject(ctx, asset.ObjectKey, "", time.Now().Add(time.Hour)), server.EConflict)
	// A recorded upload cannot be recorded twice.
	n := newUpload(a, "twice")
	mustPending(t, s, n.ObjectKey)
	if _, _, err := s.CreateAsset(ctx, n, ""); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.CreateAsset(ctx, n, "")
	wantCode(t, err, server.EConflict)
	// Nothing is due: pending uploads within their deadline are not garbage.
	if keys := claimAll(t, s, time.Now()); len(keys) != 0 {
		t.Errorf("ClaimGarbage = %v, want nothing", keys)
	}
}

func testDedup(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "starter")
	content := strings.Repeat("dedup me ", 1000)
	size := int64(len(content))

	r1 := mustReserve(t, s, a.ID, size)
	a1, dedup, n1 := mustUpload(t, s, a, content, r1.ID)
	if dedup || a1.ObjectKey != n1.ObjectKey {
		t.Fatalf("first upload: dedup %v, key %s (uploaded to %s)", dedup, a1.ObjectKey, n1.ObjectKey)
	}
	wantUsage(t, s, a.ID, size, 0)

	r2 := mustReserve(t, s, a.ID, size)
	a2, dedup, n2 := mustUpload(t, s, a, content, r2.ID)
	if !dedup {
		t.Fatal("second upload of the same content not deduplicated")
	}
	if a2.ObjectKey != n1.ObjectKey || a2.ID == a1.ID || a2.Filename != n2.Filename || a2.Size != size {
		t.Fatalf("deduplicated asset %+v; want the object %s and its own id and name", a2, n1.ObjectKey)
	}
	wantUsage(t, s, a.ID, size, 0) // counted once, reservation settled
	wantCode(t, s.CommitReservation(ctx, r2.ID, 0), server.ENotFound)

	// The redundant copy is garbage due now, exactly once.
	wantKnown(t, s, n2.ObjectKey, true)
	if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, []string{n2.ObjectKey}) {
		t.Fatalf("garbage = %v, want [%s]", keys, n2.ObjectKey)
	}
	if err := s.ObjectCollected(ctx, n2.ObjectKey); err != nil {
		t.Fatal(err)
	}
	wantKnown(t, s, n2.ObjectKey, false)
	wantKnown(t, s, n1.ObjectKey, true)

	// AssetByContent answers the newest.
	if got, err := s.AssetByContent(ctx, a.ID, hashOf(content)); err != nil || got.ID != a2.ID {
		t.Errorf("AssetByContent = %+v, %v; want %s", got, err, a2.ID)
	}

	// Deleting one asset keeps the object for the other.
	key, err := s.DeleteAsset(ctx, a.ID, a1.ID)
	if err != nil || key != "" {
		t.Fatalf("DeleteAsset(first) = %q, %v; want no garbage", key, err)
	}
	wantUsage(t, s, a.ID, size, 0)
	if got := mustAsset(t, s, a.ID, a2.ID); got.ObjectKey != n1.ObjectKey {
		t.Errorf("remaining asset points at %s", got.ObjectKey)
	}
	wantKnown(t, s, n1.ObjectKey, true)
	if keys := claimAll(t, s, time.Now()); len(keys) != 0 {
		t.Fatalf("garbage after deleting a shared asset: %v", keys)
	}
	_, err = s.AssetByID(ctx, a.ID, a1.ID)
	wantCode(t, err, server.ENotFound)

	// Deleting the last one frees the quota and yields the key once.
	key, err = s.DeleteAsset(ctx, a.ID, a2.ID)
	if err != nil || key != n1.ObjectKey {
		t.Fatalf("DeleteAsset(last) = %q, %v; want %s", key, err, n1.ObjectKey)
	}
	wantUsage(t, s, a.ID, 0, 0)
	_, err = s.DeleteAsset(ctx, a.ID, a2.ID)
	wantCode(t, err, server.ENotFound)
	if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, []string{n1.ObjectKey}) {
		t.Fatalf("garbage = %v, want [%s]", keys, n1.ObjectKey)
	}
	if keys := claimAll(t, s, time.Now()); len(keys) != 0 {
		t.Fatalf("claimed twice: %v", keys)
	}
	_, err = s.AssetByContent(ctx, a.ID, hashOf(content))
	wantCode(t, err, server.ENotFound)

	// Uploaded again, the content is new again.
	a3, dedup, n3 := mustUpload(t, s, a, content, "")
	if dedup || a3.ObjectKey != n3.ObjectKey {
		t.Fatalf("upload after deleting everything: dedup %v, key %s", dedup, a3.ObjectKey)
	}
	wantUsage(t, s, a.ID, size, 0)
}

func testDedupConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := strings.Repeat("concurrent ", 333)
	size := int64(len(content))
	const n = 20
	uploads := make([]server.NewAsset, n)
	reservations := make([]server.Reservation, n)
	for i := range uploads {
		uploads[i] = newUpload(a, content)
		mustPending(t, s, uploads[i].ObjectKey)
		reservations[i] = mustReserve(t, s, a.ID, size)
	}
	assets := make([]server.Asset, n)
	dedups := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			assets[i], dedups[i], errs[i] = s.CreateAsset(ctx, uploads[i], reservations[i].ID)
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	var losers []string
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateAsset %d: %v", i, err)
		}
		if dedups[i] {
			losers = append(losers, uploads[i].ObjectKey)
			continue
		}
		if winner >= 0 {
			t.Fatalf("uploads %d and %d both stored a new object", winner, i)
		}
		winner = i
	}
	if winner < 0 {
		t.Fatal("every upload was deduplicated: no object stored")
	}
	if len(losers) != n-1 {
		t.Fatalf("%d deduplicated, want %d", len(losers), n-1)
	}
	for i, as := range assets {
		if as.ObjectKey != uploads[winner].ObjectKey {
			t.Errorf("asset %d points at %s, want %s", i, as.ObjectKey, uploads[winner].ObjectKey)
		}
	}
	wantUsage(t, s, a.ID, size, 0)
	if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, sorted(losers...)) {
		t.Fatalf("garbage = %v\nwant %v", keys, sorted(losers...))
	}
	// Deleting all but one keeps the object; the last frees it.
	for i, as := range assets {
		key, err := s.DeleteAsset(ctx, a.ID, as.ID)
		if err != nil {
			t.Fatal(err)
		}
		if last := i == n-1; (key != "") != last || last && key != uploads[winner].ObjectKey {
			t.Fatalf("DeleteAsset %d = %q", i, key)
		}
	}
	wantUsage(t, s, a.ID, 0, 0)
}

// testDedupRacesDelete uploads a content again while its only asset is
// being deleted: either the upload is deduplicated onto the old object
// (which then survives the deletion) or it stores a new object (and the
// old one becomes garbage), never anything in between.
func testDedupRacesDelete(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	const rounds = 25
	for i := range rounds {
		content := fmt.Sprintf("contested %d", i)
		size := int64(len(content))
		old, _, _ := mustUpload(t, s, a, content, "")
		n := newUpload(a, content)
		mustPending(t, s, n.ObjectKey)
		var (
			wg      sync.WaitGroup
			garbage string
			delErr  error
			created server.Asset
			dedup   bool
			err     error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			garbage, delErr = s.DeleteAsset(ctx, a.ID, old.ID)
		}()
		go func() {
			defer wg.Done()
			created, dedup, err = s.CreateAsset(ctx, n, "")
		}()
		wg.Wait()
		if delErr != nil || err != nil {
			t.Fatalf("round %d: DeleteAsset: %v; CreateAsset: %v", i, delErr, err)
		}
		var wantGarbage []string
		if dedup {
			if created.ObjectKey != old.ObjectKey || garbage != "" {
				t.Fatalf("round %d: deduplicated onto %s, deletion freed %q", i, created.ObjectKey, garbage)
			}
			wantGarbage = []string{n.ObjectKey}
		} else {
			if created.ObjectKey != n.ObjectKey || garbage != old.ObjectKey {
				t.Fatalf("round %d: new object %s, deletion freed %q; want %s and %s", i, created.ObjectKey, garbage, n.ObjectKey, old.ObjectKey)
			}
			wantGarbage = []string{old.ObjectKey}
		}
		if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, wantGarbage) {
			t.Fatalf("round %d (dedup %v): garbage %v, want %v", i, dedup, keys, wantGarbage)
		}
		wantKnown(t, s, created.ObjectKey, true)
		wantUsage(t, s, a.ID, size, 0)
		if key, err := s.DeleteAsset(ctx, a.ID, created.ID); err != nil || key != created.ObjectKey {
			t.Fatalf("round %d: deleting the survivor = %q, %v", i, key, err)
		}
		wantUsage(t, s, a.ID, 0, 0)
		claimAll(t, s, time.Now())
	}
}

func testNoCrossAccountDedup(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	content := "the same bytes in two accounts"
	size := int64(len(content))
	aa, dedupA, na := mustUpload(t, s, a, content, mustReserve(t, s, a.ID, size).ID)
	ab, dedupB, nb := mustUpload(t, s, b, content, mustReserve(t, s, b.ID, size).ID)
	if dedupA || dedupB {
		t.Fatalf("dedup = %v, %v; want false for both (no cross-account dedup)", dedupA, dedupB)
	}
	if aa.ObjectKey != na.ObjectKey || ab.ObjectKey != nb.ObjectKey || aa.ObjectKey == ab.ObjectKey {
		t.Fatalf("objects %s and %s, want each account's own", aa.ObjectKey, ab.ObjectKey)
	}
	wantUsage(t, s, a.ID, size, 0)
	wantUsage(t, s, b.ID, size, 0)
	if keys := claimAll(t, s, time.Now()); len(keys) != 0 {
		t.Errorf("garbage = %v, want none", keys)
	}
	// Deleting a's asset frees a's object only.
	key, err := s.DeleteAsset(ctx, a.ID, aa.ID)
	if err != nil || key != na.ObjectKey {
		t.Fatalf("DeleteAsset = %q, %v; want %s", key, err, na.ObjectKey)
	}
	wantUsage(t, s, a.ID, 0, 0)
	wantUsage(t, s, b.ID, size, 0)
	wantKnown(t, s, nb.ObjectKey, true)
	// a cannot link to content only b holds.
	n := newUpload(a, content)
	_, err = s.LinkAsset(ctx, n)
	wantCode(t, err, server.ENotFound)
}

func testCreateAssetAfterDeadline(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := "too slow"
	size := int64(len(content))
	r := mustReserve(t, s, a.ID, size)

	// The deadline has passed.
	late := newUpload(a, content)
	if err := s.AddPendingObject(ctx, late.ObjectKey, "mpu-late", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.CreateAsset(ctx, late, r.ID)
	wantCode(t, err, server.EConflict)
	if msg := server.ErrorMessage(err); !strings.Contains(msg, "try again") {
		t.Errorf("message %q does not say to try again", msg)
	}

	// No pending record at all.
	unknown := newUpload(a, content)
	_, _, err = s.CreateAsset(ctx, unknown, r.ID)
	wantCode(t, err, server.EConflict)

	// Within its deadline, but claimed by a collector that thought it due.
	claimed := newUpload(a, content)
	if err := s.AddPendingObject(ctx, claimed.ObjectKey, "", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	keys := claimAll(t, s, time.Now().Add(2*time.Hour))
	if !slices.Equal(keys, sorted(late.ObjectKey, claimed.ObjectKey)) {
		t.Fatalf("claimed %v, want the late and the claimed upload", keys)
	}
	_, _, err = s.CreateAsset(ctx, claimed, r.ID)
	wantCode(t, err, server.EConflict)

	// Nothing was recorded, and the reservation is still open.
	wantUsage(t, s, a.ID, 0, size)
	if page, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 10); err != nil || len(page.Assets) != 0 {
		t.Fatalf("ListAssets = %+v, %v; want nothing", page, err)
	}
	_, err = s.AssetByContent(ctx, a.ID, hashOf(content))
	wantCode(t, err, server.ENotFound)
	_, err = s.LinkAsset(ctx, newUpload(a, content))
	wantCode(t, err, server.ENotFound)
	wantKnown(t, s, late.ObjectKey, true) // left to the collector
	wantKnown(t, s, unknown.ObjectKey, false)
	if err := s.ReleaseReservation(ctx, r.ID); err != nil {
		t.Fatalf("reservation was settled by a failed CreateAsset: %v", err)
	}
	wantUsage(t, s, a.ID, 0, 0)
}

func testCreateAssetReservation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	content := "reserved upload"
	size := int64(len(content))
	n := newUpload(a, content)
	mustPending(t, s, n.ObjectKey)

	// Another account's reservation is not found, and nothing changes.
	rb := mustReserve(t, s, b.ID, size)
	_, _, err := s.CreateAsset(ctx, n, rb.ID)
	wantCode(t, err, server.ENotFound)
	wantUsage(t, s, b.ID, 0, size)
	wantUsage(t, s, a.ID, 0, 0)

	// More bytes than reserved is refused, and nothing changes.
	small := mustReserve(t, s, a.ID, size-1)
	_, _, err = s.CreateAsset(ctx, n, small.ID)
	wantCode(t, err, server.EInvalid)
	wantUsage(t, s, a.ID, 0, size-1)

	// A settled reservation is not found.
	gone := mustReserve(t, s, a.ID, size)
	if err := s.ReleaseReservation(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.CreateAsset(ctx, n, gone.ID)
	wantCode(t, err, server.ENotFound)

	// The pending record survived all of that; a bigger reservation is
	// committed with the real size and the rest released.
	if err := s.ReleaseReservation(ctx, small.ID); err != nil {
		t.Fatal(err)
	}
	big := mustReserve(t, s, a.ID, 10*size)
	got, dedup, err := s.CreateAsset(ctx, n, big.ID)
	if err != nil || dedup {
		t.Fatalf("CreateAsset = %+v, %v, %v", got, dedup, err)
	}
	wantUsage(t, s, a.ID, size, 0)
	wantCode(t, s.ReleaseReservation(ctx, big.ID), server.ENotFound)

	// A reservation on a suspended account still lands (the upload was
	// admitted before the suspension).
	r := mustReserve(t, s, a.ID, 5)
	if _, err := s.SetStatus(ctx, a.UserID, server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	mustUpload(t, s, a, "12345", r.ID)
	wantUsage(t, s, a.ID, size+5, 0)
}

func testCreateAssetWithoutReservation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := "no reservation"
	size := int64(len(content))
	_, dedup, _ := mustUpload(t, s, a, content, "")
	if dedup {
		t.Fatal("deduplicated")
	}
	wantUsage(t, s, a.ID, size, 0)
	_, dedup, _ = mustUpload(t, s, a, content, "")
	if !dedup {
		t.Fatal("not deduplicated")
	}
	wantUsage(t, s, a.ID, size, 0)
	// An empty file is fine.
	mustUpload(t, s, a, "", "")
	wantUsage(t, s, a.ID, size, 0)

	// Without a reservation the quota is checked like Reserve does.
	free := mustCreate(t, s, "free") // 0 bytes
	n := newUpload(free, "does not fit")
	mustPending(t, s, n.ObjectKey)
	_, _, err := s.CreateAsset(ctx, n, "")
	wantCode(t, err, server.EQuotaExceeded)
	wantUsage(t, s, free.ID, 0, 0)
	if page, err := s.ListAssets(ctx, free.ID, server.AssetFilter{}, "", 10); err != nil || len(page.Assets) != 0 {
		t.Fatalf("refused upload recorded: %+v, %v", page, err)
	}
	if _, err := s.ChangeTier(ctx, free.UserID, "starter"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateAsset(ctx, n, ""); err != nil {
		t.Fatalf("CreateAsset after upgrade (pending record kept): %v", err)
	}
	wantUsage(t, s, free.ID, n.Size, 0)

	// A suspended account cannot add bytes without a reservation.
	if _, err := s.SetStatus(ctx, free.UserID, server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	n = newUpload(free, "suspended")
	mustPending(t, s, n.ObjectKey)
	_, _, err = s.CreateAsset(ctx, n, "")
	wantCode(t, err, server.EAccountSuspended)
}

func testLinkAsset(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := "link me"
	size := int64(len(content))
	orig, _, n := mustUpload(t, s, a, content, "")
	wantUsage(t, s, a.ID, size, 0)

	l := newUpload(a, content)
	l.ObjectKey = "" // nothing was uploaded
	l.Filename = "linked.txt"
	l.CacheKey = "ck"
	linked, err := s.LinkAsset(ctx, l)
	if err != nil {
		t.Fatalf("LinkAsset: %v", err)
	}
	if linked.ID == orig.ID || linked.ObjectKey != n.ObjectKey || linked.Filename != "linked.txt" ||
		linked.CacheKey != "ck" || linked.Size != size || linked.SHA256 != hashOf(content) || linked.AccountID != a.ID {
		t.Fatalf("linked asset %+v", linked)
	}
	if got := mustAsset(t, s, a.ID, linked.ID); !sameAsset(got, linked) {
		t.Errorf("AssetByID = %+v, want %+v", got, linked)
	}
	wantUsage(t, s, a.ID, size, 0) // no new bytes
	if keys := claimAll(t, s, time.Now()); len(keys) != 0 {
		t.Errorf("garbage after LinkAsset: %v", keys)
	}

	unknown := newUpload(a, "never uploaded")
	_, err = s.LinkAsset(ctx, unknown)
	wantCode(t, err, server.ENotFound)
	wrongSize := l
	wrongSize.Size++
	_, err = s.LinkAsset(ctx, wrongSize)
	wantCode(t, err, server.EInvalid)

	// The object lives while either asset does.
	if key, err := s.DeleteAsset(ctx, a.ID, orig.ID); err != nil || key != "" {
		t.Fatalf("DeleteAsset(original) = %q, %v", key, err)
	}
	wantUsage(t, s, a.ID, size, 0)
	if key, err := s.DeleteAsset(ctx, a.ID, linked.ID); err != nil || key != n.ObjectKey {
		t.Fatalf("DeleteAsset(linked) = %q, %v; want %s", key, err, n.ObjectKey)
	}
	wantUsage(t, s, a.ID, 0, 0)
	_, err = s.LinkAsset(ctx, l)
	wantCode(t, err, server.ENotFound)
}

func testAssetIsolation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	content := "a's secret file"
	asset, _, _ := mustUpload(t, s, a, content, "")

	_, err := s.AssetByID(ctx, b.ID, asset.ID)
	wantCode(t, err, server.ENotFound)
	_, err = s.AssetByContent(ctx, b.ID, hashOf(content))
	wantCode(t, err, server.ENotFound)
	_, err = s.DeleteAsset(ctx, b.ID, asset.ID)
	wantCode(t, err, server.ENotFound)
	wantCode(t, s.RecordDownload(ctx, b.ID, asset.ID, 100, time.Now()), server.ENotFound)
	page, err := s.ListAssets(ctx, b.ID, server.AssetFilter{}, "", 100)
	if err != nil || len(page.Assets) != 0 {
		t.Fatalf("ListAssets(b) = %+v, %v", page, err)
	}
	for _, id := range []string{"", "not-a-uuid", "' OR '1'='1", strings.Repeat("x", 300), "\xff"} {
		_, err := s.AssetByID(ctx, a.ID, id)
		wantCode(t, err, server.ENotFound)
		_, err = s.DeleteAsset(ctx, a.ID, id)
		wantCode(t, err, server.ENotFound)
		wantCode(t, s.RecordDownload(ctx, a.ID, id, 1, time.Now()), server.ENotFound)
	}
	_, err = s.AccountByAPIKey(ctx, "jt_\xff")
	wantCode(t, err, server.ENotFound)
	if known, err := s.IsKnownObject(ctx, "\xff"); err != nil || known {
		t.Errorf("IsKnownObject(invalid UTF-8) = %v, %v", known, err)
	}
	// a's asset and both accounts' counters are untouched.
	if got := mustAsset(t, s, a.ID, asset.ID); !sameAsset(got, asset) {
		t.Errorf("asset changed: %+v", got)
	}
	for _, id := range []string{a.ID, b.ID} {
		if n, err := s.BandwidthUsed(ctx, id, time.Now()); err != nil || n != 0 {
			t.Errorf("BandwidthUsed = %d, %v; want 0", n, err)
		}
	}
	wantUsage(t, s, a.ID, int64(len(content)), 0)
	wantUsage(t, s, b.ID, 0, 0)
}

func testListAssets(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	other := mustCreate(t, s, "pro")
	mustUpload(t, s, other, "someone else's", "")
	const n = 25
	var all []server.Asset
	for i := range n {
		as, _, _ := mustUpload(t, s, a, fmt.Sprintf("file %d", i), "")
		all = append(all, as)
	}
	// Newest first; the id breaks ties between equal times.
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.After(all[j].CreatedAt)
		}
		return all[i].ID > all[j].ID
	})
	var want []string
	for _, as := range all {
		want = append(want, as.ID)
	}

	list := func(limit int) ([]string, []int) {
		t.Helper()
		var ids []string
		var sizes []int
		cursor := ""
		for range n + 2 {
			page, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, cursor, limit)
			if err != nil {
				t.Fatalf("ListAssets(limit %d): %v", limit, err)
			}
			sizes = append(sizes, len(page.Assets))
			for _, as := range page.Assets {
				if as.AccountID != a.ID {
					t.Fatalf("listed another account's asset %+v", as)
				}
				ids = append(ids, as.ID)
			}
			if page.Next == "" {
				return ids, sizes
			}
			cursor = page.Next
		}
		t.Fatalf("ListAssets(limit %d) never ended", limit)
		return nil, nil
	}
	for _, c := range []struct {
		limit int
		sizes []int
	}{
		{10, []int{10, 10, 5}},
		{5, []int{5, 5, 5, 5, 5}}, // the last full page has no next
		{25, []int{25}},
		{24, []int{24, 1}},
		{1000, []int{25}},
	} {
		ids, sizes := list(c.limit)
		if !slices.Equal(sizes, c.sizes) {
			t.Errorf("limit %d: page sizes %v, want %v", c.limit, sizes, c.sizes)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("limit %d: listed\n%v\nwant\n%v", c.limit, ids, want)
		}
	}

	// Keyset: deleting an asset of the first page does not shift the next.
	p1, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteAsset(ctx, a.ID, p1.Assets[3].ID); err != nil {
		t.Fatal(err)
	}
	p2, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, p1.Next, 10)
	if err != nil || len(p2.Assets) != 10 || p2.Assets[0].ID != want[10] {
		t.Fatalf("page 2 after a deletion = %d assets starting %v, %v; want %s", len(p2.Assets), p2.Assets, err, want[10])
	}

	for _, bad := range []string{
		"%%%",
		"not base64!",
		base64.RawURLEncoding.EncodeToString([]byte("nope")),
		base64.RawURLEncoding.EncodeToString([]byte("2024-13-45T00:00:00Z " + want[0])),
		base64.RawURLEncoding.EncodeToString([]byte(time.Now().Format(time.RFC3339Nano) + " ")),
	} {
		_, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, bad, 10)
		wantCode(t, err, server.EInvalid)
	}
	for _, limit := range []int{0, -1, 1001} {
		_, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", limit)
		wantCode(t, err, server.EInvalid)
	}
	if page, err := s.ListAssets(ctx, mustCreate(t, s, "pro").ID, server.AssetFilter{}, "", 10); err != nil || len(page.Assets) != 0 || page.Next != "" {
		t.Errorf("empty account: %+v, %v", page, err)
	}
}

func testDeleteExpiredAssets(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	past := time.Now().Add(-time.Hour)
	expire := func(at time.Time) func(*server.NewAsset) {
		return func(n *server.NewAsset) { n.ExpiresAt = at }
	}
	e1, _, n1 := mustUpload(t, s, a, "shared expiring", "", expire(past))
	e2, dedup, n2 := mustUpload(t, s, a, "shared expiring", "", expire(past.Add(time.Minute)))
	if !dedup || e2.ObjectKey != e1.ObjectKey {
		t.Fatal("second expiring upload not deduplicated")
	}
	_, _, n3 := mustUpload(t, s, a, "alone expiring", "", expire(past))
	keep1, _, _ := mustUpload(t, s, a, "expires later", "", expire(time.Now().Add(time.Hour)))
	keep2, _, _ := mustUpload(t, s, a, "never expires", "")
	if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, []string{n2.ObjectKey}) {
		t.Fatalf("garbage = %v", keys)
	}
	liveBytes := int64(len("expires later") + len("never expires"))

	n, err := s.DeleteExpiredAssets(ctx, time.Now(), 100)
	if err != nil || n != 3 {
		t.Fatalf("DeleteExpiredAssets = %d, %v; want 3", n, err)
	}
	page, err := s.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 100)
	if err != nil || len(page.Assets) != 2 {
		t.Fatalf("left %+v, %v; want 2 assets", page, err)
	}
	for _, as := range page.Assets {
		if as.ID != keep1.ID && as.ID != keep2.ID {
			t.Errorf("kept %+v", as)
		}
	}
	wantUsage(t, s, a.ID, liveBytes, 0)
	if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, sorted(n1.ObjectKey, n3.ObjectKey)) {
		t.Fatalf("garbage = %v, want the objects of the expired assets", keys)
	}
	if n, err := s.DeleteExpiredAssets(ctx, time.Now(), 100); err != nil || n != 0 {
		t.Fatalf("second run = %d, %v; want 0", n, err)
	}

	// Exactly at expiry is not expired yet; limit bounds a run.
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	for i := range 5 {
		mustUpload(t, s, a, fmt.Sprintf("batch %d", i), "", expire(at))
	}
	if n, err := s.DeleteExpiredAssets(ctx, at, 100); err != nil || n != 0 {
		t.Fatalf("run at expiry = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteExpiredAssets(ctx, time.Now(), 2); err != nil || n != 2 {
		t.Fatalf("run with limit 2 = %d, %v", n, err)
	}
	if n, err := s.DeleteExpiredAssets(ctx, time.Now(), 100); err != nil || n != 3 {
		t.Fatalf("rest = %d, %v; want 3", n, err)
	}
	wantUsage(t, s, a.ID, liveBytes, 0)
	_, err = s.DeleteExpiredAssets(ctx, time.Now(), 0)
	wantCode(t, err, server.EInvalid)
}

func testDeleteExpiredRacesDelete(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	const n = 30
	var ids []string
	for i := range n {
		// Pairs of assets share an object.
		as, _, _ := mustUpload(t, s, a, fmt.Sprintf("race %d", i/2), "", func(n *server.NewAsset) {
			n.ExpiresAt = time.Now().Add(-time.Minute)
		})
		ids = append(ids, as.ID)
	}
	claimAll(t, s, time.Now()) // the deduplicated copies
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		deleted int
		garbage []string
	)
	errc := make(chan error, 2*n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := s.DeleteAsset(ctx, a.ID, id)
			switch server.ErrorCode(err) {
			case "":
				mu.Lock()
				deleted++
				if key != "" {
					garbage = append(garbage, key)
				}
				mu.Unlock()
			case server.ENotFound:
			default:
				errc <- err
			}
		}()
		if i%10 == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := s.DeleteExpiredAssets(ctx, time.Now(), n)
				if err != nil {
					errc <- err
				}
				mu.Lock()
				deleted += k
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if deleted != n {
		t.Fatalf("%d deletions counted for %d assets", deleted, n)
	}
	wantUsage(t, s, a.ID, 0, 0)
	keys := claimAll(t, s, time.Now())
	if len(keys) != n/2 {
		t.Fatalf("%d objects became garbage, want %d", len(keys), n/2)
	}
	for _, k := range garbage {
		if !slices.Contains(keys, k) {
			t.Errorf("DeleteAsset returned %s, which is not garbage", k)
		}
	}
}

func testRecordDownload(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	asset, _, _ := mustUpload(t, s, a, "download me", "")
	jan31 := time.Date(2024, 1, 31, 23, 59, 59, 999999000, time.UTC)
	jan15 := time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)
	feb1 := time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	used := func(now time.Time) int64 {
		t.Helper()
		n, err := s.BandwidthUsed(ctx, a.ID, now)
		if err != nil {
			t.Fatalf("BandwidthUsed: %v", err)
		}
		return n
	}
	record := func(bytes int64, at time.Time) {
		t.Helper()
		if err := s.RecordDownload(ctx, a.ID, asset.ID, bytes, at); err != nil {
			t.Fatalf("RecordDownload: %v", err)
		}
	}
	if used(jan31) != 0 {
		t.Fatal("bandwidth before any download")
	}
	record(100, jan31)
	got := mustAsset(t, s, a.ID, asset.ID)
	if got.HitCount != 1 || !got.LastAccessed.Equal(jan31) {
		t.Fatalf("after a download: hits %d, last accessed %v", got.HitCount, got.LastAccessed)
	}
	if used(jan15) != 100 || used(feb1) != 0 {
		t.Fatalf("January %d, February %d; want 100, 0", used(jan15), used(feb1))
	}
	record(50, jan15) // same month; an older time does not move last access back
	got = mustAsset(t, s, a.ID, asset.ID)
	if got.HitCount != 2 || !got.LastAccessed.Equal(jan31) || used(jan31) != 150 {
		t.Fatalf("hits %d, last %v, January %d; want 2, %v, 150", got.HitCount, got.LastAccessed, used(jan31), jan31)
	}
	record(30, feb1) // a new month starts from zero
	if used(feb1) != 30 || used(jan31) != 0 {
		t.Fatalf("February %d, January %d; want 30, 0", used(feb1), used(jan31))
	}
	record(7, jan31) // a late report from a closed month counts nothing
	if used(feb1) != 30 {
		t.Fatalf("February %d after a late January report, want 30", used(feb1))
	}
	if got := mustAsset(t, s, a.ID, asset.ID); got.HitCount != 4 || !got.LastAccessed.Equal(feb1) {
		t.Fatalf("hits %d, last %v; want 4, %v", got.HitCount, got.LastAccessed, feb1)
	}
	// The account reports this month's bandwidth only.
	if acct := mustAccount(t, s, a.ID); acct.BandwidthUsedBytes != 0 {
		t.Fatalf("account reports %d bytes of February 2024 as this month's", acct.BandwidthUsedBytes)
	}

	now := time.Now().UTC()
	record(1000, now)
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.RecordDownload(ctx, a.ID, asset.ID, 10, now)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := used(now); n != 1500 {
		t.Fatalf("BandwidthUsed = %d after 1000 + 50x10, want 1500", n)
	}
	if acct := mustAccount(t, s, a.ID); acct.BandwidthUsedBytes != 1500 {
		t.Fatalf("account BandwidthUsedBytes = %d, want 1500", acct.BandwidthUsedBytes)
	}
	if got := mustAsset(t, s, a.ID, asset.ID); got.HitCount != 55 {
		t.Fatalf("hits = %d, want 55", got.HitCount)
	}
	wantCode(t, s.RecordDownload(ctx, a.ID, asset.ID, -1, now), server.EInvalid)
	wantCode(t, s.RecordDownload(ctx, a.ID, "no-such-asset", 1, now), server.ENotFound)
	_, err := s.BandwidthUsed(ctx, "no-such-account", now)
	wantCode(t, err, server.ENotFound)
	if n := used(now); n != 1500 {
		t.Fatalf("failed downloads counted: %d", n)
	}
}

func testClaimGarbage(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	now := time.Now().UTC().Truncate(time.Microsecond)
	k1, k2, k3 := newObjectKey(a), newObjectKey(a), newObjectKey(a)
	if err := s.AddPendingObject(ctx, k1, "mpu-1", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPendingObject(ctx, k2, "", now.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPendingObject(ctx, k3, "mpu-3", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, _, dup := func() (server.Asset, bool, server.NewAsset) {
		mustUpload(t, s, a, "dup", "")
		return mustUpload(t, s, a, "dup", "")
	}()
	kd := dup.ObjectKey

	// Oldest due first, limit respected.
	first, err := s.ClaimGarbage(ctx, now, time.Minute, 1)
	if err != nil || len(first) != 1 || first[0].ObjectKey != k2 || first[0].UploadID != "" ||
		!first[0].NotBefore.Equal(now.Add(-2*time.Minute)) {
		t.Fatalf("ClaimGarbage(limit 1) = %+v, %v; want %s", first, err, k2)
	}
	rest, err := s.ClaimGarbage(ctx, now.Add(time.Second), time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	var restKeys []string
	for _, g := range rest {
		restKeys = append(restKeys, g.ObjectKey)
		if g.ObjectKey == k1 && (g.UploadID != "mpu-1" || !g.NotBefore.Equal(now.Add(-time.Minute))) {
			t.Errorf("claimed %+v, want upload id mpu-1 and its deadline", g)
		}
	}
	if !slices.Equal(sorted(restKeys...), sorted(k1, kd)) {
		t.Fatalf("claimed %v, want %v (not the pending %s)", restKeys, sorted(k1, kd), k3)
	}
	// Leased: nobody gets them until the lease ends.
	if keys := claimAll(t, s, now.Add(30*time.Second)); len(keys) != 0 {
		t.Fatalf("claimed again during the lease: %v", keys)
	}
	if keys := claimAll(t, s, now.Add(2*time.Minute)); !slices.Equal(keys, sorted(k1, k2, kd)) {
		t.Fatalf("after the lease: %v, want %v", keys, sorted(k1, k2, kd))
	}
	// A claimed pending upload can no longer be recorded.
	late := newUpload(a, "late")
	late.ObjectKey = k1
	_, _, err = s.CreateAsset(ctx, late, "")
	wantCode(t, err, server.EConflict)

	// Collected objects are forgotten; pending ones are not forgotten that way.
	for _, k := range []string{k1, k1, "never-recorded", k3} {
		if err := s.ObjectCollected(ctx, k); err != nil {
			t.Fatalf("ObjectCollected(%s): %v", k, err)
		}
	}
	wantKnown(t, s, k1, false)
	wantKnown(t, s, k2, true)
	wantKnown(t, s, k3, true)
	pending := newUpload(a, "in time")
	pending.ObjectKey = k3
	if _, _, err := s.CreateAsset(ctx, pending, ""); err != nil {
		t.Fatalf("CreateAsset of a pending upload after ObjectCollected: %v", err)
	}
	wantKnown(t, s, k3, true) // now an asset's object

	_, err = s.ClaimGarbage(ctx, now, 0, 10)
	wantCode(t, err, server.EInvalid)
	_, err = s.ClaimGarbage(ctx, now, time.Minute, 0)
	wantCode(t, err, server.EInvalid)
}

func testClaimGarbageConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	now := time.Now()
	const n = 60
	var due []string
	for i := range n {
		k := newObjectKey(a)
		if err := s.AddPendingObject(ctx, k, fmt.Sprintf("mpu-%d", i), now.Add(-time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
		due = append(due, k)
	}
	notDue := newObjectKey(a)
	mustPending(t, s, notDue)

	const claimers = 4
	got := make([][]server.GarbageObject, claimers)
	errs := make([]error, claimers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], errs[i] = s.ClaimGarbage(ctx, now, time.Minute, 20)
		}()
	}
	close(start)
	wg.Wait()
	seen := map[string]int{}
	for i, gs := range got {
		if errs[i] != nil {
			t.Fatalf("claimer %d: %v", i, errs[i])
		}
		if len(gs) > 20 {
			t.Errorf("claimer %d got %d objects, limit 20", i, len(gs))
		}
		for _, g := range gs {
			seen[g.ObjectKey]++
		}
	}
	// Anything skipped while locked is still there for a later claim.
	for _, k := range claimAll(t, s, now) {
		seen[k]++
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s claimed %d times", k, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d objects claimed, want %d", len(seen), n)
	}
	for _, k := range due {
		if seen[k] != 1 {
			t.Errorf("due object %s claimed %d times", k, seen[k])
		}
	}
	if seen[notDue] != 0 {
		t.Errorf("pending object within its deadline was claimed")
	}
}

func testTryLease(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	try := func(name, holder string, ttl time.Duration, want bool) {
		t.Helper()
		got, err := s.TryLease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("TryLease(%s, %s): %v", name, holder, err)
		}
		if got != want {
			t.Fatalf("TryLease(%s, %s) = %v, want %v", name, holder, got, want)
		}
	}
	try("gc", "A", time.Hour, true)
	try("gc", "B", time.Hour, false)
	try("gc", "A", time.Hour, true) // renewal
	try("rollup", "B", time.Hour, true)
	try("gc", "B", time.Hour, false)

	// An expired lease is taken over; its old holder has lost it.
	try("short", "A", 100*time.Millisecond, true)
	try("short", "B", time.Hour, false)
	time.Sleep(300 * time.Millisecond)
	try("short", "B", time.Hour, true)
	try("short", "A", time.Hour, false)

	// Exactly one of many concurrent contenders wins.
	const n = 16
	wins := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			wins[i], errs[i] = s.TryLease(ctx, "race", fmt.Sprintf("holder-%d", i), time.Hour)
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i := range wins {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if wins[i] {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d holders got the lease, want 1", won)
	}

	_, err := s.TryLease(ctx, "", "A", time.Hour)
	wantCode(t, err, server.EInvalid)
	_, err = s.TryLease(ctx, "gc", "A", 0)
	wantCode(t, err, server.EInvalid)
}

// testDedupOnVerifiedContent: deduplication follows the content id, never
// a declared hash. An upload that claims content A's SHA-256 without the
// server verifying it (a chunked upload on S3: only its chunks were
// checked) gets its own object under its chunk-list id; the real A,
// uploaded later and verified, is not deduplicated onto it, and a
// lookup by A's hash finds only the verified asset.
func testDedupOnVerifiedContent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	real := "the content A"
	liar := newUpload(a, "other bytes, same length")
	liar.SHA256, liar.SHA256Verified = hashOf(real), false
	liar.ContentID = "m1-" + hashOf("chunks of the other bytes")
	liar.Size = int64(len(real))
	mustPending(t, s, liar.ObjectKey)
	la, dedup, err := s.CreateAsset(ctx, liar, "")
	if err != nil || dedup || la.SHA256Verified || la.ContentID != liar.ContentID {
		t.Fatalf("unverified upload = %+v, dedup %v, %v", la, dedup, err)
	}
	if _, err := s.AssetByContent(ctx, a.ID, hashOf(real)); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("a claimed hash is a deduplication key: %v", err)
	}
	ra, dedup, _ := mustUpload(t, s, a, real, "", func(*server.NewAsset) {})
	if dedup || ra.ObjectKey == la.ObjectKey || !ra.SHA256Verified || ra.ContentID != hashOf(real) {
		t.Fatalf("the real content was deduplicated onto the claim: %+v, dedup %v", ra, dedup)
	}
	if got, err := s.AssetByContent(ctx, a.ID, hashOf(real)); err != nil || got.ID != ra.ID {
		t.Errorf("AssetByContent(real hash) = %+v, %v; want %s", got, err, ra.ID)
	}
	wantUsage(t, s, a.ID, 2*int64(len(real)), 0)
	// The same chunk list again deduplicates onto the first.
	again := newUpload(a, "other bytes, same length")
	again.SHA256, again.SHA256Verified, again.ContentID, again.Size = liar.SHA256, false, liar.ContentID, liar.Size
	mustPending(t, s, again.ObjectKey)
	if got, dedup, err := s.CreateAsset(ctx, again, ""); err != nil || !dedup || got.ObjectKey != la.ObjectKey {
		t.Errorf("same chunk list: %+v, dedup %v, %v; want deduplicated onto %s", got, dedup, err, la.ObjectKey)
	}
	// LinkAsset links by content id only.
	link := newUpload(a, real)
	link.SHA256Verified = true
	if got, err := s.LinkAsset(ctx, link); err != nil || got.ObjectKey != ra.ObjectKey || !got.SHA256Verified {
		t.Errorf("LinkAsset(verified hash) = %+v, %v", got, err)
	}
	byChunks := newUpload(a, "x")
	byChunks.SHA256, byChunks.SHA256Verified, byChunks.ContentID, byChunks.Size = hashOf(real), false, liar.ContentID, liar.Size
	if got, err := s.LinkAsset(ctx, byChunks); err != nil || got.ObjectKey != la.ObjectKey || got.SHA256Verified {
		t.Errorf("LinkAsset(chunk-list id) = %+v, %v", got, err)
	}
	unknown := byChunks
	unknown.ContentID = "m1-" + hashOf("never stored")
	if _, err := s.LinkAsset(ctx, unknown); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("LinkAsset(unknown content id) = %v; want not found", err)
	}
}
