package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/edges"
	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/probe"
	"github.com/jettythunder/jetty/server/relay"
)

const edgeSecret = "e2e_edge_secret_504faf11736c55965520dce3364eba81"

// startEdgeServer is a server on SQLite and files that takes relays.
func startEdgeServer(t testing.TB) *server {
	t.Helper()
	return startServer(t, app.Config{DataDir: t.TempDir(), EdgeSecret: edgeSecret})
}

// startRelay runs a relay in this process on ln, for origin, telling
// clients publicURL ("" for the listener's own). It is stopped (drained
// and deregistered) at the end of the test.
func startRelay(t testing.TB, origin, id string, ln net.Listener, publicURL string) *relay.Relay {
	t.Helper()
	return startRelayConfig(t, relay.Config{
		Origin: origin, ID: id, Secret: edgeSecret, PublicURL: publicURL,
		Interval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
	}, ln)
}

// startRelayConfig runs a relay made from cfg on ln until the test ends.
func startRelayConfig(t testing.TB, cfg relay.Config, ln net.Listener) *relay.Relay {
	t.Helper()
	id := cfg.ID
	r, err := relay.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx, ln); err != nil {
		cancel()
		t.Fatalf("relay %s: %v", id, err)
	}
	t.Cleanup(func() {
		cancel()
		if err := r.Wait(); err != nil {
			t.Errorf("relay %s: %v", id, err)
		}
	})
	return r
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// link is a toxiproxy link: latency each way and a bandwidth cap per
// connection in the upload direction.
type link struct {
	latencyMS, kbPerSec int
}

func (l link) shape(t testing.TB, p *testenv.Proxy) {
	p.Latency(t, "upstream", l.latencyMS, 0)
	p.Latency(t, "downstream", l.latencyMS, 0)
	p.Bandwidth(t, "upstream", l.kbPerSec)
}

// fixedRoutes is an EdgeSelector that always answers the same routes.
type fixedRoutes []engine.Route

func (f fixedRoutes) Select(ctx context.Context, s *protocol.Session, chunkSize int64, workers int) ([]engine.Route, error) {
	out := make([]engine.Route, len(f))
	copy(out, f)
	for i := range out {
		out[i].ChunkURL = strings.ReplaceAll(out[i].ChunkURL, "{session}", s.ID)
	}
	return out, nil
}

func relayRoute(id, base string) engine.Route {
	return engine.Route{ID: id, Kind: engine.RouteRelay, ChunkURL: base + "/api/jetty/sessions/{session}/chunks/{index}", Weight: 1}
}

func chunksOf(res *engine.Result) map[string]int {
	m := map[string]int{}
	for _, e := range res.Edges {
		m[e.ID] += e.Chunks
	}
	return m
}

// TestEdgesFastestCarriesMost: three relays behind links of different
// latency and bandwidth, the origin behind a slow one. The upload through
// all of them (chosen by probing) puts the most chunks on the fastest
// relay and beats the same upload through the slowest relay alone.
func TestEdgesFastestCarriesMost(t *testing.T) {
	tx := testenv.Toxiproxy(t)
	s := startEdgeServer(t)

	originProxy := tx.Proxy(t, strings.TrimPrefix(s.url, "http://"))
	link{latencyMS: 30, kbPerSec: 1000}.shape(t, originProxy)
	links := map[string]link{
		"edge_fast": {latencyMS: 2, kbPerSec: 16000},
		"edge_mid":  {latencyMS: 15, kbPerSec: 5000},
		"edge_slow": {latencyMS: 30, kbPerSec: 1000},
	}
	public := map[string]string{}
	for _, id := range []string{"edge_fast", "edge_mid", "edge_slow"} {
		ln := listen(t)
		p := tx.Proxy(t, ln.Addr().String())
		links[id].shape(t, p)
		public[id] = p.URL()
		startRelay(t, s.url, id, ln, p.URL())
	}

	const size = 60 << 20 // 12 chunks of 5 MiB
	path, sum := writeFile(t, 61, size)
	c := &engine.Client{BaseURL: originProxy.URL(), APIKey: s.key, APISecret: s.secret}

	// Through every edge, as `jetty upload` does.
	var rep edges.Report
	sel := &edges.Selector{Client: c, OnReport: func(r edges.Report) { rep = r }}
	// The routes' figures are known when the upload starts (the probe ran
	// ahead, as for the second file of a command): this test is about
	// where the chunks go once they are, not about the first round, which
	// starts on the origin before any probe (TestJoin* in engine cover it).
	sel.Prefetch(context.Background(), size, 5<<20, 6)
	time.Sleep(3 * time.Second)
	all, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 6, ChunkSize: 5 << 20, Edges: sel})
	if err != nil {
		t.Fatal(err)
	}
	if all.Asset.Hash != sum {
		t.Fatalf("hash %s, want %s", all.Asset.Hash, sum)
	}
	got := chunksOf(all)
	t.Logf("all edges: %v in %v; routes %+v", got, all.Duration, rep.Routes)
	for id, n := range got {
		if id != "edge_fast" && n >= got["edge_fast"] {
			t.Errorf("%s carried %d chunks, the fastest relay %d: %v", id, n, got["edge_fast"], got)
		}
	}
	if h, n := s.download(t, all.Asset.ID); h != sum || n != size {
		t.Fatalf("download: %s %d bytes, want %s %d", h, n, sum, size)
	}

	// The same content again, through the slowest relay alone: delete the
	// asset first so that nothing is deduplicated.
	deleteAsset(t, s, all.Asset.ID)
	slow, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 6, ChunkSize: 5 << 20,
		Edges: fixedRoutes{relayRoute("edge_slow", public["edge_slow"])}})
	if err != nil {
		t.Fatal(err)
	}
	if slow.Deduplicated || slow.Asset.Hash != sum || chunksOf(slow)["edge_slow"] != 12 {
		t.Fatalf("slow run: dedup %v hash %s chunks %v", slow.Deduplicated, slow.Asset.Hash, chunksOf(slow))
	}
	t.Logf("slowest relay alone: %v; all edges %v (%.1fx)", slow.Duration, all.Duration, float64(slow.Duration)/float64(all.Duration))
	if all.Duration >= slow.Duration {
		t.Errorf("through all edges took %v, through the slowest alone %v", all.Duration, slow.Duration)
	}
}

