package fsblob_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

var errStop = errors.New("stopped here by the test")

// stopAt is a hook that stops the assembly at step (name and part).
func stopAt(name string, part int) func(string, int) error {
	return func(n string, p int) error {
		if n == name && p == part {
			return errStop
		}
		return nil
	}
}

// An assembly stopped at any step (as by a crash) leaves the upload with
// every part held, frozen, the object invisible until it is published;
// CompleteUpload again (in a new Store, as after a restart) finishes it
// with the same bytes and SHA-256.
func TestAssembleStopsAndResumes(t *testing.T) {
	steps := []struct {
		name string
		part int
	}{
		{"recorded", 0}, {"appended", 1}, {"released", 1}, {"appended", 2}, {"released", 2},
		{"appended", 3}, {"released", 3}, {"meta", 0}, {"published", 3},
	}
	for _, st := range steps {
		t.Run(fmt.Sprintf("%s-%d", st.name, st.part), func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			u := makeUpload(t, s, "stop/obj.mp4", 30, 5*mib, 5*mib, 1234)
			stopAndResume(t, s, u, st.name, st.part, func() {
				if st.name == "released" && st.part == 1 {
					// The process died half way through appending part 2.
					f, err := os.OpenFile(filepath.Join(s.Dir(), "uploads", u.ID, "object"), os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						t.Fatal(err)
					}
					f.Write(randBytes(7, mib))
					f.Close()
				}
			})
		})
	}
}

// stopAndResume stops the completion of u at step (name, part), checks
// that the upload is frozen with every part held and the object visible
// only once published, calls crash (what else a crash there leaves),
// then completes again in a new Store and checks the object.
func stopAndResume(t *testing.T, s *fsblob.Store, u upload, name string, part int, crash func()) {
	t.Helper()
	ctx := t.Context()
	fsblob.SetHook(s, stopAt(name, part))
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); !errors.Is(err, errStop) {
		t.Fatalf("CompleteUpload: %v, want the hook's stop", err)
	}
	fsblob.SetHook(s, nil)
	_, err := s.Stat(ctx, u.Key)
	if published := name == "published"; published != (err == nil) {
		t.Errorf("object visible = %v after stopping at %s (Stat: %v)", err == nil, name, err)
	}
	checkHeld(t, s, u)
	// Frozen: the same part is acknowledged, other bytes refused, a new
	// part refused, another list of parts refused.
	b1 := u.data[:5*mib]
	if _, err := s.PutPart(ctx, u.Key, u.ID, 1, bytes.NewReader(b1), 5*mib, u.Parts[0].SHA256); err != nil {
		t.Errorf("PutPart of the same part 1: %v", err)
	}
	other := randBytes(99, 5*mib)
	osum := sha256.Sum256(other)
	if _, err := s.PutPart(ctx, u.Key, u.ID, 2, bytes.NewReader(other), 5*mib, osum[:]); err == nil {
		t.Errorf("PutPart of other bytes for part 2 was accepted while assembling")
	}
	if _, err := s.PutPart(ctx, u.Key, u.ID, len(u.Parts)+1, bytes.NewReader(other), 5*mib, osum[:]); err == nil {
		t.Errorf("PutPart of a new part was accepted while assembling")
	}
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts[:2]); err == nil || errors.Is(err, blob.ErrNotFound) {
		t.Errorf("CompleteUpload with other parts: %v, want a refusal", err)
	}
	crash()
	checkHeld(t, s, u)
	s2, err := fsblob.New(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	info, err := s2.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
	if err != nil {
		t.Fatalf("CompleteUpload again: %v", err)
	}
	checkCompleted(t, s2, u, info)
}

// AbortUpload of an interrupted assembly removes everything.
func TestAssembleAbort(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	u := makeUpload(t, s, "ab/obj", 40, 5*mib, 5*mib, 10)
	fsblob.SetHook(s, stopAt("released", 2))
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	if err := s.AbortUpload(ctx, u.Key, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListParts(ctx, u.Key, u.ID); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ListParts after abort: %v", err)
	}
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("CompleteUpload after abort: %v", err)
	}
	if _, err := s.Stat(ctx, u.Key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("object after abort: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "uploads")); len(ents) != 0 {
		t.Errorf("uploads/ holds %d entries after abort", len(ents))
	}
	if names := tmpNames(t, s); len(names) != 0 {
		t.Errorf("tmp/ holds %q", names)
	}
}

