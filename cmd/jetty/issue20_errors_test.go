package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
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
