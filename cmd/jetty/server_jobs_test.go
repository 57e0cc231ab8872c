package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// TestServerJobsRequestRetention: `jetty server jobs` applies the request
// log retention of the environment (default 30 days, 7 for failed
// requests without an account), reports it in both output forms, and
// refuses a malformed setting.
func TestServerJobsRequestRetention(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(dir, "jetty.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var reqs []server.APIRequest
	for _, age := range []time.Duration{40, 40, 31, 1} {
		reqs = append(reqs, server.APIRequest{Method: "POST", Endpoint: "POST /api/agentcache/provision", StatusCode: 201, CreatedAt: now.Add(-age * 24 * time.Hour)})
	}
	for _, age := range []time.Duration{10, 8, 6} {
		reqs = append(reqs, server.APIRequest{Method: "GET", Endpoint: "unmatched", StatusCode: 404, CreatedAt: now.Add(-age * 24 * time.Hour)})
	}
	if err := st.LogRequests(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out, errOut, code := runJetty(t, nil, "", "server", "jobs", "--data-dir", dir, "--json")
	if code != ExitOK {
		t.Fatalf("server jobs: exit %d, %s", code, errOut)
	}
	var rep struct {
		RequestsDeleted *int `json:"requests_deleted"`
		AccountsPurged  *int `json:"accounts_purged"`
		PurgedObjects   *int `json:"purged_objects"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.RequestsDeleted == nil || rep.AccountsPurged == nil || rep.PurgedObjects == nil {
		t.Fatalf("report %q: %v", out, err)
	}
	if *rep.RequestsDeleted != 5 {
		t.Fatalf("requests deleted %d, want 5 (three older than 30 days, two failed anonymous ones older than 7)", *rep.RequestsDeleted)
	}
	out, errOut, code = runJetty(t, nil, "", "server", "jobs", "--data-dir", dir)
	if code != ExitOK || !strings.Contains(out, "requests deleted:      0\n") || !strings.Contains(out, "accounts purged:       0\n") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runJetty(t, map[string]string{"JETTY_DELETED_ACCOUNT_GRACE": "2h"}, "", "server", "jobs", "--data-dir", dir)
	if code == ExitOK || !strings.Contains(errOut, "JETTY_DELETED_ACCOUNT_GRACE must be at least 24h") {
		t.Fatalf("grace of 2h: exit %d, %s", code, errOut)
	}
}
