package app

import (
	"context"
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

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/webhooksig"
)

const outboxSecret = "whsec_outbox_test_8c2f61d0a4b9e735"

// outboxReceiver is AgentCache's end: it verifies each call's signature,
// and while down it drops the connection without an answer.
type outboxReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	got  map[string][]server.WebhookEventBody // by path, in arrival order
	hits atomic.Int64                         // calls made while down
}

func newOutboxReceiver(t *testing.T) *outboxReceiver {
	o := &outboxReceiver{t: t, got: map[string][]server.WebhookEventBody{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if o.down.Load() {
			o.hits.Add(1)
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close() // no answer at all: as if nothing listened
			}
			return
		}
		if r.URL.Path == "/stuck" {
			http.Error(w, "internal error", 500)
			return
		}
		if _, err := webhooksig.Verify(r.Header.Get(webhooksig.Header), []string{outboxSecret}, time.Now(), r.Method, r.URL.EscapedPath(), body); err != nil {
			t.Errorf("unsigned or badly signed event %s: %v", body, err)
			http.Error(w, "bad signature", 401)
			return
		}
		var ev server.WebhookEventBody
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("event %s: %v", body, err)
		}
		o.mu.Lock()
		o.got[r.URL.Path] = append(o.got[r.URL.Path], ev)
		o.mu.Unlock()
		w.WriteHeader(200)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// received is what path got, duplicates (at least once) included.
func (o *outboxReceiver) received(path string) []server.WebhookEventBody {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]server.WebhookEventBody(nil), o.got[path]...)
}

func partnerCall(t *testing.T, base, path, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhooksig.Header, webhooksig.Sign(outboxSecret, time.Now(), "POST", path, []byte(body)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("%s %s: %d %s", path, body, res.StatusCode, b)
	}
}

// TestWebhookOutboxSurvivesRestart is issue 19's outbox test: the
// receiver is down for a while and the server is restarted in between
// (a new App on the same database); every event still arrives, signed,
// at least once, in order per account, and a receiver answering 500
// forever holds back no other account's events.
func TestWebhookOutboxSurvivesRestart(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dataDir := t.TempDir()
			dbURL := ""
			if dialect == "postgres" {
				dbURL = testenv.PostgresURL(t)
			}
			rx := newOutboxReceiver(t)
			rx.down.Store(true)
			cfg := Config{
				Listen:        "127.0.0.1:0",
				DataDir:       dataDir,
				DatabaseURL:   dbURL,
				WebhookSecret: outboxSecret,
				LiveKeys:      false,
				Webhooks: WebhookConfig{
					AllowHTTP: true, AllowPrivate: true,
					Poll: 20 * time.Millisecond, RetryBase: 20 * time.Millisecond, RetryMax: 150 * time.Millisecond, Timeout: 2 * time.Second,
				},
			}
			start := func() (*App, func() error) {
				a, stop, err := Start(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				return a, stop
			}
			users := []string{"usr_a", "usr_b", "usr_stuck"}
			paths := map[string]string{"usr_a": "/a", "usr_b": "/b", "usr_stuck": "/stuck"}

			a1, stop1 := start()
			for _, u := range users {
				partnerCall(t, a1.URL(), "/api/agentcache/provision",
					fmt.Sprintf(`{"user_id":%q,"email":"%s@example.com","tier":"starter","webhook_url":%q}`, u, u, rx.srv.URL+paths[u]))
				partnerCall(t, a1.URL(), "/api/agentcache/upgrade", fmt.Sprintf(`{"user_id":%q,"new_tier":"pro"}`, u))
			}
			// The receiver is down: attempts are made and fail.
			waitFor(t, "attempts while the receiver is down", func() bool { return rx.hits.Load() >= 6 })
			if err := stop1(); err != nil {
				t.Fatal(err)
			}

			// A new server on the same database carries on.
			a2, stop2 := start()
			defer stop2()
			for _, u := range users {
				partnerCall(t, a2.URL(), "/api/agentcache/suspend", fmt.Sprintf(`{"user_id":%q}`, u))
				partnerCall(t, a2.URL(), "/api/agentcache/reactivate", fmt.Sprintf(`{"user_id":%q}`, u))
				partnerCall(t, a2.URL(), "/api/agentcache/rotate", fmt.Sprintf(`{"user_id":%q}`, u))
			}
			rx.down.Store(false) // back up (/stuck answers 500 forever)
			since := time.Now()

			want := "[1:account.provisioned 2:account.tier_changed 3:account.suspended 4:account.reactivated 5:credentials.rotated]"
			for _, u := range []string{"usr_a", "usr_b"} {
				var got []server.WebhookEventBody
				waitFor(t, u+"'s five events", func() bool {
					got = dedup(rx.received(paths[u]))
					if len(got) >= 5 {
						return true
					}
					if time.Since(since) > 50*time.Second { // about to fail: say where they are
						acct, _ := a2.Store().AccountByUserID(context.Background(), u)
						evs, _ := a2.Store().WebhookEvents(context.Background(), acct.ID, 10)
						for _, e := range evs {
							t.Logf("%s event %d %s: %s attempts %d, next %s, last %d %q", u, e.Seq, e.Type, e.State, e.Attempts, e.NextAttemptAt, e.LastStatus, e.LastError)
						}
					}
					return false
				})
				if s := seqs(got); s != want {
					t.Fatalf("%s received %s (deduplicated, in arrival order), want %s", u, s, want)
				}
				// In order even counting duplicates: no event arrived
				// before an earlier one had first arrived.
				hi := int64(0)
				for _, ev := range rx.received(paths[u]) {
					if ev.Sequence > hi+1 {
						t.Fatalf("%s: event %d arrived before %d", u, ev.Sequence, hi+1)
					}
					hi = max(hi, ev.Sequence)
				}
			}
			// The stuck account: its first event retried, still pending,
			// nothing behind it sent.
			st := a2.Store()
			acct, err := st.AccountByUserID(context.Background(), "usr_stuck")
			if err != nil {
				t.Fatal(err)
			}
			evs, err := st.WebhookEvents(context.Background(), acct.ID, 10)
			if err != nil {
				t.Fatal(err)
			}
			first := evs[len(evs)-1]
			if len(evs) != 5 || first.Seq != 1 || first.State != server.WebhookPending || first.Attempts < 2 {
				t.Fatalf("stuck account's events: %d, first %+v", len(evs), first)
			}
			for _, e := range evs[:len(evs)-1] {
				if e.Attempts != 0 {
					t.Fatalf("event %d of the stuck account was sent before event 1 was delivered", e.Seq)
				}
			}
		})
	}
}

