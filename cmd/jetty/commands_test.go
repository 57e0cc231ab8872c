package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
)

const cmdSecret = "whsec_cmd_test_235280141e4890b0b46647e721e0b427"

// testServer runs a companion server in this process on the embedded
// default and returns its URL.
func testServer(t *testing.T) string {
	t.Helper()
	return testServerWith(t, "")
}

// testServerWith is testServer taking relays with edgeSecret ("" for none).
func testServerWith(t *testing.T, edgeSecret string) string {
	t.Helper()
	a, stop, err := app.Start(app.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), WebhookSecret: cmdSecret, TokenSecret: "tok_0fa6c9e239bb526f825d0863c7218ffd", EdgeSecret: edgeSecret, LiveKeys: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	return a.URL()
}

// runJetty runs the command tree with env as the environment and returns
// stdout, stderr and the exit code main would use.
func runJetty(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	io, in, out, errOut := iostreams.Test()
	in.WriteString(stdin)
	root := NewCmdRoot(&Factory{IO: io, Getenv: func(k string) string { return env[k] }})
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	code := ExitOK
	if err != nil {
		code = ExitCodeFor(err)
		var silent *SilentError
		if !isSilent(err, &silent) {
			errOut.WriteString("jetty: " + err.Error() + "\n")
		}
	}
	return out.String(), errOut.String(), code
}

func isSilent(err error, target **SilentError) bool {
	s, ok := err.(*SilentError)
	if ok {
		*target = s
	}
	return ok
}

// rawUpload stores content through the single-request API.
func rawUpload(t *testing.T, server, key, secret, name, content string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", server+"/api/storage/upload", strings.NewReader(content))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	req.Header.Set("X-Filename", name)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Asset struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != 201 {
		t.Fatalf("upload: %s", res.Status)
	}
	return body.Asset.ID
}

func TestLsRmQuota(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_cli", "pro")
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": key, "JETTY_API_SECRET": secret}

	out, _, code := runJetty(t, env, "", "ls")
	if code != 0 || !strings.Contains(out, "No files yet") {
		t.Fatalf("empty ls: %d %q", code, out)
	}
	id1 := rawUpload(t, srv, key, secret, "notes.txt", "hello")
	id2 := rawUpload(t, srv, key, secret, "data.bin", strings.Repeat("x", 2048))

	out, _, code = runJetty(t, env, "", "ls")
	if code != 0 || !strings.Contains(out, "notes.txt") || !strings.Contains(out, "2.0 KiB") || !strings.Contains(out, "2 files") || !strings.Contains(out, id1) {
		t.Fatalf("ls: %d\n%s", code, out)
	}
	out, _, _ = runJetty(t, env, "", "ls", "--json")
	var assets []map[string]any
	if err := json.Unmarshal([]byte(out), &assets); err != nil || len(assets) != 2 || assets[0]["id"] != id2 {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}

	out, _, code = runJetty(t, env, "", "quota")
	if code != 0 || !strings.Contains(out, "Tier pro") || !strings.Contains(out, "20.0 GiB") || !strings.Contains(out, "2.0 KiB") {
		t.Fatalf("quota: %d\n%s", code, out)
	}
	out, _, _ = runJetty(t, env, "", "quota", "--json")
	var q map[string]any
	if err := json.Unmarshal([]byte(out), &q); err != nil || q["tier"] != "pro" {
		t.Fatalf("quota --json: %v\n%s", err, out)
	}

	out, _, code = runJetty(t, env, "", "rm", id1)
	if code != 0 || !strings.Contains(out, "deleted "+id1) || !strings.Contains(out, "freed 5 B") {
		t.Fatalf("rm: %d %q", code, out)
	}
	// One good id and one unknown: partial failure.
	out, errOut, code := runJetty(t, env, "", "rm", id2, "no-such-id")
	if code != ExitPartial || !strings.Contains(out, "deleted "+id2) || !strings.Contains(errOut, "no file named no-such-id") || !strings.Contains(errOut, "jetty ls") {
		t.Fatalf("rm partial: %d %q %q", code, out, errOut)
	}
	if _, _, code := runJetty(t, env, "", "rm"); code != ExitUsage {
		t.Fatalf("rm without ids: %d", code)
	}
}

func TestAuthFailuresExitThree(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_auth", "pro")
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "jetty login"},
		{map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": key}, "set together"},
		{map[string]string{"JETTY_API_KEY": key, "JETTY_API_SECRET": secret}, "JETTY_SERVER"},
		{map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": key, "JETTY_API_SECRET": otherSecret(secret)}, "wrong API secret"},
	}
	for _, c := range cases {
		_, errOut, code := runJetty(t, c.env, "", "quota")
		if code != ExitAuth || !strings.Contains(errOut, c.want) {
			t.Errorf("env %v: exit %d, stderr %q (want 3 and %q)", c.env, code, errOut, c.want)
		}
	}
}

func TestHelpTopicsAndCompletion(t *testing.T) {
	out, _, code := runJetty(t, nil, "", "help", "exit-codes")
	if code != 0 || !strings.Contains(out, "130  interrupted") || !strings.Contains(out, "4    quota") {
		t.Fatalf("help exit-codes: %d\n%s", code, out)
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		out, _, code := runJetty(t, nil, "", "completion", sh)
		if code != 0 || len(out) < 200 || !strings.Contains(out, "jetty") {
			t.Errorf("completion %s: %d, %d bytes", sh, code, len(out))
		}
	}
	if _, _, code := runJetty(t, nil, "", "completion", "tcsh"); code != ExitUsage {
		t.Fatalf("completion tcsh: %d", code)
	}
	if _, _, code := runJetty(t, nil, "", "no-such-command"); code != ExitUsage {
		t.Fatalf("unknown command: %d", code)
	}
}

// TestGeneratedDocsAreCurrent: docs/cli is what `jetty gen-docs` writes.
func TestGeneratedDocsAreCurrent(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := runJetty(t, nil, "", "gen-docs", "--markdown", dir); code != 0 {
		t.Fatalf("gen-docs: %d %s", code, errOut)
	}
	want, err := readDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readDir("../../docs/cli")
	if err != nil {
		t.Fatalf("docs/cli: %v (run `go run ./cmd/jetty gen-docs`)", err)
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("docs/cli/%s is stale: run `go run ./cmd/jetty gen-docs`", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("docs/cli/%s is no longer generated: delete it", name)
		}
	}
}

func readDir(dir string) (map[string][]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := map[string][]byte{}
	for _, e := range ents {
		if e.IsDir() { // docs/cli/captures: written by make cli-captures
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		m[e.Name()] = b
	}
	return m, nil
}

// otherSecret is secret with its last character changed.
func otherSecret(secret string) string {
	last := byte('A')
	if secret[len(secret)-1] == 'A' {
		last = 'B'
	}
	return secret[:len(secret)-1] + string(last)
}
