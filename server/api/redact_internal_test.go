package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// TestPanicsNeverLogSecrets: a handler that panics with credentials in
// its value is answered with a bare 500, and neither the body nor the log
// line holds the credentials.
func TestPanicsNeverLogSecrets(t *testing.T) {
	st, err := sqlstore.Open(t.Context(), testenv.SQLitePath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lim := memory.NewLimiter()
	defer lim.Close()
	logs := &testenv.SyncBuffer{}
	const webhook = "whsec_panic_0123456789"
	s := New(Config{Store: st, Limiter: lim, WebhookSecret: webhook, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	defer s.Close()
	secrets := []string{
		webhook,
		"jt_live_AbCdEf0123456789AbCdEf0123456789xy",
		"jts_q1w2e3r4t5y6u7i8o9p0q1w2e3r4t5y6u7i8o9",
		"eyJzZXNzaW9uIjoiYWJjIn0.c2lnbmF0dXJl",
	}
	h := s.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom: Authorization: Bearer " + secrets[3] + " key=" + secrets[1] + " secret=" + secrets[2] + " webhook=" + webhook)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 500 || strings.TrimSpace(rec.Body.String()) != `{"error":"internal error","code":"internal"}` {
		t.Fatalf("panic answered %d %s", rec.Code, rec.Body.String())
	}
	out := logs.String()
	if !strings.Contains(out, "panic in handler") || !strings.Contains(out, "boom") {
		t.Fatalf("the panic was not logged: %s", out)
	}
	for _, sec := range secrets {
		if strings.Contains(out, sec) || strings.Contains(out, sec[len(sec)-12:]) {
			t.Errorf("%q reached the log: %s", sec[:8], out)
		}
	}
	if !strings.Contains(out, "jt_live_[redacted]") || !strings.Contains(out, "Bearer [redacted]") {
		t.Errorf("scrubbed log does not say what was removed: %s", out)
	}
}
