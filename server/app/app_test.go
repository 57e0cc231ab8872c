package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/redis"
)

func TestFromEnv(t *testing.T) {
	env := map[string]string{
		"PORT":                        "8080",
		"DATABASE_URL":                "postgres://db/jetty",
		"REDIS_URL":                   "redis://cache:6379",
		"AGENTCACHE_WEBHOOK_SECRET":   "whsec_b6523112869f5d916ce5e314f71b3cc6",
		"INTERNAL_WEBHOOK_SECRET":     "inwh_fa6f47a965c80979a190e175f54b36ab",
		"JETTYTHUNDER_API_URL":        "https://jettythunder.app",
		"JETTYTHUNDER_WEBHOOK_SECRET": "up_cba6d65e6557756dfb7d4233822bfec0",
	}
	c := FromEnv(func(k string) string { return env[k] })
	if c.Listen != ":8080" || c.DatabaseURL != "postgres://db/jetty" || c.RedisURL != "redis://cache:6379" ||
		c.WebhookSecret != "whsec_b6523112869f5d916ce5e314f71b3cc6" || c.InternalSecret != "inwh_fa6f47a965c80979a190e175f54b36ab" || c.RelayUpstream != "https://jettythunder.app" ||
		c.UpstreamSecret != "up_cba6d65e6557756dfb7d4233822bfec0" || c.Bucket != "agentcache-assets" || !c.LiveKeys {
		t.Fatalf("FromEnv = %+v", c)
	}
	c = FromEnv(func(k string) string { return map[string]string{"JETTY_KEY_ENV": "test", "LYVE_BUCKET_NAME": "b"}[k] })
	if c.LiveKeys || c.Bucket != "b" || c.Listen != "" {
		t.Fatalf("FromEnv = %+v", c)
	}
	c = FromEnv(func(k string) string {
		return map[string]string{"JETTY_BODY_TIMEOUT": "5s", "JETTY_METRICS_LISTEN": "127.0.0.1:9090", "JETTY_METRICS_TOKEN": "tok"}[k]
	})
	if c.BodyTimeout != 5*time.Second || c.MetricsListen != "127.0.0.1:9090" || c.MetricsToken != "tok" {
		t.Fatalf("FromEnv = %+v", c)
	}
	for _, bad := range []string{"forever", "10ms", "2h"} {
		c = FromEnv(func(k string) string { return map[string]string{"JETTY_BODY_TIMEOUT": bad}[k] })
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "JETTY_BODY_TIMEOUT") {
			t.Errorf("JETTY_BODY_TIMEOUT=%s: %v", bad, err)
		}
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

// TestWeakSecretsRefused: every secret the server reads is refused at
// start when blank, padded, short or repetitive, with the variable's name
// and how to make a good one; unset stays allowed (the feature is off),
// and the same goes in --dev, which only generates the missing ones.
func TestWeakSecretsRefused(t *testing.T) {
	strong := "3f7c1a9e4b2d8f6a0c5e7b9d1f3a5c7e2b4d6f8a0c1e3a5b"
	vars := []string{"AGENTCACHE_WEBHOOK_SECRET", "AGENTCACHE_WEBHOOK_SECRET_PREVIOUS", "INTERNAL_WEBHOOK_SECRET",
		"JETTYTHUNDER_WEBHOOK_SECRET", "JETTY_TOKEN_SECRET", "JETTY_EDGE_SECRET", "JETTY_RELAY_ENCRYPTION_KEY"}
	for _, name := range vars {
		for _, weak := range []string{" ", "x", strings.Repeat("a", 64), " " + strong[:40], strings.Repeat("0123456789abcdef", 4)} {
			for _, dev := range []bool{false, true} {
				cfg := FromEnv(func(k string) string {
					if k == name {
						return weak
					}
					return ""
				})
				cfg.Dev, cfg.DataDir, cfg.Listen = dev, t.TempDir(), "127.0.0.1:0"
				a, err := New(context.Background(), cfg, nil)
				if err == nil {
					a.Close()
					t.Errorf("%s=%q (dev %v): the server started", name, weak, dev)
					continue
				}
				if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "openssl rand -hex 32") {
					t.Errorf("%s=%q: %q does not name the variable or say how to make one", name, weak, msg)
				}
			}
		}
	}
	// Unset everything, and strong values everywhere, start.
	for _, env := range []map[string]string{{}, {
		"AGENTCACHE_WEBHOOK_SECRET": strong, "AGENTCACHE_WEBHOOK_SECRET_PREVIOUS": strong[1:] + "9",
		"INTERNAL_WEBHOOK_SECRET": strong[2:] + "87", "JETTYTHUNDER_WEBHOOK_SECRET": strong,
		"JETTY_TOKEN_SECRET": strong[3:] + "654", "JETTY_EDGE_SECRET": strong[4:] + "3210",
		"JETTY_RELAY_ENCRYPTION_KEY": "5b1f0e9c3a7d2b8f4e6a1c9d0b3f7e2a8c4d6b1e9f0a3c7d5e2b8f4a6c1d9e0b",
	}} {
		cfg := FromEnv(func(k string) string { return env[k] })
		cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
		a, err := New(context.Background(), cfg, nil)
		if err != nil {
			t.Fatalf("%v: %v", env, err)
		}
		a.Close()
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
		WebhookSecret: "whsec_prod_test_e3768bb336740462bab0a9aa6f319249",
		LiveKeys:      true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every instance on this Redis counts the same stream slots.
	if _, ok := a.streams.(*redis.Semaphore); !ok {
		t.Fatalf("stream ceiling on %T, want *redis.Semaphore with REDIS_URL", a.streams)
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
	req.Header.Set("Authorization", "Bearer whsec_prod_test_e3768bb336740462bab0a9aa6f319249")
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

// TestMetricsExposure: a production server does not serve /metrics on
// its main listener; JETTY_METRICS_LISTEN serves them on their own
// address (and only there), JETTY_METRICS_TOKEN requires a Bearer token;
// --dev serves them to anyone.
func TestMetricsExposure(t *testing.T) {
	const token = "metrics_token_app_test_4b8e2f6a1d9c3e7b5a0f"
	get := func(u, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	start := func(cfg Config) *App {
		t.Helper()
		cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
		a, stop, err := Start(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop() })
		return a
	}
	const series = "jetty_connections_open"

	prod := start(Config{})
	if st, body := get(prod.URL()+"/metrics", ""); st != 404 || strings.Contains(body, series) {
		t.Errorf("production default: %d %.200s", st, body)
	}
	if prod.MetricsURL() != "" {
		t.Errorf("a metrics listener without JETTY_METRICS_LISTEN: %s", prod.MetricsURL())
	}

	sep := start(Config{MetricsListen: "127.0.0.1:0", Dev: true})
	if st, _ := get(sep.URL()+"/metrics", ""); st != 404 {
		t.Errorf("main listener with JETTY_METRICS_LISTEN (even in --dev): %d", st)
	}
	if st, body := get(sep.MetricsURL()+"/metrics", ""); st != 200 || !strings.Contains(body, series) {
		t.Errorf("metrics listener: %d %.200s", st, body)
	}
	if st, _ := get(sep.MetricsURL()+"/healthz", ""); st != 404 {
		t.Errorf("the metrics listener serves more than /metrics: %d", st)
	}

	tok := start(Config{MetricsToken: token, MetricsListen: "127.0.0.1:0"})
	if st, _ := get(tok.MetricsURL()+"/metrics", ""); st != 401 {
		t.Errorf("metrics listener with a token, none sent: %d", st)
	}
	if st, body := get(tok.MetricsURL()+"/metrics", token); st != 200 || !strings.Contains(body, series) {
		t.Errorf("metrics listener with the token: %d %.200s", st, body)
	}
	tokMain := start(Config{MetricsToken: token})
	if st, _ := get(tokMain.URL()+"/metrics", "wrong"+token); st != 401 {
		t.Errorf("main listener, wrong token: %d", st)
	}
	if st, body := get(tokMain.URL()+"/metrics", token); st != 200 || !strings.Contains(body, series) {
		t.Errorf("main listener with the token: %d %.200s", st, body)
	}

	dev := start(Config{Dev: true})
	if st, body := get(dev.URL()+"/metrics", ""); st != 200 || !strings.Contains(body, series) {
		t.Errorf("--dev: %d %.200s", st, body)
	}
}
