package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
)

// TestJettySpeedDisabled: with JETTYSPEED_ENABLED=false a session open
// (file or stream) is refused with 403 jettyspeed_disabled and a message
// saying what to do, quota, whoami and optimal-edges report JettySpeed
// off, and the single-request upload still works.
func TestJettySpeedDisabled(t *testing.T) {
	eachStorageWith(t, func(c *api.Config) { c.JettySpeedDisabled = true }, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_nojs", "pro")
		h := userHeaders(key, secret)
		for _, body := range []string{
			`{"stream":{"name":"x.bin","chunk_size":5242880}}`,
			`{"stream":{"name":"x.bin","chunk_size":5242880,"size":10485760}}`,
		} {
			r := e.do("POST", "/api/jetty/sessions", body, h)
			wantError(t, r, http.StatusForbidden, server.EJettySpeedOff)
			if msg := r.body["error"].(string); !strings.Contains(msg, "JETTYSPEED_ENABLED") || !strings.Contains(msg, "/api/storage/upload") {
				t.Errorf("message %q does not say why and what to do", msg)
			}
		}
		for _, p := range []string{"/api/agentcache/quota", "/api/whoami"} {
			r := e.do("GET", p, "", h)
			if r.status != 200 || r.body["jetty_speed_enabled"] != false {
				t.Errorf("%s: %d jetty_speed_enabled=%v", p, r.status, r.body["jetty_speed_enabled"])
			}
		}
		r := e.do("POST", "/api/jetty/optimal-edges", `{"file_size":10485760}`, h)
		if r.status != 200 || r.body["jettyspeed"] != false {
			t.Errorf("optimal-edges: %d %s", r.status, r.raw)
		}
		up := map[string]string{"Authorization": h["Authorization"], "X-API-Secret": h["X-API-Secret"], "X-Filename": "hello.txt"}
		r = e.do("POST", "/api/storage/upload", "Hello JettyThunder!\n", up)
		if r.status != 201 {
			t.Fatalf("single-request upload: %d %s", r.status, r.raw)
		}
	})
}
