package scripts

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
)

// makeTestRun is one `make test` in a copy of the repository's Makefile and
// scripts/test.sh, every step a stand-in that records its call.
type makeTestRun struct {
	calls  []string // in order: "services", …, "go test -race …", "keyring"
	output string
	failed bool // make exited non-zero
}

// runMakeTest runs `make test` in a temporary tree holding the real Makefile
// and scripts/test.sh, with stand-ins for the setup scripts, the keychain
// script and go (first on PATH). fail names the stand-ins that exit 1
// ("go", "keyring", "services", …); env is added to make's environment.
func runMakeTest(t *testing.T, fail []string, env ...string) makeTestRun {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		testenv.Unavailable(t, "make", err)
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	copyFile(t, "../Makefile", filepath.Join(dir, "Makefile"))
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "test.sh", filepath.Join(dir, "scripts", "test.sh"))
	exits := func(name string) string {
		for _, f := range fail {
			if f == name {
				return "1"
			}
		}
		return "0"
	}
	stub := func(path, name, record string) {
		body := "#!/bin/sh\necho \"" + record + "\" >> '" + log + "'\nexit " + exits(name) + "\n"
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"services", "minio", "toxiproxy", "test-deps"} {
		stub(filepath.Join(dir, "scripts", s+".sh"), s, s)
	}
	stub(filepath.Join(dir, "scripts", "keyring-test.sh"), "keyring", "keyring")
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	stub(filepath.Join(bin, "go"), "go", "go $*")

	cmd := exec.Command(mk, "--no-print-directory", "test")
	cmd.Dir = dir
	cmd.Env = append(withoutEnv(os.Environ(), "GO", "PKGS", "JETTY_REQUIRE_SERVICES", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	run := makeTestRun{output: string(out)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		run.failed = true
	case err != nil:
		t.Fatalf("make test: %v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	run.calls = strings.Split(strings.TrimSpace(string(b)), "\n")
	return run
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// withoutEnv drops the named variables from env.
func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

var allSteps = []string{"services", "minio", "toxiproxy", "test-deps", "go test -race -count=1 -timeout 30m ./...", "keyring"}

func sameCalls(t *testing.T, run makeTestRun, want []string) {
	t.Helper()
	if strings.Join(run.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("make test ran:\n  %s\nwant:\n  %s\noutput:\n%s", strings.Join(run.calls, "\n  "), strings.Join(want, "\n  "), run.output)
	}
}

// TestMakeTestRunsKeychainAfterFailingPackages: a failing package must not
// stop `make test` before the keychain tests; the target reports both
// results and fails.
func TestMakeTestRunsKeychainAfterFailingPackages(t *testing.T) {
	run := runMakeTest(t, []string{"go"})
	sameCalls(t, run, allSteps)
	if !run.failed {
		t.Errorf("make test succeeded although go test failed:\n%s", run.output)
	}
	for _, want := range []string{"go test -race ./...: FAILED", "keychain tests (scripts/keyring-test.sh): ok"} {
		if !strings.Contains(run.output, want) {
			t.Errorf("the summary does not say %q:\n%s", want, run.output)
		}
	}
}

// TestMakeTestFailsWhenOnlyKeychainFails: the keychain step's failure fails
// the target too.
func TestMakeTestFailsWhenOnlyKeychainFails(t *testing.T) {
	run := runMakeTest(t, []string{"keyring"})
	sameCalls(t, run, allSteps)
	if !run.failed {
		t.Errorf("make test succeeded although the keychain tests failed:\n%s", run.output)
	}
	if !strings.Contains(run.output, "keychain tests (scripts/keyring-test.sh): FAILED") {
		t.Errorf("the summary does not name the keychain failure:\n%s", run.output)
	}
}

// TestMakeTestPasses: every step runs once, in order, and the target
// succeeds.
func TestMakeTestPasses(t *testing.T) {
	run := runMakeTest(t, nil)
	sameCalls(t, run, allSteps)
	if run.failed {
		t.Errorf("make test failed:\n%s", run.output)
	}
}

// TestMakeTestMissingService: a setup step that fails does not stop the
// tests (they skip what they cannot reach); under JETTY_REQUIRE_SERVICES=1
// it fails the target, after both test steps have run.
func TestMakeTestMissingService(t *testing.T) {
	run := runMakeTest(t, []string{"services"})
	sameCalls(t, run, allSteps)
	if run.failed {
		t.Errorf("make test failed on a missing service without JETTY_REQUIRE_SERVICES:\n%s", run.output)
	}
	run = runMakeTest(t, []string{"services"}, "JETTY_REQUIRE_SERVICES=1")
	sameCalls(t, run, allSteps)
	if !run.failed {
		t.Errorf("make test succeeded on a missing service under JETTY_REQUIRE_SERVICES=1:\n%s", run.output)
	}
	if !strings.Contains(run.output, "setup services: FAILED") {
		t.Errorf("the summary does not name the failed setup step:\n%s", run.output)
	}
}
