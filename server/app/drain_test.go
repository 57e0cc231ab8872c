package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
)

const drainWebhookSecret = "whsec_drain_5b1e9c3f7a2d4e6b8c0a1f3e5d7b9c2a"

// TestGracefulDrain: once the server is told to stop (SIGTERM ends
// Serve's context), /readyz answers 503 "draining" while the listener
// still serves; a chunk PUT in flight since before the stop (its body
// held back by the test) completes with 200 after the listener closed;
// Serve returns nil and the drain report counts the PUT as ended well.
// Every step is gated on an event, none on time (the drain delay is an
// hour, cut short by EndDrainDelay).
func TestGracefulDrain(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	a, err := New(ctx, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookSecret: drainWebhookSecret,
		DrainDelay: time.Hour, ShutdownTimeout: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	base := a.URL()
	key, secret := testenv.Provision(t, base, drainWebhookSecret, "usr_drain", "pro")

	// One session of one 1 MiB chunk.
	data := []byte(strings.Repeat("drain!", 1<<20/6+1))[:1<<20]
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	m := protocol.Manifest{Version: 1, Name: "drain.bin", Size: int64(len(data)), ChunkSize: 5 << 20, SHA256: hexSum,
		Chunks: []protocol.Chunk{{Index: 0, Size: int64(len(data)), SHA256: hexSum}}}
	body, _ := json.Marshal(protocol.OpenRequest{Manifest: &m})
	req, _ := http.NewRequest("POST", base+"/api/jetty/sessions", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var open protocol.OpenResponse
	if err := json.NewDecoder(res.Body).Decode(&open); err != nil || res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK || open.Session == nil {
		t.Fatalf("open session: %s %v %+v", res.Status, err, open)
	}
	res.Body.Close()

	// The chunk PUT, its body held back half way.
	pr, pw := io.Pipe()
	put, _ := http.NewRequest("PUT", strings.Replace(open.Session.ChunkURL, "{index}", "0", 1), pr)
	put.ContentLength = int64(len(data))
	put.Header.Set("Authorization", "Bearer "+open.Session.UploadToken)
	put.Header.Set(protocol.HeaderChunkSHA256, hexSum)
	putDone := make(chan *http.Response, 1)
	putErr := make(chan error, 1)
	go func() {
		r, err := (&http.Client{Transport: &http.Transport{}}).Do(put)
		if err != nil {
			putErr <- err
			return
		}
		putDone <- r
	}()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	// The server is reading it: a PUT in flight.
	waitFor(t, "the chunk PUT in flight", func() bool {
		a.drain.mu.Lock()
		defer a.drain.mu.Unlock()
		return a.drain.puts == 1
	})

	stop() // what SIGTERM does in `jetty server`
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "/readyz answering 503 draining", func() bool {
		r, err := plain.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("readyz while draining: %v (the listener must stay open during the drain delay)", err)
		}
		defer r.Body.Close()
		var rd struct{ Status string }
		json.NewDecoder(r.Body).Decode(&rd)
		return r.StatusCode == http.StatusServiceUnavailable && rd.Status == "draining"
	})
	// Still serving while draining, and saying so by closing connections.
	r, err := plain.Get(base + "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("healthz while draining: %v %v", r, err)
	}
	r.Body.Close()
	if !r.Close {
		t.Errorf("an answer while draining kept its connection open")
	}
	if rep := a.DrainReport(); rep.InFlight < 1 || rep.PutsInFlight != 1 || rep.OK+rep.Failed != 0 {
		t.Fatalf("drain report at the start %+v", rep)
	}

	a.EndDrainDelay()
	waitFor(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a chunk PUT in flight", err)
	default:
	}
	// The rest of the body: the PUT completes.
	if _, err := pw.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case r := <-putDone:
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode/100 != 2 {
			t.Fatalf("chunk PUT in flight at the stop: %s %s", r.Status, b)
		}
	case err := <-putErr:
		t.Fatalf("chunk PUT in flight at the stop: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	rep := a.DrainReport()
	if rep.PutsInFlight != 1 || rep.Failed != 0 || rep.Gone != 0 || rep.Unfinished != 0 || rep.OK != rep.InFlight {
		t.Fatalf("drain report %+v", rep)
	}
}

// TestDrainConfig: JETTY_DRAIN_DELAY and JETTY_SHUTDOWN_TIMEOUT, their
// defaults, and --dev stopping at once unless the delay is set.
func TestDrainConfig(t *testing.T) {
	get := func(env map[string]string) func(string) string { return func(k string) string { return env[k] } }
	c := FromEnv(get(nil))
	if c.DrainDelay != DefaultDrainDelay || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Fatalf("defaults %v %v", c.DrainDelay, c.ShutdownTimeout)
	}
	c = FromEnv(get(map[string]string{"JETTY_DRAIN_DELAY": "12s", "JETTY_SHUTDOWN_TIMEOUT": "2m"}))
	if err := c.validate(); err != nil || c.DrainDelay != 12*time.Second || c.ShutdownTimeout != 2*time.Minute {
		t.Fatalf("set: %v %v %v", c.DrainDelay, c.ShutdownTimeout, err)
	}
	c = FromEnv(get(nil))
	c.Dev = true
	if err := c.validate(); err != nil || c.DrainDelay != 0 {
		t.Fatalf("--dev: %v %v", c.DrainDelay, err)
	}
	c = FromEnv(get(map[string]string{"JETTY_DRAIN_DELAY": "3s"}))
	c.Dev = true
	if err := c.validate(); err != nil || c.DrainDelay != 3*time.Second {
		t.Fatalf("--dev with JETTY_DRAIN_DELAY: %v %v", c.DrainDelay, err)
	}
	for name, v := range map[string]string{"JETTY_DRAIN_DELAY": "soon", "JETTY_SHUTDOWN_TIMEOUT": "10ms"} {
		c = FromEnv(get(map[string]string{name: v}))
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: %v", name, v, err)
		}
	}
}

