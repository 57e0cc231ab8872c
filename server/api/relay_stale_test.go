package api_test

// Issue 19, item 3: the AgentCache relay against the real server. Every
// stale case of the issue (an upgrade, a provision call naming a higher
// tier, a rotation, a revocation, a suspension and reactivation, a
// deletion), the relay's upgrade route, and JettyThunder unreachable
// while the relay checks its cache. The relay is mounted in the server it
// provisions at, as `jetty server` mounts it (or, for the outage test,
// runs on its own behind a proxy that can go down), with its cache in
// memory next to SQLite and in Redis next to PostgreSQL.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/agentcache"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/redis"
)

const relaySecret = "inwh_relay_test_5f1c9a7e3b2d"

// relayEnv is a server with the relay mounted, or a standalone relay in
// front of it (relayURL differs from e.url then).
type relayEnv struct {
	*env
	relayURL string
	cache    server.Cache
	logs     *testenv.SyncBuffer
}

// eachRelay runs fn with SQLite and an in-memory relay cache, then with
// PostgreSQL and a Redis one.
func eachRelay(t *testing.T, fn func(t *testing.T, b backend, newCache func(t *testing.T) server.Cache)) {
	bs := backends()
	t.Run("sqlite+memory", func(t *testing.T) {
		fn(t, bs[0], func(*testing.T) server.Cache { return memory.NewCache() })
	})
	t.Run("postgres+redis", func(t *testing.T) {
		fn(t, bs[1], func(t *testing.T) server.Cache {
			c, prefix := testenv.Redis(t)
			return redis.NewCache(c, prefix)
		})
	})
}

func newRelayConfig(upstream string, cache server.Cache, logs *testenv.SyncBuffer) agentcache.RelayConfig {
	return agentcache.RelayConfig{
		InternalSecret: relaySecret,
		UpstreamURL:    upstream,
		UpstreamSecret: webhookSecret,
		Cache:          cache,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// newMountedRelay starts the server with the relay mounted in it,
// provisioning at the server itself (as `jetty server` does by default).
func newMountedRelay(t *testing.T, b backend, cache server.Cache) *relayEnv {
	t.Helper()
	var rl atomic.Pointer[agentcache.Relay]
	e := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, func(c *api.Config) {
		c.Relay = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rl.Load().ServeHTTP(w, r) })
	})
	logs := &testenv.SyncBuffer{}
	r, err := agentcache.NewRelay(newRelayConfig(e.url, cache, logs))
	if err != nil {
		t.Fatal(err)
	}
	rl.Store(r)
	return &relayEnv{env: e, relayURL: e.url, cache: cache, logs: logs}
}

