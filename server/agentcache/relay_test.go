package agentcache_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/agentcache"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/redis"
	"github.com/jettythunder/jetty/server/webhooksig"
)

const (
	internalSecret = "internal-secret-Zq1wPk"
	upstreamSecret = "upstream-secret-Xk9mRt"
	createdAt      = "2025-01-25T11:00:00.000Z"
)

// fakeUpstream is a JettyThunder provisioning endpoint that counts calls.
// It answers GET /api/agentcache/quota for the accounts it provisioned
// (calls counts provisioning only; quotaCalls the checks).
type fakeUpstream struct {
	t          *testing.T
	srv        *httptest.Server
	calls      atomic.Int64
	quotaCalls atomic.Int64
	upgrades   atomic.Int64
	delay      time.Duration
	hold       chan struct{}                                    // when set, provisioning answers once it is closed
	quotaHook  atomic.Pointer[func(w http.ResponseWriter) bool] // answers a check when it returns true
	accounts   sync.Map                                         // api_key -> *fakeAccount

	mu      sync.Mutex
	bodies  []map[string]string
	issued  []string // every api_key and api_secret handed out
	respond func(n int64) (int, string)

	entered chan struct{} // one value per call, when it arrives
}

func newUpstream(t *testing.T) *fakeUpstream {
	u := &fakeUpstream{t: t, entered: make(chan struct{}, 1000)}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

type fakeAccount struct {
	user, secret, tier, status string
}

// account returns the fake account of a user.
func (u *fakeUpstream) account(userID string) *fakeAccount {
	var found *fakeAccount
	u.accounts.Range(func(_, v any) bool {
		if a := v.(*fakeAccount); a.user == userID {
			found = a
		}
		return true
	})
	return found
}

func (u *fakeUpstream) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	u.upgrades.Add(1)
	raw, _ := io.ReadAll(r.Body)
	if _, err := webhooksig.Verify(r.Header.Get(webhooksig.Header), []string{upstreamSecret}, time.Now(), r.Method, r.URL.EscapedPath(), raw); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"Unauthorized","code":"unauthorized"}`)
		return
	}
	var body map[string]string
	json.Unmarshal(raw, &body)
	w.Header().Set("Content-Type", "application/json")
	a := u.account(body["agentcache_user_id"])
	if a == nil {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"account not found","code":"not_found"}`)
		return
	}
	a.tier = body["tier"]
	json.NewEncoder(w).Encode(map[string]any{"success": true, "account": map[string]any{
		"agentcache_user_id": a.user, "tier": a.tier, "status": a.status,
		"storage_quota_gb": quotaFor(a.tier), "bandwidth_quota_gb": 100, "jetty_speed_enabled": a.tier != "free",
	}})
}

// quotaFor is the fake's storage quota of a tier.
func quotaFor(tier string) int64 {
	return map[string]int64{"free": 0, "starter": 5, "pro": 20, "business": 100, "enterprise": 1000}[tier]
}

func (u *fakeUpstream) serveQuota(w http.ResponseWriter, r *http.Request) {
	u.quotaCalls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	if hook := u.quotaHook.Load(); hook != nil && (*hook)(w) {
		return
	}
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	v, ok := u.accounts.Load(key)
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"unknown API key","code":"unknown_api_key"}`)
		return
	}
	a := v.(*fakeAccount)
	if r.Header.Get("X-API-Secret") != a.secret {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"wrong API secret","code":"wrong_api_secret"}`)
		return
	}
	if a.status != "active" {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"error":"account %s","code":"account_%s"}`, a.status, a.status)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"tier": a.tier, "status": a.status, "jetty_speed_enabled": a.tier != "free",
		"storage": map[string]any{"quota_gb": quotaFor(a.tier)},
	})
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == agentcache.UpstreamQuotaPath {
		u.serveQuota(w, r)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == agentcache.UpstreamUpgradePath {
		u.serveUpgrade(w, r)
		return
	}
	n := u.calls.Add(1)
	u.entered <- struct{}{}
	if r.Method != http.MethodPost || r.URL.Path != agentcache.UpstreamPath {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	if r.Header.Get("Authorization") != "" {
		u.t.Errorf("the relay sent an Authorization header upstream; it must sign instead of sending the secret")
	}
	if _, err := webhooksig.Verify(r.Header.Get(webhooksig.Header), []string{upstreamSecret}, time.Now(), r.Method, r.URL.EscapedPath(), raw); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"Unauthorized"}`)
		return
	}
	var body map[string]string
	if err := json.Unmarshal(raw, &body); err != nil {
		u.t.Errorf("upstream got a malformed body: %v", err)
	}
	u.mu.Lock()
	u.bodies = append(u.bodies, body)
	respond := u.respond
	u.mu.Unlock()
	if u.delay > 0 {
		time.Sleep(u.delay)
	}
	if u.hold != nil {
		<-u.hold
	}
	w.Header().Set("Content-Type", "application/json")
	if respond != nil {
		status, b := respond(n)
		w.WriteHeader(status)
		io.WriteString(w, b)
		return
	}
	key, secret := "jt_live_"+rand.Text(), "secret_"+rand.Text()
	u.mu.Lock()
	u.issued = append(u.issued, key, secret)
	u.mu.Unlock()
	u.accounts.Store(key, &fakeAccount{user: body["agentcache_user_id"], secret: secret, tier: body["tier"], status: "active"})
	uid := body["agentcache_user_id"]
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{
		"success": true,
		"account": map[string]any{
			"id": "acc_" + uid, "api_key": key, "api_secret": secret, "tier": body["tier"],
			"storage_quota_gb": quotaFor(body["tier"]), "bandwidth_quota_gb": 100, "jetty_speed_enabled": true,
			"s3_bucket": "agentcache-assets", "s3_prefix": "users/" + uid, "created_at": createdAt,
		},
	})
}

