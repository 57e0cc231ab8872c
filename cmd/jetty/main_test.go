package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run the real jetty command in a child process: the
// test binary re-executes itself with JETTY_TEST_MAIN=1 and the jetty
// arguments, so a test can kill -9 a server without building a binary.
func TestMain(m *testing.M) {
	if os.Getenv("JETTY_TEST_MAIN") == "1" {
		os.Exit(run())
	}
	// In-process commands whose test gives no XDG_CACHE_HOME would use
	// the real user's upload index: give them a private one.
	dir, err := os.MkdirTemp("", "jetty-test-index-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("JETTY_INDEX_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// child is a jetty process started by a test.
type child struct {
	cmd *exec.Cmd
	url string
}

// startChild runs `jetty args...` in a child process with env added to the
// environment, waits until its server listens and returns its URL.
func startChild(t testing.TB, env []string, args ...string) *child {
	t.Helper()
	return startChildOpts(t, childOpts{}, env, args...)
}

// childOpts change how startChildOpts runs a child.
type childOpts struct {
	// wrap is a command the child runs under (e.g. prlimit and its
	// arguments, ending in "--").
	wrap []string
	// ready is the log message that carries the child's URL (default
	// "jetty server listening").
	ready string
}

// startChildOpts is startChild with options.
func startChildOpts(t testing.TB, o childOpts, env []string, args ...string) *child {
	t.Helper()
	if o.ready == "" {
		o.ready = "jetty server listening"
	}
	argv := append(append(append([]string{}, o.wrap...), os.Args[0]), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "JETTY_TEST_MAIN=1", "JETTY_LOG_FORMAT=json"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() { c.kill() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			var line struct {
				Msg string `json:"msg"`
				URL string `json:"url"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == o.ready && !sent {
				urls <- line.URL
				sent = true
			}
			if os.Getenv("JETTY_TEST_VERBOSE") != "" {
				fmt.Fprintln(os.Stderr, "child:", sc.Text())
			}
		}
	}()
	select {
	case c.url = <-urls:
	case <-time.After(60 * time.Second):
		t.Fatal("child server did not start within 60s")
	}
	return c
}

// kill ends the child with SIGKILL: no shutdown code runs.
func (c *child) kill() {
	if c.cmd.Process != nil && c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// peakRSS reads the child's peak resident set size in bytes.
func (c *child) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d kB", &kb)
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc status")
}
