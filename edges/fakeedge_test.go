package edges

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// edgeConf configures a fakeEdge.
type edgeConf struct {
	// Delay is added to every request.
	Delay time.Duration
	// Rate bounds the reading of probes, in bytes/s (0: as fast as they
	// come).
	Rate int64
	// HealthStatus is what healthz answers (200 when 0).
	HealthStatus int
}

// fakeEdge mimics what origins and relays answer to probes: GET /healthz
// and POST PathProbe, as the real handler does (at most MaxProbeBytes,
// for at most ProbeReadTime, timed from the first byte to the last).
type fakeEdge struct {
	conf edgeConf

	healthz, probes atomic.Int64
	probeLength     atomic.Int64 // Content-Length of the last probe
	probeMillis     atomic.Value // protocol.ProbeParamMillis of the last probe (string)
	mu              sync.Mutex
	remotes         map[string]bool // of healthz requests
	srv             *httptest.Server
}

func newFakeEdge(t *testing.T, conf edgeConf) *fakeEdge {
	t.Helper()
	f := &fakeEdge{conf: conf}
	mux := http.NewServeMux()
	f.register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEdge) URL() string { return f.srv.URL }

// remoteCount is the number of connections healthz requests came on.
func (f *fakeEdge) remoteCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.remotes)
}

func (f *fakeEdge) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		f.healthz.Add(1)
		f.mu.Lock()
		if f.remotes == nil {
			f.remotes = map[string]bool{}
		}
		f.remotes[r.RemoteAddr] = true
		f.mu.Unlock()
		if !sleepCtx(r.Context(), f.conf.Delay) {
			return
		}
		status := f.conf.HealthStatus
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST "+protocol.PathProbe, func(w http.ResponseWriter, r *http.Request) {
		f.probes.Add(1)
		f.probeLength.Store(r.ContentLength)
		f.probeMillis.Store(r.URL.Query().Get(protocol.ProbeParamMillis))
		deadline := time.Now().Add(protocol.ProbeReadTime)
		buf := make([]byte, 16<<10)
		var n int64
		var first, last time.Time
		body := io.LimitReader(r.Body, protocol.MaxProbeBytes)
		for time.Now().Before(deadline) {
			k, err := body.Read(buf)
			if k > 0 {
				now := time.Now()
				if first.IsZero() {
					first = now
				}
				last, n = now, n+int64(k)
				if f.conf.Rate > 0 {
					due := first.Add(time.Duration(float64(n) / float64(f.conf.Rate) * float64(time.Second)))
					if !sleepCtx(r.Context(), time.Until(due)) {
						return
					}
				}
			}
			if err != nil {
				break
			}
		}
		if !sleepCtx(r.Context(), f.conf.Delay) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		json.NewEncoder(w).Encode(protocol.ProbeResult{Bytes: n, Micros: last.Sub(first).Microseconds()})
	})
}

// sleepCtx sleeps d unless ctx ends first (false then).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fakeStore mimics an object store endpoint: whatever it is asked, 403
// after delay.
func fakeStore(t *testing.T, delay time.Duration) (url string, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if sleepCtx(r.Context(), delay) {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// blackHole is a listener that accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// closedPort is the URL of a port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// fakeControl is a server answering optimal-edges (checking the API key)
// that is also a fakeEdge, so it can be the origin.
type fakeControl struct {
	*fakeEdge
	mu       sync.Mutex
	resp     func(base string) protocol.OptimalResponse
	requests []protocol.OptimalRequest
	calls    atomic.Int64
}

func newFakeControl(t *testing.T, conf edgeConf, resp func(base string) protocol.OptimalResponse) *fakeControl {
	t.Helper()
	f := &fakeControl{fakeEdge: &fakeEdge{conf: conf}, resp: resp}
	mux := http.NewServeMux()
	f.fakeEdge.register(mux)
	mux.HandleFunc("POST "+protocol.PathOptimalEdges, func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer key" || r.Header.Get("X-API-Secret") != "secret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"bad key","code":"unauthorized"}`)
			return
		}
		var req protocol.OptimalRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(f.resp("http://" + r.Host))
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}
