package keychain

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// blockingKeyring never answers, like a D-Bus call to a Secret Service
// that is not there.
type blockingKeyring struct{ calls chan struct{} }

func (b blockingKeyring) Get(string, string) (string, error) { b.calls <- struct{}{}; select {} }
func (b blockingKeyring) Set(string, string, string) error   { b.calls <- struct{}{}; select {} }
func (b blockingKeyring) Delete(string, string) error        { b.calls <- struct{}{}; select {} }

// brokenKeyring fails at once, like a machine with no session bus.
type brokenKeyring struct{}

var errNoBus = errors.New("dbus: no session bus")

func (brokenKeyring) Get(string, string) (string, error) {
	return "", errors.Join(ErrUnavailable, errNoBus)
}
func (brokenKeyring) Set(string, string, string) error { return errors.Join(ErrUnavailable, errNoBus) }
func (brokenKeyring) Delete(string, string) error      { return errors.Join(ErrUnavailable, errNoBus) }

const (
	srv    = "https://Jetty.Example.com:8443/"
	norm   = "https://jetty.example.com:8443"
	key    = "jt_test_abc"
	secret = "jts_secret"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestNormalizeServer(t *testing.T) {
	for in, want := range map[string]string{
		"https://Jetty.Example.com:8443/": "https://jetty.example.com:8443",
		" http://127.0.0.1:3001 ":         "http://127.0.0.1:3001",
		"https://h/base/?x=1#f":           "https://h/base",
		"HTTPS://H":                       "https://h",
	} {
		if got, err := NormalizeServer(in); err != nil || got != want {
			t.Errorf("NormalizeServer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "jetty.example.com", "ftp://h", "https://", "https://u:p@h"} {
		if _, err := NormalizeServer(bad); err == nil {
			t.Errorf("NormalizeServer(%q) accepted", bad)
		}
	}
}

func TestSaveLoadDeleteKeychain(t *testing.T) {
	kr := NewMemory()
	var warn bytes.Buffer
	dir := filepath.Join(t.TempDir(), "jetty")
	s := &Store{Keyring: kr, Dir: dir, Warn: &warn}

	if _, _, err := s.Load(""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "jetty login --server URL") {
		t.Fatalf("Load before login: %v", err)
	}
	src, err := s.Save(srv, key, secret, false)
	if err != nil || src != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Save: %v %v", src, err)
	}
	if warn.Len() != 0 {
		t.Fatalf("warning with a working keychain: %q", warn.String())
	}
	if v, _ := kr.Get(Service, norm); v != key+":"+secret {
		t.Fatalf("keychain holds %q", v)
	}
	if _, err := os.Stat(filepath.Join(dir, CredentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("credentials.json written with a working keychain: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if strings.Contains(string(b), secret) || !strings.Contains(string(b), norm) {
		t.Fatalf("config.json: %s", b)
	}
	for _, server := range []string{"", norm, "https://jetty.example.com:8443"} {
		c, src, err := s.Load(server)
		if err != nil || src != (Source{Kind: SourceKeychain}) || c != (Credentials{norm, key, secret}) {
			t.Fatalf("Load(%q) = %+v %v %v", server, c, src, err)
		}
	}
	if _, _, err := s.Load("https://other.example.com"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "jetty login --server https://other.example.com") {
		t.Fatalf("Load(other): %v", err)
	}

	removed, err := s.Delete("")
	if err != nil || len(removed) != 1 || removed[0] != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Delete: %v %v", removed, err)
	}
	if cur, _ := s.Current(); cur != "" {
		t.Fatalf("current server after logout: %q", cur)
	}
	if _, _, err := s.Load(norm); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete: %v", err)
	}
	if removed, err := s.Delete(norm); err != nil || len(removed) != 0 {
		t.Fatalf("second Delete: %v %v", removed, err)
	}
}

func TestInsecureStorageUsesFile(t *testing.T) {
	kr := NewMemory()
	kr.Set(Service, norm, "jt_old:jts_old") // an earlier keychain login
	var warn bytes.Buffer
	dir := filepath.Join(t.TempDir(), "cfg", "jetty")
	s := &Store{Keyring: kr, Dir: dir, Warn: &warn}

	src, err := s.Save(srv, key, secret, true)
	path := filepath.Join(dir, CredentialsFile)
	if err != nil || src != (Source{Kind: SourceFile, Path: path}) {
		t.Fatalf("Save: %v %v", src, err)
	}
	if !strings.Contains(warn.String(), path) || !strings.Contains(warn.String(), "--insecure-storage") {
		t.Fatalf("warning: %q", warn.String())
	}
	if _, err := kr.Get(Service, norm); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old keychain entry survived: %v", err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Fatalf("credentials.json mode %o", m)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Fatalf("dir mode %o", m)
	}
	var f credFile
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &f); err != nil || f.Servers[norm].APISecret != secret {
		t.Fatalf("file: %s %v", b, err)
	}
	c, src, err := s.Load("")
	if err != nil || src != (Source{Kind: SourceFile, Path: path}) || c.APIKey != key {
		t.Fatalf("Load: %+v %v %v", c, src, err)
	}

	// A second server in the same file; deleting one keeps the other.
	if _, err := s.Save("http://127.0.0.1:3001", "jt_b", "jts_b", true); err != nil {
		t.Fatal(err)
	}
	if removed, err := s.Delete(norm); err != nil || len(removed) != 1 || removed[0] != (Source{Kind: SourceFile, Path: path}) {
		t.Fatalf("Delete: %v %v", removed, err)
	}
	if c, _, err := s.Load(""); err != nil || c.APIKey != "jt_b" {
		t.Fatalf("Load after deleting the other server: %+v %v", c, err)
	}
	s.Delete("")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("empty credentials.json left behind: %v", err)
	}
	// No temporary files left.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}

