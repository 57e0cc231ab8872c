package storetest

import (
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server"
)

// assetLookupTests cover the lookups of issue 19: assets by cache key and
// by AgentCache pipeline (server.AssetFilter), and the pipeline id carried
// by assets and upload sessions.
var assetLookupTests = []storeTest{
	{"ListAssetsByCacheKey", testListAssetsByCacheKey},
	{"ListAssetsByPipeline", testListAssetsByPipeline},
	{"AssetPipelineID", testAssetPipelineID},
	{"SessionPipelineID", testSessionPipelineID},
	{"ListAssetsByName", testListAssetsByName},
	{"ListAssetsByNamePrefix", testListAssetsByNamePrefix},
}

const (
	pipelineA = "123e4567-e89b-12d3-a456-426614174000"
	pipelineB = "9b2f6c1e-0d4a-4f3b-8c7d-5e6f7a8b9c0d"
)

// listIDs lists every asset of accountID matching f, limit per page,
// following cursors, and returns their ids in order.
func listIDs(t *testing.T, s server.Store, accountID string, f server.AssetFilter, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for range 100 {
		page, err := s.ListAssets(ctxFor(t), accountID, f, cursor, limit)
		if err != nil {
			t.Fatalf("ListAssets(%+v, limit %d): %v", f, limit, err)
		}
		if len(page.Assets) > limit {
			t.Fatalf("ListAssets(limit %d) returned %d assets", limit, len(page.Assets))
		}
		for _, a := range page.Assets {
			if a.AccountID != accountID {
				t.Fatalf("ListAssets(%s) returned an asset of account %s", accountID, a.AccountID)
			}
			ids = append(ids, a.ID)
		}
		if page.Next == "" {
			return ids
		}
		cursor = page.Next
	}
	t.Fatalf("ListAssets(%+v) never ended", f)
	return nil
}

