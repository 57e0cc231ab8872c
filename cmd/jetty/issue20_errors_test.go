package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/keychain"
)

// TestVersionFlag: `jetty --version` prints what `jetty version` prints
// (gh, rclone and aws accept it), through the binary.
func TestVersionFlag(t *testing.T) {
	c := newCLI(t)
	want := c.must("", "version").out
	for _, flag := range []string{"--version", "-v"} {
		r := c.must("", flag)
		if r.out != want || r.err != "" {
			t.Fatalf("jetty %s: stdout %q stderr %q, want %q", flag, r.out, r.err, want)
		}
	}
}

// TestCompletionHelpSaysWhatEachShellNeeds: bash completion does not work
// without the bash-completion package; the help says so, and what zsh,
// fish and powershell need.
func TestCompletionHelpSaysWhatEachShellNeeds(t *testing.T) {
	r := newCLI(t).must("", "completion", "--help")
	for _, want := range []string{
		"bash-completion", "apt install bash-completion",
		"~/.local/share/bash-completion/completions/jetty", "/usr/share/bash-completion/completions/jetty",
		"compinit", "fpath", "~/.config/fish/completions/jetty.fish", "$PROFILE",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("completion --help lacks %q:\n%s", want, r.out)
		}
	}
}

// withoutEnv returns c with the variables named removed from its
// environment and extra added.
func withoutEnv(c *cli, names []string, extra ...string) *cli {
	var env []string
	for _, kv := range c.env {
		drop := false
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				drop = true
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	c.env = append(env, extra...)
	return c
}

// TestNoKeychainSaidPlainly: with no D-Bus session bus (no
// DBUS_SESSION_BUS_ADDRESS, no bus under XDG_RUNTIME_DIR, no dbus-launch
// on PATH), login and logout say once, in plain words, that there is no
// keychain and the credentials go to the 0600 file: no raw exec error.
func TestNoKeychainSaidPlainly(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_nobus", "pro")
	c := withoutEnv(newCLI(t), []string{"DBUS_SESSION_BUS_ADDRESS", "PATH"},
		"PATH="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir())
	r := c.must(key+":"+secret+"\n", "login", "--server", srv, "--with-token")
	for _, bad := range []string{"exec:", "dbus-launch", "$PATH"} {
		if strings.Contains(r.err, bad) {
			t.Fatalf("login stderr has %q:\n%s", bad, r.err)
		}
	}
	if n := strings.Count(r.err, "no OS keychain is available"); n != 1 || !strings.Contains(r.err, "mode 0600") {
		t.Fatalf("login should say once that there is no keychain and where the credentials went:\n%s", r.err)
	}
	cred := filepath.Join(cliConfig(c), "jetty", "credentials.json")
	if st, err := os.Stat(cred); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	c.must("", "whoami")
	r = c.must("", "logout")
	if strings.Contains(r.err, "exec:") || strings.Contains(r.err, "dbus-launch") || strings.Count(r.err, "no OS keychain is available") > 1 {
		t.Fatalf("logout stderr:\n%s", r.err)
	}
	if !strings.Contains(r.out, "Logged out") {
		t.Fatalf("logout stdout: %s", r.out)
	}
}

// cliConfig is the XDG_CONFIG_HOME of c.
func cliConfig(c *cli) string {
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "XDG_CONFIG_HOME="); ok {
			return v
		}
	}
	return ""
}

// closedURL is the URL of a port nothing listens on (a listener opened,
// then closed).
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// TestServerNotAnsweringSaysWhatToDo: connection refused names the
// server, says it is not answering and what to do (through the binary),
// for every command that talks to it; no "dial tcp".
func TestServerNotAnsweringSaysWhatToDo(t *testing.T) {
	srv := closedURL(t)
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY=jt_test_"+strings.Repeat("a", 32), "JETTY_API_SECRET=jts_"+strings.Repeat("a", 43))
	os.WriteFile(filepath.Join(c.dir, "f.txt"), []byte("hello"), 0o644)
	for _, args := range [][]string{{"quota"}, {"ls"}, {"whoami"}, {"rm", "abc"}, {"download", "abc"}, {"upload", "f.txt", "--no-progress"}} {
		r := c.run("", args...)
		if r.code != ExitFailure {
			t.Errorf("%v: exit %d, want %d\n%s", args, r.code, ExitFailure, r.err)
		}
		for _, want := range []string{"cannot reach " + srv, "not answering", "JETTY_SERVER", "jetty server"} {
			if !strings.Contains(r.err, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, r.err)
			}
		}
		if strings.Contains(r.err, "dial tcp") || strings.Count(r.err, "not answering") != 1 {
			t.Errorf("%v: raw or repeated error:\n%s", args, r.err)
		}
	}
}

