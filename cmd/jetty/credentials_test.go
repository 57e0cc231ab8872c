package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/keychain"
)

// countingStore is a factory's lazy credential store over a keychain.Store
// with an in-memory keyring, counting how often it was built.
type countingStore struct {
	store  *keychain.Store
	builds atomic.Int64
}

func newCountingStore(t *testing.T) *countingStore {
	return &countingStore{store: &keychain.Store{Keyring: keychain.NewMemory(), Dir: filepath.Join(t.TempDir(), "jetty")}}
}

// factory is a Factory with env as the environment and the counting
// store, and its stdin.
func (c *countingStore) factory(env map[string]string) (*Factory, *bytes.Buffer) {
	io, in, _, _ := iostreams.Test()
	f := &Factory{IO: io, Getenv: func(k string) string { return env[k] }}
	f.Credentials = lazyStore(func() CredentialStore { c.builds.Add(1); return c.store })
	return f, in
}

// TestServerPrecedence: --server, then JETTY_SERVER, then the server last
// logged in to; login (GivenServer) never takes the last one; the store
// is read only when neither the flag nor the environment names a server.
func TestServerPrecedence(t *testing.T) {
	const (
		flag = "https://flag.example.com"
		env  = "https://env.example.com/"
		last = "https://last.example.com"
	)
	for _, c := range []struct {
		name       string
		flag, env  string
		loggedIn   bool
		want       string
		from       ServerSource
		given      string
		givenFrom  ServerSource
		storeBuilt bool
	}{
		{"all three", flag, env, true, flag, ServerFlag, flag, ServerFlag, false},
		{"flag over env", flag, env, false, flag, ServerFlag, flag, ServerFlag, false},
		{"flag over last login", flag, "", true, flag, ServerFlag, flag, ServerFlag, false},
		{"env over last login", "", env, true, env, ServerEnv, env, ServerEnv, false},
		{"env alone", "", env, false, env, ServerEnv, env, ServerEnv, false},
		{"last login", "", "", true, last, ServerLogin, "", ServerNone, true},
		{"none", "", "", false, "", ServerNone, "", ServerNone, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cs := newCountingStore(t)
			if c.loggedIn {
				if _, err := cs.store.Save(last, "jt_test_k", "jts_s", false); err != nil {
					t.Fatal(err)
				}
			}
			f, _ := cs.factory(map[string]string{"JETTY_SERVER": c.env})

			if s, from := f.GivenServer(c.flag); s != c.given || from != c.givenFrom {
				t.Errorf("GivenServer = %q %v, want %q %v", s, from, c.given, c.givenFrom)
			}
			if n := cs.builds.Load(); n != 0 {
				t.Errorf("GivenServer built the store")
			}
			s, from, err := f.ResolveServer(c.flag)
			if err != nil || s != c.want || from != c.from {
				t.Errorf("ResolveServer = %q %v %v, want %q %v", s, from, err, c.want, c.from)
			}
			if built := cs.builds.Load() == 1; built != c.storeBuilt {
				t.Errorf("store built: %v, want %v", built, c.storeBuilt)
			}
		})
	}

	// What the store cannot read is an error, not "none".
	cs := newCountingStore(t)
	os.MkdirAll(cs.store.Dir, 0o700)
	os.WriteFile(filepath.Join(cs.store.Dir, keychain.ConfigFile), []byte("{"), 0o600)
	f, _ := cs.factory(map[string]string{})
	if _, _, err := f.ResolveServer(""); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("corrupt config.json: %v", err)
	}
	if _, _, err := f.ResolveServer(flag); err != nil {
		t.Errorf("corrupt config.json with --server: %v", err)
	}

	// A Factory without a store: nothing stored.
	bare := &Factory{Getenv: func(string) string { return "" }}
	if s, from, err := bare.ResolveServer(""); s != "" || from != ServerNone || err != nil {
		t.Errorf("bare factory: %q %v %v", s, from, err)
	}

	for s, want := range map[ServerSource]string{ServerFlag: "flag", ServerEnv: "environment", ServerLogin: "login", ServerNone: ""} {
		if got := s.String(); got != want {
			t.Errorf("ServerSource(%d).String() = %q, want %q", s, got, want)
		}
	}
}

