package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/keychain"
)

// hangingKeyring never answers.
type hangingKeyring struct{}

func (hangingKeyring) Get(string, string) (string, error) { select {} }
func (hangingKeyring) Set(string, string, string) error   { select {} }
func (hangingKeyring) Delete(string, string) error        { select {} }

// fakePrompter answers prompts and records how each was asked.
type fakePrompter struct {
	answers []string
	asked   []string
}

func (p *fakePrompter) next(kind, prompt string) (string, error) {
	p.asked = append(p.asked, kind+" "+prompt)
	if len(p.answers) == 0 {
		return "", errors.New("no more answers")
	}
	a := p.answers[0]
	p.answers = p.answers[1:]
	return a, nil
}
func (p *fakePrompter) Input(prompt string) (string, error)    { return p.next("input", prompt) }
func (p *fakePrompter) Password(prompt string) (string, error) { return p.next("password", prompt) }

// authEnv is a test's account, store and streams.
type authEnv struct {
	t      *testing.T
	srv    string
	key    string
	secret string
	env    map[string]string
	store  *keychain.Store
	kr     *keychain.Memory
}

func newAuthEnv(t *testing.T, user string) *authEnv {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, user, "pro")
	kr := keychain.NewMemory()
	return &authEnv{t: t, srv: srv, key: key, secret: secret, env: map[string]string{}, kr: kr,
		store: &keychain.Store{Keyring: kr, Dir: filepath.Join(t.TempDir(), "jetty")}}
}

type result struct {
	out, err string
	code     int
}

// run builds one command with mk, wires the test's store (and prompter,
// and TTY state), runs it with args and stdin.
func (e *authEnv) run(mk func(*Factory) *cobra.Command, tty bool, stdin string, args ...string) result {
	e.t.Helper()
	io, in, out, errOut := iostreams.Test()
	io.StdinTTY, io.StdoutTTY, io.StderrTTY = tty, tty, tty
	in.WriteString(stdin)
	e.store.Warn = errOut
	f := &Factory{IO: io, Getenv: func(k string) string { return e.env[k] }, Credentials: func() CredentialStore { return e.store }}
	cmd := mk(f)
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	r := result{out: out.String(), err: errOut.String()}
	if err != nil {
		r.code = ExitCodeFor(err)
		r.err += "jetty: " + err.Error() + "\n"
	}
	return r
}

func (e *authEnv) login(p Prompter) func(*Factory) *cobra.Command {
	return func(f *Factory) *cobra.Command {
		return NewCmdLogin(f, func(o *LoginOptions) error {
			if p != nil {
				o.Prompter = p
			}
			return loginRun(context.Background(), o)
		})
	}
}

func (e *authEnv) logout(f *Factory) *cobra.Command {
	return NewCmdLogout(f, func(o *LogoutOptions) error { return logoutRun(o) })
}

func whoamiCmd(f *Factory) *cobra.Command { return NewCmdWhoami(f, nil) }