func (re *relayEnv) relay(path, body string) resp {
	re.t.Helper()
	req, err := http.NewRequest("POST", re.relayURL+path, strings.NewReader(body))
	if err != nil {
		re.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+relaySecret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		re.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (re *relayEnv) provision(userID, tier string) resp {
	re.t.Helper()
	return re.relay(agentcache.Path, fmt.Sprintf(`{"user_id":%q,"email":"%s@example.com","tier":%q}`, userID, userID, tier))
}

func (re *relayEnv) upgrade(userID, tier string) resp {
	re.t.Helper()
	return re.relay(agentcache.UpgradePath, fmt.Sprintf(`{"user_id":%q,"tier":%q}`, userID, tier))
}

func (re *relayEnv) partner(op, userID string, extra string) {
	re.t.Helper()
	r := re.do("POST", "/api/agentcache/"+op, fmt.Sprintf(`{"agentcache_user_id":%q%s}`, userID, extra), partnerHeaders())
	if r.status != 200 {
		re.t.Fatalf("partner %s %s: %d %s", op, userID, r.status, r.raw)
	}
}

func (re *relayEnv) cached(userID string) bool {
	re.t.Helper()
	_, ok, err := re.cache.Get(context.Background(), agentcache.CredentialsKey(userID))
	if err != nil {
		re.t.Fatal(err)
	}
	return ok
}

// creds are the credentials of a successful relay answer.
type creds struct {
	key, secret, tier string
	quotaGB           float64
	speed             bool
}

func credsOf(t *testing.T, r resp, status int) creds {
	t.Helper()
	if r.status != status || r.body["success"] != true {
		t.Fatalf("relay: %d %s; want %d", r.status, r.raw, status)
	}
	c, _ := r.body["credentials"].(map[string]any)
	key, _ := c["api_key"].(string)
	secret, _ := c["api_secret"].(string)
	tier, _ := c["tier"].(string)
	q, _ := c["storage_quota_gb"].(float64)
	speed, _ := c["jetty_speed_enabled"].(bool)
	if key == "" || secret == "" {
		t.Fatalf("relay answer without credentials: %s", r.raw)
	}
	return creds{key, secret, tier, q, speed}
}

// wantRefused: an error answer that hands out no credentials.
func wantRefused(t *testing.T, r resp, status int, code string, secrets ...string) {
	t.Helper()
	wantError(t, r, status, code)
	if _, ok := r.body["credentials"]; ok {
		t.Fatalf("error answer with credentials: %s", r.raw)
	}
	for _, s := range secrets {
		if strings.Contains(r.raw, s) {
			t.Fatalf("error answer holds a secret: %s", r.raw)
		}
	}
}

// works reports whether the credentials are accepted by the server.
func (re *relayEnv) works(c creds) bool {
	re.t.Helper()
	return re.do("GET", "/api/whoami", "", userHeaders(c.key, c.secret)).status == 200
}

// TestRelayReportsCurrentFigures: after an upgrade (and a downgrade) made
// on JettyThunder directly, the relay reports the account's current
// tier, quota and JettySpeed flag with the same credentials.
func TestRelayReportsCurrentFigures(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))
		first := credsOf(t, re.provision("usr_fig", "pro"), 201)
		if first.quotaGB != 20 || !first.speed {
			t.Fatalf("provisioned %+v", first)
		}
		re.partner("upgrade", "usr_fig", `,"new_tier":"business"`)
		got := credsOf(t, re.provision("usr_fig", "business"), 200)
		if got.key != first.key || got.secret != first.secret || got.tier != "business" || got.quotaGB != 100 || !got.speed {
			t.Fatalf("after an upgrade to business: %+v; want the same credentials with tier business, 100 GB, JettySpeed", got)
		}
		re.partner("upgrade", "usr_fig", `,"new_tier":"free"`)
		got = credsOf(t, re.provision("usr_fig", "free"), 200)
		if got.key != first.key || got.tier != "free" || got.quotaGB != 0 || got.speed {
			t.Fatalf("after a downgrade to free: %+v; want tier free, 0 GB, no JettySpeed", got)
		}
	})
}

// TestRelayProvisionHigherTier: a provision call naming a higher tier
// upgrades the account; one naming a lower tier is refused with 409
// tier_mismatch and changes nothing.
func TestRelayProvisionHigherTier(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))
		first := credsOf(t, re.provision("usr_up", "starter"), 201)
		if first.speed {
			t.Fatalf("starter with JettySpeed: %+v", first)
		}
		r := re.provision("usr_up", "business")
		got := credsOf(t, r, 200)
		if got.key != first.key || got.secret != first.secret || got.tier != "business" || got.quotaGB != 100 || !got.speed {
			t.Fatalf("provision naming business: %+v; want the same credentials upgraded", got)
		}
		if msg, _ := r.body["message"].(string); !strings.Contains(msg, "upgraded") {
			t.Errorf("message %q does not say the account was upgraded", msg)
		}
		if a := re.account("usr_up"); a.Tier != "business" || a.StorageQuotaGB != 100 || !a.JettySpeedEnabled {
			t.Fatalf("server account %s/%d/%v, want business/100/true", a.Tier, a.StorageQuotaGB, a.JettySpeedEnabled)
		}
		// Lower: refused, clearly, and nothing changes.
		r = re.provision("usr_up", "pro")
		wantRefused(t, r, 409, "tier_mismatch", first.secret)
		for _, s := range []string{`"business"`, `"pro"`, agentcache.UpgradePath} {
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, s) {
				t.Errorf("tier_mismatch message %q lacks %s", msg, s)
			}
		}
		if a := re.account("usr_up"); a.Tier != "business" {
			t.Fatalf("a lower-tier provision call changed the tier to %s", a.Tier)
		}
		// The same tier again: the credentials, as they are.
		if got := credsOf(t, re.provision("usr_up", "business"), 200); got.key != first.key || got.tier != "business" {
			t.Fatalf("same tier: %+v", got)
		}
	})
}