func deleteAsset(t testing.TB, s *server, id string) {
	t.Helper()
	ctx := context.Background()
	acct, err := s.app.Store().AccountByUserID(ctx, "usr_e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.app.Store().DeleteAsset(ctx, acct.ID, id); err != nil {
		t.Fatal(err)
	}
}

// TestEdgesKillRelayMidUpload: a relay process killed (SIGKILL) while it
// takes chunks; the upload completes byte-identical through the others.
func TestEdgesKillRelayMidUpload(t *testing.T) {
	s := startEdgeServer(t)
	victim := startRelayChild(t, s.url, "edge_victim")
	ln := listen(t)
	startRelay(t, s.url, "edge_other", ln, "")

	const size = 80 << 20
	path, sum := writeFile(t, 62, size)
	c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
	// Fixed routes, the victim with most of the workers: this test is
	// about losing a relay mid-upload, not about which one probing picks
	// (on a loaded machine it may leave the child relay out).
	victimRoute, otherRoute := relayRoute("edge_victim", victim.url), relayRoute("edge_other", "http://"+ln.Addr().String())
	victimRoute.Weight = 3
	sel := fixedRoutes{victimRoute, otherRoute}
	var once sync.Once
	var victimChunks int
	progress := engine.ProgressFunc(func(e engine.Event) {
		if e.Kind == engine.EventChunkDone && e.Edge.ID == "edge_victim" {
			victimChunks++
			once.Do(func() { victim.cmd.Process.Kill() })
		}
	})
	res, err := engine.Upload(context.Background(), c, path, engine.Options{
		Workers: 8, ChunkSize: 5 << 20, Edges: sel, Progress: progress,
		BandwidthLimit: 40 << 20, // long enough for the kill to land mid-upload
		Retry:          engine.RetryPolicy{BaseDelay: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if victimChunks == 0 {
		t.Fatal("the victim relay carried no chunk: the test killed nothing mid-upload")
	}
	got := chunksOf(res)
	t.Logf("chunks by route: %v", got)
	if res.Asset.Hash != sum || res.ChunksSent != 16 {
		t.Fatalf("hash %s chunks %d, want %s 16", res.Asset.Hash, res.ChunksSent, sum)
	}
	total := 0
	for _, n := range got {
		total += n
	}
	if total != 16 {
		t.Fatalf("routes stored %d chunks, want 16: %v", total, got)
	}
	if h, n := s.download(t, res.Asset.ID); h != sum || n != size {
		t.Fatalf("download: %s %d bytes, want %s %d", h, n, sum, size)
	}
	// The dead relay drops out of the offers within its liveness.
	waitOffered(t, c, "edge_victim", false, 5*time.Second)

	// Nothing is left of the chunks the relay was forwarding when it
	// died: no temporary file, no upload, nothing reserved; the asset is
	// listed and counted once; the jobs, a day later, find nothing to
	// remove and keep the object.
	b := backendOf(s)
	b.quiesce(t)
	done := []content{{sum, size}}
	b.checkCompleted(t, sum, size, res.Asset.ID, done)
	if acct := b.account(t); acct.StorageReservedBytes != 0 {
		t.Fatalf("%d bytes still reserved", acct.StorageReservedBytes)
	}
	if ups := b.uploads(t); len(ups) != 0 {
		t.Fatalf("multipart uploads left: %v", ups)
	}
	if rep := b.runJobs(t); rep.ReservationsReleased+rep.ObjectsCollected+rep.OrphansRemoved != 0 {
		t.Fatalf("the jobs found leftovers: %+v", rep)
	}
	b.checkCleanup(t, done)
}

// waitOffered waits until optimal-edges offers (or stops offering) id.
func waitOffered(t testing.TB, c *engine.Client, id string, want bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := edges.Candidates(context.Background(), c, protocol.OptimalRequest{})
		if err != nil {
			t.Fatal(err)
		}
		has := false
		for _, e := range resp.Edges {
			has = has || e.ID == id
		}
		if has == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s offered: %v, want %v (%+v)", within, id, has, want, resp.Edges)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEdgesNoRelay: with no relay running, an upload through the
// selector goes to the origin alone, as without one.
func TestEdgesNoRelay(t *testing.T) {
	s := startEdgeServer(t)
	path, sum := writeFile(t, 63, 23<<20)
	c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
	res, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 4, ChunkSize: 5 << 20, Edges: &edges.Selector{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Asset.Hash != sum || len(res.Edges) != 1 || res.Edges[0].ID != "origin" || res.Edges[0].Chunks != 5 {
		t.Fatalf("hash %s edges %+v", res.Asset.Hash, res.Edges)
	}
}

// relayChild is a relay running as a child process.
type relayChild struct {
	cmd *exec.Cmd
	url string
}

// startRelayChild runs a relay in a child process (this test binary with
// JETTY_E2E_CHILD=relay) and waits until it is registered.
func startRelayChild(t testing.TB, origin, id string) *relayChild {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "JETTY_E2E_CHILD=relay", "JETTY_E2E_ORIGIN="+origin, "JETTY_E2E_EDGE_ID="+id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "RELAY "); ok {
				lines <- u
			}
		}
		close(lines)
	}()
	select {
	case u, ok := <-lines:
		if !ok {
			t.Fatal("relay child exited before registering")
		}
		return &relayChild{cmd: cmd, url: u}
	case <-time.After(20 * time.Second):
		t.Fatal("relay child did not register within 20s")
	}
	return nil
}

// childRelay is the child process of startRelayChild: a relay on a free
// port until SIGTERM (or SIGKILL).
func childRelay() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	r, err := relay.New(ctx, relay.Config{
		Origin: os.Getenv("JETTY_E2E_ORIGIN"), ID: os.Getenv("JETTY_E2E_EDGE_ID"), Secret: edgeSecret,
		Interval: 200 * time.Millisecond, S3: relayS3FromEnv(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	r.OnRegistered = func() { fmt.Printf("RELAY http://%s\n", ln.Addr()) }
	if err := r.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	return 0
}

// TestEdgesS3: on PostgreSQL + MinIO + Redis, a relay writing parts to
// S3 itself and the direct route (presigned part URLs) are offered next
// to the origin; an upload through the selector completes byte-identical
// and every route that took chunks is one of them.
func TestEdgesS3(t *testing.T) {
	m := testenv.MinIO(t)
	s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
	s := startServer(t, app.Config{
		DataDir: t.TempDir(), DatabaseURL: testenv.PostgresURL(t), RedisURL: testenv.RedisURL(t),
		S3: s3cfg, EdgeSecret: edgeSecret, DirectUploads: true,
	})
	r := startRelayConfig(t, relay.Config{Origin: s.url, ID: "edge_s3", Secret: edgeSecret, S3: s3cfg, Interval: 200 * time.Millisecond}, listen(t))
	if r.Mode() != protocol.ModeS3 {
		t.Fatalf("mode %s", r.Mode())
	}

	c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
	resp, err := edges.Candidates(context.Background(), c, protocol.OptimalRequest{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, e := range resp.Edges {
		kinds[e.Kind] = true
	}
	if !kinds[protocol.KindOrigin] || !kinds[protocol.KindRelay] || !kinds[protocol.KindDirect] {
		t.Fatalf("offered %+v, want the origin, the relay and the direct route", resp.Edges)
	}
	const size = 42 << 20
	path, sum := writeFile(t, 64, size)
	var rep edges.Report
	res, err := engine.Upload(context.Background(), c, path, engine.Options{Workers: 8, ChunkSize: 5 << 20,
		Edges: &edges.Selector{Client: c, OnReport: func(r edges.Report) { rep = r }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("routes %+v; chunks %v", rep.Routes, chunksOf(res))
	if res.Asset.Hash != sum || res.ChunksSent != 9 {
		t.Fatalf("hash %s sent %d", res.Asset.Hash, res.ChunksSent)
	}
	for id := range chunksOf(res) {
		if id != "origin" && id != "edge_s3" && id != "direct" {
			t.Errorf("chunks through unknown route %q", id)
		}
	}
	if h, n := s.download(t, res.Asset.ID); h != sum || n != size {
		t.Fatalf("download: %s %d bytes, want %s %d", h, n, sum, size)
	}
}

// TestProbeAgainstProbeHandler: the client's probe (edges) against the
// receivers' real handler (server/probe), which live on either side of
// the client/server line and meet here.
func TestProbeAgainstProbeHandler(t *testing.T) {
	// The receivers' real handler, behind the same healthz as the server's.
	mux := http.NewServeMux()
	mux.Handle("POST "+protocol.PathProbe, probe.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ms := edges.Probe(context.Background(), nil, []protocol.Candidate{{ID: "origin", Kind: protocol.KindOrigin, URL: srv.URL}}, edges.ProbeOptions{})
	if m := ms[0]; !m.Healthy || m.Err != nil || m.RTT <= 0 {
		t.Fatalf("%+v", m)
	}
}

// TestEdgesRelayAfterRefusals: chunks a relay refused (a forged token, a
// wrong hash) leave nothing behind, and the engine then resumes the
// upload through that relay: the chunk it already took is not sent
// again, the others go through it, and the asset is the file. (Moved
// from the relay's own tests, which speak the protocol without the
// engine.)
func TestEdgesRelayAfterRefusals(t *testing.T) {
	s := startEdgeServer(t)
	ln := listen(t)
	r := startRelay(t, s.url, "edge_refusals", ln, "")
	base := "http://" + ln.Addr().String()
	c := s.client()
	ctx := context.Background()
	data, _ := io.ReadAll(testenv.NewRandReader(3, 12<<20+7)) // chunks 0, 1 of 5 MiB, 2 of 2 MiB + 7
	m, err := engine.Plan(ctx, bytes.NewReader(data), int64(len(data)), 5<<20, engine.PlanOptions{Name: "data.bin"})
	if err != nil {
		t.Fatal(err)
	}
	opened, err := c.OpenSession(ctx, protocol.OpenRequest{Manifest: m})
	if err != nil || opened.Session == nil {
		t.Fatalf("open: %v", err)
	}
	sess := opened.Session
	chunkURL := base + "/api/jetty/sessions/" + sess.ID + "/chunks/{index}"
	c0 := data[:5<<20]
	wrong := bytes.Clone(c0)
	wrong[12345] ^= 0xff
	if err := c.PutChunk(ctx, chunkURL, sess.UploadToken+"x", 0, m.Chunks[0].SHA256, bytes.NewReader(c0), int64(len(c0))); !engine.IsCode(err, protocol.CodeTokenInvalid) {
		t.Fatalf("forged token: %v", err)
	}
	if err := c.PutChunk(ctx, chunkURL, sess.UploadToken, 0, m.Chunks[0].SHA256, bytes.NewReader(wrong), int64(len(wrong))); !engine.IsCode(err, protocol.CodeChecksumMismatch) {
		t.Fatalf("wrong bytes: %v", err)
	}
	if err := c.PutChunk(ctx, chunkURL, sess.UploadToken, 0, m.Chunks[0].SHA256, bytes.NewReader(c0), int64(len(c0))); err != nil {
		t.Fatalf("good chunk: %v", err)
	}
	res, err := engine.UploadReader(ctx, c, bytes.NewReader(data), int64(len(data)), "data.bin",
		engine.Options{ChunkSize: 5 << 20, Workers: 2, HashFirst: true, Edges: fixedRoutes{relayRoute(r.ID(), base)}}) // resumes the session above by its manifest
	if err != nil {
		t.Fatal(err)
	}
	if res.Asset.Hash != m.SHA256 || res.ChunksSent != 2 || len(res.Edges) != 1 || res.Edges[0].ID != r.ID() {
		t.Fatalf("upload through the relay: hash %s sent %d edges %+v", res.Asset.Hash, res.ChunksSent, res.Edges)
	}
	// A chunk for the completed session is refused.
	err = c.PutChunk(ctx, chunkURL, sess.UploadToken, 0, m.Chunks[0].SHA256, bytes.NewReader(c0), int64(len(c0)))
	var ae *engine.APIError
	if !errors.As(err, &ae) || (ae.Status != 409 && ae.Status != 410) {
		t.Errorf("chunk after completion: %v", err)
	}
}