// A keychain login removes a plain-text copy from an earlier insecure one.
func TestKeychainLoginRemovesFileCopy(t *testing.T) {
	kr := NewMemory()
	dir := t.TempDir()
	s := &Store{Keyring: kr, Dir: dir}
	if _, err := s.Save(srv, "jt_old", "jts_old", true); err != nil {
		t.Fatal(err)
	}
	if src, err := s.Save(srv, key, secret, false); err != nil || src != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Save: %v %v", src, err)
	}
	if _, err := os.Stat(filepath.Join(dir, CredentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("plain-text copy survived: %v", err)
	}
}

func TestUnavailableKeychainFallsBackToFile(t *testing.T) {
	var warn bytes.Buffer
	dir := t.TempDir()
	s := &Store{Keyring: brokenKeyring{}, Dir: dir, Warn: &warn}
	src, err := s.Save(srv, key, secret, false)
	path := filepath.Join(dir, CredentialsFile)
	if err != nil || src != (Source{Kind: SourceFile, Path: path}) {
		t.Fatalf("Save: %v %v", src, err)
	}
	if w := warn.String(); !strings.Contains(w, "OS keychain unavailable") || !strings.Contains(w, "no session bus") || !strings.Contains(w, path) {
		t.Fatalf("warning: %q", w)
	}
	if c, src, err := s.Load(""); err != nil || c.APISecret != secret || src.Kind != SourceFile {
		t.Fatalf("Load: %+v %v %v", c, src, err)
	}
	warn.Reset()
	removed, err := s.Delete("")
	if err != nil || len(removed) != 1 || !strings.Contains(warn.String(), "nothing was removed") {
		t.Fatalf("Delete: %v %v %q", removed, err, warn.String())
	}
	_, _, err = s.Load(norm)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no session bus") {
		t.Fatalf("Load after Delete: %v", err)
	}
}

// TestHangingKeychainTimesOut: a keychain that never answers costs one
// timeout, then the file is used with a warning; nothing hangs.
func TestHangingKeychainTimesOut(t *testing.T) {
	calls := make(chan struct{}, 10)
	var warn bytes.Buffer
	dir := t.TempDir()
	s := &Store{Keyring: WithTimeout(blockingKeyring{calls}, 200*time.Millisecond), Dir: dir, Warn: &warn}

	start := time.Now()
	src, err := s.Save(srv, key, secret, false)
	if err != nil || src.Kind != SourceFile {
		t.Fatalf("Save: %v %v", src, err)
	}
	if w := warn.String(); !strings.Contains(w, "no answer from the keychain within 200ms") || !strings.Contains(w, filepath.Join(dir, CredentialsFile)) {
		t.Fatalf("warning: %q", w)
	}
	c, src, err := s.Load("")
	if err != nil || c.APISecret != secret || src.Kind != SourceFile {
		t.Fatalf("Load: %+v %v %v", c, src, err)
	}
	if _, err := s.Delete(""); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s: the timeout is not sticky", d)
	}
	if n := len(calls); n != 1 {
		t.Fatalf("%d calls reached the hanging keychain, want 1", n)
	}
	// The error itself.
	_, err = WithTimeout(blockingKeyring{calls}, 10*time.Millisecond).Get(Service, norm)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errTimeout) {
		t.Fatalf("timeout error: %v", err)
	}
}

func TestCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Keyring: NewMemory(), Dir: dir}
	os.WriteFile(filepath.Join(dir, CredentialsFile), []byte("{"), 0o600)
	if _, _, err := s.Load(norm); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("corrupt credentials.json: %v", err)
	}
	s.Keyring.Set(Service, norm, "no-colon")
	if _, _, err := s.Load(norm); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("malformed keychain entry: %v", err)
	}
}

func TestDefaultDir(t *testing.T) {
	env := map[string]string{"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/home/u"}
	if d, _ := DefaultDir(func(k string) string { return env[k] }); d != "/x/cfg/jetty" {
		t.Fatal(d)
	}
	env["XDG_CONFIG_HOME"] = "relative" // ignored, as the XDG spec says
	if d, _ := DefaultDir(func(k string) string { return env[k] }); d != "/home/u/.config/jetty" {
		t.Fatal(d)
	}
}

// TestRealSecretService stores, reads back and deletes through the real
// OS keychain. It runs only under scripts/keyring-test.sh (which starts
// gnome-keyring-daemon in a private D-Bus session and sets
// JETTY_SECRET_SERVICE=1): it must never touch a developer's keychain.
func TestRealSecretService(t *testing.T) {
	if os.Getenv("JETTY_SECRET_SERVICE") != "1" {
		t.Skip("needs a Secret Service: run scripts/keyring-test.sh (make test-keyring)")
	}
	dir := t.TempDir()
	var warn bytes.Buffer
	s := &Store{Keyring: System(), Dir: dir, Warn: &warn}
	server := "http://127.0.0.1:1/" + strings.ReplaceAll(t.Name(), "/", "-")
	src, err := s.Save(server, key, secret, false)
	if err != nil || src != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Save: %v %v (warnings: %s)", src, err, warn.String())
	}
	out, err := exec.Command("secret-tool", "lookup", "service", Service, "username", server).Output()
	if err != nil || string(out) != key+":"+secret {
		t.Fatalf("secret-tool lookup: %q %v", out, err)
	}
	if c, src, err := s.Load(server); err != nil || src != (Source{Kind: SourceKeychain}) || c.APISecret != secret {
		t.Fatalf("Load: %+v %v %v", c, src, err)
	}
	if _, err := os.Stat(filepath.Join(dir, CredentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("credentials.json written: %v", err)
	}
	if removed, err := s.Delete(server); err != nil || len(removed) != 1 || removed[0] != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Delete: %v %v", removed, err)
	}
	if out, err := exec.Command("secret-tool", "lookup", "service", Service, "username", server).Output(); err == nil || len(out) != 0 {
		t.Fatalf("secret-tool still finds %q after Delete (%v)", out, err)
	}
	if warn.Len() != 0 {
		t.Fatalf("warnings: %s", warn.String())
	}
}

func TestDefaultDirPerOS(t *testing.T) {
	for _, c := range []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"linux", map[string]string{"HOME": "/home/u"}, filepath.Join("/home/u", ".config", "jetty")},
		{"linux", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/x"}, filepath.Join("/x", "jetty")},
		{"freebsd", map[string]string{"HOME": "/home/u"}, filepath.Join("/home/u", ".config", "jetty")},
		{"darwin", map[string]string{"HOME": "/Users/u"}, filepath.Join("/Users/u", "Library", "Application Support", "jetty")},
		{"darwin", map[string]string{"HOME": "/Users/u", "XDG_CONFIG_HOME": "/x"}, filepath.Join("/x", "jetty")},
		{"windows", map[string]string{"AppData": `C:\Users\u\AppData\Roaming`, "HOME": "/ignored"}, filepath.Join(`C:\Users\u\AppData\Roaming`, "jetty")},
	} {
		got, err := defaultDir(c.goos, func(k string) string { return c.env[k] })
		if err != nil || got != c.want {
			t.Errorf("%s %v: %q, %v; want %q", c.goos, c.env, got, err, c.want)
		}
	}
	if _, err := defaultDir("windows", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "AppData") {
		t.Errorf("windows without AppData: %v", err)
	}
}

func TestMemoryKeyring(t *testing.T) {
	k := NewMemory()
	if _, err := k.Get("s", "u"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty: %v", err)
	}
	k.Set("s", "u", "v")
	if v, err := k.Get("s", "u"); v != "v" || err != nil || k.Len() != 1 {
		t.Fatalf("Get = %q %v, Len %d", v, err, k.Len())
	}
	if err := k.Delete("s", "u"); err != nil || k.Len() != 0 {
		t.Fatalf("Delete: %v, Len %d", err, k.Len())
	}
	if err := k.Delete("s", "u"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
}
