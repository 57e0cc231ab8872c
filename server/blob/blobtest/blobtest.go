// Package blobtest is the conformance suite every blob.Store passes.
//
//	func TestConformance(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blob.Store { ... })
//	}
//
// newStore must return an empty store (for example in t.TempDir, or on a
// fresh bucket); Run calls Setup on it. Subtests run in parallel, each on
// its own store.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server/blob"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Run runs the suite.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	open := func(t *testing.T) blob.Store {
		t.Helper()
		s := newStore(t)
		if err := s.Setup(t.Context()); err != nil {
			t.Fatalf("Setup: %v", err)
		}
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"SizeMismatch", testSizeMismatch},
		{"ReaderError", testReaderError},
		{"Cancel", testCancel},
		{"InvalidKeys", testInvalidKeys},
		{"Ranges", testRanges},
		{"NotFound", testNotFound},
		{"List", testList},
		{"Multipart", testMultipart},
		{"MultipartComplete", testMultipartCompleteChecks},
		{"MultipartAbort", testMultipartAbort},
		{"ListUploads", testListUploads},
		{"ConcurrentPuts", testConcurrentPuts},
		{"SetupTwice", testSetupTwice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// --- data helpers ---

// data returns a reader of n deterministic pseudo-random bytes that has
// no other method than Read (so stores cannot seek or peek).
func data(seed uint64, n int64) io.Reader {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	return struct{ io.Reader }{io.LimitReader(rand.NewChaCha8(key), n)}
}

func digest(seed uint64, n int64) []byte {
	h := sha256.New()
	if _, err := io.Copy(h, data(seed, n)); err != nil {
		panic(err)
	}
	return h.Sum(nil)
}

func bytesOf(seed uint64, n int64) []byte {
	b, err := io.ReadAll(data(seed, n))
	if err != nil {
		panic(err)
	}
	return b
}

var errBoom = errors.New("blobtest: reader failed on purpose")

// failing yields n bytes then errBoom.
func failing(n int64) io.Reader {
	return io.MultiReader(data(99, n), errReader{errBoom})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// readSum reads the whole object and returns its SHA-256, length and info.
func readSum(t *testing.T, s blob.Store, key string, off, length int64) ([]byte, int64, blob.Info) {
	t.Helper()
	rc, info, err := s.Get(t.Context(), key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("Get(%q) read: %v", key, err)
	}
	return h.Sum(nil), n, info
}

func readBytes(t *testing.T, s blob.Store, key string, off, length int64) []byte {
	t.Helper()
	rc, _, err := s.Get(t.Context(), key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q) read: %v", key, err)
	}
	return b
}

func keys(infos []blob.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

// assertAbsent checks that nothing is visible under key: no object, no
// listing entry, no multipart upload.
func assertAbsent(t *testing.T, s blob.Store, key string) {
	t.Helper()
	ctx := t.Context()
	if info, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat(%q) = %+v, %v; want ErrNotFound", key, info, err)
	}
	if rc, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, blob.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Get(%q) err = %v; want ErrNotFound", key, err)
	}
	list, err := s.List(ctx, key)
	if err != nil {
		t.Fatalf("List(%q): %v", key, err)
	}
	if slices.Contains(keys(list), key) {
		t.Errorf("List(%q) shows %q", key, key)
	}
	ups, err := s.ListUploads(ctx, key, time.Time{})
	if err != nil {
		t.Fatalf("ListUploads(%q): %v", key, err)
	}
	if len(ups) != 0 {
		t.Errorf("ListUploads(%q) = %+v; want none left", key, ups)
	}
}

// --- tests ---

