package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/protocol/edgeauth"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

const testEdgeSecret = "edge_secret_api_tests_6786cc27561c67a2f937f8d385c8ff97"

type edgeEnv struct {
	*env
	keys   *edgeauth.Keys
	signer *uploadtoken.Signer
}

// newEdgeEnv is an embedded-default server (SQLite, files) that takes
// relays; publicURL may be "".
func newEdgeEnv(t *testing.T, publicURL string, withKeys bool) *edgeEnv {
	t.Helper()
	b := backends()[0]
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := b.store(t)
	signer, _ := uploadtoken.NewSigner([]byte("test token secret"))
	keys, _ := edgeauth.NewKeys(testEdgeSecret)
	cfg := api.Config{TokenSigner: signer, Store: st, Limiter: b.limit(t), Blobs: fs, WebhookSecret: webhookSecret, Backend: "fs", PublicURL: publicURL}
	if withKeys {
		cfg.EdgeKeys = keys
	}
	s := api.New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &edgeEnv{env: &env{t: t, url: ts.URL, api: s, store: st, blobs: fs}, keys: keys, signer: signer}
}

// signed sends a relay call signed as id with keys at time at.
func (e *edgeEnv) signed(keys *edgeauth.Keys, id, method, path string, body any, at time.Time) resp {
	e.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, e.url+path, nil)
	keys.Sign(req, id, raw, at)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(b)}
	json.Unmarshal(b, &r.body)
	return r
}

func heartbeat(id string) protocol.Heartbeat {
	return protocol.Heartbeat{ID: id, URL: "http://relay-" + id + ".example:3002", Mode: protocol.ModeRelay, Capacity: 10, IntervalMS: 1000}
}