// TestRelayRotatedAndRevoked: after a rotation without overlap the relay
// refuses (409 credentials_revoked) and drops the dead pair; with an
// overlap it hands out the old pair while it works, and refuses once the
// overlap is revoked.
func TestRelayRotatedAndRevoked(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))

		old := credsOf(t, re.provision("usr_rot", "pro"), 201)
		re.partner("rotate", "usr_rot", "")
		if re.works(old) {
			t.Fatal("the rotated-out pair still works on the server")
		}
		r := re.provision("usr_rot", "pro")
		wantRefused(t, r, 409, "credentials_revoked", old.secret)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "rotate") {
			t.Errorf("message %q does not say how to get new credentials", msg)
		}
		if re.cached("usr_rot") {
			t.Fatal("the refused credentials are still cached")
		}
		// Nothing cached now: JettyThunder answers for the existing account.
		wantRefused(t, re.provision("usr_rot", "pro"), 409, server.EAccountExists, old.secret)

		// Rotation with an overlap: the old pair works, so it is handed out;
		// revoking the overlap ends that.
		old = credsOf(t, re.provision("usr_rev", "pro"), 201)
		re.partner("rotate", "usr_rev", `,"overlap_seconds":3600`)
		if got := credsOf(t, re.provision("usr_rev", "pro"), 200); got.key != old.key || !re.works(got) {
			t.Fatalf("during the overlap: %+v", got)
		}
		re.partner("revoke", "usr_rev", "")
		wantRefused(t, re.provision("usr_rev", "pro"), 409, "credentials_revoked", old.secret)
		if re.cached("usr_rev") {
			t.Fatal("the revoked credentials are still cached")
		}
		assertNoSecretLogged(t, re.logs.String(), old.key, old.secret, relaySecret, webhookSecret, "usr_rev@example.com")
	})
}

// TestRelayRotateRoute: POST /api/webhooks/jettythunder/rotate is the
// way back after credentials_revoked (or a lost entry): it rotates on
// JettyThunder, caches the new pair and answers it; the next provision
// call answers the same pair.
func TestRelayRotateRoute(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))
		old := credsOf(t, re.provision("usr_rr", "pro"), 201)
		re.partner("rotate", "usr_rr", "")
		r := re.provision("usr_rr", "pro")
		wantRefused(t, r, 409, "credentials_revoked", old.secret)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, agentcache.RotatePath) {
			t.Errorf("message %q does not point to the relay's rotate route", msg)
		}

		fresh := credsOf(t, re.relay(agentcache.RotatePath, `{"user_id":"usr_rr"}`), 200)
		if fresh.key == old.key || !re.works(fresh) || fresh.tier != "pro" || fresh.quotaGB != 20 {
			t.Fatalf("rotated: %+v", fresh)
		}
		if got := credsOf(t, re.provision("usr_rr", "pro"), 200); got != fresh {
			t.Fatalf("provision after the relay's rotation: %+v, want %+v", got, fresh)
		}
		// With an overlap (seed 002's field name): both pairs work for now.
		next := credsOf(t, re.relay(agentcache.RotatePath, `{"agentcache_user_id":"usr_rr","overlap_seconds":600}`), 200)
		if !re.works(next) || !re.works(fresh) {
			t.Fatal("an overlapping rotation: both pairs should work")
		}
		if got := credsOf(t, re.provision("usr_rr", "pro"), 200); got != next {
			t.Fatalf("provision after the overlapping rotation: %+v, want the new pair %+v", got, next)
		}

		// A lost entry (an account provisioned elsewhere): 409 account_exists
		// points to the rotate route, which recovers.
		re.do("POST", "/api/agentcache/provision", `{"agentcache_user_id":"usr_lost","agentcache_email":"l@example.com","tier":"starter"}`, partnerHeaders())
		r = re.provision("usr_lost", "starter")
		wantRefused(t, r, 409, server.EAccountExists)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, agentcache.RotatePath) {
			t.Errorf("message %q does not point to the relay's rotate route", msg)
		}
		lost := credsOf(t, re.relay(agentcache.RotatePath, `{"user_id":"usr_lost"}`), 200)
		if got := credsOf(t, re.provision("usr_lost", "starter"), 200); got != lost || !re.works(got) {
			t.Fatalf("after recovering: %+v", got)
		}

		// Suspended: rotated and cached, with a message saying so.
		re.partner("suspend", "usr_lost", "")
		r = re.relay(agentcache.RotatePath, `{"user_id":"usr_lost"}`)
		credsOf(t, r, 200)
		if msg, _ := r.body["message"].(string); !strings.Contains(msg, "suspended") {
			t.Errorf("message %q does not say the account is suspended", msg)
		}

		wantError(t, re.relay(agentcache.RotatePath, `{"user_id":"usr_nobody"}`), 404, server.ENotFound)
		wantError(t, re.relay(agentcache.RotatePath, `{"user_id":"usr_rr","overlap_seconds":604801}`), 400, server.EInvalid)
		wantError(t, re.relay(agentcache.RotatePath, `{"user_id":"usr_rr","overlap_seconds":"soon"}`), 400, server.EInvalid)
		wantError(t, re.do("POST", agentcache.RotatePath, `{"user_id":"usr_rr"}`, partnerHeaders()), 401, server.EUnauthorized)
		if !re.works(next) {
			t.Fatal("a refused rotate call changed the credentials")
		}
		re.partner("delete", "usr_rr", "")
		wantError(t, re.relay(agentcache.RotatePath, `{"user_id":"usr_rr"}`), 403, server.EAccountDeleted)
		if re.cached("usr_rr") {
			t.Fatal("a deleted account's entry survived a rotate call")
		}
		assertNoSecretLogged(t, re.logs.String(), old.secret, fresh.secret, next.secret, lost.secret, relaySecret, webhookSecret)
	})
}