func testRoundTrip(t *testing.T, s blob.Store) {
	ctx := t.Context()
	sizes := []int64{0, 1, 5*mib - 1, 5 * mib, 5*mib + 1, 10 * mib, 20*mib + 3}
	for i, n := range sizes {
		for _, known := range []bool{true, false} {
			key := fmt.Sprintf("rt/%d-%v", n, known)
			seed := uint64(i + 1)
			want := digest(seed, n)
			size := n
			if !known {
				size = -1
			}
			info, sum, err := s.Put(ctx, key, data(seed, n), size, "application/x-test")
			if err != nil {
				t.Fatalf("Put(%s): %v", key, err)
			}
			if !bytes.Equal(sum, want) {
				t.Errorf("Put(%s) digest %x, want %x", key, sum, want)
			}
			if info.Key != key || info.Size != n {
				t.Errorf("Put(%s) info %+v, want size %d", key, info, n)
			}
			if info.SHA256 != nil && !bytes.Equal(info.SHA256, want) {
				t.Errorf("Put(%s) info.SHA256 %x, want the object's %x", key, info.SHA256, want)
			}
			st, err := s.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat(%s): %v", key, err)
			}
			if st.Key != key || st.Size != n || st.ContentType != "application/x-test" || st.ModTime.IsZero() {
				t.Errorf("Stat(%s) = %+v", key, st)
			}
			got, gotN, ginfo := readSum(t, s, key, 0, -1)
			if gotN != n || !bytes.Equal(got, want) {
				t.Errorf("Get(%s): %d bytes sha %x, want %d bytes sha %x", key, gotN, got, n, want)
			}
			if ginfo.Size != n || ginfo.ContentType != "application/x-test" {
				t.Errorf("Get(%s) info %+v", key, ginfo)
			}
			list, err := s.List(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Key != key || list[0].Size != n {
				t.Errorf("List(%s) = %+v", key, list)
			}
			if err := s.Delete(ctx, key); err != nil {
				t.Fatalf("Delete(%s): %v", key, err)
			}
			assertAbsent(t, s, key)
			if err := s.Delete(ctx, key); err != nil {
				t.Errorf("second Delete(%s): %v", key, err)
			}
		}
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const key = "ow/k"
	if _, _, err := s.Put(ctx, key, data(1, 1000), 1000, "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, key, data(2, 6*mib), 6*mib, "image/png"); err != nil {
		t.Fatal(err)
	}
	got, n, info := readSum(t, s, key, 0, -1)
	if n != 6*mib || !bytes.Equal(got, digest(2, 6*mib)) || info.ContentType != "image/png" {
		t.Errorf("after overwrite: %d bytes, type %q", n, info.ContentType)
	}
	// An empty content type reads back as application/octet-stream.
	if _, _, err := s.Put(ctx, key, data(3, 10), 10, ""); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stat(ctx, key); err != nil || st.ContentType != "application/octet-stream" || st.Size != 10 {
		t.Errorf("Stat = %+v, %v; want 10 bytes application/octet-stream", st, err)
	}

	// Concurrent Puts of one key: one of them wins, whole.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if _, _, err := s.Put(ctx, "ow/race", data(uint64(10+i), 3*mib), 3*mib, fmt.Sprintf("x/%d", i)); err != nil {
				t.Errorf("racing Put %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got, _, info = readSum(t, s, "ow/race", 0, -1)
	ok := false
	for i := range 4 {
		if bytes.Equal(got, digest(uint64(10+i), 3*mib)) {
			ok = true
			if info.ContentType != fmt.Sprintf("x/%d", i) {
				t.Errorf("racing Puts: bytes of Put %d with content type %q", i, info.ContentType)
			}
		}
	}
	if !ok {
		t.Errorf("racing Puts: object is none of the bodies")
	}
}

func testSizeMismatch(t *testing.T, s blob.Store) {
	ctx := t.Context()
	for _, n := range []int64{100, 12 * mib} {
		for _, claim := range []int64{n + 1, n - 1} {
			key := fmt.Sprintf("sm/%d-%d", n, claim)
			_, _, err := s.Put(ctx, key, data(5, n), claim, "")
			if err == nil {
				t.Errorf("Put of %d bytes claiming %d succeeded", n, claim)
			}
			assertAbsent(t, s, key)
		}
	}
}

func testReaderError(t *testing.T, s blob.Store) {
	ctx := t.Context()
	for _, n := range []int64{0, 10, 12 * mib} {
		for _, size := range []int64{-1, 20 * mib} {
			key := fmt.Sprintf("re/%d-%d", n, size)
			_, _, err := s.Put(ctx, key, failing(n), size, "")
			if !errors.Is(err, errBoom) {
				t.Errorf("Put with reader failing after %d bytes: err = %v, want the reader's error", n, err)
			}
			assertAbsent(t, s, key)
		}
	}
	// A failed Put leaves the previous object alone.
	const key = "re/existing"
	if _, _, err := s.Put(ctx, key, data(7, 1000), 1000, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, key, failing(11*mib), -1, ""); !errors.Is(err, errBoom) {
		t.Errorf("err = %v", err)
	}
	if got, n, _ := readSum(t, s, key, 0, -1); n != 1000 || !bytes.Equal(got, digest(7, 1000)) {
		t.Errorf("failed Put changed the existing object")
	}
}

// cancelAfter cancels a context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n -= int64(k)
	if c.n <= 0 {
		c.cancel()
	}
	return k, err
}

func testCancel(t *testing.T, s blob.Store) {
	for _, n := range []int64{1000, 11 * mib} {
		key := fmt.Sprintf("cancel/%d", n)
		ctx, cancel := context.WithCancel(t.Context())
		_, _, err := s.Put(ctx, key, &cancelAfter{r: data(8, 20*mib), n: n, cancel: cancel}, -1, "")
		cancel()
		if err == nil {
			t.Errorf("Put cancelled after %d bytes succeeded", n)
		}
		assertAbsent(t, s, key)
	}
}

var invalidKeys = []string{"../x", "/abs", "a//b", "a\x00b", "", "a/../b", "a/", "./a", `a\b`}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := t.Context()
	sum := sha256.Sum256(nil)
	for _, k := range invalidKeys {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("%s(%q) err = %v, want ErrInvalidKey", op, k, err)
			}
		}
		_, _, err := s.Put(ctx, k, bytes.NewReader([]byte("x")), 1, "")
		check("Put", err)
		_, _, err = s.Get(ctx, k, 0, -1)
		check("Get", err)
		_, err = s.Stat(ctx, k)
		check("Stat", err)
		check("Delete", s.Delete(ctx, k))
		_, err = s.CreateUpload(ctx, k, "")
		check("CreateUpload", err)
		_, err = s.PutPart(ctx, k, "x", 1, bytes.NewReader(nil), 0, sum[:])
		check("PutPart", err)
		_, err = s.ListParts(ctx, k, "x")
		check("ListParts", err)
		_, err = s.CompleteUpload(ctx, k, "x", []blob.Part{{Number: 1}})
		check("CompleteUpload", err)
		check("AbortUpload", s.AbortUpload(ctx, k, "x"))
	}
	list, err := s.List(ctx, "")
	if err != nil || len(list) != 0 {
		t.Errorf("List after invalid Puts = %v, %v", keys(list), err)
	}
}

