package sqlstore

import (
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
)

// TestSQLiteDeleteBatchIsSmall: on SQLite one DeleteRequests statement
// deletes at most sqliteDeleteBatch rows whatever the limit, so that the
// single writer is free for other writes between statements; PostgreSQL
// takes the limit.
func TestSQLiteDeleteBatchIsSmall(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		now := time.Now().UTC()
		reqs := make([]server.APIRequest, sqliteDeleteBatch+500)
		for i := range reqs {
			reqs[i] = server.APIRequest{Method: "GET", Endpoint: "x", StatusCode: 200, CreatedAt: now.Add(-time.Hour)}
		}
		if err := s.LogRequests(testCtx(t), reqs); err != nil {
			t.Fatal(err)
		}
		want := []int{len(reqs), 0}
		if s.Dialect() == SQLite {
			want = []int{sqliteDeleteBatch, 500, 0}
		}
		for i, w := range want {
			n, err := s.DeleteRequests(testCtx(t), now, false, 5000)
			if err != nil || n != w {
				t.Fatalf("call %d deleted %d, %v; want %d", i+1, n, err, w)
			}
		}
	})
}

// TestAnonDeleteUsesPartialIndex: on SQLite the shorter sweep of failed
// requests without an account walks only those rows (the partial index),
// not every request without an account (heartbeats, partner calls) as
// the planner would choose by itself.
func TestAnonDeleteUsesPartialIndex(t *testing.T) {
	s := openT(t, testenv.SQLitePath(t))
	defer s.Close()
	if plan := planOf(s, true); !strings.Contains(plan, "idx_api_requests_anon_failed") {
		t.Fatalf("plan %q does not use idx_api_requests_anon_failed", plan)
	}
}