// TestDrainCountsOutcomes: of the requests in flight when the drain
// began, one that ends well counts as ok, one whose client cut its body
// as client_gone (not the server's failure), one answered 500 as failed;
// requests that begin later are not counted.
func TestDrainCountsOutcomes(t *testing.T) {
	d := newDrainTracker(prometheus.NewRegistry())
	srv := httptest.NewServer(d.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/boom" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})))
	defer srv.Close()
	type call struct {
		pw   *io.PipeWriter
		done chan struct{}
	}
	start := func(path string) call {
		pr, pw := io.Pipe()
		c := call{pw: pw, done: make(chan struct{})}
		req, _ := http.NewRequest("PUT", srv.URL+path, pr)
		req.ContentLength = 10
		go func() {
			defer close(c.done)
			if res, err := (&http.Client{Transport: &http.Transport{}}).Do(req); err == nil {
				res.Body.Close()
			}
		}()
		pw.Write([]byte("12345"))
		return c
	}
	ok, gone, boom := start("/ok"), start("/gone"), start("/boom")
	waitFor(t, "three PUTs in flight", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.puts == 3
	})
	if n, puts := d.begin(); n != 3 || puts != 3 {
		t.Fatalf("in flight at the drain: %d, %d PUTs", n, puts)
	}
	later := start("/ok")
	later.pw.Write([]byte("67890"))
	later.pw.Close()
	<-later.done
	ok.pw.Write([]byte("67890"))
	ok.pw.Close()
	gone.pw.CloseWithError(errors.New("the client gives up"))
	boom.pw.Write([]byte("67890"))
	boom.pw.Close()
	for _, c := range []call{ok, gone, boom} {
		<-c.done
	}
	waitFor(t, "the three ended", func() bool { return d.report().Unfinished == 0 })
	if rep := d.report(); rep != (DrainReport{InFlight: 3, PutsInFlight: 3, OK: 1, Gone: 1, Failed: 1}) {
		t.Fatalf("report %+v", rep)
	}
}
