package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/engine/upindex"
)

// TestOneGiB32Workers: a 1 GiB file uploaded with 32 workers comes back
// byte-identical, on both deployments.
func TestOneGiB32Workers(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB upload skipped in -short mode")
	}
	path, sum := writeFile(t, 1, 1<<30)
	deployments(t, func(t *testing.T, s *server) {
		c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
		ix, err := upindex.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		res, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 32, JournalDir: t.TempDir(), Index: ix})
		if err != nil {
			t.Fatal(err)
		}
		if res.Workers != 32 || res.Asset.Hash != sum || res.Asset.Size != 1<<30 || res.BytesSent != 1<<30 {
			t.Fatalf("result %+v", res)
		}
		got, n := s.download(t, res.Asset.ID)
		if got != sum || n != 1<<30 {
			t.Fatalf("download: %s %d", got, n)
		}
		t.Logf("1 GiB with %d workers of %d MiB chunks: %.0f MB/s", res.Workers, res.Asset.Size/int64(res.ChunksTotal)>>20, float64(res.Asset.Size)/1e6/res.Duration.Seconds())
		if res.Method != engine.MethodPipelined || res.Index != engine.IndexMiss {
			t.Errorf("first upload by %q, index %q", res.Method, res.Index)
		}
		// Again: the local index knows the file, the server holds it;
		// nothing is sent.
		again, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 32, JournalDir: t.TempDir(), Index: ix})
		if err != nil || !again.Deduplicated || again.BytesSent != 0 || again.DedupAt != engine.DedupAtOpen {
			t.Fatalf("second upload: %+v %v", again, err)
		}
		// Without the index: sent, and found at completion.
		third, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 32, JournalDir: t.TempDir()})
		if err != nil || !third.Deduplicated || third.DedupAt != engine.DedupAtComplete || third.Asset.Hash != sum {
			t.Fatalf("third upload: %+v %v", third, err)
		}
	})
}

// runChild starts an upload in a child process.
func runChild(t testing.TB, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "JETTY_E2E_CHILD=1"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	return cmd
}

// TestKillClientResume: kill -9 the client at random points ten times,
// resuming each time; the object is identical and each interruption costs
// at most workers × chunk size of bytes sent again.
func TestKillClientResume(t *testing.T) {
	const (
		size    = 256 << 20
		workers = 8
		chunk   = 8 << 20
		kills   = 10
	)
	path, sum := writeFile(t, 2, size)
	deployments(t, func(t *testing.T, s *server) {
		proxy := newCountingProxy(t, s.url)
		journal := t.TempDir()
		env := []string{"JETTY_E2E_SERVER=" + proxy.URL, "JETTY_E2E_KEY=" + s.key, "JETTY_E2E_SECRET=" + s.secret,
			"JETTY_E2E_PATH=" + path, "JETTY_E2E_JOURNAL=" + journal,
			fmt.Sprintf("JETTY_E2E_WORKERS=%d", workers), fmt.Sprintf("JETTY_E2E_CHUNK=%d", chunk),
			// 32 MiB/s: ten kills within 0.6 s each cannot finish the file.
			fmt.Sprintf("JETTY_E2E_BWLIMIT=%d", 32<<20)}
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		killed := 0
		var worst int64
		for killed < kills {
			sid := journalSession(t, journal, proxy.URL, path)
			sentBefore, storedBefore := proxy.chunkBytes.Load(), s.storedBytes(t, sum, size, sid)
			cmd := runChild(t, env...)
			var out strings.Builder
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			delay := time.Duration(100+rng.IntN(500)) * time.Millisecond
			select {
			case err := <-done:
				t.Fatalf("run %d finished before its kill at %v (err %v): the file is too small for this machine's speed", killed+1, delay, err)
			case <-time.After(delay):
				cmd.Process.Kill()
				<-done
				killed++
			}
			// What this interruption wasted: bytes sent that are not stored.
			if sid == "" {
				sid = journalSession(t, journal, proxy.URL, path)
			}
			wasted := (proxy.chunkBytes.Load() - sentBefore) - (s.storedBytes(t, sum, size, sid) - storedBefore)
			worst = max(worst, wasted)
			t.Logf("kill %d after %v: %.1f MiB sent and lost", killed, delay, float64(wasted)/(1<<20))
		}
		// The last run finishes, at full speed.
		cmd := runChild(t, append(env, "JETTY_E2E_BWLIMIT=0")...)
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("final run: %v", err)
		}
		var res engine.Result
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
			t.Fatalf("final result %q: %v", out.String(), err)
		}
		if res.Asset.Hash != sum {
			t.Fatalf("final asset hash %s, want %s", res.Asset.Hash, sum)
		}
		got, n := s.download(t, res.Asset.ID)
		if got != sum || n != size {
			t.Fatalf("download: %s %d", got, n)
		}
		sent := proxy.chunkBytes.Load()
		t.Logf("%d kills: %.1f MiB of chunk bodies sent for a %d MiB file, %.1f MiB sent again per interruption on average, %.1f MiB at worst (bound: %d workers × %d MiB = %d MiB)",
			kills, float64(sent)/(1<<20), size>>20, float64(sent-size)/kills/(1<<20), float64(worst)/(1<<20), workers, chunk>>20, workers*chunk>>20)
		if worst > workers*chunk {
			t.Fatalf("an interruption cost %d bytes sent again, more than workers × chunk size (%d)", worst, workers*chunk)
		}
		// The end state of ten interrupted runs and a finished one: the
		// asset listed and counted once, nothing reserved, no multipart
		// upload or temporary file left.
		b := backendOf(s)
		b.quiesce(t)
		b.checkCompleted(t, sum, size, res.Asset.ID, []content{{sum, size}})
		if acct := b.account(t); acct.StorageReservedBytes != 0 {
			t.Fatalf("%d bytes still reserved", acct.StorageReservedBytes)
		}
		if ups := b.uploads(t); len(ups) != 0 {
			t.Fatalf("multipart uploads left: %v", ups)
		}
	})
}