func (u *fakeUpstream) setRespond(f func(n int64) (int, string)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.respond = f
}

func (u *fakeUpstream) lastBody() map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		return nil
	}
	return u.bodies[len(u.bodies)-1]
}

func (u *fakeUpstream) issuedSecrets() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.issued...)
}

type harness struct {
	relay *agentcache.Relay
	up    *fakeUpstream
	cache server.Cache
	logs  *testenv.SyncBuffer
}

func newHarness(t *testing.T, cache server.Cache, mods ...func(*agentcache.RelayConfig)) *harness {
	t.Helper()
	up := newUpstream(t)
	logs := &testenv.SyncBuffer{}
	cfg := agentcache.RelayConfig{
		InternalSecret: internalSecret,
		UpstreamURL:    up.srv.URL + "/",
		UpstreamSecret: upstreamSecret,
		Cache:          cache,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PollInterval:   10 * time.Millisecond,
	}
	for _, m := range mods {
		m(&cfg)
	}
	rl, err := agentcache.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{relay: rl, up: up, cache: cache, logs: logs}
}

type result struct {
	status int
	header http.Header
	ok     agentcache.Response
	err    agentcache.ErrorResponse
	raw    string
}

func (h *harness) post(t *testing.T, auth string, body string) result {
	t.Helper()
	return do(t, h.relay, context.Background(), auth, strings.NewReader(body), int64(len(body)))
}

func do(t *testing.T, handler http.Handler, ctx context.Context, auth string, body io.Reader, length int64) result {
	t.Helper()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, agentcache.Path, body)
	req.ContentLength = length
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	res := result{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if rec.Code < 300 {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.ok); err != nil {
			t.Fatalf("status %d with a body that is not a Response: %q", rec.Code, rec.Body.String())
		}
	} else if err := json.Unmarshal(rec.Body.Bytes(), &res.err); err != nil || res.err.Error == "" || res.err.Code == "" {
		t.Fatalf("status %d with a body that is not an ErrorResponse: %q", rec.Code, rec.Body.String())
	}
	return res
}

func bearer(s string) string { return "Bearer " + s }

func body(uid string) string {
	return fmt.Sprintf(`{"user_id":%q,"email":"test@example.com","tier":"pro"}`, uid)
}

func wantError(t *testing.T, res result, status int, code string) {
	t.Helper()
	if res.status != status || res.err.Code != code {
		t.Fatalf("got %d %q (%s), want %d %q", res.status, res.err.Code, res.raw, status, code)
	}
}