func TestLoginWhoamiLogoutKeychain(t *testing.T) {
	e := newAuthEnv(t, "usr_login")

	r := e.run(e.login(nil), false, e.key+":"+e.secret+"\n", "--server", e.srv+"/", "--with-token")
	if r.code != 0 || !strings.Contains(r.out, "Logged in to "+e.srv+" as usr_login@example.com (tier pro); credentials stored in the OS keychain") {
		t.Fatalf("login: %d\n%s\n%s", r.code, r.out, r.err)
	}
	if r.err != "" {
		t.Fatalf("login warned: %q", r.err)
	}
	if v, _ := e.kr.Get("jetty", e.srv); v != e.key+":"+e.secret {
		t.Fatalf("keychain holds %q", v)
	}
	if _, err := os.Stat(filepath.Join(e.store.Dir, "credentials.json")); !os.IsNotExist(err) {
		t.Fatalf("credentials.json written: %v", err)
	}

	r = e.run(whoamiCmd, false, "")
	for _, want := range []string{"usr_login", "usr_login@example.com", "pro (active)", e.srv + " (from last login)", "the OS keychain"} {
		if r.code != 0 || !strings.Contains(r.out, want) {
			t.Fatalf("whoami: %d, want %q in\n%s%s", r.code, want, r.out, r.err)
		}
	}
	r = e.run(whoamiCmd, false, "", "--json", "--server", e.srv)
	var j map[string]any
	if err := json.Unmarshal([]byte(r.out), &j); err != nil || j["agentcache_user_id"] != "usr_login" || j["server"] != e.srv || j["server_source"] != "flag" || j["credentials_source"] != "keychain" || j["tier"] != "pro" {
		t.Fatalf("whoami --json: %v\n%s", err, r.out)
	}

	// The environment wins over the keychain.
	other, otherSecret := testenv.Provision(t, e.srv, cmdSecret, "usr_env", "free")
	e.env = map[string]string{"JETTY_SERVER": e.srv, "JETTY_API_KEY": other, "JETTY_API_SECRET": otherSecret}
	r = e.run(whoamiCmd, false, "", "--json")
	json.Unmarshal([]byte(r.out), &j)
	if j["agentcache_user_id"] != "usr_env" || j["credentials_source"] != "environment" || j["server_source"] != "environment" {
		t.Fatalf("whoami with env: %s", r.out)
	}
	e.env = map[string]string{}

	r = e.run(e.logout, false, "")
	if r.code != 0 || !strings.Contains(r.out, "Logged out of "+e.srv+": removed the credentials from the OS keychain") {
		t.Fatalf("logout: %d %q %q", r.code, r.out, r.err)
	}
	if e.kr.Len() != 0 {
		t.Fatalf("keychain not emptied: %d secrets left", e.kr.Len())
	}
	r = e.run(whoamiCmd, false, "")
	if r.code != ExitAuth || !strings.Contains(r.err, "jetty login") {
		t.Fatalf("whoami after logout: %d %q", r.code, r.err)
	}
	r = e.run(e.logout, false, "")
	if r.code != 0 || !strings.Contains(r.out, "Not logged in") {
		t.Fatalf("second logout: %d %q", r.code, r.out)
	}
}

func TestLoginRefusesBadCredentialsBeforeStoring(t *testing.T) {
	e := newAuthEnv(t, "usr_bad")
	wrong := otherSecret(e.secret)
	if e.secret[len(e.secret)-1] == 'A' {
		wrong = e.secret[:len(e.secret)-1] + "B"
	}
	r := e.run(e.login(nil), false, e.key+":"+wrong, "--server", e.srv, "--with-token")
	if r.code != ExitAuth || !strings.Contains(r.err, "refused") || !strings.Contains(r.err, "Nothing was stored") {
		t.Fatalf("wrong secret: %d %q", r.code, r.err)
	}
	// A mistyped key is caught by its checksum, before any request (the
	// server URL is unreachable).
	typo := e.key[:len(e.key)-1] + "0"
	if e.key[len(e.key)-1] == '0' {
		typo = e.key[:len(e.key)-1] + "1"
	}
	r = e.run(e.login(nil), false, typo+":"+e.secret, "--server", "http://127.0.0.1:1", "--with-token")
	if r.code != ExitAuth || !strings.Contains(r.err, "not a valid API key") {
		t.Fatalf("typo in key: %d %q", r.code, r.err)
	}
	if e.kr.Len() != 0 {
		t.Fatalf("stored after a refusal: %d secrets", e.kr.Len())
	}
	if cur, _ := e.store.Current(); cur != "" {
		t.Fatalf("current server set after a refusal: %q", cur)
	}
}

func TestLoginUsageErrors(t *testing.T) {
	e := &authEnv{t: t, env: map[string]string{}, kr: keychain.NewMemory()}
	e.store = &keychain.Store{Keyring: e.kr, Dir: t.TempDir()}
	cases := []struct {
		tty   bool
		stdin string
		args  []string
		want  string
	}{
		{false, "", []string{"--with-token"}, "--server is required"},
		{false, "", []string{"--server", "jetty.example.com", "--with-token"}, "not a server URL"},
		{false, "", []string{"--server", "https://h"}, "--with-token"}, // no TTY, no --with-token
		{false, "", []string{"--server", "https://h", "--with-token"}, "KEY:SECRET"},
		{false, "a\nb\nc\n", []string{"--server", "https://h", "--with-token"}, "KEY:SECRET"},
		{false, "justakey\n", []string{"--server", "https://h", "--with-token"}, "KEY:SECRET"},
		{false, "k:s", []string{"--server", "https://h", "--with-token", "extra"}, "takes no arguments"},
	}
	for _, c := range cases {
		r := e.run(e.login(nil), c.tty, c.stdin, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.err, c.want) {
			t.Errorf("login %v: exit %d %q (want 2 and %q)", c.args, r.code, r.err, c.want)
		}
	}
}

