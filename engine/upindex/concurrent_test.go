package upindex

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// churnEnv, when set ("INDEXDIR|FILESDIR|SEED"), makes the test binary a
// helper process that churns the index and exits (TestMultiProcess).
const churnEnv = "UPINDEX_TEST_CHURN"

func TestMain(m *testing.M) {
	if v := os.Getenv(churnEnv); v != "" {
		os.Exit(churnHelper(v))
	}
	os.Exit(m.Run())
}

func churnHelper(v string) int {
	parts := strings.Split(v, "|")
	seed, err := strconv.ParseUint(parts[len(parts)-1], 10, 64)
	if len(parts) != 3 || err != nil {
		fmt.Fprintf(os.Stderr, "bad %s=%q\n", churnEnv, v)
		return 2
	}
	ix, err := Open(parts[0])
	if err == nil {
		err = churn(ix, parts[1], seed, 400)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// makeFiles writes n small files to a new directory, an hour old.
func makeFiles(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		writeFile(t, dir, fmt.Sprintf("f%02d", i), []byte(strings.Repeat("x", i)), time.Now().Add(-time.Hour))
	}
	return dir
}

// churn runs ops random operations on the entries of the files in
// filesDir: Put (Recorded up to two hours back), Lookup (a hit must be
// the entry of that key and Stat, with a valid manifest), Confirm,
// Remove, Prune, Len. Any error fails.
func churn(ix *Index, filesDir string, seed uint64, ops int) error {
	names, err := filepath.Glob(filepath.Join(filesDir, "f*"))
	if err != nil || len(names) == 0 {
		return fmt.Errorf("no files in %s: %v", filesDir, err)
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range ops {
		p := names[r.IntN(len(names))]
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		k, st := keyOf(p), StatOf(fi)
		e := entryOf(k, st, data)
		switch op := r.IntN(20); {
		case op < 7:
			e.Recorded = time.Now().Add(-time.Duration(r.Int64N(int64(2 * time.Hour))))
			err = ix.Put(e)
		case op < 15:
			var got *Entry
			if got, _, err = ix.Lookup(k, st); err == nil && got != nil {
				if got.Key != k || got.Stat != st || got.SHA256 != e.SHA256 || got.Manifest("x") == nil {
					err = fmt.Errorf("op %d: Lookup(%s) returned another entry: %+v", i, p, got)
				}
			}
		case op < 16:
			err = ix.Confirm(e, time.Now())
		case op < 18:
			err = ix.Remove(k)
		case op < 19:
			_, err = ix.Prune(90*time.Minute, 1+r.IntN(len(names)))
		default:
			_, err = ix.Len()
		}
		if err != nil {
			return fmt.Errorf("op %d on %s: %w", i, p, err)
		}
	}
	return nil
}

// checkAllDecode: every file left in the index is an entry at its Key's
// name that decodes and is valid; no temporary file is left.
func checkAllDecode(t *testing.T, ix *Index) {
	t.Helper()
	names, err := ix.names()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !isEntryName(n) {
			t.Errorf("left in the index: %s", n)
			continue
		}
		b, err := os.ReadFile(filepath.Join(ix.dir, n))
		if err != nil {
			t.Fatal(err)
		}
		e, err := decode(b)
		if err != nil || e.Key.Name() != n {
			t.Errorf("%s does not decode as its key's entry: %v", n, err)
		}
	}
}

// TestConcurrentGoroutines: many goroutines Put, Lookup, Confirm,
// Remove and Prune overlapping keys; nothing fails, nothing is left
// that does not decode.
func TestConcurrentGoroutines(t *testing.T) {
	ix, files := newIndex(t), makeFiles(t, 6)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			if err := churn(ix, files, uint64(g+1), 300); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkAllDecode(t, ix)
}

// TestMultiProcess: three processes (this test binary as a helper) and
// this one churn the same directory at once.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ix, files := newIndex(t), makeFiles(t, 6)
	var cmds []*exec.Cmd
	for i := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d", churnEnv, ix.dir, files, 100+i))
		out := new(strings.Builder)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("helper %d:\n%s", i, out)
			}
		})
	}
	if err := churn(ix, files, 99, 400); err != nil {
		t.Error(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v", i, err)
		}
	}
	checkAllDecode(t, ix)
}

// TestTornWritesWhileReading: another writer that rewrites the entry in
// place (no rename: readers see it half written) never makes Lookup fail
// or return a wrong entry; a torn read is a miss.
func TestTornWritesWhileReading(t *testing.T) {
	ix := newIndex(t)
	e := bigEntry(keyOf("/data/disk.img"), 10<<30, 8<<20)
	e.Recorded = time.Now()
	good := encode(&e)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f, err := os.OpenFile(ix.path(e.Key), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				continue // removed by a reader meanwhile: fine
			}
			f.Write(good[:len(good)/2])
			f.Write(good[len(good)/2:])
			f.Close()
			time.Sleep(time.Duration(i%3) * 100 * time.Microsecond) // whole for a moment
		}
	})
	hits, misses := 0, 0
	for deadline := time.Now().Add(10 * time.Second); hits+misses < 2000 || hits == 0 && time.Now().Before(deadline); {
		got, _, err := ix.Lookup(e.Key, e.Stat)
		switch {
		case err != nil:
			t.Fatal(err)
		case got == nil:
			misses++
		case got.SHA256 != e.SHA256 || len(got.Chunks) != len(e.Chunks) || got.Chunks[1279] != e.Chunks[1279]:
			t.Fatalf("a wrong entry: %+v", got.Stat)
		default:
			hits++
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d hits, %d misses", hits, misses)
	if hits == 0 {
		t.Error("no Lookup found the entry whole")
	}
}
