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