func TestLoginTwoLineTokenAndJettyServer(t *testing.T) {
	e := newAuthEnv(t, "usr_two")
	e.env["JETTY_SERVER"] = e.srv
	r := e.run(e.login(nil), false, "\n"+e.key+"\n"+e.secret+"\n", "--with-token")
	if r.code != 0 || !strings.Contains(r.out, "Logged in to "+e.srv) {
		t.Fatalf("login: %d %q %q", r.code, r.out, r.err)
	}
}

func TestLoginPromptsOnTTY(t *testing.T) {
	e := newAuthEnv(t, "usr_tty")
	p := &fakePrompter{answers: []string{" " + e.key + " ", e.secret}}
	r := e.run(e.login(p), true, "", "--server", e.srv)
	if r.code != 0 || !strings.Contains(r.out, "Logged in to") {
		t.Fatalf("login: %d %q %q", r.code, r.out, r.err)
	}
	if len(p.asked) != 2 || p.asked[0] != "input API key: " || p.asked[1] != "password API secret: " {
		t.Fatalf("prompts: %q (the secret must be read without echo)", p.asked)
	}
	if strings.Contains(r.out+r.err, e.secret) {
		t.Fatal("the secret was printed")
	}
	// --with-token wins over the TTY.
	r = e.run(e.login(&fakePrompter{}), true, e.key+":"+e.secret, "--server", e.srv, "--with-token")
	if r.code != 0 {
		t.Fatalf("login --with-token on a TTY: %d %q", r.code, r.err)
	}
}

func TestTermPrompterWithoutTerminal(t *testing.T) {
	io, in, _, errOut := iostreams.Test()
	in.WriteString("jt_key\r\njts_secret")
	p := newTermPrompter(io)
	k, err1 := p.Input("API key: ")
	s, err2 := p.Password("API secret: ")
	if k != "jt_key" || s != "jts_secret" || err1 != nil || err2 != nil || errOut.String() != "API key: API secret: " {
		t.Fatalf("%q %q %v %v %q", k, s, err1, err2, errOut.String())
	}
}