func testRanges(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const n = 1000
	all := bytesOf(11, n)
	if _, _, err := s.Put(ctx, "rg/k", bytes.NewReader(all), n, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, "rg/empty", bytes.NewReader(nil), 0, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key         string
		off, length int64
		want        []byte
	}{
		{"rg/k", 0, -1, all},
		{"rg/k", 0, 10, all[:10]},
		{"rg/k", 500, 100, all[500:600]},
		{"rg/k", 990, -1, all[990:]},
		{"rg/k", 990, 100, all[990:]}, // clamped at the end
		{"rg/k", 999, 1, all[999:]},
		{"rg/k", 0, n, all},
		{"rg/k", n, -1, nil},
		{"rg/k", n, 0, nil},
		{"rg/k", 10, 0, nil},
		{"rg/empty", 0, -1, nil},
		{"rg/empty", 0, 10, nil},
	} {
		rc, info, err := s.Get(ctx, c.key, c.off, c.length)
		if err != nil {
			t.Errorf("Get(%s, %d, %d): %v", c.key, c.off, c.length, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("Get(%s, %d, %d) read: %v", c.key, c.off, c.length, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("Get(%s, %d, %d) = %d bytes, want %d", c.key, c.off, c.length, len(got), len(c.want))
		}
		wantSize := int64(n)
		if c.key == "rg/empty" {
			wantSize = 0
		}
		if info.Size != wantSize {
			t.Errorf("Get(%s, %d, %d) info.Size = %d, want the object's size %d", c.key, c.off, c.length, info.Size, wantSize)
		}
	}
	for _, c := range []struct {
		key         string
		off, length int64
	}{{"rg/k", n + 1, -1}, {"rg/k", 2 * n, 5}, {"rg/k", -1, 5}, {"rg/empty", 1, -1}} {
		rc, _, err := s.Get(ctx, c.key, c.off, c.length)
		if !errors.Is(err, blob.ErrInvalidRange) {
			if rc != nil {
				rc.Close()
			}
			t.Errorf("Get(%s, %d, %d) err = %v, want ErrInvalidRange", c.key, c.off, c.length, err)
		}
	}
	// A range of a multi-part object crossing a part boundary.
	if _, _, err := s.Put(ctx, "rg/big", data(12, 11*mib), -1, ""); err != nil {
		t.Fatal(err)
	}
	big := bytesOf(12, 11*mib)
	if got := readBytes(t, s, "rg/big", 5*mib-3, 10); !bytes.Equal(got, big[5*mib-3:5*mib+7]) {
		t.Errorf("range across the 5 MiB boundary differs")
	}
	if got := readBytes(t, s, "rg/big", 11*mib-5, -1); !bytes.Equal(got, big[11*mib-5:]) {
		t.Errorf("range at the end of a big object differs")
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	ctx := t.Context()
	if _, err := s.Stat(ctx, "nf/missing"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat: %v", err)
	}
	if _, _, err := s.Get(ctx, "nf/missing", 0, -1); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get: %v", err)
	}
	if _, _, err := s.Get(ctx, "nf/missing", 5, 10); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get range: %v", err)
	}
	if err := s.Delete(ctx, "nf/missing"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	// A key that is only a prefix of other keys is not an object.
	if _, _, err := s.Put(ctx, "nf/dir/obj", data(1, 10), 10, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "nf/dir"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat of a prefix: %v", err)
	}
	if _, _, err := s.Get(ctx, "nf/dir", 0, -1); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get of a prefix: %v", err)
	}
	if err := s.Delete(ctx, "nf/dir"); err != nil {
		t.Errorf("Delete of a prefix: %v", err)
	}
	if _, err := s.Stat(ctx, "nf/dir/obj"); err != nil {
		t.Errorf("Delete of a prefix removed the object: %v", err)
	}

	// Unknown uploads.
	id, err := s.CreateUpload(ctx, "nf/up", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.AbortUpload(ctx, "nf/up", id)
	sum := sha256.Sum256([]byte("x"))
	for _, c := range []struct{ key, id string }{{"nf/up", "0123456789abcdef0123456789abcdef"}, {"nf/other", id}} {
		if _, err := s.ListParts(ctx, c.key, c.id); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("ListParts(%s, %s): %v", c.key, c.id, err)
		}
		if _, err := s.PutPart(ctx, c.key, c.id, 1, bytes.NewReader([]byte("x")), 1, sum[:]); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("PutPart(%s, %s): %v", c.key, c.id, err)
		}
		if _, err := s.CompleteUpload(ctx, c.key, c.id, []blob.Part{{Number: 1, Size: 1}}); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("CompleteUpload(%s, %s): %v", c.key, c.id, err)
		}
		if err := s.AbortUpload(ctx, c.key, c.id); err != nil {
			t.Errorf("AbortUpload(%s, %s): %v", c.key, c.id, err)
		}
	}
	// Aborting with the wrong key must not have touched the real upload.
	if _, err := s.ListParts(ctx, "nf/up", id); err != nil {
		t.Errorf("ListParts of the real upload: %v", err)
	}
}