func TestProvisionThenCached(t *testing.T) {
	h := newHarness(t, memory.NewCache())

	res := h.post(t, bearer(internalSecret), body("usr_test_123"))
	if res.status != http.StatusCreated || !res.ok.Success || res.ok.Message != agentcache.MessageCreated {
		t.Fatalf("first call: %d %s", res.status, res.raw)
	}
	c := res.ok.Credentials
	issued := h.up.issuedSecrets()
	if c.APIKey != issued[0] || c.APISecret != issued[1] || c.StorageQuotaGB != 20 || !c.JettySpeedEnabled ||
		c.S3Bucket != "agentcache-assets" || c.S3Prefix != "users/usr_test_123" || c.ProvisionedAt != createdAt {
		t.Fatalf("credentials %+v do not match the upstream account", c)
	}
	if got := res.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	want := map[string]string{"agentcache_user_id": "usr_test_123", "agentcache_email": "test@example.com", "tier": "pro"}
	got := h.up.lastBody()
	if got["nonce"] == "" {
		t.Errorf("upstream body %v without a nonce", got)
	}
	delete(got, "nonce")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("upstream body %v, want %v", got, want)
	}
	// The seed's shape, field by field.
	var shape map[string]map[string]any
	json.Unmarshal([]byte(res.raw), &shape)
	for _, f := range []string{"api_key", "api_secret", "storage_quota_gb", "jetty_speed_enabled", "s3_bucket", "s3_prefix", "provisioned_at"} {
		if _, ok := shape["credentials"][f]; !ok {
			t.Errorf("credentials lack %q: %s", f, res.raw)
		}
	}

	// Again, and with the JettyThunder field names: cached (checked
	// upstream each time), same answer.
	for _, b := range []string{
		body("usr_test_123"),
		`{"agentcache_user_id":"usr_test_123","agentcache_email":"test@example.com","tier":"pro","extra":{"x":1}}`,
	} {
		res2 := h.post(t, bearer(internalSecret), b)
		if res2.status != http.StatusOK || res2.ok.Message != agentcache.MessageCached || res2.ok.Credentials != c {
			t.Fatalf("repeated call: %d %s; want 200 with %+v", res2.status, res2.raw, c)
		}
	}
	if n, q := h.up.calls.Load(), h.up.quotaCalls.Load(); n != 1 || q != 2 {
		t.Fatalf("%d provisioning calls and %d checks upstream, want 1 and 2", n, q)
	}
	// A higher tier upgrades: same credentials, the new figures.
	res3 := h.post(t, bearer(internalSecret), `{"agentcache_user_id":"usr_test_123","agentcache_email":"test@example.com","tier":"business"}`)
	up := c
	up.Tier, up.StorageQuotaGB = "business", 100
	if res3.status != http.StatusOK || res3.ok.Message != agentcache.MessageUpgraded || res3.ok.Credentials != up {
		t.Fatalf("higher tier: %d %s; want 200 upgraded with %+v", res3.status, res3.raw, up)
	}
	if n := h.up.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrade calls upstream, want 1", n)
	}
	if _, ok, _ := h.cache.Get(context.Background(), agentcache.LockKey("usr_test_123")); ok {
		t.Fatal("lock still held after provisioning")
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	for name, auth := range map[string]string{
		"missing":       "",
		"empty bearer":  "Bearer ",
		"spaces":        "Bearer    ",
		"wrong":         bearer("nope"),
		"prefix":        bearer(internalSecret[:len(internalSecret)-1]),
		"longer":        bearer(internalSecret + "x"),
		"upstream":      bearer(upstreamSecret),
		"basic":         "Basic " + internalSecret,
		"no scheme":     internalSecret,
		"scheme glued":  "Bearer" + internalSecret,
		"case of token": bearer(strings.ToUpper(internalSecret)),
	} {
		t.Run(name, func(t *testing.T) {
			res := h.post(t, auth, body("usr_auth"))
			wantError(t, res, http.StatusUnauthorized, server.EUnauthorized)
			if res.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if n := h.up.calls.Load(); n != 0 {
		t.Fatalf("%d upstream calls for unauthorized requests", n)
	}
	if res := h.post(t, "bearer "+internalSecret, body("usr_auth")); res.status != http.StatusCreated {
		t.Fatalf("lower-case scheme: %d %s", res.status, res.raw)
	}
}

func TestMethod(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	req := httptest.NewRequest(http.MethodGet, agentcache.Path, nil)
	req.Header.Set("Authorization", bearer(internalSecret))
	rec := httptest.NewRecorder()
	h.relay.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
		t.Fatalf("GET: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	for name, c := range map[string]struct {
		body string
		code string
	}{
		"empty":          {"", server.EInvalid},
		"not json":       {"user_id=u1", server.EInvalid},
		"truncated":      {`{"user_id":"u1","email":`, server.EInvalid},
		"array":          {`[]`, server.EInvalid},
		"null":           {`null`, server.EInvalidUserID},
		"number id":      {`{"user_id":123,"email":"a@b.co","tier":"pro"}`, server.EInvalid},
		"missing id":     {`{"email":"a@b.co","tier":"pro"}`, server.EInvalidUserID},
		"missing email":  {`{"user_id":"u1","tier":"pro"}`, server.EInvalid},
		"missing tier":   {`{"user_id":"u1","email":"a@b.co"}`, server.EInvalid},
		"bad email":      {`{"user_id":"u1","email":"not an address","tier":"pro"}`, server.EInvalid},
		"path in id":     {`{"user_id":"../u1","email":"a@b.co","tier":"pro"}`, server.EInvalidUserID},
		"ids disagree":   {`{"user_id":"u1","agentcache_user_id":"u2","email":"a@b.co","tier":"pro"}`, server.EInvalid},
		"trailing junk":  {`{"user_id":"u1","email":"a@b.co","tier":"pro"} x`, server.EInvalid},
		"emails differ":  {`{"user_id":"u1","email":"a@b.co","agentcache_email":"c@d.co","tier":"pro"}`, server.EInvalid},
		"key with space": {`{"user_id":"u 1","email":"a@b.co","tier":"pro"}`, server.EInvalidUserID},
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, h.post(t, bearer(internalSecret), c.body), http.StatusBadRequest, c.code)
		})
	}
	if n := h.up.calls.Load(); n != 0 {
		t.Fatalf("%d upstream calls for bad requests", n)
	}
}

func TestBodyLimit(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	padded := func(uid string, size int) string {
		head := fmt.Sprintf(`{"user_id":%q,"email":"a@b.co","tier":"pro","pad":"`, uid)
		return head + strings.Repeat("x", size-len(head)-2) + `"}`
	}
	// Exactly at the limit, with an unknown field: accepted.
	if b := padded("usr_big_ok", agentcache.MaxBodyBytes); len(b) != agentcache.MaxBodyBytes {
		t.Fatalf("test body is %d bytes", len(b))
	} else if res := h.post(t, bearer(internalSecret), b); res.status != http.StatusCreated {
		t.Fatalf("body of exactly %d bytes: %d %s", len(b), res.status, res.raw)
	}
	// One byte over, with a Content-Length.
	wantError(t, h.post(t, bearer(internalSecret), padded("usr_big", agentcache.MaxBodyBytes+1)), http.StatusRequestEntityTooLarge, server.ETooLarge)
	// Over, without a Content-Length (chunked): stopped while reading.
	big := padded("usr_big", 1<<20)
	res := do(t, h.relay, context.Background(), bearer(internalSecret), io.MultiReader(strings.NewReader(big)), -1)
	wantError(t, res, http.StatusRequestEntityTooLarge, server.ETooLarge)
	if n := h.up.calls.Load(); n != 1 {
		t.Fatalf("%d upstream calls, want 1 (only the body within the limit)", n)
	}
}

func TestConcurrentSameUserMemory(t *testing.T) {
	testConcurrentSameUser(t, memory.NewCache(), nil)
}

func TestConcurrentSameUserRedis(t *testing.T) {
	client, prefix := testenv.Redis(t)
	testConcurrentSameUser(t, redis.NewCache(client, prefix), func() server.Cache {
		return redis.NewCache(client, prefix) // another relay instance
	})
}