// TestNetworkFailureKinds: DNS, plain HTTP to https:// and TLS
// failures each say what happened in plain words and what to do; the
// mapping is reachFailure's alone.
func TestNetworkFailureKinds(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer tlsSrv.Close()
	for _, tc := range []struct {
		server string
		want   []string
	}{
		{"http://no-such-host.invalid", []string{"host name no-such-host.invalid was not found", "misspelt"}},
		{strings.Replace(plain.URL, "http://", "https://", 1), []string{"plain HTTP", "use an http:// URL"}},
		{tlsSrv.URL, []string{"authority this machine does not trust", "SSL_CERT_FILE"}},
	} {
		c := newCLI(t, "JETTY_SERVER="+tc.server, "JETTY_API_KEY=jt_test_"+strings.Repeat("a", 32), "JETTY_API_SECRET=jts_"+strings.Repeat("a", 43))
		r := c.run("", "quota")
		if r.code != ExitFailure {
			t.Errorf("%s: exit %d\n%s", tc.server, r.code, r.err)
		}
		for _, want := range append(tc.want, "cannot reach "+tc.server) {
			if !strings.Contains(r.err, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.server, want, r.err)
			}
		}
		for _, raw := range []string{"dial tcp", "x509:", "lookup ", `Get "`} {
			if strings.Contains(r.err, raw) {
				t.Errorf("%s: raw Go error %q:\n%s", tc.server, raw, r.err)
			}
		}
	}
}

// TestLoginChecksTheServerBeforeAsking: on a terminal, login fails fast
// when the server does not answer, before prompting for anything.
func TestLoginChecksTheServerBeforeAsking(t *testing.T) {
	e := &authEnv{t: t, env: map[string]string{}, kr: keychain.NewMemory()}
	e.store = &keychain.Store{Keyring: e.kr, Dir: t.TempDir()}
	p := &fakePrompter{answers: []string{"jt_test_" + strings.Repeat("a", 32), "jts_" + strings.Repeat("a", 43)}}
	srv := closedURL(t)
	r := e.run(e.login(p), true, "", "--server", srv)
	if r.code != ExitFailure || len(p.asked) != 0 || !strings.Contains(r.err, "cannot reach "+srv) || !strings.Contains(r.err, "not answering") {
		t.Fatalf("login to a server that does not answer: exit %d, asked %v\n%s", r.code, p.asked, r.err)
	}
	if strings.Contains(r.err, "Paste the API key") {
		t.Fatalf("login asked before checking the server:\n%s", r.err)
	}
}

// TestMissingFileSaysNoSuchFile: a path that does not exist is "no such
// file: PATH" with a next step, not Go's "stat PATH: no such file or
// directory".
func TestMissingFileSaysNoSuchFile(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_nofile", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	r := c.run("", "upload", "../work/nope.bin")
	if r.code != ExitFailure || !strings.Contains(r.err, "jetty: no such file: ../work/nope.bin\n") ||
		!strings.Contains(r.err, "relative to the current directory") || strings.Contains(r.err, "stat ") {
		t.Fatalf("upload of a missing file: exit %d\n%s", r.code, r.err)
	}
}

// TestUnknownIDHintOnce: an unknown id or name says "no file named X"
// and the next step once (the server's message and the CLI both added one), for
// download and rm; the noun is "file", not "asset".
func TestUnknownIDHintOnce(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_noid", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	const unknownID = "0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11"
	for _, args := range [][]string{{"download", "no-such-id"}, {"rm", "no-such-id"}, {"download", unknownID}, {"rm", unknownID}} {
		r := c.run("", args...)
		if r.code != ExitFailure || strings.Count(r.err, "jetty ls") != 1 || !strings.Contains(r.err, "no file") || !strings.Contains(r.err, args[1]) || strings.Contains(strings.ToLower(r.err), "asset") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.err)
		}
	}
}

