package app

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Graceful drain (issue 21). On SIGTERM (Serve's context ending) the
// server:
//
//  1. answers /readyz 503 "draining" at once and turns keep-alive off, so
//     every answer closes its connection and the load balancer's health
//     checks take the instance out of rotation, while it still serves
//     every request that reaches it (JETTY_DRAIN_DELAY, default 5s: at
//     least the balancer's check interval × fall count, see
//     deploy/haproxy.cfg);
//  2. stops accepting and waits for the requests in flight, chunk PUTs
//     included, to finish (JETTY_SHUTDOWN_TIMEOUT, default 30s);
//  3. stops the jobs, closes its parts and exits 0.
//
// The requests in flight when the drain began are counted, and how they
// ended is logged ("drained") and exported, so an operator (and the
// scale-out test) can see that none was cut.

// DefaultDrainDelay and DefaultShutdownTimeout are the defaults of
// JETTY_DRAIN_DELAY and JETTY_SHUTDOWN_TIMEOUT.
const (
	DefaultDrainDelay      = 5 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

// drainTracker counts the requests in flight and, once the drain began,
// how those that were in flight then ended.
type drainTracker struct {
	mu       sync.Mutex
	draining bool
	inflight int // requests being served
	puts     int // of which PUTs (chunk uploads)
	// Requests in flight when the drain began, and how they ended.
	atDrain, putsAtDrain int
	ok, failed, gone     int

	gauge *prometheus.GaugeVec
	ended *prometheus.CounterVec
}

// DrainReport is what the drain tracker saw: the requests (and PUTs) in
// flight when the drain began, and how many of them ended with a status
// below 400 (OK) or not (Failed), or were abandoned by their client (Gone:
// the body was cut, e.g. a chunk the client moved to a faster route);
// Unfinished were still running when the shutdown timeout ran out.
type DrainReport struct {
	InFlight, PutsInFlight       int
	OK, Failed, Gone, Unfinished int
}

func newDrainTracker(reg prometheus.Registerer) *drainTracker {
	d := &drainTracker{
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetty_http_requests_in_flight", Help: "Requests being served by the main listener (health checks and metrics aside), by method: PUT (chunk uploads) or other.",
		}, []string{"method"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_drain_requests_total", Help: "Requests in flight when the drain began, by how they ended (ok: status below 400; client_gone: the client cut the body; failed).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(d.gauge, d.ended)
	return d
}

// wrap counts the requests next serves, but for health checks and
// metrics (a readiness check in flight at the drain answers "draining",
// which is no failure).
func (d *drainTracker) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz", "/healthz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		put := r.Method == http.MethodPut
		method := "other"
		if put {
			method = "PUT"
		}
		gauge := d.gauge.WithLabelValues(method)
		d.mu.Lock()
		before := !d.draining
		d.inflight++
		if put {
			d.puts++
		}
		d.mu.Unlock()
		gauge.Inc()
		sw := &drainWriter{ResponseWriter: w}
		body := &drainBody{ReadCloser: r.Body}
		r.Body = body
		defer func() {
			gauge.Dec()
			d.mu.Lock()
			defer d.mu.Unlock()
			d.inflight--
			if put {
				d.puts--
			}
			if !before || !d.draining {
				return
			}
			// In flight when the drain began. A panic or an aborted
			// handler counts as failed.
			if p := recover(); p != nil {
				d.failed++
				d.ended.WithLabelValues("failed").Inc()
				panic(p)
			}
			switch {
			case sw.status != 0 && sw.status < 400:
				d.ok++
				d.ended.WithLabelValues("ok").Inc()
			case body.cut:
				d.gone++
				d.ended.WithLabelValues("client_gone").Inc()
			default:
				d.failed++
				d.ended.WithLabelValues("failed").Inc()
			}
		}()
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK // nothing written: net/http answers 200
		}
	})
}

// begin starts the drain and returns the requests in flight.
func (d *drainTracker) begin() (inflight, puts int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.draining {
		d.draining = true
		d.atDrain, d.putsAtDrain = d.inflight, d.puts
	}
	return d.atDrain, d.putsAtDrain
}

// inflightNow is the number of requests being served.
func (d *drainTracker) inflightNow() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inflight
}

// report is the drain's outcome so far.
func (d *drainTracker) report() DrainReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DrainReport{InFlight: d.atDrain, PutsInFlight: d.putsAtDrain, OK: d.ok, Failed: d.failed, Gone: d.gone,
		Unfinished: d.atDrain - d.ok - d.failed - d.gone}
}

// drainWriter records the status a handler answered.
type drainWriter struct {
	http.ResponseWriter
	status int
}

func (w *drainWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// drainBody notes a body the client cut (a read error other than EOF).
type drainBody struct {
	io.ReadCloser
	cut bool
}

func (b *drainBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.cut = true
	}
	return n, err
}
