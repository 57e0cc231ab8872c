package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// sameEntryTests cover uploads of a file the account already holds under
// the same name (issue 20): one entry, not one more row per upload.
var sameEntryTests = []storeTest{
	{"SameEntry", testSameEntry},
	{"SameEntryConcurrent", testSameEntryConcurrent},
	{"SameEntryExpiry", testSameEntryExpiry},
}

func listAll(t *testing.T, s server.Store, accountID string, f server.AssetFilter) []server.Asset {
	t.Helper()
	page, err := s.ListAssets(ctxFor(t), accountID, f, "", 1000)
	if err != nil {
		t.Fatalf("ListAssets: %v", err)
	}
	return page.Assets
}

// testSameEntry: the same name, content, cache key and pipeline again is
// the same asset (deduplicated, no new row, the reservation settled with
// nothing added, the upload's object garbage, the object's references
// exact); another cache key, another name or another content is a new
// asset.
func testSameEntry(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := "the same file, uploaded again"
	size := int64(len(content))
	named := func(n *server.NewAsset) { n.Filename, n.CacheKey = "photos/sub/q.jpg", "ck-1" }

	first, dedup, _ := mustUpload(t, s, a, content, mustReserve(t, s, a.ID, size).ID, named)
	if dedup {
		t.Fatal("first upload deduplicated")
	}
	again, dedup, n2 := mustUpload(t, s, a, content, mustReserve(t, s, a.ID, size).ID, named)
	if !dedup || again.ID != first.ID || !sameAsset(again, first) {
		t.Fatalf("same entry again: dedup %v, %+v\nwant %+v", dedup, again, first)
	}
	if got := listAll(t, s, a.ID, server.AssetFilter{}); len(got) != 1 {
		t.Fatalf("%d assets after uploading one file twice, want 1", len(got))
	}
	wantUsage(t, s, a.ID, size, 0)
	if keys := claimAll(t, s, time.Now()); !slices.Equal(keys, []string{n2.ObjectKey}) {
		t.Fatalf("garbage = %v, want the second upload's object %s", keys, n2.ObjectKey)
	}

	// Linked at open (no byte sent): the same asset too.
	link := newUpload(a, content)
	named(&link)
	if got, err := s.LinkAsset(ctx, link); err != nil || got.ID != first.ID {
		t.Fatalf("LinkAsset of the same entry = %s, %v; want %s", got.ID, err, first.ID)
	}

	// Another cache key: a new entry, found by that key (AgentCache
	// looks files up by cache key); another name: a new entry.
	other, dedup, _ := mustUpload(t, s, a, content, "", func(n *server.NewAsset) { named(n); n.CacheKey = "ck-2" })
	if !dedup || other.ID == first.ID || other.ObjectKey != first.ObjectKey {
		t.Fatalf("another cache key: dedup %v, id %s (first %s)", dedup, other.ID, first.ID)
	}
	if got := listAll(t, s, a.ID, server.AssetFilter{CacheKey: "ck-2"}); len(got) != 1 || got[0].ID != other.ID {
		t.Fatalf("by cache key ck-2: %+v", got)
	}
	renamed, dedup, _ := mustUpload(t, s, a, content, "", func(n *server.NewAsset) { named(n); n.Filename = "photos/q-copy.jpg" })
	if !dedup || renamed.ID == first.ID || renamed.ID == other.ID {
		t.Fatalf("another name: dedup %v, id %s", dedup, renamed.ID)
	}
	// Another content under the same name: a new version, a new object.
	v2, dedup, _ := mustUpload(t, s, a, content+" v2", "", named)
	if dedup || v2.ID == first.ID {
		t.Fatalf("new content: dedup %v, id %s", dedup, v2.ID)
	}
	if got := listAll(t, s, a.ID, server.AssetFilter{}); len(got) != 4 {
		t.Fatalf("%d assets, want 4 (first, other cache key, other name, new version)", len(got))
	}
	wantUsage(t, s, a.ID, 2*size+3, 0)
	claimAll(t, s, time.Now())

	// The references are exact: deleting the three entries of the first
	// content frees it with the last of them.
	for i, id := range []string{first.ID, other.ID, renamed.ID} {
		key, err := s.DeleteAsset(ctx, a.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		if last := i == 2; (key != "") != last || last && key != first.ObjectKey {
			t.Fatalf("DeleteAsset %d = %q", i, key)
		}
	}
	wantUsage(t, s, a.ID, size+3, 0)
}

// testSameEntryConcurrent: the same file uploaded by many clients at once
// ends as one asset, every upload answered with it, one object stored,
// every reservation settled.
func testSameEntryConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	content := "many copies of one file at once"
	size := int64(len(content))
	const n = 12
	uploads := make([]server.NewAsset, n)
	reservations := make([]server.Reservation, n)
	for i := range uploads {
		uploads[i] = newUpload(a, content)
		uploads[i].Filename = "same.txt"
		mustPending(t, s, uploads[i].ObjectKey)
		reservations[i] = mustReserve(t, s, a.ID, size)
	}
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var got server.Asset
			got, _, errs[i] = s.CreateAsset(ctx, uploads[i], reservations[i].ID)
			ids[i] = got.ID
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateAsset %d: %v", i, err)
		}
		if ids[i] != ids[0] {
			t.Fatalf("uploads answered with assets %s and %s, want one", ids[0], ids[i])
		}
	}
	if got := listAll(t, s, a.ID, server.AssetFilter{}); len(got) != 1 {
		t.Fatalf("%d assets, want 1", len(got))
	}
	wantUsage(t, s, a.ID, size, 0)
	if keys := claimAll(t, s, time.Now()); len(keys) != n-1 {
		t.Fatalf("%d garbage objects, want %d", len(keys), n-1)
	}
	if key, err := s.DeleteAsset(ctx, a.ID, ids[0]); err != nil || key == "" {
		t.Fatalf("deleting the one asset = %q, %v; want its object freed", key, err)
	}
	wantUsage(t, s, a.ID, 0, 0)
}