// TestRelaySuspendedThenReactivated: a suspended account is refused with
// 403 account_suspended (no credentials); once reactivated, the same
// credentials are handed out again.
func TestRelaySuspendedThenReactivated(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))
		first := credsOf(t, re.provision("usr_sus", "pro"), 201)
		re.partner("suspend", "usr_sus", "")
		r := re.provision("usr_sus", "pro")
		wantRefused(t, r, 403, server.EAccountSuspended, first.secret)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "suspended") {
			t.Errorf("message %q does not say the account is suspended", msg)
		}
		if !re.cached("usr_sus") {
			t.Fatal("a suspension dropped the cached credentials; they work again after reactivation")
		}
		re.partner("reactivate", "usr_sus", "")
		got := credsOf(t, re.provision("usr_sus", "pro"), 200)
		if got.key != first.key || got.secret != first.secret || !re.works(got) {
			t.Fatalf("after reactivation: %+v", got)
		}
	})
}

// TestRelayDeleted: a deleted account is refused with 403 account_deleted
// and its credentials are dropped.
func TestRelayDeleted(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))
		first := credsOf(t, re.provision("usr_del", "pro"), 201)
		re.partner("delete", "usr_del", "")
		r := re.provision("usr_del", "pro")
		wantRefused(t, r, 403, server.EAccountDeleted, first.secret)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "deleted") {
			t.Errorf("message %q does not say the account was deleted", msg)
		}
		if re.cached("usr_del") {
			t.Fatal("a deleted account's credentials are still cached")
		}
		wantRefused(t, re.upgrade("usr_del", "business"), 403, server.EAccountDeleted, first.secret)
	})
}