// testConcurrentSameUser sends 20 simultaneous calls for one user (split
// over two relay instances sharing the cache when second is set) and wants
// one upstream call, one 201, and the same credentials everywhere.
func testConcurrentSameUser(t *testing.T, cache server.Cache, second func() server.Cache) {
	h := newHarness(t, cache)
	h.up.delay = 200 * time.Millisecond
	handlers := []http.Handler{h.relay}
	if second != nil {
		rl2, err := agentcache.NewRelay(agentcache.RelayConfig{
			InternalSecret: internalSecret,
			UpstreamURL:    h.up.srv.URL,
			UpstreamSecret: upstreamSecret,
			Cache:          second(),
			Logger:         slog.New(slog.NewTextHandler(h.logs, nil)),
			PollInterval:   10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		handlers = append(handlers, rl2)
	}

	const callers = 20
	results := make([]result, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			b := body("usr_concurrent")
			results[i] = do(t, handlers[i%len(handlers)], context.Background(), bearer(internalSecret), strings.NewReader(b), int64(len(b)))
		})
	}
	close(start)
	wg.Wait()

	if n := h.up.calls.Load(); n != 1 {
		t.Fatalf("%d upstream calls for %d concurrent requests, want 1", n, callers)
	}
	created := 0
	want := results[0].ok.Credentials
	for i, r := range results {
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Fatalf("caller %d: %d %s", i, r.status, r.raw)
		}
		if r.ok.Credentials != want || want.APISecret == "" {
			t.Fatalf("caller %d got %+v, caller 0 got %+v", i, r.ok.Credentials, want)
		}
	}
	if created != 1 {
		t.Fatalf("%d callers got 201, want 1", created)
	}
	assertNoSecrets(t, h.logs.String(), append(h.up.issuedSecrets(), internalSecret, upstreamSecret)...)
}

// TestCacheHoldsCiphertext reads the raw cache entry, in memory and in
// Redis, and wants neither the key nor the secret in it.
func TestCacheHoldsCiphertext(t *testing.T) {
	check := func(t *testing.T, h *harness, raw func(key string) ([]byte, time.Duration)) {
		res := h.post(t, bearer(internalSecret), body("usr_cipher"))
		if res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.raw)
		}
		v, ttl := raw(agentcache.CredentialsKey("usr_cipher"))
		if len(v) == 0 {
			t.Fatal("nothing cached under jettythunder:credentials:usr_cipher")
		}
		c := res.ok.Credentials
		for _, s := range []string{c.APISecret, c.APIKey, "api_secret", "secret_", "jt_live_"} {
			if bytes.Contains(v, []byte(s)) {
				t.Fatalf("cache entry contains %q in plaintext", s)
			}
		}
		if ttl != 0 && (ttl < agentcache.DefaultTTL-time.Minute || ttl > agentcache.DefaultTTL) {
			t.Fatalf("cache TTL %s, want about %s", ttl, agentcache.DefaultTTL)
		}
		// Two seals of the same credentials differ (random nonce).
		h.cache.Delete(context.Background(), agentcache.CredentialsKey("usr_cipher"))
		h.up.setRespond(func(int64) (int, string) {
			b, _ := json.Marshal(map[string]any{"success": true, "account": map[string]any{
				"api_key": c.APIKey, "api_secret": c.APISecret, "created_at": c.ProvisionedAt,
				"storage_quota_gb": c.StorageQuotaGB, "jetty_speed_enabled": c.JettySpeedEnabled,
				"s3_bucket": c.S3Bucket, "s3_prefix": c.S3Prefix}})
			return http.StatusCreated, string(b)
		})
		if res := h.post(t, bearer(internalSecret), body("usr_cipher")); res.ok.Credentials != c {
			t.Fatalf("re-provision: %s", res.raw)
		}
		v2, _ := raw(agentcache.CredentialsKey("usr_cipher"))
		if bytes.Equal(v, v2) {
			t.Fatal("two seals of the same credentials are identical; the nonce is not random")
		}
	}
	t.Run("memory", func(t *testing.T) {
		h := newHarness(t, memory.NewCache())
		check(t, h, func(key string) ([]byte, time.Duration) {
			v, _, _ := h.cache.Get(context.Background(), key)
			return v, 0
		})
	})
	t.Run("redis", func(t *testing.T) {
		client, prefix := testenv.Redis(t)
		h := newHarness(t, redis.NewCache(client, prefix))
		check(t, h, func(key string) ([]byte, time.Duration) {
			ctx := context.Background()
			v, _ := client.Get(ctx, prefix+key).Bytes()
			return v, client.PTTL(ctx, prefix+key).Val()
		})
	})
}

// TestUnreadableEntryIsAMiss: a tampered, truncated, foreign or
// wrong-key entry is logged and treated as a miss (never a panic, never
// served). Upstream then answers 409 for the existing account.
func TestUnreadableEntryIsAMiss(t *testing.T) {
	ctx := context.Background()
	cache := memory.NewCache()
	h := newHarness(t, cache)
	if res := h.post(t, bearer(internalSecret), body("usr_a")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	good, _, _ := cache.Get(ctx, agentcache.CredentialsKey("usr_a"))
	h.up.setRespond(func(int64) (int, string) {
		return http.StatusConflict, `{"error":"Account already exists","code":"account_exists"}`
	})

	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	cases := map[string]struct {
		key   string
		value []byte
	}{
		"version byte":     {agentcache.CredentialsKey("usr_a"), flip(0)},
		"nonce":            {agentcache.CredentialsKey("usr_a"), flip(3)},
		"ciphertext":       {agentcache.CredentialsKey("usr_a"), flip(len(good) / 2)},
		"tag":              {agentcache.CredentialsKey("usr_a"), flip(len(good) - 1)},
		"truncated":        {agentcache.CredentialsKey("usr_a"), good[:10]},
		"empty":            {agentcache.CredentialsKey("usr_a"), []byte{}},
		"plaintext json":   {agentcache.CredentialsKey("usr_a"), []byte(`{"api_key":"k","api_secret":"s"}`)},
		"other user's box": {agentcache.CredentialsKey("usr_b"), good},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cache.Set(ctx, c.key, c.value, time.Hour)
			uid := strings.TrimPrefix(c.key, "jettythunder:credentials:")
			before := h.up.calls.Load()
			res := h.post(t, bearer(internalSecret), body(uid))
			wantError(t, res, http.StatusConflict, server.EAccountExists)
			if !strings.Contains(res.err.Error, "rotate") {
				t.Errorf("409 message does not advise rotation: %q", res.err.Error)
			}
			if h.up.calls.Load() != before+1 {
				t.Error("an unreadable entry did not fall through to upstream")
			}
		})
	}
	if !strings.Contains(h.logs.String(), "unreadable") {
		t.Error("unreadable entries were not logged")
	}

	// A relay with another secret (so another derived key) cannot read the
	// first relay's entries either, and an explicit key works.
	cache.Set(ctx, agentcache.CredentialsKey("usr_a"), good, time.Hour)
	h2 := newHarness(t, cache, func(c *agentcache.RelayConfig) {
		c.InternalSecret = "another-internal-secret"
	})
	h2.up.setRespond(func(int64) (int, string) { return http.StatusConflict, `{"error":"exists"}` })
	wantError(t, h2.post(t, bearer("another-internal-secret"), body("usr_a")), http.StatusConflict, server.EAccountExists)
}

func TestExplicitEncryptionKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	cache := memory.NewCache()
	h := newHarness(t, cache, func(c *agentcache.RelayConfig) { c.EncryptionKey = key })
	res := h.post(t, bearer(internalSecret), body("usr_k"))
	// A relay with a different InternalSecret but the same key reads it.
	h2 := newHarness(t, cache, func(c *agentcache.RelayConfig) {
		c.EncryptionKey = key
		c.InternalSecret = "rotated-internal-secret"
		c.UpstreamURL = h.up.srv.URL
	})
	res2 := h2.post(t, bearer("rotated-internal-secret"), body("usr_k"))
	if res2.status != http.StatusOK || res2.ok.Credentials != res.ok.Credentials {
		t.Fatalf("same key, other secret: %d %s", res2.status, res2.raw)
	}
}

func TestUpstreamErrors(t *testing.T) {
	for _, c := range []struct {
		name     string
		status   int
		body     string
		want     int
		code     string
		contains []string
	}{
		{"exists", 409, `{"error":"Account already exists"}`, 409, server.EAccountExists, []string{"already exists", "rotate"}},
		{"bad tier", 400, `{"error":"Invalid tier: gold","code":"unknown_tier"}`, 400, server.EUnknownTier, []string{"Invalid tier: gold"}},
		{"bad request no code", 400, `{"error":"Missing required fields"}`, 400, server.EInvalid, []string{"Missing required fields"}},
		{"bad request odd code", 400, `{"error":"nope","code":"<script>"}`, 400, server.EInvalid, []string{"nope"}},
		{"bad request not json", 400, `<html>`, 400, server.EInvalid, []string{"rejected"}},
		{"unauthorized", 401, `{"error":"Unauthorized"}`, 502, agentcache.CodeUpstreamUnauthorized, []string{"JETTYTHUNDER_WEBHOOK_SECRET", "AGENTCACHE_WEBHOOK_SECRET"}},
		{"forbidden", 403, `{}`, 502, agentcache.CodeUpstreamUnauthorized, []string{"JETTYTHUNDER_WEBHOOK_SECRET"}},
		{"server error", 500, `{"error":"db down"}`, 502, agentcache.CodeUpstreamUnavailable, []string{"Failed to connect to JettyThunder"}},
		{"unavailable", 503, ``, 502, agentcache.CodeUpstreamUnavailable, []string{"Failed to connect to JettyThunder"}},
		{"not found", 404, ``, 502, agentcache.CodeUpstreamUnavailable, []string{"Failed to connect to JettyThunder", "JETTYTHUNDER_API_URL"}},
		{"redirect", 302, ``, 502, agentcache.CodeUpstreamUnavailable, []string{"Failed to connect to JettyThunder", "redirect"}},
		{"201 garbage", 201, `not json`, 502, agentcache.CodeUpstreamUnavailable, []string{"Failed to connect to JettyThunder"}},
		{"201 without secret", 201, `{"success":true,"account":{"api_key":"jt_live_x"}}`, 502, agentcache.CodeUpstreamUnavailable, []string{"Failed to connect to JettyThunder"}},
		{"201 success false", 201, `{"success":false,"account":{"api_key":"k","api_secret":"s"}}`, 502, agentcache.CodeUpstreamUnavailable, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, memory.NewCache())
			h.up.setRespond(func(int64) (int, string) {
				return c.status, c.body
			})
			res := h.post(t, bearer(internalSecret), body("usr_err"))
			wantError(t, res, c.want, c.code)
			for _, s := range c.contains {
				if !strings.Contains(res.err.Error, s) {
					t.Errorf("message %q lacks %q", res.err.Error, s)
				}
			}
			// Nothing cached, the lock released: the next call goes upstream
			// again and can succeed.
			h.up.setRespond(nil)
			if res := h.post(t, bearer(internalSecret), body("usr_err")); res.status != http.StatusCreated {
				t.Fatalf("retry after the error: %d %s", res.status, res.raw)
			}
			if n := h.up.calls.Load(); n != 2 {
				t.Fatalf("%d upstream calls, want 2", n)
			}
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	h.up.srv.Close() // connection refused from now on
	res := h.post(t, bearer(internalSecret), body("usr_down"))
	wantError(t, res, http.StatusBadGateway, agentcache.CodeUpstreamUnavailable)
	if !strings.HasPrefix(res.err.Error, "Failed to connect to JettyThunder") {
		t.Fatalf("message %q", res.err.Error)
	}
	if _, ok, _ := h.cache.Get(context.Background(), agentcache.LockKey("usr_down")); ok {
		t.Fatal("lock still held after a failed upstream call")
	}
}

func TestUpstreamWrongSecret(t *testing.T) {
	h := newHarness(t, memory.NewCache(), func(c *agentcache.RelayConfig) { c.UpstreamSecret = "mismatch" })
	wantError(t, h.post(t, bearer(internalSecret), body("usr_x")), http.StatusBadGateway, agentcache.CodeUpstreamUnauthorized)
}

// notifyCache reports each lock it failed to take.
type notifyCache struct {
	server.Cache
	refused chan string
}

func (c notifyCache) SetNX(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	ok, err := c.Cache.SetNX(ctx, key, v, ttl)
	if err == nil && !ok {
		select {
		case c.refused <- key:
		default:
		}
	}
	return ok, err
}

// TestWaitsForLockHolder: while another instance provisions the user, a
// caller waits; when the holder caches its result (confirmed after the
// caller arrived), the caller answers 200 with it, calling nothing
// upstream itself.
func TestWaitsForLockHolder(t *testing.T) {
	cache := memory.NewCache()
	nc := notifyCache{Cache: cache, refused: make(chan string, 100)}
	h := newHarness(t, nc)
	other := newHarness(t, cache)
	release := make(chan struct{})
	other.up.hold = release

	firstDone := make(chan result)
	go func() { firstDone <- other.post(t, bearer(internalSecret), body("usr_w")) }()
	<-other.up.entered // the other instance holds the lock and is upstream
	done := make(chan result)
	go func() { done <- h.post(t, bearer(internalSecret), body("usr_w")) }()
	<-nc.refused // the caller arrived and found the lock taken
	close(release)
	first, r := <-firstDone, <-done
	if first.status != http.StatusCreated {
		t.Fatalf("holder: %d %s", first.status, first.raw)
	}
	if r.status != http.StatusOK || r.ok.Credentials != first.ok.Credentials {
		t.Fatalf("waiter: %d %s; want 200 with the holder's credentials", r.status, r.raw)
	}
	if n, q := h.up.calls.Load(), h.up.quotaCalls.Load(); n != 0 || q != 0 {
		t.Fatalf("waiter called upstream %d+%d times", n, q)
	}
}

// TestStaleLockExpires: a crashed holder's lock expires and the waiter
// provisions.
func TestStaleLockExpires(t *testing.T) {
	cache := memory.NewCache()
	h := newHarness(t, cache)
	cache.Set(context.Background(), agentcache.LockKey("usr_s"), []byte("crashed"), 150*time.Millisecond)
	start := time.Now()
	res := h.post(t, bearer(internalSecret), body("usr_s"))
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	if time.Since(start) < 140*time.Millisecond {
		t.Fatal("provisioned while the stale lock was still held")
	}
}

func TestWaitTimeout(t *testing.T) {
	cache := memory.NewCache()
	h := newHarness(t, cache, func(c *agentcache.RelayConfig) { c.WaitTimeout = 200 * time.Millisecond })
	cache.Set(context.Background(), agentcache.LockKey("usr_t"), []byte("busy"), time.Minute)
	res := h.post(t, bearer(internalSecret), body("usr_t"))
	wantError(t, res, http.StatusServiceUnavailable, server.EUnavailable)
	if n := h.up.calls.Load(); n != 0 {
		t.Fatalf("%d upstream calls while locked", n)
	}
}

// TestClientDisconnectStillCaches: the caller goes away during the
// upstream call; the credentials are cached anyway.
func TestClientDisconnectStillCaches(t *testing.T) {
	cache := memory.NewCache()
	h := newHarness(t, cache)
	h.up.delay = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := body("usr_gone")
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, agentcache.Path, strings.NewReader(b))
		req.Header.Set("Authorization", bearer(internalSecret))
		h.relay.ServeHTTP(httptest.NewRecorder(), req)
	}()
	<-h.up.entered
	cancel()
	<-done
	res := h.post(t, bearer(internalSecret), body("usr_gone"))
	if res.status != http.StatusOK || res.ok.Credentials.APISecret != h.up.issuedSecrets()[1] {
		t.Fatalf("after a disconnect: %d %s; want 200 with the credentials of the first call", res.status, res.raw)
	}
	if n := h.up.calls.Load(); n != 1 {
		t.Fatalf("%d upstream calls, want 1", n)
	}
}