func TestEdgeHeartbeat(t *testing.T) {
	e := newEdgeEnv(t, "", true)
	now := time.Now()
	other, _ := edgeauth.NewKeys("another secret")

	// Unsigned, badly signed, stale or mismatched calls are refused.
	r := e.do("POST", protocol.PathEdgeHeartbeat, `{"id":"edge_a"}`, nil)
	wantError(t, r, 401, "unauthorized")
	r = e.signed(other, "edge_a", "POST", protocol.PathEdgeHeartbeat, heartbeat("edge_a"), now)
	wantError(t, r, 401, "unauthorized")
	r = e.signed(e.keys, "edge_a", "POST", protocol.PathEdgeHeartbeat, heartbeat("edge_a"), now.Add(-10*time.Minute))
	wantError(t, r, 401, "unauthorized")
	r = e.signed(e.keys, "edge_b", "POST", protocol.PathEdgeHeartbeat, heartbeat("edge_a"), now)
	wantError(t, r, 401, "unauthorized")

	// Bad heartbeats are 400.
	for name, mod := range map[string]func(*protocol.Heartbeat){
		"relative url":     func(h *protocol.Heartbeat) { h.URL = "/relay" },
		"url with user":    func(h *protocol.Heartbeat) { h.URL = "http://u:p@relay.example" },
		"ftp url":          func(h *protocol.Heartbeat) { h.URL = "ftp://relay.example" },
		"unknown mode":     func(h *protocol.Heartbeat) { h.Mode = "magic" },
		"s3 on files":      func(h *protocol.Heartbeat) { h.Mode = protocol.ModeS3 },
		"interval too low": func(h *protocol.Heartbeat) { h.IntervalMS = 1 },
		"unknown location": func(h *protocol.Heartbeat) { h.Location = "atlantis" },
		"negative load":    func(h *protocol.Heartbeat) { h.InFlight = -1 },
	} {
		hb := heartbeat("edge_a")
		mod(&hb)
		if r := e.signed(e.keys, "edge_a", "POST", protocol.PathEdgeHeartbeat, hb, now); r.status != 400 || r.body["code"] != "invalid_request" {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	if nodes, _ := e.store.LiveEdges(t.Context(), time.Now()); len(nodes) != 0 {
		t.Fatalf("refused heartbeats registered %+v", nodes)
	}

	// A good one registers the relay and hands it the sealed token key.
	hb := heartbeat("edge_a")
	hb.Location = "fra"
	r = e.signed(e.keys, "edge_a", "POST", protocol.PathEdgeHeartbeat, hb, now)
	if r.status != 200 {
		t.Fatalf("heartbeat: %d %s", r.status, r.raw)
	}
	var out protocol.HeartbeatResponse
	json.Unmarshal([]byte(r.raw), &out)
	key, err := e.keys.Open(out.TokenKey)
	if err != nil || !bytes.Equal(key, e.signer.Key()) || out.Backend != "fs" || out.LivenessMS != 3000 {
		t.Fatalf("heartbeat answer %+v (open: %v)", out, err)
	}
	if _, err := other.Open(out.TokenKey); err == nil {
		t.Error("another secret opened the token key")
	}
	if bytes.Contains([]byte(r.raw), []byte(testEdgeSecret)) {
		t.Error("the answer carries the edge secret")
	}

	// Deregistration: only itself.
	r = e.signed(e.keys, "edge_b", "DELETE", protocol.PathEdgeNode+"edge_a", nil, now)
	wantError(t, r, 401, "unauthorized")
	r = e.signed(e.keys, "edge_a", "DELETE", protocol.PathEdgeNode+"edge_a", nil, now)
	if r.status != 200 {
		t.Fatalf("deregister: %d %s", r.status, r.raw)
	}
	if nodes, _ := e.store.LiveEdges(t.Context(), time.Now()); len(nodes) != 0 {
		t.Fatalf("deregistered relay still live: %+v", nodes)
	}

	// A server without an edge secret takes no relay and says why.
	plain := newEdgeEnv(t, "", false)
	r = plain.signed(e.keys, "edge_a", "POST", protocol.PathEdgeHeartbeat, heartbeat("edge_a"), now)
	wantError(t, r, 401, "unauthorized")
	if msg, _ := r.body["error"].(string); !bytes.Contains([]byte(msg), []byte("JETTY_EDGE_SECRET")) {
		t.Errorf("message %q does not name JETTY_EDGE_SECRET", msg)
	}
}

func optimal(t *testing.T, e *edgeEnv, key, secret, host, body string) (protocol.OptimalResponse, resp) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.url+protocol.PathOptimalEdges, bytes.NewBufferString(body))
	for k, v := range userHeaders(key, secret) {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	if host != "" {
		req.Host = host
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, raw: string(b)}
	json.Unmarshal(b, &r.body)
	var out protocol.OptimalResponse
	json.Unmarshal(b, &out)
	return out, r
}

func TestOptimalEdges(t *testing.T) {
	e := newEdgeEnv(t, "", true)
	key, secret := e.provision("usr_fast", "pro")
	freeKey, freeSecret := e.provision("usr_free", "free")
	now := time.Now()

	// No relay: the origin alone, at the address the client used.
	out, r := optimal(t, e, key, secret, "jetty.example.com", `{"file_size": 1073741824}`)
	if r.status != 200 || !out.JettySpeed || len(out.Edges) != 1 || out.Edges[0].Kind != protocol.KindOrigin || out.Edges[0].URL != "http://jetty.example.com" {
		t.Fatalf("no relay: %d %s", r.status, r.raw)
	}
	if out.Strategy.ChunkSize <= 0 || out.Strategy.Workers <= 0 || out.Strategy.MaxWorkers < out.Strategy.Workers || out.Strategy.Weights["origin"] != 1 {
		t.Errorf("strategy %+v", out.Strategy)
	}

	// Seven relays: one full, one draining; at most five candidates.
	for i := range 7 {
		hb := heartbeat(fmt.Sprintf("edge_%d", i))
		hb.InFlight = i // edge_0 is the least loaded
		switch i {
		case 5:
			hb.InFlight = hb.Capacity // full
		case 6:
			hb.Draining = true
		}
		if r := e.signed(e.keys, hb.ID, "POST", protocol.PathEdgeHeartbeat, hb, now); r.status != 200 {
			t.Fatalf("heartbeat %s: %d %s", hb.ID, r.status, r.raw)
		}
	}
	out, r = optimal(t, e, key, secret, "", "")
	if r.status != 200 || len(out.Edges) != protocol.MaxCandidates {
		t.Fatalf("with relays: %d %s", r.status, r.raw)
	}
	if out.Edges[0].Kind != protocol.KindOrigin || out.Edges[0].URL != e.url {
		t.Errorf("origin first at %s, got %+v", e.url, out.Edges[0])
	}
	var sum float64
	for i, c := range out.Edges[1:] {
		if want := fmt.Sprintf("edge_%d", i); c.ID != want || c.Kind != protocol.KindRelay {
			t.Errorf("candidate %d: %+v, want %s (least loaded first; full and draining ones left out)", i+1, c, want)
		}
	}
	for _, w := range out.Strategy.Weights {
		sum += w
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("weights sum to %v", sum)
	}

	// A tier without JettySpeed: the origin only.
	out, r = optimal(t, e, freeKey, freeSecret, "", "")
	if r.status != 200 || out.JettySpeed || len(out.Edges) != 1 || out.Edges[0].Kind != protocol.KindOrigin {
		t.Fatalf("free tier: %d %s", r.status, r.raw)
	}

	// Bad hints are 400; no credentials 401.
	for _, body := range []string{`{"file_size": -1}`, `{"latitude": 10}`, `{"latitude": 100, "longitude": 0}`, `{"file_size": "big"}`} {
		if _, r := optimal(t, e, key, secret, "", body); r.status != 400 {
			t.Errorf("%s: %d %s", body, r.status, r.raw)
		}
	}
	if r := e.do("POST", protocol.PathOptimalEdges, "", nil); r.status != 401 {
		t.Errorf("no credentials: %d", r.status)
	}

	// A configured public URL wins over the request's host.
	pub := newEdgeEnv(t, "https://jetty.example.org", true)
	k2, s2 := pub.provision("usr_pub", "pro")
	if out, r := optimal(t, pub, k2, s2, "10.0.0.5:3001", ""); r.status != 200 || out.Edges[0].URL != "https://jetty.example.org" {
		t.Errorf("public URL: %d %s", r.status, r.raw)
	}
}

// TestEdgeSessionLookup: only a signed relay learns a session's layout.
func TestEdgeSessionLookup(t *testing.T) {
	e := newEdgeEnv(t, "", true)
	key, secret := e.provision("usr_look", "pro")
	body := `{"manifest":{"version":1,"name":"a.bin","size":5,"chunk_size":5242880,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","chunks":[{"index":0,"offset":0,"size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}]}}`
	r := e.do("POST", "/api/jetty/sessions", body, userHeaders(key, secret))
	if r.status != 201 {
		t.Fatalf("open: %d %s", r.status, r.raw)
	}
	id := r.body["session"].(map[string]any)["id"].(string)
	acct, _ := e.store.AccountByUserID(t.Context(), "usr_look")
	path := protocol.PathEdgeSession + id + "?account=" + acct.ID
	if r := e.do("GET", path, "", nil); r.status != 401 {
		t.Fatalf("unsigned lookup: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", path, "", userHeaders(key, secret)); r.status != 401 {
		t.Fatalf("lookup with user credentials: %d %s", r.status, r.raw)
	}
	r = e.signed(e.keys, "edge_a", "GET", path, nil, time.Now())
	if r.status != 200 || r.body["state"] != "open" || r.body["object_key"] == "" {
		t.Fatalf("signed lookup: %d %s", r.status, r.raw)
	}
	chunks, _ := r.body["chunks"].([]any)
	if len(chunks) != 1 {
		t.Fatalf("chunks %v", r.body["chunks"])
	}
	// Another account's id finds nothing.
	r = e.signed(e.keys, "edge_a", "GET", protocol.PathEdgeSession+id+"?account=nobody", nil, time.Now())
	if r.status != 404 {
		t.Fatalf("lookup under another account: %d %s", r.status, r.raw)
	}
}
