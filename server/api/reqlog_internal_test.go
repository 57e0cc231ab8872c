package api

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// TestAnonymousFailuresAreCapped: a flood of failed requests without an
// account (404s), then of probes (which need no credentials), writes at
// most the burst plus the rate of api_requests rows; the rest are counted
// in jetty_request_log_skipped_total. Partner calls that succeed are never
// held back.
func TestAnonymousFailuresAreCapped(t *testing.T) {
	st, err := sqlstore.Open(t.Context(), testenv.SQLitePath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lim := memory.NewLimiter()
	defer lim.Close()
	const webhook = "whsec_flood_0123456789"
	s := New(Config{Store: st, Limiter: lim, WebhookSecret: webhook})
	defer s.Close()
	h := s.Handler()

	const flood = 1000
	start := time.Now()
	for i := range flood {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("/no/such/path/%d", i), nil))
		if w.Code != http.StatusNotFound {
			t.Fatalf("flood request %d: %d", i, w.Code)
		}
	}
	const probes = 50
	for i := range probes {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/api/jetty/probe", strings.NewReader("probe bytes")))
		if w.Code != http.StatusOK {
			t.Fatalf("probe %d: %d %s", i, w.Code, w.Body)
		}
	}
	elapsed := time.Since(start)
	for i := range 5 {
		body := fmt.Sprintf(`{"agentcache_user_id":"usr_flood_%d","agentcache_email":"f%d@example.com","tier":"pro"}`, i, i)
		req := httptest.NewRequest("POST", "/api/agentcache/provision", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+webhook)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			t.Fatalf("provision %d: %d %s", i, w.Code, w.Body)
		}
	}
	if err := s.FlushRequestLog(t.Context()); err != nil {
		t.Fatal(err)
	}
	rows, err := st.RecentRequests(t.Context(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var floods, probed, provisions int
	for _, r := range rows {
		switch r.Endpoint {
		case "unmatched":
			floods++
		case "POST /api/jetty/probe":
			probed++
		case "POST /api/agentcache/provision":
			provisions++
		}
	}
	most := anonLogBurst + int(math.Ceil(elapsed.Seconds()*anonLogRate)) + 1
	if floods < anonLogBurst || floods+probed > most || probed == probes {
		t.Fatalf("%d rows of %d failed anonymous requests and %d of %d probes in %s; want %d to %d in all, not every probe",
			floods, flood, probed, probes, elapsed, anonLogBurst, most)
	}
	if provisions != 5 {
		t.Fatalf("%d provisioning rows, want 5", provisions)
	}
	w := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil)) // a production server's metrics listener
	b, _ := io.ReadAll(w.Body)
	m := regexp.MustCompile(`(?m)^jetty_request_log_skipped_total (\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no jetty_request_log_skipped_total in /metrics")
	}
	if n, _ := strconv.Atoi(string(m[1])); n != flood+probes-floods-probed {
		t.Fatalf("jetty_request_log_skipped_total %d, want %d", n, flood+probes-floods-probed)
	}
	t.Logf("%d of %d flood rows and %d of %d probes written in %s", floods, flood, probed, probes, elapsed.Round(time.Millisecond))
}
