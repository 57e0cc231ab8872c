package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/relay"
)

const cmdEdgeSecret = "edge_secret_cmd_tests_7e3167e66c0f3c0ef559cbef21310828"

// edgeServer is testServer with relays allowed.
func edgeServer(t *testing.T) string {
	t.Helper()
	return testServerWith(t, cmdEdgeSecret)
}

// startEdgeCmd runs `jetty edge` in this process and waits until the
// relay is registered; it is stopped (as by SIGTERM) at the end.
func startEdgeCmd(t *testing.T, origin string, args ...string) string {
	t.Helper()
	io, _, _, errOut := iostreams.Test()
	f := &Factory{IO: io, Getenv: func(k string) string {
		if k == "JETTY_EDGE_SECRET" {
			return cmdEdgeSecret
		}
		return ""
	}}
	ready := make(chan string, 1)
	cmd := NewCmdEdge(f, func(o *EdgeOptions) error {
		o.Ready = func(_ *relay.Relay, addr net.Addr) { ready <- "http://" + addr.String() }
		return edgeRun(o.ctx, o)
	})
	ctx, cancel := context.WithCancel(context.Background())
	cmd.SetArgs(append([]string{"--origin", origin, "--listen", "127.0.0.1:0", "--heartbeat", "200ms"}, args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("jetty edge: %v\n%s", err, errOut.String())
		}
	})
	select {
	case u := <-ready:
		return u
	case err := <-done:
		t.Fatalf("jetty edge exited: %v\n%s", err, errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("jetty edge did not register\n%s", errOut.String())
	}
	return ""
}

