package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/edges"
	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
)

// BenchmarkTimeline uploads one file (JETTY_BENCH_MIB, default 256) over
// the WAN link through the engine and prints when each phase ended:
// hashing, edge selection (probe), the first and last chunk, completion.
// It is the profile of where an upload's time goes on a slow link:
//
//	go test -run '^$' -bench BenchmarkTimeline -benchtime 1x ./bench
//
// JETTY_BENCH_TRACE=1 also prints every request of the upload: when it
// started, when its body was written, when its answer came (the probe
// then shares the upload's transport instead of a clone of its own).
func BenchmarkTimeline(b *testing.B) {
	m := testenv.MinIO(b)
	tx := testenv.Toxiproxy(b)
	p := tx.Proxy(b, strings.TrimPrefix(m.Endpoint, "http://"))
	ln := linkNamed(envStr("JETTY_BENCH_LINK", "wan-2MB"))
	ln.shape(b, p)
	srv := startServer(b, m, p.URL())
	sp := tx.Proxy(b, strings.TrimPrefix(srv.url, "http://"))
	ln.shape(b, sp)
	file := b.TempDir() + "/f.bin"
	size := envInt("JETTY_BENCH_MIB", 256) << 20
	testenv.WriteRandFile(b, file, 9, size)
	c := &engine.Client{BaseURL: sp.URL(), APIKey: srv.key, APISecret: srv.secret}
	start := time.Now()
	var tr *tracer
	if os.Getenv("JETTY_BENCH_TRACE") != "" {
		tr = &tracer{start: start, base: c.HTTPClient().Transport}
		c.HTTP = &http.Client{Transport: tr}
	}
	var first, last time.Time
	done := 0
	sel := &edges.Selector{Client: c, OnReport: func(r edges.Report) {
		fmt.Printf("%6.3fs selected (probe took %v)\n", time.Since(start).Seconds(), r.Took)
	}}
	prog := engine.ProgressFunc(func(e engine.Event) {
		switch e.Kind {
		case engine.EventStart:
			fmt.Printf("%6.3fs start\n", time.Since(start).Seconds())
		case engine.EventChunkDone:
			if first.IsZero() {
				first = time.Now()
			}
			last = time.Now()
			done++
		case engine.EventDone:
			fmt.Printf("%6.3fs done; chunks %d first at %.3f last at %.3f\n", time.Since(start).Seconds(), done, first.Sub(start).Seconds(), last.Sub(start).Seconds())
		case engine.EventPlan:
			if e.Done == e.Total {
				fmt.Printf("%6.3fs planned\n", time.Since(start).Seconds())
			}
		}
	})
	res, err := engine.Upload(context.Background(), c, file, engine.Options{Edges: sel, Progress: prog, JournalDir: "-", Workers: int(envInt("JETTY_BENCH_WORKERS", 0))})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("%.1f MB/s workers %d\n", float64(size)/1e6/res.Duration.Seconds(), res.Workers)
	if tr != nil {
		tr.print()
	}
}

// tracer records every request of the upload: when it started, when its
// body was written and when its answer came (JETTY_BENCH_TRACE=1).
func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type tracer struct {
	start time.Time
	base  http.RoundTripper
	mu    sync.Mutex
	reqs  []traced
}

type traced struct {
	what              string
	began, wrote, got time.Duration
	status            int
}

func (t *tracer) RoundTrip(r *http.Request) (*http.Response, error) {
	began := time.Since(t.start)
	var wrote atomic.Int64 // set by the transport's writer, which may finish after the answer
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(int64(time.Since(t.start))) },
	})
	resp, err := t.base.RoundTrip(r.WithContext(ctx))
	st := 0
	if resp != nil {
		st = resp.StatusCode
	}
	path := r.URL.Path
	if len(path) > 40 {
		path = "…" + path[len(path)-39:]
	}
	t.mu.Lock()
	t.reqs = append(t.reqs, traced{what: r.Method + " " + r.URL.Host + path, began: began, wrote: time.Duration(wrote.Load()), got: time.Since(t.start), status: st})
	t.mu.Unlock()
	return resp, err
}

func (t *tracer) print() {
	t.mu.Lock()
	defer t.mu.Unlock()
	sort.Slice(t.reqs, func(i, j int) bool { return t.reqs[i].began < t.reqs[j].began })
	for _, r := range t.reqs {
		fmt.Printf("  %6.3f %6.3f %6.3f %3d %s\n", r.began.Seconds(), r.wrote.Seconds(), r.got.Seconds(), r.status, r.what)
	}
}
