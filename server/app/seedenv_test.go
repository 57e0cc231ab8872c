package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestSeedEnvRefused: malformed seed variables and CORS origins stop the
// server at start with the variable's name and what to give.
func TestSeedEnvRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"max not a number":    {map[string]string{"RATE_LIMIT_MAX_REQUESTS": "abc"}, "RATE_LIMIT_MAX_REQUESTS"},
		"max zero":            {map[string]string{"RATE_LIMIT_MAX_REQUESTS": "0"}, "RATE_LIMIT_MAX_REQUESTS"},
		"window not ms":       {map[string]string{"RATE_LIMIT_MAX_REQUESTS": "100", "RATE_LIMIT_WINDOW_MS": "1m"}, "RATE_LIMIT_WINDOW_MS"},
		"window too short":    {map[string]string{"RATE_LIMIT_MAX_REQUESTS": "100", "RATE_LIMIT_WINDOW_MS": "10"}, "RATE_LIMIT_WINDOW_MS"},
		"jettyspeed maybe":    {map[string]string{"JETTYSPEED_ENABLED": "maybe"}, "JETTYSPEED_ENABLED"},
		"cors wildcard":       {map[string]string{"JETTY_CORS_ORIGINS": "*"}, "JETTY_CORS_ORIGINS"},
		"cors with path":      {map[string]string{"JETTY_CORS_ORIGINS": "https://agentcache.ai/app"}, "JETTY_CORS_ORIGINS"},
		"cors without scheme": {map[string]string{"JETTY_CORS_ORIGINS": "https://ok.example,agentcache.ai"}, "JETTY_CORS_ORIGINS"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := FromEnv(envOf(tc.env))
			cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
			a, err := New(context.Background(), cfg, nil)
			if err == nil {
				a.Close()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// TestSeedEnvUnusedWarned: each seed variable that is set but means
// nothing here is named in a warning at start; the honoured ones are not.
func TestSeedEnvUnusedWarned(t *testing.T) {
	env := map[string]string{
		"JETTYSPEED_CDN_URL":   "http://localhost:53777",
		"AGENTCACHE_API_URL":   "https://agentcache.ai/api",
		"RATE_LIMIT_WINDOW_MS": "60000", // without RATE_LIMIT_MAX_REQUESTS
		"LYVE_REGION":          "us-east-1",
		"LYVE_ACCESS_KEY_ID":   "your_access_key",
		"NODE_ENV":             "production",
		"JETTYSPEED_ENABLED":   "true",
	}
	cfg := FromEnv(envOf(env))
	cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	logs := &testenv.SyncBuffer{}
	a, err := New(context.Background(), cfg, NewLogger(logs, "info", "json"))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	warned := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Level, Msg, Var, Why string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Var != "" && rec.Level == "WARN" {
			warned[rec.Var] = rec.Why
		}
	}
	for _, v := range []string{"JETTYSPEED_CDN_URL", "AGENTCACHE_API_URL", "RATE_LIMIT_WINDOW_MS", "LYVE_REGION", "LYVE_ACCESS_KEY_ID", "NODE_ENV"} {
		if warned[v] == "" {
			t.Errorf("no warning naming %s (with why); log:\n%s", v, logs.String())
		}
	}
	if _, ok := warned["JETTYSPEED_ENABLED"]; ok || len(warned) != 6 {
		t.Errorf("warned about %v", warned)
	}
}

// TestSeedEnvHonoured: through `jetty server`'s configuration,
// RATE_LIMIT_MAX_REQUESTS caps the demo account (pro: 300 a minute) at 2
// calls, JETTYSPEED_ENABLED=false refuses sessions and shows in the
// quota, and JETTY_CORS_ORIGINS answers the partner's origin.
func TestSeedEnvHonoured(t *testing.T) {
	cfg := FromEnv(envOf(map[string]string{
		"RATE_LIMIT_MAX_REQUESTS": "2",
		"RATE_LIMIT_WINDOW_MS":    "60000",
		"JETTYSPEED_ENABLED":      "false",
		"JETTY_CORS_ORIGINS":      "https://agentcache.ai",
	}))
	cfg.DataDir, cfg.Listen, cfg.Dev = t.TempDir(), "127.0.0.1:0", true
	a, stop, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if c := a.Config(); c.RateLimitMax != 2 || c.RateLimitWindow != time.Minute || !c.JettySpeedDisabled {
		t.Fatalf("config: %+v", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, secret, err := a.DemoAccount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest(method, a.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+acct.APIKey)
		req.Header.Set("X-API-Secret", secret)
		req.Header.Set("Origin", "https://agentcache.ai")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res, m
	}
	res, q := call("GET", "/api/agentcache/quota", "")
	if res.StatusCode != 200 || q["jetty_speed_enabled"] != false || res.Header.Get("Access-Control-Allow-Origin") != "https://agentcache.ai" {
		t.Fatalf("quota: %d %v %v", res.StatusCode, q, res.Header)
	}
	res, m := call("POST", "/api/jetty/sessions", `{"stream":{"name":"x","chunk_size":5242880}}`)
	if res.StatusCode != 403 || m["code"] != "jettyspeed_disabled" {
		t.Fatalf("session open: %d %v", res.StatusCode, m)
	}
	res, m = call("GET", "/api/whoami", "")
	if res.StatusCode != 429 || m["code"] != "rate_limited" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third call: %d %v", res.StatusCode, m)
	}
}
