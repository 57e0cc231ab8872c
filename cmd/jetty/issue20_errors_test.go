package main

import (
	"strings"
	"testing"
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