func dedup(evs []server.WebhookEventBody) []server.WebhookEventBody {
	seen := map[string]bool{}
	var out []server.WebhookEventBody
	for _, e := range evs {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

func seqs(evs []server.WebhookEventBody) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprintf("%d:%s", e.Sequence, e.Type))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhookConfigFromEnv: the JETTY_WEBHOOK_* variables, and --dev.
func TestWebhookConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"JETTY_WEBHOOK_ALLOW_HTTP": "1", "JETTY_WEBHOOK_POLL": "250ms", "JETTY_WEBHOOK_RETRY_BASE": "2s",
		"JETTY_WEBHOOK_RETRY_MAX": "10m", "JETTY_WEBHOOK_MAX_AGE": "48h", "JETTY_WEBHOOK_TIMEOUT": "5s", "JETTY_WEBHOOK_RETENTION": "7d",
	}
	c := FromEnv(func(k string) string { return env[k] })
	w := c.Webhooks
	if !w.AllowHTTP || w.AllowPrivate || w.Poll != 250*time.Millisecond || w.RetryBase != 2*time.Second || w.RetryMax != 10*time.Minute ||
		w.MaxAge != 48*time.Hour || w.Timeout != 5*time.Second || w.Retention != 7*24*time.Hour {
		t.Fatalf("Webhooks = %+v", w)
	}
	for _, bad := range []string{"JETTY_WEBHOOK_POLL=soon", "JETTY_WEBHOOK_MAX_AGE=1ms", "JETTY_WEBHOOK_TIMEOUT=1h"} {
		k, v, _ := strings.Cut(bad, "=")
		c := FromEnv(func(n string) string { return map[string]string{k: v}[n] })
		c.DataDir = t.TempDir()
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	c = Config{Dev: true, DataDir: t.TempDir()}
	if err := c.validate(); err != nil || !c.Webhooks.AllowHTTP || !c.Webhooks.AllowPrivate {
		t.Fatalf("--dev: %+v %v", c.Webhooks, err)
	}
}