// TestRelayUpgradeRoute: POST /api/webhooks/jettythunder/upgrade changes
// the tier on JettyThunder (up and down) and the relay's next answer
// carries the new figures; it is authenticated and bounded like the
// provision route.
func TestRelayUpgradeRoute(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		re := newMountedRelay(t, b, newCache(t))
		first := credsOf(t, re.provision("usr_route", "pro"), 201)

		r := re.upgrade("usr_route", "business")
		if r.status != 200 || r.body["success"] != true {
			t.Fatalf("upgrade: %d %s", r.status, r.raw)
		}
		acct, _ := r.body["account"].(map[string]any)
		if acct["tier"] != "business" || acct["storage_quota_gb"] != 100.0 || acct["jetty_speed_enabled"] != true || acct["status"] != "active" {
			t.Fatalf("upgrade answer %s", r.raw)
		}
		if _, ok := acct["api_secret"]; ok || strings.Contains(r.raw, first.secret) {
			t.Fatalf("the upgrade answer holds credentials: %s", r.raw)
		}
		if a := re.account("usr_route"); a.Tier != "business" {
			t.Fatalf("server tier %s after the relay's upgrade", a.Tier)
		}
		if got := credsOf(t, re.provision("usr_route", "business"), 200); got.key != first.key || got.quotaGB != 100 {
			t.Fatalf("provision after the upgrade route: %+v", got)
		}
		// Down, with seed 002's field names.
		r = re.relay(agentcache.UpgradePath, `{"agentcache_user_id":"usr_route","new_tier":"starter"}`)
		if acct, _ := r.body["account"].(map[string]any); r.status != 200 || acct["tier"] != "starter" || acct["jetty_speed_enabled"] != false {
			t.Fatalf("downgrade: %d %s", r.status, r.raw)
		}

		wantError(t, re.upgrade("usr_nobody", "pro"), 404, server.ENotFound)
		wantError(t, re.upgrade("usr_route", "gold"), 400, server.EUnknownTier)
		wantError(t, re.relay(agentcache.UpgradePath, `{"user_id":"usr_route"}`), 400, server.EInvalid)
		wantError(t, re.relay(agentcache.UpgradePath, `{"user_id":"../x","tier":"pro"}`), 400, server.EInvalidUserID)
		wantError(t, re.relay(agentcache.UpgradePath, `{"user_id":"usr_route","tier":"pro","pad":"`+strings.Repeat("x", agentcache.MaxBodyBytes)+`"}`), 413, server.ETooLarge)
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + webhookSecret} {
			headers := map[string]string{}
			if auth != "" {
				headers["Authorization"] = auth
			}
			wantError(t, re.do("POST", agentcache.UpgradePath, `{"user_id":"usr_route","tier":"enterprise"}`, headers), 401, server.EUnauthorized)
		}
		if a := re.account("usr_route"); a.Tier != "starter" {
			t.Fatalf("a refused call changed the tier to %s", a.Tier)
		}
		if r := re.do("GET", agentcache.UpgradePath, "", nil); r.status != 405 {
			t.Fatalf("GET upgrade: %d", r.status)
		}
		assertNoSecretLogged(t, re.logs.String(), first.key, first.secret, relaySecret, webhookSecret)
	})
}

// flakyProxy forwards to the server, or, while down, drops every
// connection unanswered.
type flakyProxy struct {
	down  atomic.Bool
	proxy *httputil.ReverseProxy
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// TestRelayUpstreamDownWhileChecking: a standalone relay whose
// JettyThunder is unreachable answers 502 upstream_unavailable without
// the credentials (it cannot tell whether they still work), keeps them,
// and hands them out again once JettyThunder answers.
func TestRelayUpstreamDownWhileChecking(t *testing.T) {
	eachRelay(t, func(t *testing.T, b backend, newCache func(*testing.T) server.Cache) {
		e := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, nil)
		target, _ := url.Parse(e.url)
		p := &flakyProxy{proxy: httputil.NewSingleHostReverseProxy(target)}
		ps := httptest.NewServer(p)
		t.Cleanup(ps.Close)
		cache := newCache(t)
		logs := &testenv.SyncBuffer{}
		rl, err := agentcache.NewRelay(newRelayConfig(ps.URL, cache, logs))
		if err != nil {
			t.Fatal(err)
		}
		rs := httptest.NewServer(rl)
		t.Cleanup(rs.Close)
		re := &relayEnv{env: e, relayURL: rs.URL, cache: cache, logs: logs}

		first := credsOf(t, re.provision("usr_down", "pro"), 201)
		p.down.Store(true)
		r := re.provision("usr_down", "pro")
		wantRefused(t, r, 502, agentcache.CodeUpstreamUnavailable, first.secret, first.key)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "check") {
			t.Errorf("message %q does not say the credentials could not be checked", msg)
		}
		wantRefused(t, re.upgrade("usr_down", "business"), 502, agentcache.CodeUpstreamUnavailable)
		if !re.cached("usr_down") {
			t.Fatal("an outage dropped the cached credentials")
		}
		p.down.Store(false)
		if got := credsOf(t, re.provision("usr_down", "pro"), 200); got.key != first.key || got.secret != first.secret {
			t.Fatalf("after the outage: %+v", got)
		}
	})
}

// TestRelayRepeatedSignedCalls: identical relay calls in the same second
// are distinct signed calls upstream (each body carries a nonce), so the
// second is not refused as a replay and answered as a wrong secret.
func TestRelayRepeatedSignedCalls(t *testing.T) {
	b := backends()[0]
	re := newMountedRelay(t, b, memory.NewCache())
	// Three calls inside a second or two: at least two share a second.
	for range 3 {
		wantError(t, re.provision("usr_gold", "gold"), 400, server.EUnknownTier)
	}
	for range 3 {
		wantError(t, re.upgrade("usr_gold", "gold"), 400, server.EUnknownTier)
	}
}

func assertNoSecretLogged(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Fatalf("relay log holds secret %q:\n%s", s, logs)
		}
	}
}
