package sqlstore

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
)

// BenchmarkDeleteRequests measures the request-log retention on both
// databases: JETTY_BENCH_ROWS (default 1,000,000) rows older than the
// retention are deleted in batches of JETTY_BENCH_BATCH (default 5000,
// the jobs' batch; the SQLite store deletes 1000 at most), beside 100,000 newer rows that stay, while a writer
// logs 256 requests every 100 ms as the server would. It reports the
// total time, the slowest batch and the slowest log write during the
// delete; with JETTY_BENCH_SINGLE=1 it does the same with one DELETE
// statement for the whole backlog (what the batches avoid). Figures only:
// docs/RELIABILITY.md, section 16.
//
//	go test -run '^$' -bench DeleteRequests -benchtime 1x -timeout 60m ./server/sqlstore
func BenchmarkDeleteRequests(b *testing.B) {
	rows := envInt(b, "JETTY_BENCH_ROWS", 1_000_000)
	batch := envInt(b, "JETTY_BENCH_BATCH", 5000)
	single := os.Getenv("JETTY_BENCH_SINGLE") == "1"
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			var dsn string
			if dialect == "sqlite" {
				dsn = testenv.SQLitePath(b)
			} else {
				dsn = testenv.PostgresURL(b)
			}
			ctx := context.Background()
			s, err := Open(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			now := time.Now().UTC()
			cutoff := now.Add(-server.DefaultRequestLogRetention)
			seed := time.Now()
			// The backlog spreads over the 30 days before the cut-off,
			// the rows that stay over the 30 days after it.
			if err := seedRequests(ctx, s, rows, cutoff.Add(-30*24*time.Hour), cutoff.Add(-time.Second)); err != nil {
				b.Fatal(err)
			}
			if err := seedRequests(ctx, s, 100_000, cutoff.Add(time.Second), now); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: seeded %d + 100000 rows in %s", dialect, rows, time.Since(seed).Round(time.Second))
			b.Logf("plan: %s", planOf(s, false))
			b.Logf("plan (anonymous failures): %s", planOf(s, true))

			stop := make(chan struct{})
			var (
				wg     sync.WaitGroup
				writes []time.Duration
			)
			wg.Add(1)
			go func() { // the server's request log, meanwhile
				defer wg.Done()
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					reqs := make([]server.APIRequest, 256)
					for i := range reqs {
						reqs[i] = server.APIRequest{Method: "GET", Endpoint: "GET /api/agentcache/quota", StatusCode: 200}
					}
					start := time.Now()
					if err := s.LogRequests(ctx, reqs); err != nil {
						b.Error(err)
						return
					}
					writes = append(writes, time.Since(start))
				}
			}()

			b.ResetTimer()
			start := time.Now()
			var batches []time.Duration
			deleted := 0
			if single {
				bs := time.Now()
				res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM api_requests WHERE created_at < ?`), ts(cutoff))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := res.RowsAffected()
				deleted = int(n)
				batches = append(batches, time.Since(bs))
			} else {
				for {
					bs := time.Now()
					n, err := s.DeleteRequests(ctx, cutoff, false, batch)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
					batches = append(batches, time.Since(bs))
					deleted += n
				}
			}
			total := time.Since(start)
			b.StopTimer()
			time.Sleep(300 * time.Millisecond) // one more write after the delete
			close(stop)
			wg.Wait()
			if deleted != rows {
				b.Fatalf("deleted %d rows, want %d", deleted, rows)
			}
			slices.Sort(batches)
			slices.Sort(writes)
			b.ReportMetric(total.Seconds(), "s/delete")
			b.ReportMetric(float64(rows)/total.Seconds(), "rows/s")
			b.ReportMetric(float64(batches[len(batches)-1].Milliseconds()), "ms/slowest-batch")
			if len(writes) > 0 {
				b.ReportMetric(float64(writes[len(writes)-1].Milliseconds()), "ms/slowest-log-write")
			}
			b.Logf("%s: deleted %d rows in %s (%d statements of up to %d; median %s, slowest %s); %d log writes meanwhile, median %s, slowest %s",
				dialect, deleted, total.Round(time.Millisecond), len(batches), map[bool]int{true: min(batch, sqliteDeleteBatch), false: batch}[s.dialect == SQLite],
				batches[len(batches)/2].Round(time.Millisecond), batches[len(batches)-1].Round(time.Millisecond),
				len(writes), pct(writes, 50), pct(writes, 100))
		})
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := min(len(ds)*p/100, len(ds)-1)
	return ds[i].Round(time.Millisecond)
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q", name, v)
		}
		return n
	}
	return def
}

// seedRequests logs n requests spread evenly over [from, to]: 70% of an
// account-less kind that succeeded, 30% failed ones without an account
// (the jobs delete both kinds past the main retention).
func seedRequests(ctx context.Context, s *Store, n int, from, to time.Time) error {
	step := to.Sub(from) / time.Duration(n)
	const chunk = 5000
	for i := 0; i < n; i += chunk {
		reqs := make([]server.APIRequest, 0, chunk)
		for j := i; j < min(i+chunk, n); j++ {
			status := 200
			if j%10 >= 7 {
				status = 404
			}
			reqs = append(reqs, server.APIRequest{Method: "GET", Endpoint: "GET /api/agentcache/quota", StatusCode: status,
				ResponseTimeMS: 3, BytesTransferred: 512, IPAddress: "203.0.113.7", UserAgent: "jetty-bench/1.0",
				CreatedAt: from.Add(time.Duration(j) * step)})
		}
		if err := s.LogRequests(ctx, reqs); err != nil {
			return err
		}
	}
	return nil
}

// planOf is the query plan of DeleteRequests' statement.
func planOf(s *Store, anonFailed bool) string {
	explain := `EXPLAIN QUERY PLAN `
	if s.dialect == Postgres {
		explain = `EXPLAIN `
	}
	rows, err := s.db.QueryContext(context.Background(), s.q(explain+s.deleteRequestsSQL(anonFailed)), ts(time.Now()), 5000)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprint(vals[len(vals)-1]))
	}
	return strings.Join(out, " | ")
}
