package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/redis"
	"github.com/jettythunder/jetty/server/sqlstore"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

const webhookSecret = "whsec_test_0123456789abcdef"

type env struct {
	t     *testing.T
	url   string
	api   *api.Server
	store server.Store
	blobs blob.Store
	logs  *testenv.SyncBuffer
}

type backend struct {
	name  string
	store func(t *testing.T) server.Store
	limit func(t *testing.T) server.Limiter
}

func backends() []backend {
	return []backend{
		{
			name: "sqlite",
			store: func(t *testing.T) server.Store {
				st, err := sqlstore.Open(context.Background(), testenv.SQLitePath(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			},
			limit: func(t *testing.T) server.Limiter {
				l := memory.NewLimiter()
				t.Cleanup(func() { l.Close() })
				return l
			},
		},
		{
			name: "postgres+redis",
			store: func(t *testing.T) server.Store {
				st, err := sqlstore.Open(context.Background(), testenv.PostgresURL(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			},
			limit: func(t *testing.T) server.Limiter {
				c, prefix := testenv.Redis(t)
				return redis.NewLimiter(c, prefix)
			},
		},
	}
}

// each runs fn once per backend.
func each(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

func newEnv(t *testing.T, b backend) *env {
	t.Helper()
	st := b.store(t)
	return newEnvWith(t, st, b.limit(t))
}

func newEnvWith(t *testing.T, st server.Store, lim server.Limiter) *env {
	t.Helper()
	return newEnvBlobs(t, st, lim, nil)
}

func newEnvBlobs(t *testing.T, st server.Store, lim server.Limiter, blobs blob.Store) *env {
	t.Helper()
	return newEnvFull(t, st, lim, blobs, nil)
}

// newClockEnv is an embedded-default env whose server reads clock.
func newClockEnv(t *testing.T, clock func() time.Time) *env {
	t.Helper()
	b := backends()[0]
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEnvFull(t, b.store(t), b.limit(t), fs, clock)
}

func newEnvFull(t *testing.T, st server.Store, lim server.Limiter, blobs blob.Store, clock func() time.Time) *env {
	t.Helper()
	return newEnvConfig(t, st, lim, blobs, clock, nil)
}

// newEnvConfig is newEnvFull with a last say on the API's configuration.
func newEnvConfig(t *testing.T, st server.Store, lim server.Limiter, blobs blob.Store, clock func() time.Time, edit func(*api.Config)) *env {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	signer, err := uploadtoken.NewSigner([]byte("test token secret"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{
		Now:           clock,
		TokenSigner:   signer,
		Store:         st,
		Limiter:       lim,
		Blobs:         blobs,
		Logger:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		WebhookSecret: webhookSecret,
	}
	if edit != nil {
		edit(&cfg)
	}
	s := api.New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &env{t: t, url: ts.URL, api: s, store: st, blobs: blobs, logs: logs}
}

// eachStorage runs fn on the embedded default (SQLite + files) and on
// production parts (PostgreSQL + MinIO + Redis).
func eachStorage(t *testing.T, fn func(t *testing.T, e *env)) {
	eachStorageWith(t, nil, fn)
}

// eachStorageWith is eachStorage with a last say on the API's
// configuration.
func eachStorageWith(t *testing.T, edit func(*api.Config), fn func(t *testing.T, e *env)) {
	t.Run("sqlite+fs", func(t *testing.T) {
		b := backends()[0]
		fs, err := fsblob.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newEnvConfig(t, b.store(t), b.limit(t), fs, nil, edit))
	})
	t.Run("postgres+s3", func(t *testing.T) {
		b := backends()[1]
		fn(t, newEnvConfig(t, b.store(t), b.limit(t), minioBlobs(t), nil, edit))
	})
}

// minioBlobs is an object store in a bucket of its own on MinIO, as in
// production.
func minioBlobs(t *testing.T) blob.Store {
	t.Helper()
	return s3Blobs(t, testenv.MinIO(t))
}

// s3Blobs is an object store on m's bucket, set up.
func s3Blobs(t *testing.T, m testenv.S3) *s3blob.Store {
	t.Helper()
	s3, err := s3blob.New(context.Background(), s3blob.Config{
		Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s3
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(method, path string, body string, headers map[string]string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func partnerHeaders() map[string]string {
	return map[string]string{"Authorization": "Bearer " + webhookSecret}
}

func userHeaders(key, secret string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + key, "X-API-Secret": secret}
}

// provision creates an account and returns its key and secret.
func (e *env) provision(userID, tier string) (key, secret string) {
	e.t.Helper()
	r := e.do("POST", "/api/agentcache/provision",
		fmt.Sprintf(`{"agentcache_user_id":%q,"agentcache_email":"%s@example.com","tier":%q}`, userID, userID, tier), partnerHeaders())
	if r.status != 201 {
		e.t.Fatalf("provision %s: %d %s", userID, r.status, r.raw)
	}
	acct := r.body["account"].(map[string]any)
	return acct["api_key"].(string), acct["api_secret"].(string)
}

func wantError(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (%s)", r.status, status, r.raw)
	}
	if r.body["code"] != code {
		t.Fatalf("code = %v, want %q (%s)", r.body["code"], code, r.raw)
	}
	if msg, _ := r.body["error"].(string); msg == "" {
		t.Fatalf("error body without a message: %s", r.raw)
	}
}

// TestSeedFlows runs the seeds' curl flows: provision (both field-name
// styles), upgrade, quota with the secret header, and Basic auth.
func TestSeedFlows(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		// Seed 002: provision.
		r := e.do("POST", "/api/agentcache/provision",
			`{"agentcache_user_id":"test-user-123","agentcache_email":"test@example.com","tier":"pro"}`, partnerHeaders())
		if r.status != 201 || r.body["success"] != true {
			t.Fatalf("provision: %d %s", r.status, r.raw)
		}
		acct := r.body["account"].(map[string]any)
		key, secret := acct["api_key"].(string), acct["api_secret"].(string)
		if !strings.HasPrefix(key, "jt_test_") || !strings.HasPrefix(secret, "jts_") {
			t.Fatalf("credentials %q %q have the wrong prefixes", key, secret)
		}
		for field, want := range map[string]any{"tier": "pro", "storage_quota_gb": 20.0, "bandwidth_quota_gb": 50.0, "jetty_speed_enabled": true, "s3_prefix": "users/test-user-123", "s3_bucket": "agentcache-assets"} {
			if acct[field] != want {
				t.Errorf("account.%s = %v, want %v", field, acct[field], want)
			}
		}
		if acct["id"] == "" || acct["created_at"] == "" {
			t.Errorf("account lacks id or created_at: %s", r.raw)
		}

		// Seed 000: user_id/email field names.
		r = e.do("POST", "/api/agentcache/provision", `{"user_id":"usr_test_123","email":"test@example.com","tier":"starter"}`, partnerHeaders())
		if r.status != 201 {
			t.Fatalf("seed 000 provision: %d %s", r.status, r.raw)
		}

		// Seed 002: quota with key and secret.
		r = e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret))
		if r.status != 200 {
			t.Fatalf("quota: %d %s", r.status, r.raw)
		}
		st := r.body["storage"].(map[string]any)
		bw := r.body["bandwidth"].(map[string]any)
		if r.body["tier"] != "pro" || r.body["jetty_speed_enabled"] != true {
			t.Fatalf("quota tier: %s", r.raw)
		}
		for _, f := range []string{"quota_gb", "used_gb", "available_gb", "percent_used", "percent"} {
			if _, ok := st[f]; !ok {
				t.Errorf("storage.%s missing: %s", f, r.raw)
			}
			if _, ok := bw[f]; !ok {
				t.Errorf("bandwidth.%s missing: %s", f, r.raw)
			}
		}
		if st["quota_gb"] != 20.0 || st["available_gb"] != 20.0 || bw["quota_gb"] != 50.0 {
			t.Fatalf("quota numbers: %s", r.raw)
		}

		// Seed 000: upgrade with "tier"; seed 002: with "new_tier".
		r = e.do("POST", "/api/agentcache/upgrade", `{"agentcache_user_id":"test-user-123","tier":"business"}`, partnerHeaders())
		if r.status != 200 || r.body["account"].(map[string]any)["storage_quota_gb"] != 100.0 {
			t.Fatalf("upgrade: %d %s", r.status, r.raw)
		}
		r = e.do("POST", "/api/agentcache/upgrade", `{"agentcache_user_id":"usr_test_123","new_tier":"enterprise"}`, partnerHeaders())
		if r.status != 200 || r.body["account"].(map[string]any)["tier"] != "enterprise" {
			t.Fatalf("upgrade new_tier: %d %s", r.status, r.raw)
		}
		if r.body["account"].(map[string]any)["api_secret"] != nil {
			t.Fatalf("upgrade leaked a secret: %s", r.raw)
		}

		// The quota follows the upgrade; Basic auth works as well.
		req, _ := http.NewRequest("GET", e.url+"/api/agentcache/quota", nil)
		req.SetBasicAuth(key, secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var q map[string]any
		json.NewDecoder(res.Body).Decode(&q)
		res.Body.Close()
		if res.StatusCode != 200 || q["tier"] != "business" || q["storage"].(map[string]any)["quota_gb"] != 100.0 {
			t.Fatalf("quota after upgrade (basic auth): %d %v", res.StatusCode, q)
		}

		// Upgrade of an unknown account, to an unknown tier.
		wantError(t, e.do("POST", "/api/agentcache/upgrade", `{"agentcache_user_id":"nobody","tier":"pro"}`, partnerHeaders()), 404, server.ENotFound)
		wantError(t, e.do("POST", "/api/agentcache/upgrade", `{"agentcache_user_id":"usr_test_123","tier":"platinum"}`, partnerHeaders()), 400, server.EUnknownTier)

		// whoami names the account.
		r = e.do("GET", "/api/whoami", "", userHeaders(key, secret))
		if r.status != 200 || r.body["agentcache_user_id"] != "test-user-123" || r.body["email"] != "test@example.com" {
			t.Fatalf("whoami: %d %s", r.status, r.raw)
		}
	})
}

// TestConcurrentProvision: 50 identical provision calls at once give
// exactly one 201 and 49 409s, and one account.
func TestConcurrentProvision(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		const n = 50
		var wg sync.WaitGroup
		statuses := make([]int, n)
		keys := make([]string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				req, _ := http.NewRequest("POST", e.url+"/api/agentcache/provision",
					strings.NewReader(`{"agentcache_user_id":"usr_race","agentcache_email":"race@example.com","tier":"pro"}`))
				req.Header.Set("Authorization", "Bearer "+webhookSecret)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer res.Body.Close()
				var body struct {
					Account struct {
						APIKey string `json:"api_key"`
					} `json:"account"`
				}
				json.NewDecoder(res.Body).Decode(&body)
				statuses[i], keys[i] = res.StatusCode, body.Account.APIKey
			}(i)
		}
		wg.Wait()
		created, conflicts := 0, 0
		var key string
		for i, st := range statuses {
			switch st {
			case 201:
				created++
				key = keys[i]
			case 409:
				conflicts++
			default:
				t.Errorf("unexpected status %d", st)
			}
		}
		if created != 1 || conflicts != n-1 {
			t.Fatalf("created=%d conflicts=%d, want 1 and %d", created, conflicts, n-1)
		}
		acct, err := e.store.AccountByUserID(context.Background(), "usr_race")
		if err != nil || acct.APIKey != key {
			t.Fatalf("stored account %+v, %v; want key of the one 201", acct, err)
		}
	})
}

// TestPartnerBadInput: every bad request gets its status and code, and
// nothing is written.
func TestPartnerBadInput(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		good := `{"agentcache_user_id":"usr_ok","agentcache_email":"ok@example.com","tier":"pro"}`
		cases := []struct {
			name    string
			body    string
			headers map[string]string
			status  int
			code    string
		}{
			{"no auth header", good, nil, 401, server.EUnauthorized},
			{"empty bearer", good, map[string]string{"Authorization": "Bearer "}, 401, server.EUnauthorized},
			{"wrong secret", good, map[string]string{"Authorization": "Bearer " + webhookSecret + "x"}, 401, server.EUnauthorized},
			{"secret as basic", good, map[string]string{"Authorization": "Basic " + webhookSecret}, 401, server.EUnauthorized},
			{"malformed json", `{"agentcache_user_id":`, partnerHeaders(), 400, server.EInvalid},
			{"empty body", ``, partnerHeaders(), 400, server.EInvalid},
			{"two values", good + good, partnerHeaders(), 400, server.EInvalid},
			{"wrong type", `{"agentcache_user_id":5,"agentcache_email":"a@b.c","tier":"pro"}`, partnerHeaders(), 400, server.EInvalid},
			{"oversized json", `{"agentcache_user_id":"usr_ok","pad":"` + strings.Repeat("x", 100<<10) + `","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 413, server.ETooLarge},
			{"unknown tier", `{"agentcache_user_id":"usr_ok","agentcache_email":"ok@example.com","tier":"platinum"}`, partnerHeaders(), 400, server.EUnknownTier},
			{"missing tier", `{"agentcache_user_id":"usr_ok","agentcache_email":"ok@example.com"}`, partnerHeaders(), 400, server.EInvalid},
			{"missing user", `{"agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalidUserID},
			{"bad email", `{"agentcache_user_id":"usr_ok","agentcache_email":"not an email","tier":"pro"}`, partnerHeaders(), 400, server.EInvalid},
			{"traversal id", `{"agentcache_user_id":"../etc","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalidUserID},
			{"slash id", `{"agentcache_user_id":"a/b","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalidUserID},
			{"control char id", `{"agentcache_user_id":"usr\u0000ok","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalidUserID},
			{"newline id", `{"agentcache_user_id":"usr\nok","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalidUserID},
			{"10KB id", `{"agentcache_user_id":"` + strings.Repeat("a", 10<<10) + `","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalidUserID},
			{"fields disagree", `{"agentcache_user_id":"usr_ok","user_id":"usr_other","agentcache_email":"ok@example.com","tier":"pro"}`, partnerHeaders(), 400, server.EInvalid},
			{"xml content type", good, map[string]string{"Authorization": "Bearer " + webhookSecret, "Content-Type": "application/xml"}, 400, server.EInvalid},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, e.do("POST", "/api/agentcache/provision", c.body, c.headers), c.status, c.code)
			})
		}
		for _, id := range []string{"usr_ok", "usr_other", "../etc", "a/b"} {
			if _, err := e.store.AccountByUserID(context.Background(), id); server.ErrorCode(err) != server.ENotFound {
				t.Fatalf("account %q exists after bad requests (err %v)", id, err)
			}
		}
		// The other partner endpoints refuse a missing secret too.
		for _, p := range []string{"upgrade", "suspend", "reactivate", "delete", "rotate"} {
			wantError(t, e.do("POST", "/api/agentcache/"+p, `{"agentcache_user_id":"usr_ok"}`, nil), 401, server.EUnauthorized)
		}
		// Unknown routes answer JSON 404s; wrong methods 405.
		wantError(t, e.do("GET", "/api/nope", "", nil), 404, server.ENotFound)
		if r := e.do("GET", "/api/agentcache/provision", "", partnerHeaders()); r.status != 405 {
			t.Fatalf("GET provision = %d, want 405", r.status)
		}
	})
}

// TestPartnerDisabledWithoutSecret: an empty configured secret refuses
// everything, including an empty bearer.
func TestPartnerDisabledWithoutSecret(t *testing.T) {
	b := backends()[0]
	st := b.store(t)
	s := api.New(api.Config{Store: st, Limiter: b.limit(t)})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close()
	req, _ := http.NewRequest("POST", ts.URL+"/api/agentcache/provision", strings.NewReader(`{"agentcache_user_id":"u","agentcache_email":"u@example.com","tier":"pro"}`))
	req.Header.Set("Authorization", "Bearer ")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("status %d, want 401", res.StatusCode)
	}
}

// TestUserAuth: each way credentials can be wrong has its own answer.
func TestUserAuth(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		key, secret := e.provision("usr_auth", "pro")
		other, _ := e.provision("usr_other", "pro")

		// A broken checksum: change one character of the random part.
		i := 12
		c := byte('A')
		if key[i] == 'A' {
			c = 'B'
		}
		typo := key[:i] + string(c) + key[i+1:]
		forged := "jt_test_" + strings.Repeat("A", 36) // right length, wrong checksum

		wantError(t, e.do("GET", "/api/agentcache/quota", "", nil), 401, server.EMissingAuth)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(typo, secret)), 401, server.EMalformedAPIKey)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(forged, secret)), 401, server.EMalformedAPIKey)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", map[string]string{"Authorization": "Bearer " + key}), 401, server.EMissingAPISecret)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(key, changeLast(secret))), 401, server.EWrongAPISecret)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(other, secret)), 401, server.EWrongAPISecret)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(key, "hunter2")), 401, server.EWrongAPISecret)

		// A well-formed key that was never issued.
		r := e.do("POST", "/api/agentcache/rotate", `{"agentcache_user_id":"usr_other"}`, partnerHeaders())
		if r.status != 200 {
			t.Fatalf("rotate: %d %s", r.status, r.raw)
		}
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(other, secret)), 401, server.EUnknownAPIKey)

		// Suspended, reactivated, deleted.
		if r := e.do("POST", "/api/agentcache/suspend", `{"agentcache_user_id":"usr_auth"}`, partnerHeaders()); r.status != 200 {
			t.Fatalf("suspend: %d %s", r.status, r.raw)
		}
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)), 403, server.EAccountSuspended)
		if r := e.do("POST", "/api/agentcache/reactivate", `{"user_id":"usr_auth"}`, partnerHeaders()); r.status != 200 {
			t.Fatalf("reactivate: %d %s", r.status, r.raw)
		}
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)); r.status != 200 {
			t.Fatalf("quota after reactivate: %d %s", r.status, r.raw)
		}
		var deletedAt any
		for i := 0; i < 2; i++ { // deleting twice is harmless, and keeps the time of the first
			r := e.do("POST", "/api/agentcache/delete", `{"agentcache_user_id":"usr_auth"}`, partnerHeaders())
			if r.status != 200 || r.body["account"].(map[string]any)["status"] != "deleted" {
				t.Fatalf("delete #%d: %d %s", i+1, r.status, r.raw)
			}
			at := r.body["account"].(map[string]any)["deleted_at"]
			if at == nil || i == 1 && at != deletedAt {
				t.Fatalf("delete #%d: deleted_at %v, first %v", i+1, at, deletedAt)
			}
			deletedAt = at
		}
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)), 403, server.EAccountDeleted)
		wantError(t, e.do("POST", "/api/agentcache/reactivate", `{"agentcache_user_id":"usr_auth"}`, partnerHeaders()), 403, server.EAccountDeleted)
		wantError(t, e.do("POST", "/api/agentcache/provision", `{"agentcache_user_id":"usr_auth","agentcache_email":"a@example.com","tier":"pro"}`, partnerHeaders()), 409, server.EAccountExists)
		wantError(t, e.do("POST", "/api/agentcache/suspend", `{"agentcache_user_id":"ghost"}`, partnerHeaders()), 404, server.ENotFound)
	})
}

// TestRateLimit: the free tier's 10 requests a minute, then 429 with
// Retry-After; other accounts are not affected.
func TestRateLimit(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		key, secret := e.provision("usr_free", "free")
		okey, osecret := e.provision("usr_pro", "pro")
		for i := 0; i < 10; i++ {
			r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret))
			if r.status != 200 {
				t.Fatalf("request %d: %d %s", i+1, r.status, r.raw)
			}
			if got := r.header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(9-i) {
				t.Fatalf("request %d: X-RateLimit-Remaining = %q", i+1, got)
			}
		}
		r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret))
		wantError(t, r, 429, server.ERateLimited)
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Fatalf("Retry-After = %q", r.header.Get("Retry-After"))
		}
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(okey, osecret)); r.status != 200 {
			t.Fatalf("other account limited: %d", r.status)
		}
	})
}

// TestRateLimitSharedThroughRedis: two server instances on one Redis
// share one count.
func TestRateLimitSharedThroughRedis(t *testing.T) {
	b := backends()[1]
	st := b.store(t)
	c, prefix := testenv.Redis(t)
	e1 := newEnvWith(t, st, redis.NewLimiter(c, prefix))
	e2 := newEnvWith(t, st, redis.NewLimiter(c, prefix))
	key, secret := e1.provision("usr_shared", "free")
	for i := 0; i < 10; i++ {
		e := e1
		if i%2 == 1 {
			e = e2
		}
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	wantError(t, e2.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)), 429, server.ERateLimited)
	wantError(t, e1.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)), 429, server.ERateLimited)
}

// TestNoSecretsInLogsOrRequests: credentials never reach slog output or
// api_requests, whatever the request did.
func TestNoSecretsInLogsOrRequests(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		key, secret := e.provision("usr_logs", "pro")
		e.do("GET", "/api/agentcache/quota?api_key="+key+"&secret="+secret, "", userHeaders(key, secret))
		e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret+"x"))
		e.do("GET", "/api/agentcache/quota", "", map[string]string{"Authorization": "Bearer " + key})
		e.do("POST", "/api/agentcache/provision", `{"agentcache_user_id":"usr_logs2","agentcache_email":"x@example.com","tier":"nope"}`, map[string]string{"Authorization": "Bearer wrong-" + webhookSecret})
		r := e.do("POST", "/api/agentcache/rotate", `{"agentcache_user_id":"usr_logs"}`, partnerHeaders())
		newKey := r.body["account"].(map[string]any)["api_key"].(string)
		newSecret := r.body["account"].(map[string]any)["api_secret"].(string)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.api.FlushRequestLog(ctx); err != nil {
			t.Fatal(err)
		}
		rows, err := e.store.RecentRequests(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) < 6 {
			t.Fatalf("only %d api_requests rows", len(rows))
		}
		var authed bool
		var dump strings.Builder
		for _, row := range rows {
			fmt.Fprintf(&dump, "%+v\n", row)
			if row.AccountID != "" && row.Endpoint == "GET /api/agentcache/quota" && row.StatusCode == 200 {
				authed = true
			}
		}
		if !authed {
			t.Fatalf("no authenticated quota request logged with its account:\n%s", dump.String())
		}
		logs := e.logs.String()
		if !strings.Contains(logs, `"route":"GET /api/agentcache/quota"`) {
			t.Fatalf("request log lines missing:\n%s", logs)
		}
		for name, s := range map[string]string{"api key": key, "api secret": secret, "webhook secret": webhookSecret, "new key": newKey, "new secret": newSecret} {
			if strings.Contains(logs, s) {
				t.Errorf("%s found in logs", name)
			}
			if strings.Contains(dump.String(), s) {
				t.Errorf("%s found in api_requests", name)
			}
			// Also the secret parts without prefixes.
			if i := strings.Index(s, "_"); i > 0 && strings.Contains(logs, s[len(s)-20:]) {
				t.Errorf("tail of %s found in logs", name)
			}
		}
	})
}

// TestHealthReadyMetrics covers the operational endpoints.
func TestHealthReadyMetrics(t *testing.T) {
	b := backends()[0]
	st := b.store(t)
	e := newEnvConfig(t, st, b.limit(t), nil, nil, func(c *api.Config) { c.MetricsToken = metricsToken })
	if r := e.do("GET", "/healthz", "", nil); r.status != 200 || r.body["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/readyz", "", nil); r.status != 200 || r.body["ready"] != true {
		t.Fatalf("readyz: %d %s", r.status, r.raw)
	}
	e.provision("usr_metrics", "pro")
	e.do("POST", "/api/agentcache/provision", `{"agentcache_user_id":"usr_metrics","agentcache_email":"a@example.com","tier":"pro"}`, partnerHeaders())
	r := e.do("GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + metricsToken})
	for _, want := range []string{
		`jetty_http_requests_total{code="201",route="POST /api/agentcache/provision"} 1`,
		`jetty_http_requests_total{code="409",route="POST /api/agentcache/provision"} 1`,
		`jetty_provisioning_total{operation="provision",outcome="ok"} 1`,
		`jetty_provisioning_total{operation="provision",outcome="account_exists"} 1`,
		`jetty_http_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	st.Close()
	if r := e.do("GET", "/readyz", "", nil); r.status != 503 || r.body["ready"] != false {
		t.Fatalf("readyz with closed database: %d %s", r.status, r.raw)
	}
}

// changeLast returns s with its last character replaced by a different one.
func changeLast(s string) string {
	c := byte('A')
	if s[len(s)-1] == c {
		c = 'B'
	}
	return s[:len(s)-1] + string(c)
}