func testList(t *testing.T, s blob.Store) {
	ctx := t.Context()
	all := []string{"l/a", "l/a-b", "l/b/c", "l/b/d/e", "m/x"}
	for i, k := range slices.Backward(all) { // reverse order of creation
		if _, _, err := s.Put(ctx, k, data(uint64(i), int64(i*10)), int64(i*10), ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"l/", all[:4]},
		{"l/a", all[:2]},
		{"l/b/", all[2:4]},
		{"l/b/d", all[3:4]},
		{"l/b/d/e", all[3:4]},
		{"m", all[4:]},
		{"nope/", nil},
		{"l/zz/", nil},
	} {
		list, err := s.List(ctx, c.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", c.prefix, err)
		}
		if got := keys(list); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	list, _ := s.List(ctx, "l/b/d/")
	if len(list) != 1 || list[0].Size != 30 || list[0].ModTime.IsZero() {
		t.Errorf("List entry = %+v, want size 30 and a time", list)
	}
	// Delete leaves siblings and prunes nothing that is still used.
	if err := s.Delete(ctx, "l/b/d/e"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, "l/"); !slices.Equal(keys(list), all[:3]) {
		t.Errorf("after Delete: %q", keys(list))
	}
	// The key freed by the deletion can be used again.
	if _, _, err := s.Put(ctx, "l/b/d", data(1, 1), 1, ""); err != nil {
		t.Errorf("Put l/b/d after its children were deleted: %v", err)
	}
}

type partData struct {
	seed uint64
	size int64
}

func putPart(t *testing.T, s blob.Store, key, id string, num int, p partData) blob.Part {
	t.Helper()
	sum := digest(p.seed, p.size)
	got, err := s.PutPart(t.Context(), key, id, num, data(p.seed, p.size), p.size, sum)
	if err != nil {
		t.Fatalf("PutPart %d: %v", num, err)
	}
	if got.Number != num || got.Size != p.size || !bytes.Equal(got.SHA256, sum) {
		t.Errorf("PutPart %d = %+v", num, got)
	}
	return got
}

func checkListParts(t *testing.T, s blob.Store, key, id string, want map[int]partData) []blob.Part {
	t.Helper()
	parts, err := s.ListParts(t.Context(), key, id)
	if err != nil {
		t.Fatalf("ListParts: %v", err)
	}
	var nums []int
	for _, p := range parts {
		nums = append(nums, p.Number)
		w, ok := want[p.Number]
		if !ok {
			t.Errorf("ListParts shows unexpected part %d", p.Number)
			continue
		}
		if p.Size != w.size || !bytes.Equal(p.SHA256, digest(w.seed, w.size)) {
			t.Errorf("ListParts part %d: size %d sha %x, want size %d sha %x", p.Number, p.Size, p.SHA256, w.size, digest(w.seed, w.size))
		}
	}
	if !slices.IsSorted(nums) || len(nums) != len(want) {
		t.Errorf("ListParts numbers = %v, want the %d parts in order", nums, len(want))
	}
	return parts
}

func testMultipart(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const key = "mp/video.mp4"
	id, err := s.CreateUpload(ctx, key, "video/mp4")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]partData{1: {21, 5 * mib}, 2: {22, 5 * mib}, 3: {23, 5 * mib}, 4: {24, 1234}}
	// Out of order, with part 2 first put with other bytes then replaced.
	putPart(t, s, key, id, 4, want[4])
	putPart(t, s, key, id, 2, partData{29, 5*mib + 7})
	putPart(t, s, key, id, 1, want[1])
	putPart(t, s, key, id, 3, want[3])
	putPart(t, s, key, id, 2, want[2])

	// A part whose bytes do not match its digest is refused and not kept:
	// neither as a replacement of part 3 nor as a new part 5.
	wrong := digest(23, 5*mib)
	if _, err := s.PutPart(ctx, key, id, 3, data(30, 5*mib), 5*mib, digest(31, 5*mib)); !errors.Is(err, blob.ErrChecksum) {
		t.Errorf("PutPart with wrong digest: %v, want ErrChecksum", err)
	}
	if _, err := s.PutPart(ctx, key, id, 5, data(30, 1000), 1000, wrong); !errors.Is(err, blob.ErrChecksum) {
		t.Errorf("PutPart 5 with wrong digest: %v, want ErrChecksum", err)
	}
	// A part shorter than its size is refused.
	if _, err := s.PutPart(ctx, key, id, 6, data(32, 999), 1000, digest(32, 1000)); err == nil {
		t.Errorf("PutPart of 999 bytes claiming 1000 succeeded")
	}
	parts := checkListParts(t, s, key, id, want)

	// Invisible until complete.
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat before Complete: %v", err)
	}
	if list, _ := s.List(ctx, "mp/"); len(list) != 0 {
		t.Errorf("List before Complete: %q", keys(list))
	}
	ups, err := s.ListUploads(ctx, "mp/", time.Time{})
	if err != nil || len(ups) != 1 || ups[0].UploadID != id || ups[0].Key != key || ups[0].Initiated.IsZero() {
		t.Errorf("ListUploads = %+v, %v", ups, err)
	}

	info, err := s.CompleteUpload(ctx, key, id, parts)
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	total := int64(15*mib + 1234)
	if info.Key != key || info.Size != total {
		t.Errorf("CompleteUpload info = %+v", info)
	}
	h := sha256.New()
	for i := 1; i <= 4; i++ {
		io.Copy(h, data(want[i].seed, want[i].size))
	}
	got, n, ginfo := readSum(t, s, key, 0, -1)
	if n != total || !bytes.Equal(got, h.Sum(nil)) {
		t.Errorf("completed object is %d bytes, not the concatenation of the parts", n)
	}
	if info.SHA256 != nil && !bytes.Equal(info.SHA256, got) {
		t.Errorf("CompleteUpload info.SHA256 %x, want the object's %x", info.SHA256, got)
	}
	if ginfo.ContentType != "video/mp4" {
		t.Errorf("completed object content type %q", ginfo.ContentType)
	}
	if ups, _ := s.ListUploads(ctx, "mp/", time.Time{}); len(ups) != 0 {
		t.Errorf("ListUploads after Complete = %+v", ups)
	}
	// The upload is gone, as in S3.
	if _, err := s.CompleteUpload(ctx, key, id, parts); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("second CompleteUpload: %v, want ErrNotFound", err)
	}
	if _, err := s.ListParts(ctx, key, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ListParts after Complete: %v, want ErrNotFound", err)
	}
	if got2, n2, _ := readSum(t, s, key, 0, -1); n2 != total || !bytes.Equal(got2, got) {
		t.Errorf("a second CompleteUpload changed the object")
	}
}

