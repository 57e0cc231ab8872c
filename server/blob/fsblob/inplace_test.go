package fsblob_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server/blob/fsblob"
)

// An in-place completion stopped at any step (as by a crash) leaves the
// upload frozen with every part held and the object invisible until it
// is published; CompleteUpload in a new Store finishes it with the same
// bytes and SHA-256.
func TestInPlaceStopsAndResumes(t *testing.T) {
	for _, st := range []struct {
		name string
		part int
	}{{"recorded", 0}, {"hashed", 3}, {"meta", 0}, {"published", 3}} {
		t.Run(fmt.Sprintf("%s-%d", st.name, st.part), func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			u := makeUploadSized(t, s, "ip/obj.mp4", 130, 5*mib, 5*mib, 5*mib, 1234)
			stopAndResume(t, s, u, st.name, st.part, func() {})
		})
	}
}

func digest(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// A marker a crash left empty (or torn) makes its part missing, not held
// with bytes that may not be there; sent again, it is held.
func TestInPlaceTornMarker(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	u := makeUploadSized(t, s, "ip/torn", 140, 5*mib, 5*mib, 5*mib, 5*mib)
	marker := filepath.Join(s.Dir(), "uploads", u.ID, "00002.at")
	if err := os.Truncate(marker, 0); err != nil {
		t.Fatal(err)
	}
	parts, err := s.ListParts(ctx, u.Key, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].Number != 1 || parts[1].Number != 3 {
		t.Fatalf("ListParts with part 2's marker empty = %+v, want parts 1 and 3", parts)
	}
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); err == nil {
		t.Fatal("CompleteUpload without part 2 succeeded")
	}
	if _, err := s.PutPart(ctx, u.Key, u.ID, 2, bytes.NewReader(u.data[5*mib:10*mib]), 5*mib, u.Parts[1].SHA256); err != nil {
		t.Fatal(err)
	}
	info, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, u, info)
}

// The object's SHA-256 is hashed ahead as parts arrive from part 1; a part
// replaced inside the hashed prefix starts it over, so the SHA-256
// completing returns is the published bytes'.
func TestInPlaceHashAhead(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	u := makeUploadSized(t, s, "ip/ahead", 160, 5*mib, 5*mib, 5*mib, 5*mib, 777)
	waitHashed := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); fsblob.HashedParts(s, u.ID) != n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d parts hashed ahead, want %d", fsblob.HashedParts(s, u.ID), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitHashed(4)
	// Part 2 with other bytes: the prefix restarts.
	other := randBytes(969, 5*mib)
	if _, err := s.PutPart(ctx, u.Key, u.ID, 2, bytes.NewReader(other), 5*mib, digest(other)); err != nil {
		t.Fatal(err)
	}
	waitHashed(4)
	// Completed with the other bytes for part 2.
	p2, err := s.PutPart(ctx, u.Key, u.ID, 2, bytes.NewReader(other), 5*mib, digest(other))
	if err != nil {
		t.Fatal(err)
	}
	u.Parts[1] = p2
	copy(u.data[5*mib:10*mib], other)
	info, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, u, info)
	if n := fsblob.HashedParts(s, u.ID); n != 0 {
		t.Errorf("the prefix of a completed upload is kept (%d parts)", n)
	}
}