// failingCache fails every operation.
type failingCache struct{}

func (failingCache) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, fmt.Errorf("cache down")
}
func (failingCache) Set(context.Context, string, []byte, time.Duration) error {
	return fmt.Errorf("cache down")
}
func (failingCache) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, fmt.Errorf("cache down")
}
func (failingCache) Delete(context.Context, string) error { return fmt.Errorf("cache down") }

func TestCacheDown(t *testing.T) {
	h := newHarness(t, failingCache{})
	wantError(t, h.post(t, bearer(internalSecret), body("usr_c")), http.StatusServiceUnavailable, server.EUnavailable)
	if n := h.up.calls.Load(); n != 0 {
		t.Fatalf("%d upstream calls without a working cache", n)
	}
}

// setFailsCache works except for Set, so credentials cannot be cached.
type setFailsCache struct{ *memory.Cache }

func (setFailsCache) Set(context.Context, string, []byte, time.Duration) error {
	return fmt.Errorf("cache full")
}

func TestCacheWriteFailureStillAnswers(t *testing.T) {
	h := newHarness(t, setFailsCache{memory.NewCache()})
	res := h.post(t, bearer(internalSecret), body("usr_f"))
	if res.status != http.StatusCreated || res.ok.Credentials.APISecret == "" {
		t.Fatalf("%d %s; want the credentials even though caching failed", res.status, res.raw)
	}
	if !strings.Contains(h.logs.String(), "not cached") {
		t.Error("the caching failure was not logged")
	}
	assertNoSecrets(t, h.logs.String(), h.up.issuedSecrets()...)
}

