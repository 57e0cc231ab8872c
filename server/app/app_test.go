package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
)

func TestFromEnv(t *testing.T) {
	env := map[string]string{
		"PORT":                        "8080",
		"DATABASE_URL":                "postgres://db/jetty",
		"REDIS_URL":                   "redis://cache:6379",
		"AGENTCACHE_WEBHOOK_SECRET":   "whsec",
		"INTERNAL_WEBHOOK_SECRET":     "inwh",
		"JETTYTHUNDER_API_URL":        "https://jettythunder.app",
		"JETTYTHUNDER_WEBHOOK_SECRET": "up",
	}
	c := FromEnv(func(k string) string { return env[k] })
	if c.Listen != ":8080" || c.DatabaseURL != "postgres://db/jetty" || c.RedisURL != "redis://cache:6379" ||
		c.WebhookSecret != "whsec" || c.InternalSecret != "inwh" || c.RelayUpstream != "https://jettythunder.app" ||
		c.UpstreamSecret != "up" || c.Bucket != "agentcache-assets" || !c.LiveKeys {
		t.Fatalf("FromEnv = %+v", c)
	}
	c = FromEnv(func(k string) string { return map[string]string{"JETTY_KEY_ENV": "test", "LYVE_BUCKET_NAME": "b"}[k] })
	if c.LiveKeys || c.Bucket != "b" || c.Listen != "" {
		t.Fatalf("FromEnv = %+v", c)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"mysql url":       {Config{DatabaseURL: "mysql://x", DataDir: t.TempDir()}, "postgres://"},
		"short relay key": {Config{RelayKey: "abcd", DataDir: t.TempDir()}, "64 hex"},
		"redis down":      {Config{RedisURL: "redis://127.0.0.1:1/0", DataDir: t.TempDir(), Listen: "127.0.0.1:0"}, "Redis"},
		"bad listen":      {Config{Listen: "nonsense", DataDir: t.TempDir()}, "listen"},
	} {
		t.Run(name, func(t *testing.T) {
			a, err := New(ctx, tc.cfg, nil)
			if err == nil {
				a.Close()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestProductionParts runs the whole server on PostgreSQL and Redis, as
// an operator would, and stops it gracefully.
func TestProductionParts(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	cfg := Config{
		Listen:        "127.0.0.1:0",
		DataDir:       t.TempDir(),
		DatabaseURL:   testenv.PostgresURL(t),
		RedisURL:      redisURL,
		WebhookSecret: "whsec_prod_test",
		LiveKeys:      true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()

	res, err := http.Get(a.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("readyz = %d", res.StatusCode)
	}
	req, _ := http.NewRequest("POST", a.URL()+"/api/agentcache/provision",
		strings.NewReader(`{"agentcache_user_id":"usr_prod","agentcache_email":"p@example.com","tier":"pro"}`))
	req.Header.Set("Authorization", "Bearer whsec_prod_test")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("provision = %d", res.StatusCode)
	}
	acct, err := a.Store().AccountByUserID(ctx, "usr_prod")
	if err != nil || !strings.HasPrefix(acct.APIKey, "jt_live_") {
		t.Fatalf("account %+v, %v: want a jt_live_ key in PostgreSQL", acct, err)
	}
	// Without INTERNAL_WEBHOOK_SECRET the relay is not mounted.
	res, err = http.Post(a.URL()+"/api/webhooks/jettythunder/provision", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("relay without INTERNAL_WEBHOOK_SECRET = %d, want 404", res.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(35 * time.Second):
		t.Fatal("Serve did not return after cancellation")
	}
	if _, err := http.Get(a.URL() + "/healthz"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}

// TestRetentionConfig: the retention variables, their defaults, "off",
// days, and the minimums that keep the usage roll-up and uploads in
// flight safe; the runner gets 0 for "off".
func TestRetentionConfig(t *testing.T) {
	const day = 24 * time.Hour
	for name, tc := range map[string]struct {
		env                    map[string]string
		requests, anon, grace  time.Duration
		runReq, runAnon, runGr time.Duration
		wantErr                string
	}{
		"defaults": {env: nil, requests: 30 * day, anon: 7 * day, grace: 30 * day,
			runReq: 30 * day, runAnon: 7 * day, runGr: 30 * day},
		"off": {env: map[string]string{"JETTY_REQUEST_LOG_RETENTION": "off", "JETTY_DELETED_ACCOUNT_GRACE": "0"},
			requests: -1, anon: -1, grace: -1},
		"days and hours": {env: map[string]string{"JETTY_REQUEST_LOG_RETENTION": "90d", "JETTY_ANON_REQUEST_LOG_RETENTION": "36h", "JETTY_DELETED_ACCOUNT_GRACE": "7d"},
			requests: 90 * day, anon: 36 * time.Hour, grace: 7 * day, runReq: 90 * day, runAnon: 36 * time.Hour, runGr: 7 * day},
		"anonymous never longer": {env: map[string]string{"JETTY_REQUEST_LOG_RETENTION": "3d", "JETTY_ANON_REQUEST_LOG_RETENTION": "10d"},
			requests: 3 * day, anon: 3 * day, grace: 30 * day, runReq: 3 * day, runAnon: 3 * day, runGr: 30 * day},
		"anonymous kept apart": {env: map[string]string{"JETTY_REQUEST_LOG_RETENTION": "off", "JETTY_ANON_REQUEST_LOG_RETENTION": "2d"},
			requests: -1, anon: 2 * day, grace: 30 * day, runAnon: 2 * day, runGr: 30 * day},
		"malformed":           {env: map[string]string{"JETTY_REQUEST_LOG_RETENTION": "30 days"}, wantErr: "JETTY_REQUEST_LOG_RETENTION"},
		"negative":            {env: map[string]string{"JETTY_DELETED_ACCOUNT_GRACE": "-5h"}, wantErr: "JETTY_DELETED_ACCOUNT_GRACE"},
		"too short":           {env: map[string]string{"JETTY_REQUEST_LOG_RETENTION": "24h"}, wantErr: "at least 48h"},
		"grace too short":     {env: map[string]string{"JETTY_DELETED_ACCOUNT_GRACE": "1h"}, wantErr: "at least 24h"},
		"anon too short":      {env: map[string]string{"JETTY_ANON_REQUEST_LOG_RETENTION": "10m"}, wantErr: "at least 1h"},
		"no unit is an error": {env: map[string]string{"JETTY_ANON_REQUEST_LOG_RETENTION": "7"}, wantErr: "JETTY_ANON_REQUEST_LOG_RETENTION"},
	} {
		t.Run(name, func(t *testing.T) {
			c := FromEnv(func(k string) string { return tc.env[k] })
			c.DataDir = t.TempDir()
			err := c.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validate = %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.RequestLogRetention != tc.requests || c.AnonRequestLogRetention != tc.anon || c.DeletedAccountGrace != tc.grace {
				t.Fatalf("retention %s, anonymous %s, grace %s; want %s, %s, %s",
					c.RequestLogRetention, c.AnonRequestLogRetention, c.DeletedAccountGrace, tc.requests, tc.anon, tc.grace)
			}
			r := newRunner(c, &parts{}, nil)
			if r.RequestLogRetention != tc.runReq || r.AnonRequestLogRetention != tc.runAnon || r.DeletedAccountGrace != tc.runGr {
				t.Fatalf("runner: retention %s, anonymous %s, grace %s; want %s, %s, %s",
					r.RequestLogRetention, r.AnonRequestLogRetention, r.DeletedAccountGrace, tc.runReq, tc.runAnon, tc.runGr)
			}
		})
	}
}
