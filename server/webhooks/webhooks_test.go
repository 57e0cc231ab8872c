package webhooks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/sqlstore"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// TestBackoff: doubling from RetryBase, capped at RetryMax, with jitter
// taking at most half off.
func TestBackoff(t *testing.T) {
	w := New(Config{RetryBase: time.Second, RetryMax: time.Minute})
	for n, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second, 7: time.Minute, 100: time.Minute} {
		for range 50 {
			d := w.backoff(n)
			if d > full || d < full/2 {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, full/2, full)
			}
		}
	}
}

func event(url string) server.WebhookEvent {
	return server.WebhookEvent{ID: "evt_1", Type: server.EventAccountSuspended, URL: url, Payload: []byte(`{"id":"evt_1"}`)}
}

// TestSendSignsWithBothSecrets: during a rotation of the webhook secret
// the partner verifies with either.
func TestSendSignsWithBothSecrets(t *testing.T) {
	var sig atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig.Store(r.Header.Get(webhooksig.Header))
		if r.Header.Get("X-Jetty-Event-Id") != "evt_1" || r.Header.Get("X-Jetty-Delivery-Attempt") != "1" {
			t.Errorf("headers %v", r.Header)
		}
	}))
	defer srv.Close()
	w := New(Config{Secret: "whsec_new_0123456789", PreviousSecret: "whsec_old_0123456789", AllowPrivate: true})
	if st, err := w.send(context.Background(), event(srv.URL+"/p/q")); err != nil || st != 200 {
		t.Fatalf("send: %d %v", st, err)
	}
	h := sig.Load().(string)
	for _, secret := range []string{"whsec_new_0123456789", "whsec_old_0123456789"} {
		if _, err := webhooksig.Verify(h, []string{secret}, time.Now(), "POST", "/p/q", []byte(`{"id":"evt_1"}`)); err != nil {
			t.Errorf("%s does not verify %q: %v", secret, h, err)
		}
	}
}

// TestSendBounds: redirects are not followed, a slow receiver times out,
// a long answer is cut, and a private address is refused unless allowed.
func TestSendBounds(t *testing.T) {
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/target", http.StatusFound)
		case "/target":
			followed.Store(true)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		case "/long":
			w.WriteHeader(503)
			w.Write([]byte(strings.Repeat("x\n", 100_000)))
		}
	}))
	defer srv.Close()
	w := New(Config{Secret: "whsec_0123456789abcdef", AllowPrivate: true, Timeout: 200 * time.Millisecond})
	st, err := w.send(context.Background(), event(srv.URL+"/redirect"))
	if st != http.StatusFound || err == nil || !strings.Contains(err.Error(), "redirects are not followed") || followed.Load() {
		t.Fatalf("redirect: %d %v (followed %v)", st, err, followed.Load())
	}
	if st, err := w.send(context.Background(), event(srv.URL+"/slow")); st != 0 || err == nil {
		t.Fatalf("slow: %d %v", st, err)
	}
	st, err = w.send(context.Background(), event(srv.URL+"/long"))
	if st != 503 || err == nil || len(err.Error()) > 220 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("long: %d %q", st, err)
	}
	strict := New(Config{Secret: "whsec_0123456789abcdef"})
	if st, err := strict.send(context.Background(), event(srv.URL+"/target")); st != 0 || err == nil || !strings.Contains(err.Error(), "not public") || followed.Load() {
		t.Fatalf("private address: %d %v", st, err)
	}
}

// TestGiveUp: an event older than MaxAge that fails again is marked
// failed (visible, counted), and the account's next event goes out.
func TestGiveUp(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, testenv.SQLitePath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "down", 500)
		}
	}))
	defer srv.Close()
	acct, err := st.CreateAccount(ctx, server.NewAccount{UserID: "usr_giveup", Email: "g@example.com", Tier: "pro",
		APIKey: "jt_test_giveup0123456789", SecretHash: strings.Repeat("ab", 32), S3Bucket: "b", S3Prefix: "users/usr_giveup/",
		WebhookURL: srv.URL + "/h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetStatus(ctx, "usr_giveup", server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := New(Config{Store: st, Secret: "whsec_0123456789abcdef", AllowPrivate: true, MaxAge: time.Nanosecond, Registerer: reg})
	for range 2 {
		if n, err := w.RunOnce(ctx); err != nil || n != 1 {
			t.Fatalf("RunOnce: %d %v", n, err)
		}
	}
	evs, err := st.WebhookEvents(ctx, acct.ID, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events %v %v", evs, err)
	}
	if first := evs[1]; first.State != server.WebhookFailed || first.Attempts != 1 || first.LastStatus != 500 || first.FailedAt.IsZero() {
		t.Fatalf("first event %+v", first)
	}
	if second := evs[0]; second.State != server.WebhookDelivered {
		t.Fatalf("second event %+v", second)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() == "jetty_webhook_attempts_total" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["gave_up"] != 1 || got["http_error"] != 1 || got["delivered"] != 1 {
		t.Fatalf("jetty_webhook_attempts_total = %v", got)
	}
}
