package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
)

const partnerOrigin = "https://agentcache.ai"

func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func noCORS(t *testing.T, what string, r resp) {
	t.Helper()
	for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Expose-Headers"} {
		if v := r.header.Get(h); v != "" {
			t.Errorf("%s: %s: %q, want none", what, h, v)
		}
	}
}

// TestCORS: with JETTY_CORS_ORIGINS listing the partner's origin, a
// browser there gets its preflights answered (204, the API's methods and
// headers, Max-Age) and its answers readable (ACAO, credentials, exposed
// headers, Vary: Origin); any other origin gets neither ACAO nor
// credentials; server-to-server routes never answer CORS; and a server
// without the list sends no CORS header at all.
func TestCORS(t *testing.T) {
	eachStorageWith(t, func(c *api.Config) { c.CORSOrigins = []string{partnerOrigin, "http://localhost:5173"} }, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_cors", "pro")
		preflight := func(path, origin, method, headers string) resp {
			h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
			if headers != "" {
				h["Access-Control-Request-Headers"] = headers
			}
			return e.do("OPTIONS", path, "", h)
		}

		r := preflight("/api/storage/upload", partnerOrigin, "POST", "authorization,x-api-secret,x-filename,x-content-sha256,x-jetty-pipeline-id")
		if r.status != http.StatusNoContent {
			t.Fatalf("preflight from the partner's origin: %d %s", r.status, r.raw)
		}
		if got := r.header.Get("Access-Control-Allow-Origin"); got != partnerOrigin {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
		if got := r.header.Get("Access-Control-Allow-Credentials"); got != "true" {
			t.Errorf("Access-Control-Allow-Credentials = %q", got)
		}
		if !hasToken(r.header, "Access-Control-Allow-Methods", "POST") {
			t.Errorf("Access-Control-Allow-Methods = %q", r.header.Get("Access-Control-Allow-Methods"))
		}
		for _, h := range []string{"Authorization", "Content-Type", "X-API-Secret", "X-Filename", "X-Content-SHA256", "X-Cache-Key", "X-TTL", "X-Chunk-SHA256", "X-Upload-Token", "x-jetty-pipeline-id"} {
			if !hasToken(r.header, "Access-Control-Allow-Headers", h) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", r.header.Get("Access-Control-Allow-Headers"), h)
			}
		}
		if r.header.Get("Access-Control-Max-Age") == "" {
			t.Error("no Access-Control-Max-Age")
		}
		if !hasToken(r.header, "Vary", "Origin") {
			t.Errorf("Vary = %q", r.header.Values("Vary"))
		}
		// The chunk PUT (upload token) and a download's methods.
		r = preflight("/api/jetty/sessions/s1/chunks/0", "http://localhost:5173", "PUT", "x-upload-token,x-chunk-sha256")
		if r.status != 204 || !hasToken(r.header, "Access-Control-Allow-Methods", "PUT") || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
			t.Errorf("chunk preflight: %d %v", r.status, r.header)
		}
		r = preflight("/api/storage/assets/a1", partnerOrigin, "DELETE", "")
		if r.status != 204 || !hasToken(r.header, "Access-Control-Allow-Methods", "DELETE") || !hasToken(r.header, "Access-Control-Allow-Methods", "GET") {
			t.Errorf("asset preflight: %d %v", r.status, r.header)
		}

		// Another origin: refused, nothing a browser would accept.
		for _, o := range []string{"https://evil.example", "https://agentcache.ai.evil.example", "http://agentcache.ai", "null"} {
			r = preflight("/api/storage/upload", o, "POST", "authorization")
			wantError(t, r, 403, server.ECORSOrigin)
			noCORS(t, "preflight from "+o, r)
			if !hasToken(r.header, "Vary", "Origin") {
				t.Errorf("preflight from %s: Vary = %q", o, r.header.Values("Vary"))
			}
		}

		// Actual requests.
		h := userHeaders(key, secret)
		h["Origin"] = partnerOrigin
		r = e.do("GET", "/api/agentcache/quota", "", h)
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != partnerOrigin || r.header.Get("Access-Control-Allow-Credentials") != "true" || !hasToken(r.header, "Vary", "Origin") {
			t.Errorf("quota from the partner's origin: %d %v", r.status, r.header)
		}
		for _, x := range []string{"Retry-After", "X-RateLimit-Remaining", "Content-Disposition"} {
			if !hasToken(r.header, "Access-Control-Expose-Headers", x) {
				t.Errorf("Access-Control-Expose-Headers %q lacks %s", r.header.Get("Access-Control-Expose-Headers"), x)
			}
		}
		h["Origin"] = "https://evil.example"
		r = e.do("GET", "/api/agentcache/quota", "", h)
		noCORS(t, "quota from another origin", r)
		if !hasToken(r.header, "Vary", "Origin") {
			t.Errorf("quota from another origin: Vary = %q", r.header.Values("Vary"))
		}
		delete(h, "Origin")
		r = e.do("GET", "/api/agentcache/quota", "", h)
		noCORS(t, "quota without Origin", r)
		if r.status != 200 || !hasToken(r.header, "Vary", "Origin") {
			t.Errorf("quota without Origin: %d, Vary %q", r.status, r.header.Values("Vary"))
		}
		// An error answer is readable too (a browser must see 401s).
		r = e.do("GET", "/api/whoami", "", map[string]string{"Origin": partnerOrigin})
		if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != partnerOrigin {
			t.Errorf("401 from the partner's origin: %d %v", r.status, r.header)
		}

		// Server-to-server routes: never CORS, whatever the origin.
		for _, p := range []string{"/api/agentcache/provision", "/api/agentcache/upgrade", "/api/webhooks/jettythunder/provision", "/api/jetty/edges/heartbeat", "/healthz", "/metrics"} {
			r = preflight(p, partnerOrigin, "POST", "authorization")
			noCORS(t, "preflight of "+p, r)
			if r.status == 204 || r.status == 200 {
				t.Errorf("preflight of %s answered %d", p, r.status)
			}
		}
		ph := partnerHeaders()
		ph["Origin"] = partnerOrigin
		r = e.do("POST", "/api/agentcache/provision", `{"agentcache_user_id":"usr_cors2","agentcache_email":"c@example.com","tier":"free"}`, ph)
		if r.status != 201 {
			t.Fatalf("provision: %d %s", r.status, r.raw)
		}
		noCORS(t, "provision from the partner's origin", r)
	})

	// The default: no list, no CORS header anywhere.
	e := newEnv(t, backends()[0])
	key, secret := e.provision("usr_nocors", "pro")
	r := e.do("OPTIONS", "/api/agentcache/quota", "", map[string]string{"Origin": partnerOrigin, "Access-Control-Request-Method": "GET"})
	noCORS(t, "preflight without a list", r)
	if r.status != 405 {
		t.Errorf("preflight without a list: %d", r.status)
	}
	h := userHeaders(key, secret)
	h["Origin"] = partnerOrigin
	r = e.do("GET", "/api/agentcache/quota", "", h)
	noCORS(t, "quota without a list", r)
	if r.status != 200 || len(r.header.Values("Vary")) != 0 {
		t.Errorf("quota without a list: %d, Vary %q", r.status, r.header.Values("Vary"))
	}
}

func TestParseCORSOrigins(t *testing.T) {
	got, err := api.ParseCORSOrigins(" https://AgentCache.ai/ , http://localhost:5173,https://x.example:443,http://x.example:80,https://agentcache.ai,, http://[::1]:8080")
	want := []string{"https://agentcache.ai", "http://localhost:5173", "https://x.example", "http://x.example", "http://[::1]:8080"}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ParseCORSOrigins = %q, %v; want %q", got, err, want)
	}
	if got, err := api.ParseCORSOrigins(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %q, %v", got, err)
	}
	for _, bad := range []string{"*", "https://*.agentcache.ai", "agentcache.ai", "ftp://agentcache.ai", "https://agentcache.ai/app",
		"https://agentcache.ai?x=1", "https://agentcache.ai#f", "null", "https://user:pw@agentcache.ai", "https://agentcache.ai:99999", "https://", "https://agentcache.ai:x"} {
		if _, err := api.ParseCORSOrigins("https://ok.example," + bad); err == nil || !strings.Contains(err.Error(), "JETTY_CORS_ORIGINS") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