// TestNoSecretsInLogs runs every path and searches the log for secrets.
func TestNoSecretsInLogs(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	h.post(t, bearer(internalSecret), body("usr_l"))
	h.post(t, bearer(internalSecret), body("usr_l"))
	h.post(t, bearer("wrong-"+internalSecret), body("usr_l"))
	h.post(t, bearer(internalSecret), `{"user_id":"usr_l2","email":"private@example.com","tier":"pro","password":"hunter2"}`)
	h.up.setRespond(func(int64) (int, string) { return 500, `{"error":"boom ` + upstreamSecret + `"}` })
	h.post(t, bearer(internalSecret), body("usr_l3"))
	logs := h.logs.String()
	if !strings.Contains(logs, "usr_l") {
		t.Fatalf("log does not mention the user id:\n%s", logs)
	}
	assertNoSecrets(t, logs, append(h.up.issuedSecrets(), internalSecret, upstreamSecret, "private@example.com", "test@example.com", "hunter2")...)
}

func assertNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Fatalf("log contains secret %q:\n%s", s, logs)
		}
	}
}

func TestNewRelayValidation(t *testing.T) {
	ok := agentcache.RelayConfig{
		InternalSecret: "i", UpstreamURL: "https://jettythunder.app", UpstreamSecret: "u", Cache: memory.NewCache(),
	}
	if _, err := agentcache.NewRelay(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	empty := ok
	empty.EncryptionKey = []byte{} // as hex.DecodeString("") returns: derive
	if _, err := agentcache.NewRelay(empty); err != nil {
		t.Fatalf("empty EncryptionKey: %v", err)
	}
	for name, mod := range map[string]func(*agentcache.RelayConfig){
		"no internal secret": func(c *agentcache.RelayConfig) { c.InternalSecret = "" },
		"no upstream secret": func(c *agentcache.RelayConfig) { c.UpstreamSecret = "" },
		"no cache":           func(c *agentcache.RelayConfig) { c.Cache = nil },
		"no url":             func(c *agentcache.RelayConfig) { c.UpstreamURL = "" },
		"relative url":       func(c *agentcache.RelayConfig) { c.UpstreamURL = "jettythunder.app" },
		"ftp url":            func(c *agentcache.RelayConfig) { c.UpstreamURL = "ftp://jettythunder.app" },
		"url with query":     func(c *agentcache.RelayConfig) { c.UpstreamURL = "https://jettythunder.app/?x=1" },
		"short key":          func(c *agentcache.RelayConfig) { c.EncryptionKey = make([]byte, 16) },
		"lock ttl too short": func(c *agentcache.RelayConfig) { c.LockTTL = time.Second },
	} {
		c := ok
		mod(&c)
		if _, err := agentcache.NewRelay(c); err == nil {
			t.Errorf("%s: NewRelay succeeded", name)
		}
	}
}

func (u *fakeUpstream) onQuota(f func(w http.ResponseWriter) bool) { u.quotaHook.Store(&f) }

// TestCheckFailuresKeepTheEntry: when the cached credentials cannot be
// checked (rate-limited, an error, a 401 or 403 the relay does not
// recognise), nothing is handed out and the entry is kept; once the check
// succeeds the same credentials are answered.
func TestCheckFailuresKeepTheEntry(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	first := h.post(t, bearer(internalSecret), body("usr_chk"))
	if first.status != http.StatusCreated {
		t.Fatalf("%d %s", first.status, first.raw)
	}
	for _, c := range []struct {
		name       string
		status     int
		body       string
		retryAfter string
		want       int
		code       string
		wantRetry  string
	}{
		{"rate limited", 429, `{"error":"slow down","code":"rate_limited"}`, "17", 429, server.ERateLimited, "17"},
		{"rate limited, odd Retry-After", 429, `{}`, "soon", 429, server.ERateLimited, "1"},
		{"server error", 500, `{"error":"db down","code":"internal"}`, "", 502, agentcache.CodeUpstreamUnavailable, ""},
		{"401 from a proxy", 401, `<html>login</html>`, "", 502, agentcache.CodeUpstreamUnavailable, ""},
		{"403 other code", 403, `{"error":"no","code":"tier_lacks_feature"}`, "", 502, agentcache.CodeUpstreamUnavailable, ""},
		{"200 without tier", 200, `{"status":"active"}`, "", 502, agentcache.CodeUpstreamUnavailable, ""},
		{"404", 404, ``, "", 502, agentcache.CodeUpstreamUnavailable, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.up.onQuota(func(w http.ResponseWriter) bool {
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
				return true
			})
			res := h.post(t, bearer(internalSecret), body("usr_chk"))
			wantError(t, res, c.want, c.code)
			if strings.Contains(res.raw, first.ok.Credentials.APISecret) {
				t.Fatalf("credentials handed out unchecked: %s", res.raw)
			}
			if got := res.header.Get("Retry-After"); got != c.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, c.wantRetry)
			}
			if _, ok, _ := h.cache.Get(context.Background(), agentcache.CredentialsKey("usr_chk")); !ok {
				t.Fatal("the entry was dropped on a failed check")
			}
		})
	}
	h.up.onQuota(func(http.ResponseWriter) bool { return false })
	res := h.post(t, bearer(internalSecret), body("usr_chk"))
	if res.status != http.StatusOK || res.ok.Credentials != first.ok.Credentials {
		t.Fatalf("after the failures: %d %s", res.status, res.raw)
	}
	if n := h.up.calls.Load(); n != 1 {
		t.Fatalf("%d provisioning calls, want 1", n)
	}
}

