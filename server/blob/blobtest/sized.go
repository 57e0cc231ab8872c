package blobtest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server/blob"
)

// RunSized runs the suite of uploads made with CreateUploadSized (parts
// written at their final offset) on stores that are blob.SizedUploader;
// it skips the others.
func RunSized(t *testing.T, newStore func(t *testing.T) blob.Store) {
	open := func(t *testing.T) (blob.Store, blob.SizedUploader) {
		t.Helper()
		s := newStore(t)
		su, ok := s.(blob.SizedUploader)
		if !ok {
			t.Skipf("%T is not a blob.SizedUploader", s)
		}
		if err := s.Setup(t.Context()); err != nil {
			t.Fatalf("Setup: %v", err)
		}
		return s, su
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store, su blob.SizedUploader)
	}{
		{"Multipart", testSizedMultipart},
		{"CompleteChecks", testSizedCompleteChecks},
		{"Abort", testSizedAbort},
		{"Concurrent", testSizedConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, su := open(t)
			tc.fn(t, s, su)
		})
	}
}

const sizedPart = 5 * mib

// concat is the SHA-256 and length of the parts' bytes one after another.
func concat(parts ...partData) ([]byte, int64) {
	h := sha256.New()
	var n int64
	for _, p := range parts {
		h.Write(bytesOf(p.seed, p.size))
		n += p.size
	}
	return h.Sum(nil), n
}

func completeAndCheck(t *testing.T, s blob.Store, key, id string, parts []blob.Part, want ...partData) {
	t.Helper()
	info, err := s.CompleteUpload(t.Context(), key, id, parts)
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	sum, total := concat(want...)
	if info.Size != total {
		t.Errorf("CompleteUpload size %d, want %d", info.Size, total)
	}
	if info.SHA256 != nil && !bytes.Equal(info.SHA256, sum) {
		t.Errorf("CompleteUpload SHA256 %x, want %x", info.SHA256, sum)
	}
	got, n, _ := readSum(t, s, key, 0, -1)
	if n != total || !bytes.Equal(got, sum) {
		t.Errorf("object is %d bytes with SHA-256 %x, want the %d bytes of the parts in order (%x)", n, got, total, sum)
	}
	if ups, _ := s.ListUploads(t.Context(), key, time.Time{}); len(ups) != 0 {
		t.Errorf("upload left after Complete: %+v", ups)
	}
}

func testSizedMultipart(t *testing.T, s blob.Store, su blob.SizedUploader) {
	ctx := t.Context()
	const key = "sz/video.mp4"
	id, err := su.CreateUploadSized(ctx, key, "video/mp4", sizedPart)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]partData{1: {61, sizedPart}, 2: {62, sizedPart}, 3: {63, sizedPart}, 4: {64, 1234}}
	// Out of order, the short last part first, part 2 first with other
	// bytes then replaced, part 3 sent twice with the same bytes.
	putPart(t, s, key, id, 4, want[4])
	putPart(t, s, key, id, 2, partData{69, sizedPart})
	putPart(t, s, key, id, 3, want[3])
	putPart(t, s, key, id, 1, want[1])
	putPart(t, s, key, id, 2, want[2])
	putPart(t, s, key, id, 3, want[3])

	// Refused and not kept: a wrong digest replacing a held part or as a
	// new part, a short body, a part longer than the part size.
	if _, err := s.PutPart(ctx, key, id, 1, data(70, sizedPart), sizedPart, digest(71, sizedPart)); !errors.Is(err, blob.ErrChecksum) {
		t.Errorf("PutPart 1 with wrong digest: %v, want ErrChecksum", err)
	}
	if _, err := s.PutPart(ctx, key, id, 5, data(70, 1000), 1000, digest(71, 1000)); !errors.Is(err, blob.ErrChecksum) {
		t.Errorf("PutPart 5 with wrong digest: %v, want ErrChecksum", err)
	}
	if _, err := s.PutPart(ctx, key, id, 3, data(72, 999), 1000, digest(72, 1000)); err == nil {
		t.Errorf("PutPart of 999 bytes claiming 1000 succeeded")
	}
	if _, err := s.PutPart(ctx, key, id, 6, data(73, sizedPart+1), sizedPart+1, digest(73, sizedPart+1)); err == nil {
		t.Errorf("PutPart longer than the part size succeeded")
	}
	parts := checkListParts(t, s, key, id, want)
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat before Complete: %v", err)
	}
	if list, _ := s.List(ctx, "sz/"); len(list) != 0 {
		t.Errorf("List before Complete: %q", keys(list))
	}
	completeAndCheck(t, s, key, id, parts, want[1], want[2], want[3], want[4])
	if _, err := s.CompleteUpload(ctx, key, id, parts); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("second CompleteUpload: %v, want ErrNotFound", err)
	}
	if _, err := s.PutPart(ctx, key, id, 1, data(61, sizedPart), sizedPart, digest(61, sizedPart)); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("PutPart after Complete: %v, want ErrNotFound", err)
	}
	if _, err := s.ListParts(ctx, key, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ListParts after Complete: %v, want ErrNotFound", err)
	}
}

