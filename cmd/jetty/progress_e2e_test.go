package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
)

// chunkGate is a proxy in front of a server that lets through the first
// n chunk PUTs the server stores and refuses the others (400: not worth
// retrying, so the upload stops with what it has) until opened: an
// upload interrupted after exactly n chunks, whatever the timing.
type chunkGate struct {
	mu     sync.Mutex
	stored int
	n      int
	open   bool
}

func newChunkGate(t *testing.T, upstream string, n int) (*chunkGate, string) {
	t.Helper()
	g := &chunkGate{n: n}
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	isChunk := func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/chunks/")
	}
	rp.ModifyResponse = func(res *http.Response) error {
		if isChunk(res.Request) && res.StatusCode/100 == 2 {
			g.mu.Lock()
			g.stored++
			g.mu.Unlock()
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		refuse := isChunk(r) && !g.open && g.stored >= g.n
		g.mu.Unlock()
		if refuse {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"test gate: no more chunks","code":"invalid"}`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL
}

func (g *chunkGate) openUp() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// TestUploadResumeSaysSoAtStart: an upload stopped after 3 of its 8
// chunks were stored shows 37% when it stops (the chunks kept, not the
// bytes sent); run again, it says at the start that 3 of 8 chunks are
// already on the server, and its summary adds up (5 sent + 3 = 8), with
// the route that took them.
func TestUploadResumeSaysSoAtStart(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_resume_msg", "enterprise")
	gate, proxy := newChunkGate(t, srv, 3)
	c := newCLI(t, "JETTY_SERVER="+proxy, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	file, _ := randomFile(t, c.dir, "int.bin", 21, 40<<20)
	args := []string{"upload", file, "--workers", "1", "--chunk-size", "5MiB", "--edges", "origin"}

	r := c.run("", args...)
	if r.code != ExitFailure || !strings.Contains(r.err, "test gate") {
		t.Fatalf("gated upload: exit %d\n%s", r.code, r.err)
	}
	if !strings.Contains(r.err, "int.bin: 37% 15.0 MiB of 40.0 MiB stored") || !strings.Contains(r.err, "(stopped)") {
		t.Fatalf("the stopped upload's last line should count the 3 chunks stored:\n%s", r.err)
	}
	if strings.Contains(r.err, "resuming") {
		t.Fatalf("a first run says it resumes:\n%s", r.err)
	}

	gate.openUp()
	r = c.must("", args...)
	const msg = "jetty: resuming " // then the path
	i := strings.Index(r.err, msg)
	if i < 0 || !strings.Contains(r.err[i:], ": 3 of 8 chunks (15.0 MiB) already on the server\n") {
		t.Fatalf("no resume message at the start:\n%s", r.err)
	}
	if end := strings.Index(r.err, "int.bin: 100%"); end < i {
		t.Fatalf("the resume message comes after the progress:\n%s", r.err)
	}
	if !strings.Contains(r.out, "\n  resumed: sent 5 of 8 chunks (25.0 MiB), 3 (15.0 MiB) were already on the server\n  via origin\n") {
		t.Fatalf("summary:\n%s", r.out)
	}
	assertNoControl(t, "stderr", r.err)
	t.Logf("stderr:\n%sstdout:\n%s", r.err, r.out)
}

// TestTransfersOnTTYBinaryUnits: on a terminal, an upload's bar and a
// download's bar speak binary units, the download's names no edges, and
// an upload whose selection finds no relay (the origin alone, normal)
// prints no warning about it; the upload says which route took it.
func TestTransfersOnTTYBinaryUnits(t *testing.T) {
	srv := testServer(t)
	env := account(t, srv, "usr_tty_units", "enterprise")
	ctx := context.Background()
	src, _ := randomFile(t, t.TempDir(), "clip.bin", 8, 3<<20+5) // one chunk: too small to spread

	r := runTransfer(t, ctx, env, "", true, "upload", src)
	if r.code != 0 {
		t.Fatalf("upload: exit %d\n%s", r.code, r.err)
	}
	if strings.Contains(r.err, "warning") || strings.Contains(r.err, "no route") {
		t.Errorf("a warning with no relays to use:\n%q", r.err)
	}
	if !strings.Contains(r.out, "\n  via origin\n") || strings.Contains(r.out, "key ") {
		t.Errorf("upload summary:\n%s", r.out)
	}
	id := parseSummaryID(t, r.out)
	r = runTransfer(t, ctx, env, "", true, "download", id, "-o", t.TempDir()+"/")
	if r.code != 0 {
		t.Fatalf("download: exit %d\n%s", r.code, r.err)
	}
	for what, s := range map[string]string{"download bar": r.err, "download summary": r.out} {
		noSI(t, s)
		if strings.Contains(s, "edge") {
			t.Errorf("%s names edges: %q", what, s)
		}
	}
	if !strings.Contains(r.err, "MiB") || !strings.Contains(r.out, "MiB/s") {
		t.Errorf("download: bar %q, summary %q", r.err, r.out)
	}
}

// parseSummaryID is the id on an upload's summary line.
func parseSummaryID(t *testing.T, out string) string {
	t.Helper()
	first := strings.SplitN(out, "\n", 2)[0]
	i := strings.LastIndex(first, ", id ")
	if i < 0 {
		t.Fatalf("no id in %q", first)
	}
	return first[i+len(", id "):]
}
