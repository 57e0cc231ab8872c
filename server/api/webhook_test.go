package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/redis"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// newPartnerEnv starts an API whose partner settings are cfg's.
func newPartnerEnv(t *testing.T, st server.Store, lim server.Limiter, cfg api.Config) *env {
	t.Helper()
	return newEnvConfig(t, st, lim, nil, nil, func(c *api.Config) {
		c.WebhookSecret, c.PreviousWebhookSecret, c.RequireSignature, c.Cache = cfg.WebhookSecret, cfg.PreviousWebhookSecret, cfg.RequireSignature, cfg.Cache
	})
}

func signed(secret string, at time.Time, path, body string) map[string]string {
	return map[string]string{webhooksig.Header: webhooksig.Sign(secret, at, "POST", path, []byte(body))}
}

// TestWebhookSignature: a signed partner call needs no Bearer secret; a
// stale, forged, re-targeted or replayed one is refused and provisions
// nothing; with RequireSignature a Bearer-only call is refused.
func TestWebhookSignature(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newPartnerEnv(t, b.store(t), b.limit(t), api.Config{WebhookSecret: webhookSecret})
		const path = "/api/agentcache/provision"
		body := func(id string) string {
			return fmt.Sprintf(`{"agentcache_user_id":%q,"agentcache_email":"a@example.com","tier":"pro"}`, id)
		}
		now := time.Now()

		refused := map[string]map[string]string{
			"stale (301 s old)":     signed(webhookSecret, now.Add(-301*time.Second), path, body("usr_sig_a")),
			"from the future":       signed(webhookSecret, now.Add(301*time.Second), path, body("usr_sig_a")),
			"wrong secret":          signed(webhookSecret+"x", now, path, body("usr_sig_a")),
			"signed for another id": signed(webhookSecret, now, path, body("usr_sig_other")),
			"signed for /delete":    signed(webhookSecret, now, "/api/agentcache/delete", body("usr_sig_a")),
			"malformed":             {webhooksig.Header: "t=now,v1=zz"},
			"empty v1":              {webhooksig.Header: fmt.Sprintf("t=%d,v1=", now.Unix())},
			"good signature, wrong bearer": func() map[string]string {
				h := signed(webhookSecret, now, path, body("usr_sig_a"))
				h["Authorization"] = "Bearer wrong"
				return h
			}(),
		}
		for name, h := range refused {
			t.Run(name, func(t *testing.T) {
				wantError(t, e.do("POST", path, body("usr_sig_a"), h), 401, server.EUnauthorized)
			})
		}
		if _, err := e.store.AccountByUserID(context.Background(), "usr_sig_a"); server.ErrorCode(err) != server.ENotFound {
			t.Fatalf("a refused call provisioned an account (err %v)", err)
		}

		h := signed(webhookSecret, now, path, body("usr_sig_a"))
		if r := e.do("POST", path, body("usr_sig_a"), h); r.status != 201 {
			t.Fatalf("signed provision: %d %s", r.status, r.raw)
		}
		// The very same request again, inside the 300 s window: a replay.
		r := e.do("POST", path, body("usr_sig_a"), h)
		wantError(t, r, 401, server.EUnauthorized)
		if want := "replay"; !strings.Contains(r.raw, want) {
			t.Fatalf("replay refusal does not say so: %s", r.raw)
		}
		// Signed afresh, the partner's retry reaches the handler (409).
		wantError(t, e.do("POST", path, body("usr_sig_a"), signed(webhookSecret, now.Add(time.Second), path, body("usr_sig_a"))), 409, server.EAccountExists)
		if n := strings.Count(e.logs.String(), webhookSecret); n != 0 {
			t.Fatalf("the webhook secret appears %d times in the logs", n)
		}
	})
}

// TestWebhookRequireSignatureAndRotation: with RequireSignature the
// secret may not travel in a header; during a rotation both the previous
// and the new secret work, by Bearer and by signature.
func TestWebhookRequireSignatureAndRotation(t *testing.T) {
	b := backends()[0]
	const path = "/api/agentcache/provision"
	body := func(id string) string {
		return fmt.Sprintf(`{"agentcache_user_id":%q,"agentcache_email":"a@example.com","tier":"free"}`, id)
	}
	req := newPartnerEnv(t, b.store(t), b.limit(t), api.Config{WebhookSecret: webhookSecret, RequireSignature: true})
	r := req.do("POST", path, body("usr_req_1"), partnerHeaders())
	wantError(t, r, 401, server.EUnauthorized)
	if !strings.Contains(r.raw, webhooksig.Header) {
		t.Fatalf("refusal does not name the header to send: %s", r.raw)
	}
	if r := req.do("POST", path, body("usr_req_1"), signed(webhookSecret, time.Now(), path, body("usr_req_1"))); r.status != 201 {
		t.Fatalf("signed call with RequireSignature: %d %s", r.status, r.raw)
	}

	const next = "whsec_next_fedcba9876543210"
	rot := newPartnerEnv(t, b.store(t), b.limit(t), api.Config{WebhookSecret: next, PreviousWebhookSecret: webhookSecret})
	for i, h := range []map[string]string{
		{"Authorization": "Bearer " + next},
		{"Authorization": "Bearer " + webhookSecret},
		signed(next, time.Now(), path, body("usr_rot_2")),
		signed(webhookSecret, time.Now(), path, body("usr_rot_3")),
	} {
		id := fmt.Sprintf("usr_rot_%d", i)
		if r := rot.do("POST", path, body(id), h); r.status != 201 {
			t.Fatalf("rotation, way %d: %d %s", i, r.status, r.raw)
		}
	}
	wantError(t, rot.do("POST", path, body("usr_rot_9"), map[string]string{"Authorization": "Bearer whsec_retired"}), 401, server.EUnauthorized)
}

// TestWebhookReplayAcrossInstances: two servers sharing Redis refuse a
// signed call the other one already took.
func TestWebhookReplayAcrossInstances(t *testing.T) {
	b := backends()[1]
	st := b.store(t)
	c, prefix := testenv.Redis(t)
	cache := redis.NewCache(c, prefix+"cache:")
	one := newPartnerEnv(t, st, b.limit(t), api.Config{WebhookSecret: webhookSecret, Cache: cache})
	two := newPartnerEnv(t, st, b.limit(t), api.Config{WebhookSecret: webhookSecret, Cache: cache})
	const path = "/api/agentcache/upgrade"
	if _, err := st.CreateAccount(context.Background(), server.NewAccount{UserID: "usr_replay", Email: "a@example.com", Tier: "free", APIKey: "jt_test_replay", SecretHash: fmt.Sprintf("%064d", 0), S3Bucket: "b", S3Prefix: "users/usr_replay"}); err != nil {
		t.Fatal(err)
	}
	bodyS := `{"user_id":"usr_replay","new_tier":"pro"}`
	h := signed(webhookSecret, time.Now(), path, bodyS)
	if r := one.do("POST", path, bodyS, h); r.status != 200 {
		t.Fatalf("upgrade on instance one: %d %s", r.status, r.raw)
	}
	wantError(t, two.do("POST", path, bodyS, h), 401, server.EUnauthorized)
}
