package fsblob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

// smallStore is a store on a tmpfs of size bytes.
func smallStore(t *testing.T, size int64) (*fsblob.Store, string) {
	t.Helper()
	mnt := testenv.SmallFS(t, size)
	s, err := fsblob.New(filepath.Join(mnt, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, mnt
}

// A file of about 60% of the free space completes: assembling needs
// room for one part, not a second copy of the file.
func TestCompleteNeedsRoomForOnePart(t *testing.T) {
	s, mnt := smallStore(t, 32*mib)
	free := testenv.FreeBytes(t, mnt)
	size := free * 6 / 10
	sizes := []int64{5 * mib, 5 * mib, 5 * mib, size - 15*mib}
	u := makeUpload(t, s, "big/file.mp4", 1, sizes...)
	afterParts := testenv.FreeBytes(t, mnt)

	// Watch the free space while completing.
	var low atomic.Int64
	low.Store(afterParts)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if f := testenv.FreeBytes(t, mnt); f < low.Load() {
				low.Store(f)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	})
	info, err := s.CompleteUpload(t.Context(), u.Key, u.ID, u.Parts)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("completing %d MiB on a filesystem with %d MiB free after the parts: %v", size>>20, afterParts>>20, err)
	}
	checkCompleted(t, s, u, info)
	peak := afterParts - low.Load()
	t.Logf("file %.1f MiB (%.0f%% of %.1f MiB free); peak extra space while assembling %.2f MiB", float64(size)/mib, 100*float64(size)/float64(free), float64(free)/mib, float64(peak)/mib)
	if peak > 5*mib+mib {
		t.Errorf("assembling took %.2f MiB of extra space at its peak; want at most about one part (5 MiB)", float64(peak)/mib)
	}
}

// A full filesystem: Put, PutPart, CreateUpload and CompleteUpload fail
// with blob.ErrNoSpace and leave nothing behind; the upload keeps its
// parts; once space is freed the same calls succeed.
func TestFullDisk(t *testing.T) {
	s, mnt := smallStore(t, 32*mib)
	ctx := t.Context()
	u := makeUpload(t, s, "full/file.bin", 10, 5*mib, 5*mib, 5*mib)
	unfill := testenv.Fill(t, mnt, 2*mib) // less than one part

	before := testenv.FreeBytes(t, mnt)
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); !errors.Is(err, blob.ErrNoSpace) {
		t.Fatalf("CompleteUpload on a full disk: %v, want ErrNoSpace", err)
	}
	if _, err := s.Stat(ctx, u.Key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("object visible after a failed completion: %v", err)
	}
	checkHeld(t, s, u)
	if after := testenv.FreeBytes(t, mnt); after < before-64<<10 {
		t.Errorf("the failed completion kept %d bytes of the disk", before-after)
	}

	big := randBytes(20, 3*mib)
	sum := sha256.Sum256(big)
	if _, _, err := s.Put(ctx, "full/put.bin", bytes.NewReader(big), int64(len(big)), ""); !errors.Is(err, blob.ErrNoSpace) {
		t.Errorf("Put on a full disk: %v, want ErrNoSpace", err)
	}
	if _, err := s.Stat(ctx, "full/put.bin"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Put left an object: %v", err)
	}
	id2, err := s.CreateUpload(ctx, "full/other.bin", "")
	if err != nil {
		t.Fatal(err) // a few bytes still fit
	}
	if _, err := s.PutPart(ctx, "full/other.bin", id2, 1, bytes.NewReader(big), int64(len(big)), sum[:]); !errors.Is(err, blob.ErrNoSpace) {
		t.Errorf("PutPart on a full disk: %v, want ErrNoSpace", err)
	}
	if parts, err := s.ListParts(ctx, "full/other.bin", id2); err != nil || len(parts) != 0 {
		t.Errorf("ListParts after a refused part = %v, %v", parts, err)
	}
	if names := tmpNames(t, s); len(names) != 0 {
		t.Errorf("tmp/ holds %q after the refusals", names)
	}
	free := testenv.Fill(t, mnt, 0)
	if _, err := s.CreateUpload(ctx, "full/third.bin", ""); !errors.Is(err, blob.ErrNoSpace) {
		t.Errorf("CreateUpload on a disk with no byte free: %v, want ErrNoSpace", err)
	}
	sp, err := s.Space(ctx)
	if err != nil || sp.Free > 64<<10 || sp.Total < 30*mib || sp.Total > 33*mib {
		t.Errorf("Space on a full 32 MiB disk = %+v, %v", sp, err)
	}
	free()
	unfill()

	// Space is back: the same calls succeed.
	info, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
	if err != nil {
		t.Fatalf("CompleteUpload once space is back: %v", err)
	}
	checkCompleted(t, s, u, info)
	if _, err := s.PutPart(ctx, "full/other.bin", id2, 1, bytes.NewReader(big), int64(len(big)), sum[:]); err != nil {
		t.Errorf("PutPart once space is back: %v", err)
	}
	if _, _, err := s.Put(ctx, "full/put.bin", bytes.NewReader(big), int64(len(big)), ""); err != nil {
		t.Errorf("Put once space is back: %v", err)
	}
	if sp, err := s.Space(ctx); err != nil || sp.Free < 5*mib {
		t.Errorf("Space once space is back = %+v, %v", sp, err)
	}
}
