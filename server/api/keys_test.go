package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// countingStore counts key lookups, to show which refusals never reach
// the database.
type countingStore struct {
	server.Store
	lookups atomic.Int64
}

func (c *countingStore) AccountByAPIKey(ctx context.Context, key string) (server.Account, error) {
	c.lookups.Add(1)
	return c.Store.AccountByAPIKey(ctx, key)
}

// TestKeyChecksumRejectedWithoutLookup: a key with a typo (every
// single-character change of a real key) fails its checksum and is
// refused before any database lookup; a well-formed unknown key costs one.
func TestKeyChecksumRejectedWithoutLookup(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		cs := &countingStore{Store: b.store(t)}
		e := newEnvWith(t, cs, b.limit(t))
		key, secret := e.provision("usr_typo", "pro")
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)); r.status != 200 {
			t.Fatalf("good key: %d %s", r.status, r.raw)
		}
		cs.lookups.Store(0)
		typos := 0
		for i := len("jt_test_"); i < len(key); i += 3 {
			c := byte('a')
			if key[i] == c {
				c = 'b'
			}
			bad := key[:i] + string(c) + key[i+1:]
			wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(bad, secret)), 401, server.EMalformedAPIKey)
			typos++
		}
		if n := cs.lookups.Load(); n != 0 {
			t.Fatalf("%d typo'd keys cost %d database lookups, want 0", typos, n)
		}
		// Control: a well-formed key that was never issued is looked up.
		other, _ := e.provision("usr_other_key", "pro")
		if _, err := e.store.RotateCredentials(context.Background(), "usr_other_key", "jt_test_"+fmt.Sprint(time.Now().UnixNano()), fmt.Sprintf("%064d", 1), time.Time{}); err != nil {
			t.Fatal(err)
		}
		cs.lookups.Store(0)
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(other, secret)), 401, server.EUnknownAPIKey)
		if n := cs.lookups.Load(); n < 1 {
			t.Fatalf("a well-formed unknown key made %d lookups; the counter is not counting", n)
		}
	})
}

// TestKeyRotationOverlapAndRevocation drives the lifecycle through the
// partner API on a clock the test moves: a rotation with an overlap keeps
// the old pair working until the overlap ends (and not a second longer);
// revoke ends it at once; a rotation without an overlap, a suspension and
// a deletion take effect on the very next request.
func TestKeyRotationOverlapAndRevocation(t *testing.T) {
	var mu sync.Mutex
	now := time.Now().UTC()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := newClockEnv(t, clock)

	ok := func(key, secret, what string) {
		t.Helper()
		if r := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret)); r.status != 200 {
			t.Fatalf("%s: %d %s", what, r.status, r.raw)
		}
	}
	rotate := func(body string) (string, string, map[string]any) {
		t.Helper()
		r := e.do("POST", "/api/agentcache/rotate", body, partnerHeaders())
		if r.status != 200 {
			t.Fatalf("rotate %s: %d %s", body, r.status, r.raw)
		}
		a := r.body["account"].(map[string]any)
		return a["api_key"].(string), a["api_secret"].(string), a
	}

	k1, s1 := e.provision("usr_rot", "pro")
	k2, s2, acct := rotate(`{"user_id":"usr_rot","overlap_seconds":60}`)
	if acct["previous_key_expires_at"] == nil {
		t.Fatalf("rotation with an overlap does not say when the old key ends: %v", acct)
	}
	ok(k1, s1, "old pair inside the overlap")
	ok(k2, s2, "new pair")
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k1, s2)), 401, server.EWrongAPISecret)
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k2, s1)), 401, server.EWrongAPISecret)
	advance(59 * time.Second)
	ok(k1, s1, "old pair at 59 s of a 60 s overlap")
	advance(time.Second)
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k1, s1)), 401, server.EUnknownAPIKey)
	ok(k2, s2, "new pair after the overlap")

	// Revoke ends an overlap at once.
	k3, s3, _ := rotate(`{"user_id":"usr_rot","overlap_seconds":3600}`)
	ok(k2, s2, "k2 inside the second overlap")
	if r := e.do("POST", "/api/agentcache/revoke", `{"user_id":"usr_rot"}`, partnerHeaders()); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k2, s2)), 401, server.EUnknownAPIKey)
	ok(k3, s3, "current pair after revoking the previous one")

	// Without an overlap the old pair dies with the rotation.
	k4, s4, acct := rotate(`{"user_id":"usr_rot"}`)
	if acct["previous_key_expires_at"] != nil {
		t.Fatalf("rotation without overlap reports a previous key: %v", acct)
	}
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k3, s3)), 401, server.EUnknownAPIKey)
	ok(k4, s4, "pair after an immediate rotation")

	// A suspension (and a deletion) applies to the next request, also to
	// a previous key still inside its overlap.
	k5, s5, _ := rotate(`{"user_id":"usr_rot","overlap_seconds":600}`)
	if r := e.do("POST", "/api/agentcache/suspend", `{"user_id":"usr_rot"}`, partnerHeaders()); r.status != 200 {
		t.Fatalf("suspend: %d", r.status)
	}
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k5, s5)), 403, server.EAccountSuspended)
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k4, s4)), 403, server.EAccountSuspended)
	if r := e.do("POST", "/api/agentcache/delete", `{"user_id":"usr_rot"}`, partnerHeaders()); r.status != 200 {
		t.Fatalf("delete: %d", r.status)
	}
	wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(k5, s5)), 403, server.EAccountDeleted)

	e.provision("usr_rot2", "free")
	for _, bad := range []string{`{"user_id":"usr_rot2","overlap_seconds":-1}`, `{"user_id":"usr_rot2","overlap_seconds":604801}`, `{"user_id":"usr_rot2","overlap_seconds":"soon"}`} {
		wantError(t, e.do("POST", "/api/agentcache/rotate", bad, partnerHeaders()), 400, server.EInvalid)
	}
	wantError(t, e.do("POST", "/api/agentcache/revoke", `{"user_id":"usr_nobody"}`, partnerHeaders()), 404, server.ENotFound)
	if n := len(e.logs.String()); n == 0 {
		t.Fatal("no logs captured")
	}
	for _, s := range []string{s1, s2, s3, s4, s5} {
		if strings.Contains(e.logs.String(), s) {
			t.Fatal("an API secret reached the logs")
		}
	}
}