// wantIDs lists, in the order of the unfiltered listing, the ids of the
// assets of accountID for which keep is true.
func wantIDs(t *testing.T, s server.Store, accountID string, keep func(server.Asset) bool) []string {
	t.Helper()
	page, err := s.ListAssets(ctxFor(t), accountID, server.AssetFilter{}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, a := range page.Assets {
		if keep(a) {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testListAssetsByCacheKey(t *testing.T, s server.Store) {
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	withKey := func(k string) func(*server.NewAsset) { return func(n *server.NewAsset) { n.CacheKey = k } }
	keys := []string{"dalle_image_sunset_beach", "other", "dalle_image_sunset_beach", "", "Dalle_Image_Sunset_Beach", "dalle_image_sunset_beach ", "dalle_image_sunset_beach"}
	for i, k := range keys {
		mustUpload(t, s, a, "content "+randHex(4)+string(rune('a'+i)), "", withKey(k))
	}
	// The same content twice under the key: two assets, one object.
	mustUpload(t, s, a, "shared", "", withKey("dalle_image_sunset_beach"))
	mustUpload(t, s, a, "shared", "", withKey("dalle_image_sunset_beach"))
	// Another account's asset with the same key never appears.
	theirs, _, _ := mustUpload(t, s, b, "theirs", "", withKey("dalle_image_sunset_beach"))

	const k = "dalle_image_sunset_beach"
	want := wantIDs(t, s, a.ID, func(x server.Asset) bool { return x.CacheKey == k })
	if len(want) != 5 {
		t.Fatalf("setup: %d assets with the key, want 5", len(want))
	}
	for _, limit := range []int{1, 2, 3, 1000} {
		if got := listIDs(t, s, a.ID, server.AssetFilter{CacheKey: k}, limit); !sameIDs(got, want) {
			t.Fatalf("ListAssets(cache key, limit %d) = %v\nwant (exact match, newest first) %v", limit, got, want)
		}
	}
	for _, id := range listIDs(t, s, a.ID, server.AssetFilter{CacheKey: k}, 1000) {
		if id == theirs.ID {
			t.Fatal("another account's asset appeared in the lookup")
		}
	}
	if got := listIDs(t, s, b.ID, server.AssetFilter{CacheKey: k}, 10); !sameIDs(got, []string{theirs.ID}) {
		t.Fatalf("account b's lookup = %v, want only its own %s", got, theirs.ID)
	}
	// Exact match: no case folding, no trimming, no prefix.
	for _, other := range []string{"DALLE_IMAGE_SUNSET_BEACH", "dalle_image", "dalle_image_sunset_beach  ", "nothing"} {
		if got := listIDs(t, s, a.ID, server.AssetFilter{CacheKey: other}, 10); len(got) != 0 {
			t.Errorf("ListAssets(cache key %q) = %v, want none", other, got)
		}
	}
	if got := listIDs(t, s, a.ID, server.AssetFilter{CacheKey: "Dalle_Image_Sunset_Beach"}, 10); len(got) != 1 {
		t.Errorf("ListAssets(cache key in its own case) = %v, want one", got)
	}
	// An unknown account lists nothing; a key no asset could hold is EInvalid.
	if got := listIDs(t, s, "00000000-0000-0000-0000-000000000000", server.AssetFilter{CacheKey: k}, 10); len(got) != 0 {
		t.Errorf("unknown account's lookup = %v", got)
	}
	_, err := s.ListAssets(ctxFor(t), a.ID, server.AssetFilter{CacheKey: strings.Repeat("k", 1025)}, "", 10)
	wantCode(t, err, server.EInvalid)
	_, err = s.ListAssets(ctxFor(t), a.ID, server.AssetFilter{CacheKey: "bad\x00key"}, "", 10)
	wantCode(t, err, server.EInvalid)
}

func testListAssetsByPipeline(t *testing.T, s server.Store) {
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	set := func(p, k string) func(*server.NewAsset) {
		return func(n *server.NewAsset) { n.PipelineID, n.CacheKey = p, k }
	}
	mustUpload(t, s, a, "one", "", set(pipelineA, "step-1"))
	mustUpload(t, s, a, "two", "", set(strings.ToUpper(pipelineA), "step-2")) // stored canonical
	mustUpload(t, s, a, "three", "", set(pipelineB, "step-1"))
	mustUpload(t, s, a, "four", "", set("", "step-1"))
	mustUpload(t, s, a, "one", "", set(pipelineA, "step-1")) // deduplicated, still its own asset
	theirs, _, _ := mustUpload(t, s, b, "one", "", set(pipelineA, "step-1"))

	want := wantIDs(t, s, a.ID, func(x server.Asset) bool { return x.PipelineID == pipelineA })
	if len(want) != 3 {
		t.Fatalf("setup: %d assets of pipeline A, want 3", len(want))
	}
	for _, limit := range []int{1, 2, 1000} {
		if got := listIDs(t, s, a.ID, server.AssetFilter{PipelineID: pipelineA}, limit); !sameIDs(got, want) {
			t.Fatalf("ListAssets(pipeline, limit %d) = %v, want %v", limit, got, want)
		}
	}
	// Either case finds them.
	if got := listIDs(t, s, a.ID, server.AssetFilter{PipelineID: strings.ToUpper(pipelineA)}, 10); !sameIDs(got, want) {
		t.Fatalf("ListAssets(pipeline in upper case) = %v, want %v", got, want)
	}
	// Both filters: both must match.
	both := wantIDs(t, s, a.ID, func(x server.Asset) bool { return x.PipelineID == pipelineA && x.CacheKey == "step-1" })
	if got := listIDs(t, s, a.ID, server.AssetFilter{PipelineID: pipelineA, CacheKey: "step-1"}, 1); len(both) != 2 || !sameIDs(got, both) {
		t.Fatalf("ListAssets(pipeline and cache key) = %v, want %v (2)", got, both)
	}
	if got := listIDs(t, s, b.ID, server.AssetFilter{PipelineID: pipelineA}, 10); !sameIDs(got, []string{theirs.ID}) {
		t.Fatalf("account b's lookup = %v, want only %s", got, theirs.ID)
	}
	if got := listIDs(t, s, a.ID, server.AssetFilter{PipelineID: "00000000-0000-0000-0000-000000000000"}, 10); len(got) != 0 {
		t.Fatalf("unused pipeline's lookup = %v", got)
	}
	for _, bad := range []string{"not-a-uuid", "{" + pipelineA + "}", strings.ReplaceAll(pipelineA, "-", ""), "urn:uuid:" + pipelineA, pipelineA[:35] + "g"} {
		_, err := s.ListAssets(ctxFor(t), a.ID, server.AssetFilter{PipelineID: bad}, "", 10)
		wantCode(t, err, server.EInvalid)
	}
}

// namedUploads records one asset of a per name in names, in order (so
// the last is the newest), and one of b per name.
func namedUploads(t *testing.T, s server.Store, a, b server.Account, names []string) {
	t.Helper()
	for i, name := range names {
		mustUpload(t, s, a, "named "+randHex(4)+string(rune('a'+i)), "", func(n *server.NewAsset) { n.Filename = name })
		mustUpload(t, s, b, "theirs "+randHex(4)+string(rune('a'+i)), "", func(n *server.NewAsset) { n.Filename = name })
	}
}

// Issue 20: the command line resolves a name given where an id is
// expected: an exact match, byte for byte, newest first, of the account's
// assets only.
func testListAssetsByName(t *testing.T, s server.Store) {
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	names := []string{"photos/sub/q.jpg", "big.bin", "photos/sub/q.jpg", "Photos/sub/q.jpg", "photos/sub/q.jpg ", "photos/sub/q.jpg.bak", "photos/sub/q.jpg"}
	namedUploads(t, s, a, b, names)
	for _, name := range []string{"photos/sub/q.jpg", "big.bin", "Photos/sub/q.jpg"} {
		want := wantIDs(t, s, a.ID, func(x server.Asset) bool { return x.Filename == name })
		for _, limit := range []int{1, 2, 1000} {
			if got := listIDs(t, s, a.ID, server.AssetFilter{Name: name}, limit); !sameIDs(got, want) || len(got) == 0 {
				t.Fatalf("ListAssets(name %q, limit %d) = %v, want (exact match, newest first) %v", name, limit, got, want)
			}
		}
	}
	if got := listIDs(t, s, a.ID, server.AssetFilter{Name: "photos/sub/q.jpg"}, 10); len(got) != 3 {
		t.Fatalf("ListAssets(name) = %v, want the 3 versions", got)
	}
	for _, other := range []string{"q.jpg", "photos/sub", "PHOTOS/SUB/Q.JPG", "photos/sub/q.jp", "photos/sub/_.jpg", "photos/sub/%"} {
		if got := listIDs(t, s, a.ID, server.AssetFilter{Name: other}, 10); len(got) != 0 {
			t.Errorf("ListAssets(name %q) = %v, want none", other, got)
		}
	}
	_, err := s.ListAssets(ctxFor(t), a.ID, server.AssetFilter{Name: strings.Repeat("n", 1025)}, "", 10)
	wantCode(t, err, server.EInvalid)
	_, err = s.ListAssets(ctxFor(t), a.ID, server.AssetFilter{Name: "bad\x00name"}, "", 10)
	wantCode(t, err, server.EInvalid)
}

// Issue 20: `jetty ls photos/` lists the names that begin with a prefix:
// byte for byte (no case folding, no wildcards), at any depth.
func testListAssetsByNamePrefix(t *testing.T, s server.Store) {
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	names := []string{
		"photos/a.jpg", "photos/sub/q.jpg", "photos", "photos0", "photos.txt", "Photos/x.jpg",
		"photosé/y.jpg", "photos/é.jpg", "ph%tos/z.jpg", "ph_tos/z.jpg", "pho\U0010fffftos", "pho\U0010ffff\U0010ffff", "pho\U0010ffff",
		"photos/", "x/photos/a.jpg",
	}
	namedUploads(t, s, a, b, names)
	for _, prefix := range []string{"photos/", "photos", "photos/sub/", "ph%", "ph_", "pho\U0010ffff", "pho\U0010ffff\U0010ffff", "p", "Photos/", "photosé", "nothing", "photos/sub/q.jpg"} {
		want := wantIDs(t, s, a.ID, func(x server.Asset) bool { return strings.HasPrefix(x.Filename, prefix) })
		for _, limit := range []int{1, 3, 1000} {
			if got := listIDs(t, s, a.ID, server.AssetFilter{NamePrefix: prefix}, limit); !sameIDs(got, want) {
				t.Fatalf("ListAssets(prefix %q, limit %d) = %v\nwant (newest first) %v", prefix, limit, got, want)
			}
		}
	}
	if got := listIDs(t, s, a.ID, server.AssetFilter{NamePrefix: "photos/"}, 10); len(got) != 4 {
		t.Fatalf("ListAssets(prefix photos/) = %v, want 4", got)
	}
	// With the exact name too, both must match.
	if got := listIDs(t, s, a.ID, server.AssetFilter{NamePrefix: "photos/", Name: "photos0"}, 10); len(got) != 0 {
		t.Fatalf("ListAssets(prefix photos/, name photos0) = %v, want none", got)
	}
	_, err := s.ListAssets(ctxFor(t), a.ID, server.AssetFilter{NamePrefix: "bad\xffprefix"}, "", 10)
	wantCode(t, err, server.EInvalid)
}

func testAssetPipelineID(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	got, _, _ := mustUpload(t, s, a, "piped", "", func(n *server.NewAsset) { n.PipelineID = strings.ToUpper(pipelineB) })
	if got.PipelineID != pipelineB {
		t.Fatalf("CreateAsset returned pipeline id %q, want %q", got.PipelineID, pipelineB)
	}
	if back := mustAsset(t, s, a.ID, got.ID); back.PipelineID != pipelineB {
		t.Fatalf("AssetByID pipeline id = %q, want %q", back.PipelineID, pipelineB)
	}
	none, _, _ := mustUpload(t, s, a, "unpiped", "")
	if none.PipelineID != "" || mustAsset(t, s, a.ID, none.ID).PipelineID != "" {
		t.Fatalf("an asset without a pipeline has %q", none.PipelineID)
	}
	// LinkAsset carries it too.
	linked, err := s.LinkAsset(ctx, server.NewAsset{AccountID: a.ID, Filename: "again", Size: got.Size, SHA256: got.SHA256, SHA256Verified: true, PipelineID: pipelineA})
	if err != nil || linked.PipelineID != pipelineA {
		t.Fatalf("LinkAsset = %+v, %v; want pipeline %s", linked, err, pipelineA)
	}
	// A malformed pipeline id records nothing.
	before := wantIDs(t, s, a.ID, func(server.Asset) bool { return true })
	n := newUpload(a, "malformed pipeline")
	n.PipelineID = "pipeline-7"
	mustPending(t, s, n.ObjectKey)
	_, _, err = s.CreateAsset(ctx, n, "")
	wantCode(t, err, server.EInvalid)
	_, err = s.LinkAsset(ctx, server.NewAsset{AccountID: a.ID, Filename: "again", Size: got.Size, SHA256: got.SHA256, SHA256Verified: true, PipelineID: "x"})
	wantCode(t, err, server.EInvalid)
	if after := wantIDs(t, s, a.ID, func(server.Asset) bool { return true }); !sameIDs(before, after) {
		t.Fatalf("a refused asset was recorded: %v then %v", before, after)
	}
}

func testSessionPipelineID(t *testing.T, s server.Store) {
	a := mustCreate(t, s, "pro")
	u := newSession(a, "session content")
	u.PipelineID = strings.ToUpper(pipelineA)
	created := mustSession(t, s, u)
	if created.PipelineID != pipelineA {
		t.Fatalf("CreateSession pipeline id = %q, want %q", created.PipelineID, pipelineA)
	}
	if got := mustGetSession(t, s, a.ID, created.ID); got.PipelineID != pipelineA {
		t.Fatalf("SessionByID pipeline id = %q, want %q", got.PipelineID, pipelineA)
	}
	st := newStreamSession(a)
	st.PipelineID = pipelineB
	if got := mustGetSession(t, s, a.ID, mustSession(t, s, st).ID); got.PipelineID != pipelineB {
		t.Fatalf("stream session pipeline id = %q, want %q", got.PipelineID, pipelineB)
	}
	plain := mustSession(t, s, newSession(a, "no pipeline"))
	if got := mustGetSession(t, s, a.ID, plain.ID); got.PipelineID != "" {
		t.Fatalf("session without a pipeline has %q", got.PipelineID)
	}
	bad := newSession(a, "bad pipeline")
	bad.PipelineID = "not-a-uuid"
	_, err := s.CreateSession(ctxFor(t), bad)
	wantCode(t, err, server.EInvalid)
}
