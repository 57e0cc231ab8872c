package sqlstore

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server"
)

// TestAssetLookupIndexed: the listings by cache key and by pipeline
// (issue 19) are served by the indexes of migration 0011, those by name
// and name prefix (issue 20) by that of migration 0013, on both
// dialects, whatever else the table holds.
func TestAssetLookupIndexed(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		const account = "0b7d5c1e-0d4a-4f3b-8c7d-5e6f7a8b9c0d" // no rows needed to plan
		for _, c := range []struct {
			name, want string
			f          server.AssetFilter
		}{
			{"cache key", "idx_assets_account_cache_key", server.AssetFilter{CacheKey: "k"}},
			{"pipeline", "idx_assets_account_pipeline", server.AssetFilter{PipelineID: "123e4567-e89b-12d3-a456-426614174000"}},
			// Issue 20: names the command line resolves, and ls's prefixes.
			{"name", "idx_assets_account_filename", server.AssetFilter{Name: "photos/sub/q.jpg"}},
			{"name prefix", "idx_assets_account_filename", server.AssetFilter{NamePrefix: "photos/"}},
		} {
			cond, args := s.assetFilterSQL(account, c.f)
			query := `SELECT id FROM agentcache_assets WHERE ` + cond
			// A prefix is a range of names: the index bounds it and the
			// (few) matches are sorted by time. On these empty tables
			// PostgreSQL would rather walk the account's time index and
			// filter, which a selective prefix on a real table does not
			// favour; the question here is whether the index can serve it.
			if c.f.NamePrefix == "" {
				query += ` ORDER BY created_at DESC, id DESC LIMIT 101`
			}
			plan := s.explain(t, query, args...)
			if testing.Verbose() {
				t.Logf("%s: %s", c.name, plan)
			}
			if !strings.Contains(plan, c.want) {
				t.Errorf("%s lookup does not use %s:\n%s", c.name, c.want, plan)
			}
		}
	})
}

// explain returns the query plan of query. On PostgreSQL, sequential
// scans are switched off for it: the test tables are tiny, and the
// question is whether an index can serve the query, not whether the
// planner would bother.
func (s *Store) explain(t *testing.T, query string, args ...any) string {
	t.Helper()
	ctx := testCtx(t)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prefix := "EXPLAIN QUERY PLAN "
	if s.dialect == Postgres {
		prefix = "EXPLAIN "
		if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.QueryContext(ctx, s.q(prefix+query), args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if bs, ok := v.([]byte); ok {
				v = string(bs)
			}
			fmt.Fprint(&b, v, " ")
		}
		b.WriteString("\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