// TestTierMismatch: a provision call naming a lower tier, or a tier the
// relay cannot rank, is refused with 409 tier_mismatch and upgrades
// nothing.
func TestTierMismatch(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	if res := h.post(t, bearer(internalSecret), body("usr_tm")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	for tier, why := range map[string]string{"starter": "lower than", "custom_gold": "not comparable"} {
		res := h.post(t, bearer(internalSecret), fmt.Sprintf(`{"user_id":"usr_tm","email":"a@b.co","tier":%q}`, tier))
		wantError(t, res, http.StatusConflict, agentcache.CodeTierMismatch)
		if !strings.Contains(res.err.Error, why) || !strings.Contains(res.err.Error, agentcache.UpgradePath) {
			t.Errorf("%s: message %q", tier, res.err.Error)
		}
	}
	if n := h.up.upgrades.Load(); n != 0 {
		t.Fatalf("%d upgrade calls for refused tiers", n)
	}
}

func upgradeBody(uid, tier string) string { return fmt.Sprintf(`{"user_id":%q,"tier":%q}`, uid, tier) }

func (h *harness) postUpgrade(t *testing.T, auth, b string) (int, agentcache.UpgradeResponse, agentcache.ErrorResponse, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, agentcache.UpgradePath, strings.NewReader(b))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.relay.ServeHTTP(rec, req)
	var ok agentcache.UpgradeResponse
	var e agentcache.ErrorResponse
	if rec.Code == http.StatusOK {
		json.Unmarshal(rec.Body.Bytes(), &ok)
	} else {
		json.Unmarshal(rec.Body.Bytes(), &e)
	}
	return rec.Code, ok, e, rec.Body.String()
}

// TestUpgradeRouteUpdatesCache: the upgrade route changes the tier
// upstream and the cached figures; a provision call naming the new tier
// then upgrades nothing more.
func TestUpgradeRouteUpdatesCache(t *testing.T) {
	h := newHarness(t, memory.NewCache())
	if res := h.post(t, bearer(internalSecret), body("usr_ur")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	status, ok, _, raw := h.postUpgrade(t, bearer(internalSecret), upgradeBody("usr_ur", "enterprise"))
	if status != http.StatusOK || !ok.Success || ok.Account.Tier != "enterprise" || ok.Account.StorageQuotaGB != 1000 || ok.Account.UserID != "usr_ur" {
		t.Fatalf("upgrade: %d %s", status, raw)
	}
	res := h.post(t, bearer(internalSecret), `{"user_id":"usr_ur","email":"a@b.co","tier":"enterprise"}`)
	if res.status != http.StatusOK || res.ok.Message != agentcache.MessageCached || res.ok.Credentials.Tier != "enterprise" || res.ok.Credentials.StorageQuotaGB != 1000 {
		t.Fatalf("after the upgrade route: %d %s", res.status, res.raw)
	}
	if n := h.up.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrade calls, want 1", n)
	}
	// Unauthorized and malformed calls reach nothing upstream.
	if status, _, e, _ := h.postUpgrade(t, bearer("nope"), upgradeBody("usr_ur", "free")); status != http.StatusUnauthorized || e.Code != server.EUnauthorized {
		t.Fatalf("wrong secret: %d %+v", status, e)
	}
	if status, _, e, _ := h.postUpgrade(t, bearer(internalSecret), `{"user_id":"usr_ur","tier":"pro","new_tier":"free"}`); status != http.StatusBadRequest || e.Code != server.EInvalid {
		t.Fatalf("tier and new_tier differ: %d %+v", status, e)
	}
	if n := h.up.upgrades.Load(); n != 1 {
		t.Fatalf("%d upgrade calls, want 1", n)
	}
	// A user JettyThunder does not know.
	if status, _, e, _ := h.postUpgrade(t, bearer(internalSecret), upgradeBody("usr_none", "pro")); status != http.StatusNotFound || e.Code != server.ENotFound {
		t.Fatalf("unknown user: %d %+v", status, e)
	}
	assertNoSecrets(t, h.logs.String(), append(h.up.issuedSecrets(), internalSecret, upstreamSecret)...)
}

// TestEntryOfThePreviousVersion: an entry sealed before entries carried
// a tier and a check time (credentials only) is still read, checked and
// answered.
func TestEntryOfThePreviousVersion(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	cache := memory.NewCache()
	h := newHarness(t, cache, func(c *agentcache.RelayConfig) { c.EncryptionKey = key })
	first := h.post(t, bearer(internalSecret), body("usr_v0"))
	c := first.ok.Credentials
	old, _ := json.Marshal(map[string]any{
		"api_key": c.APIKey, "api_secret": c.APISecret, "storage_quota_gb": 20, "jetty_speed_enabled": true,
		"s3_bucket": c.S3Bucket, "s3_prefix": c.S3Prefix, "provisioned_at": c.ProvisionedAt,
	})
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCMWithRandomNonce(block)
	cache.Set(context.Background(), agentcache.CredentialsKey("usr_v0"), aead.Seal([]byte{1}, nil, old, []byte("usr_v0")), time.Hour)
	res := h.post(t, bearer(internalSecret), body("usr_v0"))
	if res.status != http.StatusOK || res.ok.Credentials != c {
		t.Fatalf("previous-version entry: %d %s; want %+v", res.status, res.raw, c)
	}
}
