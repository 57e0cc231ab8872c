package api_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
)

func wantRetryAfter(t *testing.T, r resp) {
	t.Helper()
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
	}
}

// TestRateCeiling: RATE_LIMIT_MAX_REQUESTS per RATE_LIMIT_WINDOW_MS caps
// each account below its tier's limit (pro: 300 a minute) with 429 and
// Retry-After, one account's calls do not count against another's,
// refused credentials are counted per client address, and two server
// instances on one limiter (Redis) share the counts.
func TestRateCeiling(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		st, lim := b.store(t), b.limit(t)
		ceil := func(c *api.Config) { c.RateCeiling = api.RateCeiling{Max: 3, Window: time.Minute} }
		e := newEnvConfig(t, st, lim, nil, nil, ceil)
		e2 := newEnvConfig(t, st, lim, nil, nil, ceil) // a second instance
		aKey, aSecret := e.provision("usr_ceil_a", "pro")
		bKey, bSecret := e.provision("usr_ceil_b", "pro")

		for i, srv := range []*env{e, e2, e} {
			r := srv.do("GET", "/api/agentcache/quota", "", userHeaders(aKey, aSecret))
			if r.status != 200 {
				t.Fatalf("call %d under the ceiling: %d %s", i+1, r.status, r.raw)
			}
			if got := r.header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(2-i) {
				t.Errorf("call %d: X-RateLimit-Remaining = %q, want the ceiling's %d", i+1, got, 2-i)
			}
		}
		for _, srv := range []*env{e2, e} {
			r := srv.do("GET", "/api/whoami", "", userHeaders(aKey, aSecret))
			wantError(t, r, 429, server.ERateLimited)
			wantRetryAfter(t, r)
		}
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(bKey, bSecret)); r.status != 200 {
			t.Errorf("another account: %d %s", r.status, r.raw)
		}

		// Refused credentials, per address: 401 until the ceiling, then 429.
		bad := userHeaders(bKey, "jts_"+"0123456789abcdef0123456789abcdef0123456789a")
		for i := 0; i < 3; i++ {
			if r := e.do("GET", "/api/agentcache/quota", "", bad); r.status != 401 {
				t.Fatalf("wrong secret %d: %d %s", i+1, r.status, r.raw)
			}
		}
		r := e2.do("GET", "/api/agentcache/quota", "", map[string]string{})
		wantError(t, r, 429, server.ERateLimited)
		wantRetryAfter(t, r)
		// Partner calls are not counted.
		for i := 0; i < 5; i++ {
			if r := e.do("POST", "/api/agentcache/upgrade", `{"agentcache_user_id":"usr_ceil_b","new_tier":"business"}`, partnerHeaders()); r.status != 200 {
				t.Fatalf("partner call %d: %d %s", i+1, r.status, r.raw)
			}
		}
	})
}

// TestRateCeilingBesideTiers: the tier's own limit still applies under a
// higher ceiling (free: 10 a minute).
func TestRateCeilingBesideTiers(t *testing.T) {
	b := backends()[0]
	e := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, func(c *api.Config) { c.RateCeiling = api.RateCeiling{Max: 100, Window: time.Minute} })
	key, secret := e.provision("usr_ceil_free", "free")
	for i := 0; i < 10; i++ {
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)); r.status != 200 {
			t.Fatalf("call %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret))
	wantError(t, r, 429, server.ERateLimited)
	if r.header.Get("X-RateLimit-Limit") != "10" {
		t.Errorf("X-RateLimit-Limit = %q, want the tier's 10", r.header.Get("X-RateLimit-Limit"))
	}
}
