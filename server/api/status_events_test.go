package api_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/webhooks"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// hookCall is one request a test receiver got.
type hookCall struct {
	path   string
	header http.Header
	body   []byte
	event  server.WebhookEventBody
}

// hookReceiver is a partner's webhook endpoint: it verifies every call
// the way docs/partner-webhooks.md tells the partner to, and answers
// status() (200 unless set).
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	calls  []hookCall
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{t: t}
	h.status.Store(200)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if st := int(h.status.Load()); st != 200 {
			http.Error(w, "receiver says no", st)
			return
		}
		// The partner's recipe: HMAC-SHA256 of "<t>.POST <path>.<body>".
		if _, err := webhooksig.Verify(r.Header.Get(webhooksig.Header), []string{webhookSecret}, time.Now(), r.Method, r.URL.EscapedPath(), body); err != nil {
			t.Errorf("signature of %s does not verify: %v", body, err)
			http.Error(w, "bad signature", 401)
			return
		}
		if !manualVerify(r.Header.Get(webhooksig.Header), webhookSecret, r.Method+" "+r.URL.EscapedPath(), body) {
			t.Errorf("the documented recipe does not verify %s", body)
		}
		var ev server.WebhookEventBody
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("event body %s: %v", body, err)
		}
		if r.Header.Get("X-Jetty-Event") != ev.Type || r.Header.Get("X-Jetty-Event-Id") != ev.ID || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v disagree with %s", r.Header, body)
		}
		h.mu.Lock()
		h.calls = append(h.calls, hookCall{path: r.URL.Path, header: r.Header.Clone(), body: body, event: ev})
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// manualVerify is the recipe of docs/partner-webhooks.md written out
// with nothing but the standard library.
func manualVerify(header, secret, methodPath string, body []byte) bool {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + methodPath + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

func (h *hookReceiver) got(path string) []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookCall
	for _, c := range h.calls {
		if c.path == path {
			out = append(out, c)
		}
	}
	return out
}

// waitCalls waits (generously) until path has received n calls.
func (h *hookReceiver) waitCalls(path string, n int) []hookCall {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := h.got(path)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s received %d events, want %d: %v", path, len(got), n, types(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func types(cs []hookCall) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d:%s", c.event.Sequence, c.event.Type))
	}
	return out
}