// TestDownloadToStdout: `jetty download ID -o - > f` gives the upload
// byte for byte (several ranges, fetched in parallel, written in order),
// the summary goes to stderr, no file "-" is created; --json with -o -
// is a usage error.
func TestDownloadToStdout(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_stdout", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	src := filepath.Join(c.dir, "src.bin")
	f, _ := os.Create(src)
	f.ReadFrom(testenv.NewRandReader(7, (12<<20)+12345))
	f.Close()
	r := c.must("", "upload", src, "--json")
	var up struct {
		Asset struct{ ID, Hash string }
	}
	if err := json.Unmarshal([]byte(strings.SplitN(r.out, "\n", 2)[0]), &up); err != nil || up.Asset.ID == "" {
		t.Fatalf("upload: %v %s", err, r.out)
	}
	os.Remove(src) // the download must not come from here
	r = c.must("", "download", up.Asset.ID, "-o", "-", "--workers", "4")
	sum := sha256.Sum256([]byte(r.out))
	if hex.EncodeToString(sum[:]) != up.Asset.Hash || len(r.out) != (12<<20)+12345 {
		t.Fatalf("stdout is %d bytes, sha256 %x, want the upload's %s", len(r.out), sum, up.Asset.Hash)
	}
	if !strings.Contains(r.err, "downloaded "+"src.bin to stdout") || !strings.Contains(r.err, "SHA-256 verified") {
		t.Fatalf("stderr lacks the summary:\n%s", r.err)
	}
	if _, err := os.Lstat(filepath.Join(c.dir, "-")); err == nil {
		t.Fatal(`a file named "-" was created`)
	}
	if names, _ := os.ReadDir(c.dir); len(names) != 0 {
		t.Fatalf("left in the working directory: %v", names)
	}
	if r := c.run("", "download", up.Asset.ID, "-o", "-", "--json"); r.code != ExitUsage || r.out != "" || !strings.Contains(r.err, "--json") {
		t.Fatalf("--json with -o -: exit %d stdout %q stderr %q", r.code, r.out, r.err)
	}
	if r := c.must("", "download", up.Asset.ID, "-o", "-", "-q"); r.err != "" || len(r.out) != (12<<20)+12345 {
		t.Fatalf("-q: stderr %q, %d bytes", r.err, len(r.out))
	}
}

// devServer runs `jetty server --dev` (the binary) on dataDir and a free
// port, and returns its banner once printed; the server is stopped with
// Ctrl-C (SIGINT) when the test ends or stop is called.
func devServer(t *testing.T, c *cli, dataDir string) (banner string, stop func()) {
	t.Helper()
	cmd := c.cmd("", "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	var b strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
			go io.Copy(io.Discard, out)
			return b.String(), stop
		}
	}
	t.Fatalf("the dev server ended without its banner:\n%s", b.String())
	return "", stop
}

// TestDevServerKeepsCredentials: two runs of `jetty server --dev` on one
// data directory print the same demo key and secret, which work, and the
// banner says how to log in with jetty at the address it listens on.
func TestDevServerKeepsCredentials(t *testing.T) {
	c := newCLI(t)
	data := t.TempDir()
	banner1, stop1 := devServer(t, c, data)
	key1, secret1 := export(t, banner1, "JETTY_API_KEY"), export(t, banner1, "JETTY_API_SECRET")
	stop1()
	banner2, stop2 := devServer(t, c, data)
	srv := export(t, banner2, "JETTY_SERVER")
	key2, secret2 := export(t, banner2, "JETTY_API_KEY"), export(t, banner2, "JETTY_API_SECRET")
	if key1 != key2 || secret1 != secret2 {
		t.Fatalf("credentials changed across restarts of one data dir: %s → %s", key1, key2)
	}
	for _, want := range []string{"jetty login --server " + srv + "\n", "| jetty login --server " + srv + " --with-token", "JETTY_API_KEY", "JETTY_API_SECRET"} {
		if !strings.Contains(banner2, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner2)
		}
	}
	if st, err := os.Lstat(filepath.Join(data, "dev-credentials.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kept credentials file: %v %v", st, err)
	}
	c.must(key2+":"+secret2+"\n", "login", "--server", srv, "--with-token", "--insecure-storage")
	if r := c.must("", "whoami"); !strings.Contains(r.out, "demo") {
		t.Fatalf("whoami with the kept credentials: %s", r.out)
	}
	// A kept secret that does not verify is replaced, not trusted.
	stop2()
	os.WriteFile(filepath.Join(data, "dev-credentials.json"), []byte(`{"api_key":"`+key2+`","api_secret":"jts_`+strings.Repeat("x", 43)+`"}`), 0o600)
	banner3, _ := devServer(t, c, data)
	key3, secret3 := export(t, banner3, "JETTY_API_KEY"), export(t, banner3, "JETTY_API_SECRET")
	if key3 == key2 || secret3 == secret2 {
		t.Fatal("a kept secret that does not verify was reused")
	}
	c3 := newCLI(t, "JETTY_SERVER="+export(t, banner3, "JETTY_SERVER"), "JETTY_API_KEY="+key3, "JETTY_API_SECRET="+secret3)
	c3.must("", "whoami")
}
