package bench

import (
	"context"
	"fmt"
	"strings"
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
func BenchmarkTimeline(b *testing.B) {
	m := testenv.MinIO(b)
	tx := testenv.Toxiproxy(b)
	p := tx.Proxy(b, strings.TrimPrefix(m.Endpoint, "http://"))
	wan(b, p)
	srv := startServer(b, m, p.URL())
	sp := tx.Proxy(b, strings.TrimPrefix(srv.url, "http://"))
	wan(b, sp)
	file := b.TempDir() + "/f.bin"
	size := envInt("JETTY_BENCH_MIB", 256) << 20
	testenv.WriteRandFile(b, file, 9, size)
	c := &engine.Client{BaseURL: sp.URL(), APIKey: srv.key, APISecret: srv.secret}
	start := time.Now()
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
	res, err := engine.Upload(context.Background(), c, file, engine.Options{Edges: sel, Progress: prog, JournalDir: "-"})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("%.1f MB/s workers %d\n", float64(size)/1e6/res.Duration.Seconds(), res.Workers)
}
