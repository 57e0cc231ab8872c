package edges

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/protocol"
)

// TestMemory: a selection remembers its best edge for the server; the
// next upload's StartRoutes names it (with the origin as a reserve)
// while it is fresh, and nothing once it is stale, of another server,
// or of a kind the selector may not choose.
func TestMemory(t *testing.T) {
	relay := newFakeEdge(t, edgeConf{Rate: 10 << 20})
	ctl := newFakeControl(t, edgeConf{Rate: 2 << 20}, respond(true, protocol.Candidate{ID: "relay-1", Kind: protocol.KindRelay, URL: relay.URL()}))
	mem := filepath.Join(t.TempDir(), "state", "edges.json")
	sel := &Selector{Client: testClient(ctl), Memory: mem}
	sess := session(ctl.URL(), "")
	if rs := sel.StartRoutes(sess); rs != nil {
		t.Fatalf("start routes %v with nothing remembered", routeIDs(rs))
	}
	rs, err := sel.Select(context.Background(), sess, 8<<20, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 || rs[0].ID != "relay-1" {
		t.Fatalf("routes %v, want relay-1 first", routeIDs(rs))
	}
	st, err := os.Lstat(mem)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || !st.Mode().IsRegular() {
		t.Errorf("memory file mode %v", st.Mode())
	}

	// The next upload (another session) to the same server.
	next := &protocol.Session{ID: "next", ChunkURL: ctl.URL() + "/api/jetty/sessions/next/chunks/{index}", Missing: []int{0, 1, 2}}
	fresh := &Selector{Client: testClient(ctl), Memory: mem}
	start := fresh.StartRoutes(next)
	want := []engine.Route{
		{ID: "relay-1", Kind: engine.RouteRelay, Label: rs[0].Label, ChunkURL: relay.URL() + "/api/jetty/sessions/next/chunks/{index}", Weight: 1 - OriginFallbackShare},
		{ID: "origin", Kind: engine.RouteOrigin, Label: hostOf(next.ChunkURL), ChunkURL: next.ChunkURL, Weight: OriginFallbackShare},
	}
	if len(start) != 2 || start[0] != want[0] || start[1] != want[1] {
		t.Errorf("start routes\n%+v, want\n%+v", start, want)
	}
	if rs := (&Selector{Client: testClient(ctl), Memory: mem, Kinds: []string{"direct"}}).StartRoutes(next); rs != nil {
		t.Errorf("a selector without relays started on %v", routeIDs(rs))
	}
	other := &engine.Client{BaseURL: "http://elsewhere.example", APIKey: "k", APISecret: "s"}
	if rs := (&Selector{Client: other, Memory: mem}).StartRoutes(next); rs != nil {
		t.Errorf("another server started on %v", routeIDs(rs))
	}

	// Stale: the entry is 11 minutes old (freshness 10).
	var m memoryFile
	b, _ := os.ReadFile(mem)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Servers {
		r.At = time.Now().Add(-11 * time.Minute)
	}
	b, _ = json.Marshal(m)
	if err := os.WriteFile(mem, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if rs := fresh.StartRoutes(next); rs != nil {
		t.Errorf("stale memory: start routes %v", routeIDs(rs))
	}
	if rs := (&Selector{Client: testClient(ctl), Memory: mem, MemoryFresh: time.Hour}).StartRoutes(next); len(rs) != 2 {
		t.Errorf("with an hour's freshness: start routes %v", routeIDs(rs))
	}
}

// TestMemoryUnsafe: a memory file that is a symbolic link is neither
// read nor written through.
func TestMemoryUnsafe(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	body := `{"version":1,"servers":{"http://s":{"at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","kind":"relay","id":"r","url":"http://r"}}}`
	if err := os.WriteFile(target, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(dir, "edges.json")
	if err := os.Symlink(target, mem); err != nil {
		t.Skip(err)
	}
	sel := &Selector{Client: &engine.Client{BaseURL: "http://s"}, Memory: mem}
	sess := &protocol.Session{ID: "x", ChunkURL: "http://s/api/jetty/sessions/x/chunks/{index}", Missing: []int{0, 1}}
	if rs := sel.StartRoutes(sess); rs != nil {
		t.Errorf("read through a link: %v", routeIDs(rs))
	}
	sel.remember(engine.Route{ID: "r2", Kind: engine.RouteRelay, ChunkURL: "http://r2/api/jetty/sessions/x/chunks/{index}"})
	if b, _ := os.ReadFile(target); string(b) != body {
		t.Errorf("wrote through a link: %s", b)
	}
}

// TestPrefetchOutlivesCanceledSelect: a Select canceled while the
// prefetched probe runs (its upload ended first: the engine does not wait
// for the probe) leaves the prefetch to the next Select.
func TestPrefetchOutlivesCanceledSelect(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == protocol.PathOptimalEdges {
			if calls.Add(1) == 1 { // the prefetch's: held until released
				<-release
			}
			json.NewEncoder(w).Encode(protocol.OptimalResponse{JettySpeed: true, Edges: []protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: "http://" + r.Host}}})
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	defer close(release)
	c := &engine.Client{BaseURL: srv.URL, APIKey: "k", APISecret: "s"}
	sel := &Selector{Client: c}
	sess := &protocol.Session{ID: "ses_1", ChunkURL: srv.URL + "/api/jetty/sessions/ses_1/chunks/{index}", Missing: []int{0, 1, 2}}
	sel.Prefetch(context.Background(), 3*protocol.DefaultChunkSize, protocol.DefaultChunkSize, 8)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sel.Select(ctx, sess, protocol.DefaultChunkSize, 8); err == nil {
		t.Fatal("a canceled Select succeeded")
	}
	release <- struct{}{}
	if _, err := sel.Select(context.Background(), sess, protocol.DefaultChunkSize, 8); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("optimal-edges called %d times, want 1 (the prefetch, kept for the second Select)", n)
	}
}