// The disk fills up half way through an assembly (after part 1 moved):
// ENOSPC, the half-appended part is given back, every part stays held,
// and once space is freed the completion resumes.
func TestAssembleDiskFillsMidway(t *testing.T) {
	s, mnt := smallStore(t, 32*mib)
	ctx := t.Context()
	u := makeUpload(t, s, "mid/obj", 50, 5*mib, 5*mib, 5*mib)
	var unfill func()
	var before int64
	fsblob.SetHook(s, func(name string, part int) error {
		if name == "released" && part == 1 {
			unfill = testenv.Fill(t, mnt, 2*mib)
			before = testenv.FreeBytes(t, mnt)
		}
		return nil
	})
	_, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
	if !errors.Is(err, blob.ErrNoSpace) {
		t.Fatalf("CompleteUpload with the disk filling after part 1: %v, want ErrNoSpace", err)
	}
	if after := testenv.FreeBytes(t, mnt); after < before-64<<10 {
		t.Errorf("the failed append kept %d bytes", before-after)
	}
	checkHeld(t, s, u)
	if _, err := s.Stat(ctx, u.Key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("object visible: %v", err)
	}
	fsblob.SetHook(s, nil)
	unfill()
	info, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, u, info)
}

// Chunk PUTs racing a completion: parts equal to the recorded ones are
// acknowledged throughout, other bytes are refused once the assembly is
// recorded, and the object is always the recorded parts: assembled, and
// written in place (partSize, where a part past the last one is written
// in the object file too).
func TestAssemblePutPartRace(t *testing.T) {
	for _, partSize := range []int64{0, 5 * mib} {
		t.Run(fmt.Sprint(partSize), func(t *testing.T) { putPartRace(t, partSize) })
	}
}

func putPartRace(t *testing.T, partSize int64) {
	ctx := t.Context()
	s := newStore(t)
	u := makeUploadSized(t, s, "race/obj", 60, partSize, 5*mib, 5*mib, 5*mib, 100)
	other := randBytes(61, 5*mib)
	osum := sha256.Sum256(other)
	var wg sync.WaitGroup
	done := make(chan struct{})
	var otherAccepted, sameRefused int
	var mu sync.Mutex
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				n := 1 + (w+i)%3
				if w == 0 {
					_, err := s.PutPart(ctx, u.Key, u.ID, 2, bytes.NewReader(other), 5*mib, osum[:])
					if err == nil {
						mu.Lock()
						otherAccepted++
						mu.Unlock()
					}
					s.PutPart(ctx, u.Key, u.ID, 9, bytes.NewReader(other), 5*mib, osum[:])
					continue
				}
				p := u.Parts[n-1]
				_, err := s.PutPart(ctx, u.Key, u.ID, n, bytes.NewReader(u.data[int64(n-1)*5*mib:int64(n)*5*mib]), p.Size, p.SHA256)
				if err != nil && !errors.Is(err, blob.ErrNotFound) {
					mu.Lock()
					sameRefused++
					mu.Unlock()
					t.Errorf("PutPart of the same part %d: %v", n, err)
				}
			}
		})
	}
	// Let some PUTs land (including the other bytes for part 2), then
	// put part 2 back and complete with the recorded list.
	time.Sleep(50 * time.Millisecond)
	var info blob.Info
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		p2 := u.Parts[1]
		if _, err = s.PutPart(ctx, u.Key, u.ID, 2, bytes.NewReader(u.data[5*mib:10*mib]), p2.Size, p2.SHA256); err != nil {
			break
		}
		if info, err = s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); err == nil {
			break
		}
		// Part 2 was replaced by the other bytes just before the record.
		if !errors.Is(err, blob.ErrChecksum) {
			break
		}
	}
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	checkCompleted(t, s, u, info)
	// Writes in flight stopped before the object was published.
	time.Sleep(10 * time.Millisecond)
	checkCompleted(t, s, u, info)
	t.Logf("other bytes for part 2 accepted %d times before the assembly was recorded", otherAccepted)
}