// TestLoginHangingKeychain: a keychain that never answers costs one
// timeout; login then stores the file with a warning and says so.
func TestLoginHangingKeychain(t *testing.T) {
	e := newAuthEnv(t, "usr_hang")
	e.store.Keyring = keychain.WithTimeout(hangingKeyring{}, 300*time.Millisecond)
	start := time.Now()
	r := e.run(e.login(nil), false, e.key+":"+e.secret, "--server", e.srv, "--with-token")
	path := filepath.Join(e.store.Dir, "credentials.json")
	if r.code != 0 || !strings.Contains(r.out, "credentials stored in the plain file "+path) {
		t.Fatalf("login: %d %q %q", r.code, r.out, r.err)
	}
	if !strings.Contains(r.err, "warning: OS keychain unavailable: no answer from the keychain within 300ms") || !strings.Contains(r.err, path) {
		t.Fatalf("warning: %q", r.err)
	}
	r = e.run(whoamiCmd, false, "")
	if r.code != 0 || !strings.Contains(r.out, "the plain file "+path) {
		t.Fatalf("whoami: %d %q %q", r.code, r.out, r.err)
	}
	r = e.run(e.logout, false, "")
	if r.code != 0 || !strings.Contains(r.out, "removed the credentials from the plain file "+path) {
		t.Fatalf("logout: %d %q %q", r.code, r.out, r.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

// TestLoginInsecureStorage: --insecure-storage writes the 0600 file with
// a warning and never the keychain.
func TestLoginInsecureStorage(t *testing.T) {
	e := newAuthEnv(t, "usr_insecure")
	r := e.run(e.login(nil), false, e.key+":"+e.secret, "--server", e.srv, "--with-token", "--insecure-storage")
	path := filepath.Join(e.store.Dir, "credentials.json")
	if r.code != 0 || !strings.Contains(r.out, "the plain file "+path) || !strings.Contains(r.err, "--insecure-storage") {
		t.Fatalf("login: %d %q %q", r.code, r.out, r.err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials.json: %v %v", st, err)
	}
	if e.kr.Len() != 0 {
		t.Fatal("the keychain was written")
	}
}

// TestLoginWithoutSessionBus: with no D-Bus session bus at all, the real
// system store (go-keyring) fails fast and login falls back to the plain
// file with a warning, well within the timeout; it never hangs.
func TestLoginWithoutSessionBus(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_nobus", "pro")
	home := t.TempDir()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(home, "no-bus"))
	t.Setenv("DISPLAY", "") // no X11 autolaunch of a bus
	env := map[string]string{"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, "config")}

	io, in, out, errOut := iostreams.Test()
	in.WriteString(key + ":" + secret + "\n")
	f := newFactory(io, func(k string) string { return env[k] })
	cmd := NewCmdLogin(f, nil)
	cmd.SetArgs([]string{"--server", srv, "--with-token"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- cmd.ExecuteContext(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("login: %v\n%s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("login without a session bus did not finish within 10s")
	}
	path := filepath.Join(home, "config", "jetty", "credentials.json")
	if !strings.Contains(out.String(), "credentials stored in the plain file "+path) {
		t.Fatalf("stdout: %q", out.String())
	}
	if w := errOut.String(); !strings.Contains(w, "warning: no OS keychain is available: the D-Bus session bus") || !strings.Contains(w, path) {
		t.Fatalf("stderr: %q", w)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials.json: %v %v", st, err)
	}
	t.Logf("login without a session bus took %s", time.Since(start).Round(time.Millisecond))

	// whoami through main's wiring finds them in the file.
	io2, _, out2, _ := iostreams.Test()
	f2 := newFactory(io2, f.Getenv)
	w := NewCmdWhoami(f2, nil)
	w.SetArgs(nil)
	if err := w.ExecuteContext(context.Background()); err != nil || !strings.Contains(out2.String(), "the plain file "+path) {
		t.Fatalf("whoami: %v %q", err, out2.String())
	}
}

// TestRealSecretService logs in through the real command and the real OS
// keychain (gnome-keyring under a private D-Bus session), then checks the
// secret with secret-tool and that logout removes it. It runs only under
// scripts/keyring-test.sh (make test-keyring), which sets
// JETTY_SECRET_SERVICE=1: it must never touch a developer's own keychain.
func TestRealSecretService(t *testing.T) {
	if os.Getenv("JETTY_SECRET_SERVICE") != "1" {
		t.Skip("needs a Secret Service: run scripts/keyring-test.sh (make test-keyring)")
	}
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_keyring", "pro")
	home := t.TempDir()
	env := map[string]string{"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, "config")}
	runCmd := func(mk func(*Factory, *iostreams.IOStreams) *cobra.Command, stdin string, args ...string) (string, string) {
		t.Helper()
		io, in, out, errOut := iostreams.Test()
		in.WriteString(stdin)
		f := newFactory(io, func(k string) string { return env[k] })
		cmd := mk(f, io)
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%s: %v\n%s", cmd.Name(), err, errOut.String())
		}
		return out.String(), errOut.String()
	}
	lookup := func() (string, error) {
		out, err := exec.Command("secret-tool", "lookup", "service", "jetty", "username", srv).Output()
		return string(out), err
	}

	out, errOut := runCmd(func(f *Factory, _ *iostreams.IOStreams) *cobra.Command { return NewCmdLogin(f, nil) },
		key+":"+secret+"\n", "--server", srv, "--with-token")
	if !strings.Contains(out, "credentials stored in the OS keychain") || errOut != "" {
		t.Fatalf("login: %q %q", out, errOut)
	}
	if v, err := lookup(); err != nil || v != key+":"+secret {
		t.Fatalf("secret-tool lookup: %q %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(home, "config", "jetty", "credentials.json")); !os.IsNotExist(err) {
		t.Fatalf("credentials.json written with a working keychain: %v", err)
	}
	out, _ = runCmd(func(f *Factory, _ *iostreams.IOStreams) *cobra.Command { return NewCmdWhoami(f, nil) }, "")
	if !strings.Contains(out, "usr_keyring") || !strings.Contains(out, "the OS keychain") {
		t.Fatalf("whoami: %q", out)
	}
	out, _ = runCmd(func(f *Factory, _ *iostreams.IOStreams) *cobra.Command { return NewCmdLogout(f, nil) }, "")
	if !strings.Contains(out, "removed the credentials from the OS keychain") {
		t.Fatalf("logout: %q", out)
	}
	if v, err := lookup(); err == nil || v != "" {
		t.Fatalf("secret-tool still finds %q after logout (%v)", v, err)
	}
}

// TestLoginSecretServiceNotAnswering is the headless hang: a session bus
// on which something owns org.freedesktop.secrets but never answers (as
// when a keyring daemon is stuck waiting for a prompt nobody sees).
// Without the keychain timeout, go-keyring would wait for D-Bus's own
// reply timeout (25 s) or forever; login must instead give up after
// keychain.DefaultTimeout and store the file with a warning. It starts
// its own dbus-daemon (package dbus), so it never touches the user's bus.
func TestLoginSecretServiceNotAnswering(t *testing.T) {
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		if os.Getenv("JETTY_SECRET_SERVICE") == "1" {
			t.Fatal("dbus-daemon not found")
		}
		t.Skip("dbus-daemon not installed (scripts/keyring-test.sh installs it)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus")
	d := exec.Command(daemon, "--session", "--nofork", "--nopidfile", "--address=unix:path="+sock)
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	addr := "unix:path=" + sock
	var conn *dbus.Conn
	for i := 0; ; i++ {
		if conn, err = dbus.Connect(addr); err == nil {
			break
		}
		if i > 100 {
			t.Fatalf("private bus: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { conn.Close() })
	// Own the Secret Service name and never answer: method calls to it
	// simply queue on this connection.
	if reply, err := conn.RequestName("org.freedesktop.secrets", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}
	conn.Eavesdrop(make(chan *dbus.Message, 100)) // swallow the calls instead of replying
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)

	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_hung_bus", "pro")
	home := t.TempDir()
	env := map[string]string{"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, "config")}
	io, in, out, errOut := iostreams.Test()
	in.WriteString(key + ":" + secret + "\n")
	f := newFactory(io, func(k string) string { return env[k] })
	cmd := NewCmdLogin(f, nil)
	cmd.SetArgs([]string{"--server", srv, "--with-token"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- cmd.ExecuteContext(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("login: %v\n%s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("login against a Secret Service that never answers did not finish within 10s")
	}
	took := time.Since(start)
	path := filepath.Join(home, "config", "jetty", "credentials.json")
	if !strings.Contains(out.String(), "credentials stored in the plain file "+path) {
		t.Fatalf("stdout: %q\nstderr: %q", out.String(), errOut.String())
	}
	if w := errOut.String(); !strings.Contains(w, "no answer from the keychain within 3s") || !strings.Contains(w, path) {
		t.Fatalf("stderr: %q", w)
	}
	if took < keychain.DefaultTimeout {
		t.Fatalf("took %s: the keychain was not actually waited for", took)
	}
	t.Logf("login gave up on the keychain and used the file after %s", took.Round(time.Millisecond))
}

// countingHangingKeyring never answers and counts who asked.
type countingHangingKeyring struct{ calls *atomic.Int64 }

func (k countingHangingKeyring) Get(string, string) (string, error) { k.calls.Add(1); select {} }
func (k countingHangingKeyring) Set(string, string, string) error   { k.calls.Add(1); select {} }
func (k countingHangingKeyring) Delete(string, string) error        { k.calls.Add(1); select {} }

// TestEnvTokenBypassesKeychain: with JETTY_API_KEY/JETTY_API_SECRET set,
// commands never touch the keychain, so a locked or hung Secret Service
// cannot slow a CI job down, not even by the keychain timeout.
func TestEnvTokenBypassesKeychain(t *testing.T) {
	e := newAuthEnv(t, "usr_envonly")
	var calls atomic.Int64
	e.store.Keyring = keychain.WithTimeout(countingHangingKeyring{&calls}, 30*time.Second)
	e.env = map[string]string{"JETTY_SERVER": e.srv, "JETTY_API_KEY": e.key, "JETTY_API_SECRET": e.secret}
	quotaCmd := func(f *Factory) *cobra.Command { return NewCmdQuota(f, nil) }
	lsCmd := func(f *Factory) *cobra.Command { return NewCmdLs(f, nil) }
	for _, mk := range []func(*Factory) *cobra.Command{whoamiCmd, quotaCmd, lsCmd} {
		r := e.run(mk, false, "")
		if r.code != 0 {
			t.Fatalf("with env credentials: exit %d, %q %q", r.code, r.out, r.err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d keychain calls with credentials in the environment, want 0", n)
	}
}
