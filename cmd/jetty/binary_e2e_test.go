package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
)

// cli runs the jetty binary (this test binary re-executed as jetty) in a
// child process with a private environment.
type cli struct {
	t   *testing.T
	env []string
	dir string
}

type cliResult struct {
	out, err string
	code     int
}

func newCLI(t *testing.T, extra ...string) *cli {
	home := t.TempDir()
	env := []string{
		"JETTY_TEST_MAIN=1",
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"XDG_STATE_HOME=" + filepath.Join(home, "state"),
		"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		"PATH=" + os.Getenv("PATH"),
		// No session bus: the keychain is unavailable, so login must use
		// the file (with --insecure-storage) rather than hang.
		"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(home, "no-bus"),
	}
	return &cli{t: t, env: append(env, extra...), dir: t.TempDir()}
}

func (c *cli) cmd(stdin string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (c *cli) run(stdin string, args ...string) cliResult {
	c.t.Helper()
	cmd := c.cmd(stdin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return cliResult{out: out.String(), err: errb.String(), code: code}
}

func (c *cli) must(stdin string, args ...string) cliResult {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("jetty %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBinaryEndToEnd drives the real command line against a real server
// the way a user and a CI script would.
func TestBinaryEndToEnd(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_bin", "pro")
	c := newCLI(t)

	// Wrong credentials are refused before anything is stored.
	r := c.run(key+":"+otherSecret(secret)+"\n", "login", "--server", srv, "--with-token", "--insecure-storage")
	if r.code != ExitAuth {
		t.Fatalf("login with a wrong secret: exit %d\n%s", r.code, r.err)
	}
	if r := c.run("", "quota"); r.code != ExitAuth || !strings.Contains(r.err, "jetty login") {
		t.Fatalf("quota before login: exit %d %q", r.code, r.err)
	}
	c.must(key+":"+secret+"\n", "login", "--server", srv, "--with-token", "--insecure-storage")
	if r := c.must("", "whoami"); !strings.Contains(r.out, "usr_bin") {
		t.Fatalf("whoami: %q", r.out)
	}

	// A file, a directory, stdin.
	file := filepath.Join(c.dir, "report.bin")
	os.WriteFile(file, bytes.Repeat([]byte("jetty!"), 3<<20), 0o644) // 18 MiB
	r = c.must("", "upload", file, "--json")
	var res struct {
		Asset struct {
			ID, Hash string
			Size     int64
		}
		Deduplicated bool  `json:"deduplicated"`
		BytesSent    int64 `json:"bytes_sent"`
		ChunksTotal  int   `json:"chunks_total"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(r.out, "\n", 2)[0]), &res); err != nil || res.Asset.Hash != fileHash(t, file) || res.ChunksTotal != 3 {
		t.Fatalf("upload --json: %v\n%s", err, r.out)
	}
	dir := filepath.Join(c.dir, "tree")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("beta"), 0o644)
	if r := c.must("", "upload", dir, "--json"); strings.Count(r.out, `"asset"`) != 2 {
		t.Fatalf("directory upload: %s", r.out)
	}
	if r := c.must("from stdin\n", "upload", "-", "--name", "piped.txt", "--json"); !strings.Contains(r.out, `"size": 11`) && !strings.Contains(r.out, `"size":11`) {
		t.Fatalf("stdin upload: %s", r.out)
	}

	// ls, download, rm, quota.
	r = c.must("", "ls")
	for _, name := range []string{"report.bin", "a.txt", "b.txt", "piped.txt"} {
		if !strings.Contains(r.out, name) {
			t.Fatalf("ls lacks %s:\n%s", name, r.out)
		}
	}
	out := filepath.Join(c.dir, "copy.bin")
	r = c.must("", "download", res.Asset.ID, "-o", out)
	if fileHash(t, out) != res.Asset.Hash {
		t.Fatal("downloaded file differs")
	}
	// The summary names the file and stays under 100 columns besides
	// the path given: the id and the hash are in --json.
	if !strings.HasPrefix(r.out, "downloaded report.bin to ") || strings.Contains(r.out, res.Asset.Hash) || strings.Contains(r.out, res.Asset.ID) || len(strings.TrimSpace(r.out))-len(out) >= 100 {
		t.Fatalf("download summary: %q", r.out)
	}
	if r := c.run("", "download", res.Asset.ID, "-o", out); r.code != ExitUsage || !strings.Contains(r.err, "--force") {
		t.Fatalf("download over an existing file: exit %d %q", r.code, r.err)
	}
	c.must("", "rm", res.Asset.ID)
	if r := c.must("", "quota"); !strings.Contains(r.out, "Tier pro") {
		t.Fatalf("quota: %s", r.out)
	}

	// Over quota: a starter account cannot take a 60 MiB file.
	skey, ssecret := testenv.Provision(t, srv, cmdSecret, "usr_small", "starter")
	big := filepath.Join(c.dir, "big.bin")
	os.WriteFile(big, bytes.Repeat([]byte{7}, 60<<20), 0o644)
	cs := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+skey, "JETTY_API_SECRET="+ssecret)
	if r := cs.run("", "upload", big); r.code != ExitQuota || !strings.Contains(r.err, "upgrade") {
		t.Fatalf("over-tier upload: exit %d %q", r.code, r.err)
	}

	// Interrupted, then resumed: the second run sends less than the file.
	huge := filepath.Join(c.dir, "huge.bin")
	f, _ := os.Create(huge)
	f.ReadFrom(testenv.NewRandReader(3, 128<<20))
	f.Close()
	cmd := c.cmd("", "upload", huge, "--bwlimit", "32MiB", "--workers", "4")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the server holds a chunk (not after a fixed time: on
	// a loaded machine hashing alone can take longer).
	if !waitHeld(cliState(c), srv, key, secret, 30*time.Second) {
		t.Fatal("no chunk held within 30s: nothing to interrupt mid-upload")
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("interrupted upload: %v (want exit %d)", err, ExitInterrupted)
	}
	r = c.must("", "upload", huge, "--json")
	var resumed struct {
		BytesSent int64 `json:"bytes_sent"`
		Asset     struct{ Hash string }
	}
	json.Unmarshal([]byte(r.out), &resumed)
	if resumed.BytesSent <= 0 || resumed.BytesSent >= 128<<20 || resumed.Asset.Hash != fileHash(t, huge) {
		t.Fatalf("resumed upload sent %d of %d bytes: %s", resumed.BytesSent, 128<<20, r.out)
	}
	t.Logf("resumed upload sent %.1f MiB of 128 MiB", float64(resumed.BytesSent)/(1<<20))

	c.must("", "logout")
	if r := c.run("", "quota"); r.code != ExitAuth {
		t.Fatalf("quota after logout: exit %d", r.code)
	}
}

// cliState is the XDG_STATE_HOME (where resume journals live) of c.
func cliState(c *cli) string {
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "XDG_STATE_HOME="); ok {
			return v
		}
	}
	return ""
}

// waitHeld waits until the upload session named in a resume journal under
// state holds at least one chunk on the server, and reports whether it
// did within the time given.
func waitHeld(state, srv, key, secret string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		filepath.WalkDir(state, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(path)
			var j struct {
				SessionID string `json:"session_id"`
			}
			if json.Unmarshal(b, &j) != nil || j.SessionID == "" {
				return nil
			}
			req, _ := http.NewRequest("GET", srv+"/api/jetty/sessions/"+j.SessionID, nil)
			req.SetBasicAuth(key, secret)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return nil
			}
			defer res.Body.Close()
			var st struct {
				Held []int `json:"held"`
			}
			if json.NewDecoder(res.Body).Decode(&st) == nil && len(st.Held) > 0 {
				deadline = time.Time{}
			}
			return nil
		})
		if deadline.IsZero() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