func TestEdgeAndEdgesCommands(t *testing.T) {
	srv := edgeServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_edges", "enterprise")
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": key, "JETTY_API_SECRET": secret}

	out, _, code := runJetty(t, env, "", "edges")
	if code != 0 || !strings.Contains(out, "Only the origin") {
		t.Fatalf("edges without relays: %d\n%s", code, out)
	}
	t0 := time.Now()
	startEdgeCmd(t, srv, "--location", "fra", "--id", "edge_cmd")
	t.Logf("edge up %v", time.Since(t0))

	out, _, code = runJetty(t, env, "", "edges")
	if code != 0 || !strings.Contains(out, "edge_cmd") || !strings.Contains(out, "Frankfurt") || !strings.Contains(out, "origin") || !strings.Contains(out, "WEIGHT") {
		t.Fatalf("edges: %d\n%s", code, out)
	}
	out, _, code = runJetty(t, env, "", "edges", "--json")
	var rep struct {
		JettySpeed   bool `json:"jettyspeed"`
		Measurements []struct {
			Candidate struct{ ID string } `json:"candidate"`
			Healthy   bool                `json:"healthy"`
		} `json:"measurements"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.JettySpeed || len(rep.Measurements) != 2 {
		t.Fatalf("edges --json: %d %v\n%s", code, err, out)
	}
	for _, m := range rep.Measurements {
		if !m.Healthy {
			t.Errorf("%s unhealthy on loopback", m.Candidate.ID)
		}
	}
	out, _, code = runJetty(t, env, "", "edges", "--locations")
	if code != 0 || !strings.Contains(out, "fra") || !strings.Contains(out, "1 live relays") {
		t.Fatalf("edges --locations: %d\n%s", code, out)
	}

	t.Logf("edges done %v", time.Since(t0))
	// An upload spreads its chunks and reports them per edge.
	path := filepath.Join(t.TempDir(), "big.bin")
	sum := testenv.WriteRandFile(t, path, 9, 40<<20)
	out, errOut, code := runJetty(t, env, "", "upload", path, "--json", "--chunk-size", "5MiB", "--workers", "8")
	var res struct {
		Asset struct{ Hash string } `json:"asset"`
		Edges []struct {
			ID     string `json:"id"`
			Kind   string `json:"kind"`
			Chunks int    `json:"chunks"`
			Bytes  int64  `json:"bytes"`
		} `json:"edges"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || res.Asset.Hash != sum {
		t.Fatalf("upload: %d %v\n%s\n%s", code, err, out, errOut)
	}
	var chunks int
	var bytes int64
	for _, e := range res.Edges {
		chunks += e.Chunks
		bytes += e.Bytes
	}
	if chunks != 8 || bytes != 40<<20 {
		t.Fatalf("edges %+v: %d chunks, %d bytes", res.Edges, chunks, bytes)
	}
	t.Logf("upload done %v", time.Since(t0))
	// Without --json, one line names the routes, a relay by its location.
	other := filepath.Join(t.TempDir(), "other.bin")
	testenv.WriteRandFile(t, other, 10, 40<<20)
	out, errOut, code = runJetty(t, env, "", "upload", other, "--chunk-size", "5MiB", "--workers", "8")
	via := regexp.MustCompile(`(?m)^  via (origin|fra|2 edges: (fra|origin) \d+%, (fra|origin) \d+%)$`)
	t.Logf("routes: %s", via.FindString(out))
	if code != 0 || !via.MatchString(out) || strings.Contains(out, "edge_cmd") || strings.Contains(errOut, "no route") {
		t.Fatalf("upload's routes line: %d\n%s\n%s", code, out, errOut)
	}
	// --edges origin sends everything to the server.
	os.WriteFile(path, []byte(strings.Repeat("z", 11<<20)), 0o600)
	out, _, code = runJetty(t, env, "", "upload", path, "--json", "--chunk-size", "5MiB", "--edges", "origin")
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || len(res.Edges) != 1 || res.Edges[0].ID != "origin" {
		t.Fatalf("upload --edges origin: %d %v\n%s", code, err, out)
	}
	if _, errOut, code := runJetty(t, env, "", "upload", path, "--edges", "nearest"); code != ExitUsage || !strings.Contains(errOut, "auto or origin") {
		t.Fatalf("bad --edges: %d %q", code, errOut)
	}
}

func TestEdgeCommandErrors(t *testing.T) {
	if _, errOut, code := runJetty(t, nil, "", "edge"); code != ExitUsage || !strings.Contains(errOut, "--origin") {
		t.Errorf("no --origin: %d %q", code, errOut)
	}
	if _, errOut, code := runJetty(t, nil, "", "edge", "--origin", "http://127.0.0.1:1"); code != ExitAuth || !strings.Contains(errOut, "JETTY_EDGE_SECRET") {
		t.Errorf("no secret: %d %q", code, errOut)
	}
	env := map[string]string{"JETTY_EDGE_SECRET": "x"}
	if _, errOut, code := runJetty(t, env, "", "edge", "--origin", "http://127.0.0.1:1", "--heartbeat", "1ms"); code != ExitUsage || !strings.Contains(errOut, "--heartbeat") {
		t.Errorf("bad heartbeat: %d %q", code, errOut)
	}
	// Weak secrets are refused before anything starts, saying how to
	// make a good one (and never echoing the value).
	for _, weak := range []string{"x", " ", strings.Repeat("a", 40), " " + cmdEdgeSecret} {
		env := map[string]string{"JETTY_EDGE_SECRET": weak}
		_, errOut, code := runJetty(t, env, "", "edge", "--origin", "http://127.0.0.1:1")
		if code != ExitAuth || !strings.Contains(errOut, "JETTY_EDGE_SECRET") || !strings.Contains(errOut, "at least 32") ||
			!strings.Contains(errOut, "openssl rand -hex 32") || (len(weak) > 8 && strings.Contains(errOut, weak)) {
			t.Errorf("weak secret %q: %d %q", weak, code, errOut)
		}
	}
	// A server that refuses the relay (wrong secret): a clear error, not a hang.
	srv := edgeServer(t)
	env["JETTY_EDGE_SECRET"] = "not_the_servers_secret_f1cd6747fc8dea4014c415f12cf9d592"
	_, errOut, code := runJetty(t, env, "", "edge", "--origin", srv, "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errOut, "refused this relay") {
		t.Errorf("wrong secret: %d %q", code, errOut)
	}
}
