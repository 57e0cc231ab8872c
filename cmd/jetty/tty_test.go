package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"

	"github.com/jettythunder/jetty/internal/iostreams"
)

// TestProgressBarOnRealTTY builds jetty, runs `jetty upload` inside a
// detached tmux session (a real terminal) and reads the screen: a bar
// with a percentage and a rate must be drawn while the upload runs.
func TestProgressBarOnRealTTY(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		testenv.Unavailable(t, "tmux (apt-get install tmux; `make test` installs it)", err)
	}
	ios, _, _, _ := iostreams.Test()
	if c, _, err := NewCmdRoot(&Factory{IO: ios, Getenv: os.Getenv}).Find([]string{"upload"}); err != nil || c.Name() != "upload" {
		t.Skip("\n*** `jetty upload` is not registered in root.go yet\n")
	}
	srv := testServer(t)
	env := account(t, srv, "usr_tmux", "enterprise")
	dir := t.TempDir()
	bin := filepath.Join(dir, "jetty")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	file, _ := randomFile(t, dir, "tty.bin", 9, 48<<20)

	script := filepath.Join(dir, "run.sh")
	var sb strings.Builder
	sb.WriteString("#!/bin/sh\n")
	for k, v := range env {
		fmt.Fprintf(&sb, "export %s='%s'\n", k, v)
	}
	fmt.Fprintf(&sb, "'%s' upload '%s' --bwlimit 12MiB --workers 2\necho \"EXIT=$?\"\nsleep 60\n", bin, file)
	if err := os.WriteFile(script, []byte(sb.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := fmt.Sprintf("jetty-test-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tm := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, tmux, append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := tm("new-session", "-d", "-s", "jt", "-x", "150", "-y", "30", script); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(tmux, "-L", sock, "kill-server").Run() })

	var screen string
	sawBar := ""

	for !strings.Contains(screen, "EXIT=") {
		if ctx.Err() != nil {
			t.Fatalf("the upload did not finish in time; screen:\n%s", screen)
		}
		time.Sleep(200 * time.Millisecond)
		screen, err = tm("capture-pane", "-p", "-t", "jt")
		if err != nil {
			t.Fatalf("capture-pane: %v", err)
		}
		for _, line := range strings.Split(screen, "\n") {
			if strings.Contains(line, "%") && strings.Contains(line, "|") && strings.Contains(line, "MiB") && !strings.Contains(line, "100%") {
				sawBar = strings.TrimSpace(line)
			}
		}
	}
	if sawBar == "" {
		t.Fatalf("no progress bar was seen while the upload ran; last screen:\n%s", screen)
	}
	if !strings.Contains(screen, "EXIT=0") || !strings.Contains(screen, "uploaded") {
		t.Fatalf("upload failed on the terminal:\n%s", screen)
	}
	t.Logf("bar: %s\nfinal screen:\n%s", sawBar, strings.TrimRight(screen, "\n"))
}