// hookEnv is an env whose partners may register http://127.0.0.1 URLs,
// with a delivery worker polling fast.
func hookEnv(t *testing.T, b backend, allowPrivate bool) (*env, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var w *webhooks.Worker
	e := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, func(c *api.Config) {
		c.WebhookURLs = server.WebhookURLPolicy{AllowHTTP: true, AllowPrivate: true}
		c.Registry = reg
		c.MetricsPublic = true
		c.WebhookNotify = func() {
			if w != nil {
				w.Notify()
			}
		}
	})
	w = webhooks.New(webhooks.Config{
		Store: e.store, Secret: webhookSecret, Holder: "test", Registerer: reg,
		Poll: 20 * time.Millisecond, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		AllowPrivate: allowPrivate,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, reg
}

func (e *env) partner(path, body string) resp {
	e.t.Helper()
	r := e.do("POST", path, body, partnerHeaders())
	if r.status != 200 && r.status != 201 {
		e.t.Fatalf("%s %s: %d %s", path, body, r.status, r.raw)
	}
	return r
}

// TestStatusWebhooks: every event type arrives at the account's
// webhook_url, signed (verified with the partner's recipe), in sequence,
// each with a unique id and no credential, and the partner sees their
// delivery state; the metrics count them.
func TestStatusWebhooks(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e, _ := hookEnv(t, b, true)
		rx := newHookReceiver(t)
		hook := rx.srv.URL + "/hooks/jetty"
		r := e.partner("/api/agentcache/provision", fmt.Sprintf(`{"user_id":"usr_hook","email":"h@example.com","tier":"starter","webhook_url":%q}`, hook))
		acct := r.body["account"].(map[string]any)
		secrets := []string{acct["api_key"].(string), acct["api_secret"].(string), webhookSecret}
		if acct["webhook_url"] != hook {
			t.Fatalf("account %v", acct)
		}
		e.partner("/api/agentcache/upgrade", `{"user_id":"usr_hook","new_tier":"pro"}`)
		e.partner("/api/agentcache/suspend", `{"user_id":"usr_hook"}`)
		e.partner("/api/agentcache/reactivate", `{"user_id":"usr_hook"}`)
		r = e.partner("/api/agentcache/rotate", `{"user_id":"usr_hook","overlap_seconds":600}`)
		acct = r.body["account"].(map[string]any)
		secrets = append(secrets, acct["api_key"].(string), acct["api_secret"].(string))
		e.partner("/api/agentcache/revoke", `{"user_id":"usr_hook"}`)

		// Storage crossing 80%, 95% and 100% of pro's 20 GiB (the store's
		// reservations, as uploads use them; no bytes need to move).
		a, err := e.store.AccountByUserID(context.Background(), "usr_hook")
		if err != nil {
			t.Fatal(err)
		}
		q, used := a.StorageQuotaBytes(), int64(0)
		for _, pct := range []int64{50, 80, 85, 95, 100} {
			target := (q*pct + 99) / 100
			res, err := e.store.Reserve(context.Background(), a.ID, target-used, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.store.CommitReservation(context.Background(), res.ID, target-used); err != nil {
				t.Fatal(err)
			}
			used = target
		}
		e.partner("/api/agentcache/delete", `{"user_id":"usr_hook"}`)

		want := []string{"account.provisioned", "account.tier_changed", "account.suspended", "account.reactivated",
			"credentials.rotated", "credentials.revoked", "quota.warning", "quota.warning", "quota.exceeded", "account.deleted"}
		calls := rx.waitCalls("/hooks/jetty", len(want))
		ids := map[string]bool{}
		for i, c := range calls {
			ev := c.event
			if ev.Type != want[i] || ev.Sequence != int64(i+1) || ev.UserID != "usr_hook" || ev.AccountID != a.ID || ev.OccurredAt.IsZero() {
				t.Fatalf("event %d: %s, want %s with sequence %d", i, c.body, want[i], i+1)
			}
			if ids[ev.ID] || !strings.HasPrefix(ev.ID, "evt_") {
				t.Fatalf("event id %q repeated or malformed", ev.ID)
			}
			ids[ev.ID] = true
			for _, s := range secrets {
				if strings.Contains(string(c.body), s) {
					t.Fatalf("event %s carries a credential", c.body)
				}
			}
		}
		if d := calls[1].event.Data; d.Tier != "pro" || d.PreviousTier != "starter" || d.StorageQuotaGB != 20 {
			t.Fatalf("tier_changed %s", calls[1].body)
		}
		if d := calls[4].event.Data; !strings.HasPrefix(d.APIKeyPrefix, "jt_test_") || d.PreviousKeyExpiresAt == nil {
			t.Fatalf("rotated %s", calls[4].body)
		}
		if calls[6].event.Data.ThresholdPercent != 80 || calls[7].event.Data.ThresholdPercent != 95 || calls[8].event.Data.ThresholdPercent != 100 {
			t.Fatalf("quota events %s %s %s", calls[6].body, calls[7].body, calls[8].body)
		}

		// The partner's view of the deliveries (recorded just after the
		// receiver answered).
		var newest map[string]any
		deadline := time.Now().Add(30 * time.Second)
		for {
			lr := e.do("GET", "/api/agentcache/webhooks?user_id=usr_hook", "", partnerHeaders())
			if lr.status != 200 || lr.body["webhook_url"] != hook {
				t.Fatalf("list: %d %s", lr.status, lr.raw)
			}
			evs := lr.body["events"].([]any)
			if len(evs) != len(want) {
				t.Fatalf("list has %d events", len(evs))
			}
			newest = evs[0].(map[string]any)
			if newest["state"] == "delivered" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never recorded as delivered: %v", newest)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if newest["type"] != "account.deleted" || newest["attempts"] != float64(1) || newest["next_attempt_at"] != nil ||
			newest["last_status"] != float64(204) || newest["delivered_at"] == nil || newest["payload"].(map[string]any)["id"] != newest["id"] {
			t.Fatalf("newest event %v", newest)
		}
		wantError(t, e.do("GET", "/api/agentcache/webhooks?user_id=usr_hook", "", nil), 401, "unauthorized")
		wantError(t, e.do("GET", "/api/agentcache/webhooks?user_id=usr_nobody", "", partnerHeaders()), 404, "not_found")

		// Metrics: attempts by result, events by state.
		deadline = time.Now().Add(30 * time.Second)
		for {
			m := e.do("GET", "/metrics", "", nil).raw
			if strings.Contains(m, `jetty_webhook_attempts_total{result="delivered"} 10`) && strings.Contains(m, `jetty_webhook_events{state="delivered"} 10`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics never showed 10 delivered events:\n%s", grepLines(m, "jetty_webhook"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWebhookURLRules: what a partner may register, and changing it.
func TestWebhookURLRules(t *testing.T) {
	b := backends()[0]
	strict := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, nil) // production policy
	for _, bad := range []string{
		"http://hooks.example.com/x",     // https only
		"https://127.0.0.1/x",            // loopback
		"https://10.1.2.3/x",             // private
		"https://169.254.169.254/latest", // cloud metadata
		"https://localhost/x",
		"https://[::1]/x",
		"ftp://hooks.example.com/x",
		"file:///etc/passwd",
		"https://user:pw@hooks.example.com/x",
		"hooks.example.com/x",
		"https://hooks.example.com/x#frag",
		"https://hooks.example.com/" + strings.Repeat("a", 2100),
	} {
		r := strict.do("POST", "/api/agentcache/provision", fmt.Sprintf(`{"user_id":"usr_bad","email":"b@example.com","tier":"pro","webhook_url":%q}`, bad), partnerHeaders())
		wantError(t, r, 400, "invalid_request")
	}
	r := strict.partner("/api/agentcache/provision", `{"user_id":"usr_ok","email":"o@example.com","tier":"pro","webhook_url":"https://hooks.example.com/jetty"}`)
	if r.body["account"].(map[string]any)["webhook_url"] != "https://hooks.example.com/jetty" {
		t.Fatalf("provision: %s", r.raw)
	}
	r = strict.partner("/api/agentcache/webhook-url", `{"user_id":"usr_ok","webhook_url":"https://other.example.com/h"}`)
	if r.body["account"].(map[string]any)["webhook_url"] != "https://other.example.com/h" {
		t.Fatalf("change: %s", r.raw)
	}
	wantError(t, strict.do("POST", "/api/agentcache/webhook-url", `{"user_id":"usr_ok","webhook_url":"http://other.example.com/h"}`, partnerHeaders()), 400, "invalid_request")
	wantError(t, strict.do("POST", "/api/agentcache/webhook-url", `{"user_id":"usr_ok"}`, partnerHeaders()), 400, "invalid_request")
	wantError(t, strict.do("POST", "/api/agentcache/webhook-url", `{"user_id":"usr_nobody","webhook_url":"https://x.example.com/"}`, partnerHeaders()), 404, "not_found")
	wantError(t, strict.do("POST", "/api/agentcache/webhook-url", `{"user_id":"usr_ok","webhook_url":"https://x.example.com/"}`, nil), 401, "unauthorized")
	r = strict.partner("/api/agentcache/webhook-url", `{"user_id":"usr_ok","webhook_url":""}`)
	if _, ok := r.body["account"].(map[string]any)["webhook_url"]; ok {
		t.Fatalf("removal: %s", r.raw)
	}
	a, _ := strict.store.AccountByUserID(context.Background(), "usr_ok")
	if a.WebhookURL != "" {
		t.Fatalf("stored url %q", a.WebhookURL)
	}
}

// TestWebhookFailingReceiverBlocksOnlyItsAccount: a receiver answering
// 500 forever holds back its own account's events (in order, retried with
// the failure visible), never another account's.
func TestWebhookFailingReceiverBlocksOnlyItsAccount(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e, _ := hookEnv(t, b, true)
		bad, good := newHookReceiver(t), newHookReceiver(t)
		bad.status.Store(500)
		e.partner("/api/agentcache/provision", fmt.Sprintf(`{"user_id":"usr_bad","email":"b@example.com","tier":"starter","webhook_url":%q}`, bad.srv.URL+"/h"))
		e.partner("/api/agentcache/provision", fmt.Sprintf(`{"user_id":"usr_good","email":"g@example.com","tier":"starter","webhook_url":%q}`, good.srv.URL+"/h"))
		for _, u := range []string{"usr_bad", "usr_good"} {
			e.partner("/api/agentcache/upgrade", fmt.Sprintf(`{"user_id":%q,"new_tier":"pro"}`, u))
			e.partner("/api/agentcache/suspend", fmt.Sprintf(`{"user_id":%q}`, u))
			e.partner("/api/agentcache/reactivate", fmt.Sprintf(`{"user_id":%q}`, u))
		}
		calls := good.waitCalls("/h", 4)
		if got := fmt.Sprint(types(calls)); got != "[1:account.provisioned 2:account.tier_changed 3:account.suspended 4:account.reactivated]" {
			t.Fatalf("good receiver got %s", got)
		}
		// The failing account: its first event retried, visible, the rest
		// waiting behind it.
		deadline := time.Now().Add(30 * time.Second)
		for {
			lr := e.do("GET", "/api/agentcache/webhooks?user_id=usr_bad", "", partnerHeaders())
			evs := lr.body["events"].([]any)
			first := evs[len(evs)-1].(map[string]any)
			if first["attempts"].(float64) >= 3 {
				if first["state"] != "pending" || first["last_status"] != float64(500) || !strings.Contains(first["last_error"].(string), "HTTP 500") || first["next_attempt_at"] == nil {
					t.Fatalf("failing event %v", first)
				}
				for _, ev := range evs[:len(evs)-1] {
					if m := ev.(map[string]any); m["attempts"] != float64(0) || m["state"] != "pending" {
						t.Fatalf("event behind a failing one was tried: %v", m)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("failing event never retried: %s", lr.raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The receiver recovers: everything arrives, in order.
		bad.status.Store(200)
		calls = bad.waitCalls("/h", 4)
		if got := fmt.Sprint(types(calls)); got != "[1:account.provisioned 2:account.tier_changed 3:account.suspended 4:account.reactivated]" {
			t.Fatalf("recovered receiver got %s", got)
		}
	})
}

// TestWebhookRefusesPrivateAddresses: without JETTY_WEBHOOK_ALLOW_PRIVATE
// the sender refuses to connect to a loopback address, whatever the URL
// passed at registration, and says so in last_error.
func TestWebhookRefusesPrivateAddresses(t *testing.T) {
	e, _ := hookEnv(t, backends()[0], false)
	rx := newHookReceiver(t)
	e.partner("/api/agentcache/provision", fmt.Sprintf(`{"user_id":"usr_ssrf","email":"s@example.com","tier":"starter","webhook_url":%q}`, rx.srv.URL+"/h"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		lr := e.do("GET", "/api/agentcache/webhooks?user_id=usr_ssrf", "", partnerHeaders())
		ev := lr.body["events"].([]any)[0].(map[string]any)
		if ev["attempts"].(float64) >= 1 {
			if msg, _ := ev["last_error"].(string); !strings.Contains(msg, "not public") || ev["state"] != "pending" {
				t.Fatalf("event %v", ev)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never attempted: %s", lr.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(rx.got("/h")); n != 0 {
		t.Fatalf("loopback receiver was called %d times", n)
	}
}