// testSameEntryExpiry: the entry keeps the later expiry of its uploads,
// and none once an upload asked for none.
func testSameEntryExpiry(t *testing.T, s server.Store) {
	a := mustCreate(t, s, "pro")
	content := "expiring file"
	soon := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	later := soon.Add(24 * time.Hour)
	first, _, _ := mustUpload(t, s, a, content, "", func(n *server.NewAsset) { n.Filename = "x"; n.ExpiresAt = later })
	got, _, _ := mustUpload(t, s, a, content, "", func(n *server.NewAsset) { n.Filename = "x"; n.ExpiresAt = soon })
	if got.ID != first.ID || !got.ExpiresAt.Equal(later) {
		t.Fatalf("earlier expiry: id %s (want %s), expires %v (want %v)", got.ID, first.ID, got.ExpiresAt, later)
	}
	evenLater := later.Add(time.Hour)
	got, _, _ = mustUpload(t, s, a, content, "", func(n *server.NewAsset) { n.Filename = "x"; n.ExpiresAt = evenLater })
	if got.ID != first.ID || !got.ExpiresAt.Equal(evenLater) {
		t.Fatalf("later expiry: expires %v, want %v", got.ExpiresAt, evenLater)
	}
	got, _, _ = mustUpload(t, s, a, content, "", func(n *server.NewAsset) { n.Filename = "x" })
	if got.ID != first.ID || !got.ExpiresAt.IsZero() || !mustAsset(t, s, a.ID, first.ID).ExpiresAt.IsZero() {
		t.Fatalf("no expiry: expires %v, want none", got.ExpiresAt)
	}
	got, _, _ = mustUpload(t, s, a, content, "", func(n *server.NewAsset) { n.Filename = "x"; n.ExpiresAt = soon })
	if got.ID != first.ID || !got.ExpiresAt.IsZero() {
		t.Fatalf("expiry after none: expires %v, want none", got.ExpiresAt)
	}
}