func testMultipartCompleteChecks(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const key = "mpc/obj"
	id, err := s.CreateUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	p1 := putPart(t, s, key, id, 1, partData{41, 5 * mib})
	p2 := putPart(t, s, key, id, 2, partData{42, 100})
	p3 := putPart(t, s, key, id, 3, partData{43, 100})

	bad := p1
	bad.SHA256 = digest(1, 1)
	badSize := p2
	badSize.Size = 99
	missing := blob.Part{Number: 7, Size: 100, SHA256: digest(43, 100)}
	for name, parts := range map[string][]blob.Part{
		"wrong digest":     {bad, p2},
		"wrong size":       {p1, badSize},
		"missing part":     {p1, missing},
		"descending":       {p2, p1},
		"repeated":         {p1, p1},
		"small inner part": {p1, p2, p3},
		"none":             nil,
	} {
		if _, err := s.CompleteUpload(ctx, key, id, parts); err == nil {
			t.Errorf("CompleteUpload with %s succeeded", name)
		} else if name == "wrong digest" && !errors.Is(err, blob.ErrChecksum) {
			t.Errorf("CompleteUpload with wrong digest: %v, want ErrChecksum", err)
		}
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("object visible after failed completes: %v", err)
	}
	// The upload survived the refusals; completing with a subset (the
	// caller's record, ETags optional) works.
	p1.ETag = ""
	info, err := s.CompleteUpload(ctx, key, id, []blob.Part{p1, p2})
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	if info.Size != 5*mib+100 {
		t.Errorf("size %d", info.Size)
	}
	want := append(bytesOf(41, 5*mib), bytesOf(42, 100)...)
	if got := readBytes(t, s, key, 0, -1); !bytes.Equal(got, want) {
		t.Errorf("completed object differs")
	}
	if ups, _ := s.ListUploads(ctx, key, time.Time{}); len(ups) != 0 {
		t.Errorf("upload left after Complete: %+v", ups)
	}
}