// kill -9 of a process completing an upload, at chosen steps and at
// random moments: CompleteUpload in a new process finishes it.
func TestAssembleKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	cases := []string{"appended:1", "released:2", "meta:0", "published:3", "random", "random"}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d-%s", i, c), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "blobs")
			s, err := fsblob.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			u := makeUpload(t, s, "kill/obj.mp4", uint64(70+i), 5*mib, 5*mib, 777)
			spec, _ := json.Marshal(u)
			cmd := exec.Command(os.Args[0], "-test.run=^TestAssembleKillChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "JETTY_FSBLOB_CHILD_DIR="+dir, "JETTY_FSBLOB_CHILD_UPLOAD="+string(spec), "JETTY_FSBLOB_CHILD_KILL="+c)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				log.WriteString(line + "\n")
				if c == "random" && line == "ASSEMBLING" {
					time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
					_ = cmd.Process.Signal(syscall.SIGKILL)
				}
			}
			err = cmd.Wait()
			completed := strings.Contains(log.String(), "COMPLETED")
			var ee *exec.ExitError
			killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()
			if !killed && !(c == "random" && completed) {
				t.Fatalf("child: %v, killed %v, completed %v:\n%s", err, killed, completed, log.String())
			}
			if completed {
				t.Logf("the child completed before the kill")
				checkCompleted(t, s, u, blob.Info{Size: int64(len(u.data)), SHA256: func() []byte { h := sha256.Sum256(u.data); return h[:] }()})
				return
			}
			ents, _ := os.ReadDir(filepath.Join(dir, "uploads", u.ID))
			var left []string
			for _, e := range ents {
				left = append(left, e.Name())
			}
			t.Logf("killed; the upload holds %q", left)
			// A temporary file the dead process was writing (a sidecar
			// between create and rename) is the janitor's (CleanTemp, run
			// by the server's jobs); the completion below must leave none
			// of its own.
			if _, err := s.CleanTemp(time.Now()); err != nil {
				t.Fatal(err)
			}
			checkHeld(t, s, u)
			info, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts)
			if err != nil {
				t.Fatalf("CompleteUpload after kill -9: %v", err)
			}
			checkCompleted(t, s, u, info)
		})
	}
}

// TestAssembleKillChild is the child of TestAssembleKill9.
func TestAssembleKillChild(t *testing.T) {
	dir := os.Getenv("JETTY_FSBLOB_CHILD_DIR")
	if dir == "" {
		t.Skip("the child process of TestAssembleKill9")
	}
	var u upload
	if err := json.Unmarshal([]byte(os.Getenv("JETTY_FSBLOB_CHILD_UPLOAD")), &u); err != nil {
		t.Fatal(err)
	}
	kill := os.Getenv("JETTY_FSBLOB_CHILD_KILL")
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fsblob.SetHook(s, func(name string, part int) error {
		if name == "recorded" {
			fmt.Println("ASSEMBLING")
		}
		if fmt.Sprintf("%s:%d", name, part) == kill {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	})
	if _, err := s.CompleteUpload(t.Context(), u.Key, u.ID, u.Parts); err != nil {
		t.Fatal(err)
	}
	fmt.Println("COMPLETED")
}

// On a filesystem with reflinks (XFS) the parts are cloned into the
// object, not copied: assembling takes no room for the part being moved.
// On one without (tmpfs here) the store falls back to copying.
func TestAssembleClones(t *testing.T) {
	for _, fsName := range []string{"xfs", "tmpfs"} {
		t.Run(fsName, func(t *testing.T) {
			var mnt string
			if fsName == "xfs" {
				mnt = testenv.ReflinkFS(t)
			} else {
				mnt = testenv.SmallFS(t, 64*mib)
			}
			s, err := fsblob.New(filepath.Join(mnt, "blobs"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			u := makeUpload(t, s, "clone/obj", 80, 5*mib, 5*mib, 1234)
			before := testenv.FreeBytes(t, mnt)
			var drop int64
			fsblob.SetHook(s, func(name string, part int) error {
				if name == "appended" && part == 2 {
					drop = before - testenv.FreeBytes(t, mnt)
				}
				return nil
			})
			info, err := s.CompleteUpload(t.Context(), u.Key, u.ID, u.Parts)
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, s, u, info)
			t.Logf("%s: free space fell by %.2f MiB with part 2 appended; clones %v", fsName, float64(drop)/mib, !fsblob.CloneDisabled(s))
			if fsName == "xfs" {
				if fsblob.CloneDisabled(s) || drop > mib {
					t.Errorf("XFS: clones disabled %v, %.2f MiB taken while assembling; want clones and no part's worth of room", fsblob.CloneDisabled(s), float64(drop)/mib)
				}
			} else if !fsblob.CloneDisabled(s) || drop < 4*mib {
				t.Errorf("tmpfs: clones disabled %v, %.2f MiB taken; want a copy of the part", fsblob.CloneDisabled(s), float64(drop)/mib)
			}
		})
	}
}