// TestClientOrigin: Client's server and credentials follow the one
// precedence and it reports where each came from; environment credentials
// take the server only from the flag or JETTY_SERVER, never the last
// login's, and never build the store. No request is sent.
func TestClientOrigin(t *testing.T) {
	const last = "https://last.example.com"
	cs := newCountingStore(t)
	var warn strings.Builder
	cs.store.Warn = &warn
	cs.store.Keyring = brokenKeyring{} // the plain file, so the source carries a path
	if _, err := cs.store.Save(last+"/", "jt_test_stored", "jts_stored", false); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cs.store.Dir, keychain.CredentialsFile)

	env := map[string]string{}
	f, _ := cs.factory(env)
	c, o, err := f.Client(ClientOptions{})
	if err != nil || c.BaseURL != last || c.APIKey != "jt_test_stored" || o != (Origin{ServerLogin, keychain.Source{Kind: keychain.SourceFile, Path: path}}) {
		t.Fatalf("stored: %+v %+v %v", c, o, err)
	}
	if _, o, err := f.Client(ClientOptions{Server: last}); err != nil || o.Server != ServerFlag {
		t.Fatalf("stored with --server: %+v %v", o, err)
	}
	if _, _, err := f.Client(ClientOptions{Server: "https://other.example.com"}); ExitCodeFor(err) != ExitAuth || !strings.Contains(err.Error(), "jetty login --server https://other.example.com") {
		t.Fatalf("not logged in to --server: %v", err)
	}
	if n := cs.builds.Load(); n != 1 {
		t.Fatalf("store built %d times, want once", n)
	}

	cs2 := newCountingStore(t)
	cs2.store.Dir = cs.store.Dir // logged in, but the environment wins
	f, _ = cs2.factory(map[string]string{"JETTY_SERVER": "https://env.example.com/", "JETTY_API_KEY": "jt_test_env", "JETTY_API_SECRET": "jts_env"})
	c, o, err = f.Client(ClientOptions{})
	if err != nil || c.BaseURL != "https://env.example.com" || c.APIKey != "jt_test_env" || o != (Origin{ServerEnv, keychain.Source{Kind: keychain.SourceEnv}}) {
		t.Fatalf("environment: %+v %+v %v", c, o, err)
	}
	f, _ = cs2.factory(map[string]string{"JETTY_API_KEY": "jt_test_env", "JETTY_API_SECRET": "jts_env"})
	if _, _, err := f.Client(ClientOptions{}); ExitCodeFor(err) != ExitAuth || !strings.Contains(err.Error(), "JETTY_SERVER is not") {
		t.Fatalf("environment credentials, last login's server: %v", err)
	}
	if _, o, err := f.Client(ClientOptions{Server: last}); err != nil || o != (Origin{ServerFlag, keychain.Source{Kind: keychain.SourceEnv}}) {
		t.Fatalf("environment credentials with --server: %+v %v", o, err)
	}
	if n := cs2.builds.Load(); n != 0 {
		t.Fatalf("environment credentials built the store %d times", n)
	}

	// Nothing stored anywhere.
	f, _ = newCountingStore(t).factory(map[string]string{})
	if _, _, err := f.Client(ClientOptions{}); ExitCodeFor(err) != ExitAuth || !errors.Is(err, keychain.ErrNotFound) || !strings.Contains(err.Error(), "jetty login --server URL") {
		t.Fatalf("not logged in: %v", err)
	}
}

// brokenKeyring is a keychain that is never available.
type brokenKeyring struct{}

func (brokenKeyring) Get(string, string) (string, error) { return "", keychain.ErrUnavailable }
func (brokenKeyring) Set(string, string, string) error   { return keychain.ErrUnavailable }
func (brokenKeyring) Delete(string, string) error        { return keychain.ErrUnavailable }