func testMultipartAbort(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const key = "ab/obj"
	id, err := s.CreateUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	p := putPart(t, s, key, id, 1, partData{51, 5 * mib})
	if err := s.AbortUpload(ctx, key, id); err != nil {
		t.Fatalf("AbortUpload: %v", err)
	}
	assertAbsent(t, s, key)
	if _, err := s.ListParts(ctx, key, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ListParts after abort: %v", err)
	}
	if _, err := s.CompleteUpload(ctx, key, id, []blob.Part{p}); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("CompleteUpload after abort: %v", err)
	}
	if err := s.AbortUpload(ctx, key, id); err != nil {
		t.Errorf("second AbortUpload: %v", err)
	}
	assertAbsent(t, s, key)
}

func testListUploads(t *testing.T, s blob.Store) {
	ctx := t.Context()
	start := time.Now()
	a, err := s.CreateUpload(ctx, "lu/a", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateUpload(ctx, "lu/b", "")
	if err != nil {
		t.Fatal(err)
	}
	b2, err := s.CreateUpload(ctx, "lu/b", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUpload(ctx, "other/c", ""); err != nil {
		t.Fatal(err)
	}
	ids := func(ups []blob.Upload) []string {
		var out []string
		for _, u := range ups {
			out = append(out, u.Key+" "+u.UploadID)
		}
		return out
	}
	ups, err := s.ListUploads(ctx, "lu/", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := ids(ups)
	if len(got) != 3 || got[0] != "lu/a "+a || !slices.Contains(got, "lu/b "+b) || !slices.Contains(got, "lu/b "+b2) {
		t.Errorf("ListUploads(lu/) = %q", got)
	}
	for _, u := range ups {
		if u.Initiated.Before(start.Add(-time.Minute)) || u.Initiated.After(time.Now().Add(time.Minute)) {
			t.Errorf("upload %s initiated %v, not about now", u.UploadID, u.Initiated)
		}
	}
	if ups, _ := s.ListUploads(ctx, "lu/", time.Now().Add(time.Hour)); len(ups) != 3 {
		t.Errorf("ListUploads before an hour from now = %q", ids(ups))
	}
	if ups, _ := s.ListUploads(ctx, "lu/", start.Add(-time.Hour)); len(ups) != 0 {
		t.Errorf("ListUploads before an hour ago = %q", ids(ups))
	}
	if ups, _ := s.ListUploads(ctx, "", time.Time{}); len(ups) != 4 {
		t.Errorf("ListUploads() = %q", ids(ups))
	}
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	sizes := []int64{0, 1, 100 * kib, mib, 3 * mib, 6 * mib, 7*mib + 1, 512}
	for i, n := range sizes {
		wg.Go(func() {
			key := fmt.Sprintf("cc/%d", i)
			_, sum, err := s.Put(ctx, key, data(uint64(60+i), n), n, "")
			if err != nil {
				t.Errorf("Put %s: %v", key, err)
				return
			}
			if !bytes.Equal(sum, digest(uint64(60+i), n)) {
				t.Errorf("Put %s digest differs", key)
			}
		})
	}
	wg.Wait()
	list, err := s.List(ctx, "cc/")
	if err != nil || len(list) != len(sizes) {
		t.Fatalf("List = %q, %v", keys(list), err)
	}
	for i, n := range sizes {
		got, gotN, _ := readSum(t, s, fmt.Sprintf("cc/%d", i), 0, -1)
		if gotN != n || !bytes.Equal(got, digest(uint64(60+i), n)) {
			t.Errorf("cc/%d differs", i)
		}
	}
}

func testSetupTwice(t *testing.T, s blob.Store) {
	ctx := t.Context()
	if err := s.Setup(ctx); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Setup(ctx); err != nil {
				t.Errorf("concurrent Setup: %v", err)
			}
		})
	}
	wg.Wait()
	if _, _, err := s.Put(ctx, "setup/k", data(1, 10), 10, ""); err != nil {
		t.Fatalf("Put after Setup: %v", err)
	}
}