func testSizedCompleteChecks(t *testing.T, s blob.Store, su blob.SizedUploader) {
	ctx := t.Context()
	const key = "szc/obj"
	id, err := su.CreateUploadSized(ctx, key, "", sizedPart)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2, d3 := partData{81, sizedPart}, partData{82, sizedPart}, partData{83, 100}
	p1 := putPart(t, s, key, id, 1, d1)
	p2 := putPart(t, s, key, id, 2, d2)
	p3 := putPart(t, s, key, id, 3, d3)
	bad := p1
	bad.SHA256 = digest(1, 1)
	for name, parts := range map[string][]blob.Part{
		"wrong digest": {bad, p2},
		"gap":          {p1, p3},
		"not from 1":   {p2, p3},
		"descending":   {p2, p1},
		"none":         nil,
	} {
		if _, err := s.CompleteUpload(ctx, key, id, parts); err == nil {
			t.Errorf("CompleteUpload with %s succeeded", name)
		}
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("object visible after failed completes: %v", err)
	}
	// The first two parts only: part 3's bytes are not the object's.
	completeAndCheck(t, s, key, id, []blob.Part{p1, p2}, d1, d2)

	// A short part before the last is refused.
	const key2 = "szc/short"
	id2, err := su.CreateUploadSized(ctx, key2, "", sizedPart)
	if err != nil {
		t.Fatal(err)
	}
	q1 := putPart(t, s, key2, id2, 1, partData{84, 1000})
	q2 := putPart(t, s, key2, id2, 2, partData{85, 1000})
	if _, err := s.CompleteUpload(ctx, key2, id2, []blob.Part{q1, q2}); err == nil {
		t.Errorf("CompleteUpload with a short inner part succeeded")
	}
	// One short part is a whole object.
	completeAndCheck(t, s, key2, id2, []blob.Part{q1}, partData{84, 1000})
}

func testSizedAbort(t *testing.T, s blob.Store, su blob.SizedUploader) {
	ctx := t.Context()
	const key = "sza/obj"
	id, err := su.CreateUploadSized(ctx, key, "", sizedPart)
	if err != nil {
		t.Fatal(err)
	}
	p := putPart(t, s, key, id, 2, partData{91, sizedPart})
	if err := s.AbortUpload(ctx, key, id); err != nil {
		t.Fatalf("AbortUpload: %v", err)
	}
	assertAbsent(t, s, key)
	if _, err := s.ListParts(ctx, key, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ListParts after abort: %v", err)
	}
	if _, err := s.PutPart(ctx, key, id, 1, data(92, 100), 100, digest(92, 100)); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("PutPart after abort: %v, want ErrNotFound", err)
	}
	if _, err := s.CompleteUpload(ctx, key, id, []blob.Part{p}); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("CompleteUpload after abort: %v", err)
	}
	if err := s.AbortUpload(ctx, key, id); err != nil {
		t.Errorf("second AbortUpload: %v", err)
	}
	assertAbsent(t, s, key)
}

// testSizedConcurrent sends every part several times at once, some of the
// copies with wrong bytes: the parts held are the right ones.
func testSizedConcurrent(t *testing.T, s blob.Store, su blob.SizedUploader) {
	ctx := t.Context()
	const key = "szr/obj"
	id, err := su.CreateUploadSized(ctx, key, "", sizedPart)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]partData{1: {101, sizedPart}, 2: {102, sizedPart}, 3: {103, sizedPart}, 4: {104, 4321}}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for n, p := range want {
		for copy := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if copy%2 == 1 {
					// The right digest, other bytes: refused.
					if _, err := s.PutPart(ctx, key, id, n, data(p.seed+50, p.size), p.size, digest(p.seed, p.size)); !errors.Is(err, blob.ErrChecksum) {
						errs <- err
					}
					return
				}
				if _, err := s.PutPart(ctx, key, id, n, data(p.seed, p.size), p.size, digest(p.seed, p.size)); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent PutPart: %v", err)
	}
	parts := checkListParts(t, s, key, id, want)
	completeAndCheck(t, s, key, id, parts, want[1], want[2], want[3], want[4])
}