// TestLazyStore: the store is built on the first call only, once, also
// when commands ask for it from several goroutines.
func TestLazyStore(t *testing.T) {
	var builds atomic.Int64
	s := &keychain.Store{Keyring: keychain.NewMemory(), Dir: t.TempDir()}
	get := lazyStore(func() CredentialStore { builds.Add(1); return s })
	if builds.Load() != 0 {
		t.Fatal("built before the first call")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := get(); got != CredentialStore(s) {
				t.Errorf("got %v", got)
			}
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("built %d times", n)
	}
}

// TestNewFactoryStore: main's factory builds the system store (the config
// directory from its environment, warnings on its stderr) once.
func TestNewFactoryStore(t *testing.T) {
	cfg := t.TempDir()
	io, _, _, _ := iostreams.Test()
	f := newFactory(io, func(k string) string { return map[string]string{"XDG_CONFIG_HOME": cfg}[k] })
	s, ok := f.Credentials().(*keychain.Store)
	if !ok || s.Dir != filepath.Join(cfg, "jetty") || s.Warn != io.ErrOut || s.Keyring == nil {
		t.Fatalf("store: %#v", f.Credentials())
	}
	if f.Credentials() != CredentialStore(s) {
		t.Fatal("a second store was built")
	}
}

// TestCommandsWithoutStoredCredentialsNeverBuildTheStore: the store (and
// so the keychain) is built only by a command that needs stored
// credentials, and then once per run however often it is asked for.
func TestCommandsWithoutStoredCredentialsNeverBuildTheStore(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_lazy", "pro")
	cs := newCountingStore(t)
	envCreds := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": key, "JETTY_API_SECRET": secret}
	run := func(env map[string]string, stdin string, args ...string) (int, string) {
		t.Helper()
		f, in := cs.factory(env)
		in.WriteString(stdin)
		root := NewCmdRoot(f)
		root.SetArgs(args)
		if err := root.ExecuteContext(context.Background()); err != nil {
			return ExitCodeFor(err), err.Error()
		}
		return 0, ""
	}
	for _, c := range []struct {
		env  map[string]string
		args []string
		code int
	}{
		{nil, []string{"version"}, 0},
		{nil, []string{"help", "exit-codes"}, 0},
		{nil, []string{"completion", "bash"}, 0},
		{envCreds, []string{"whoami"}, 0},
		{envCreds, []string{"quota"}, 0},
		{envCreds, []string{"ls"}, 0},
		{nil, []string{"login", "--with-token"}, ExitUsage},                             // no server
		{nil, []string{"login", "--server", srv}, ExitUsage},                            // no TTY, no --with-token
		{nil, []string{"login", "--server", srv, "--with-token", "--bogus"}, ExitUsage}, // bad flag
	} {
		if code, msg := run(c.env, "", c.args...); code != c.code {
			t.Fatalf("%v: exit %d (%s), want %d", c.args, code, msg, c.code)
		}
		if n := cs.builds.Load(); n != 0 {
			t.Fatalf("%v built the credential store", c.args)
		}
	}

	// Commands that need it build it once, however often they ask.
	for _, c := range []struct {
		env   map[string]string
		stdin string
		args  []string
	}{
		{nil, key + ":" + secret, []string{"login", "--server", srv, "--with-token"}},
		{nil, "", []string{"whoami"}}, // the last login's server, then its credentials
		{nil, "", []string{"quota", "--json"}},
		{nil, "", []string{"logout"}},
	} {
		cs.builds.Store(0)
		if code, msg := run(c.env, c.stdin, c.args...); code != 0 {
			t.Fatalf("%v: exit %d (%s)", c.args, code, msg)
		}
		if n := cs.builds.Load(); n != 1 {
			t.Fatalf("%v built the store %d times, want 1", c.args, n)
		}
	}
}
