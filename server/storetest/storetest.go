// Package storetest is the conformance suite of server.Store: every
// implementation runs it against a real database, so they all behave the
// same, error codes included.
//
//	func TestSQLite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) server.Store { ... })
//	}
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// Run runs the conformance suite. open must return a Store on a fresh,
// migrated, otherwise empty database (tier_configs seeded); Run closes it
// when the subtest that asked for it ends.
func Run(t *testing.T, open func(t *testing.T) server.Store) {
	tests := []storeTest{
		{"Ping", testPing},
		{"Tiers", testTiers},
		{"Tier", testTier},
		{"CreateAccount", testCreateAccount},
		{"CreateAccountValidation", testCreateAccountValidation},
		{"CreateAccountUnknownTier", testCreateAccountUnknownTier},
		{"CreateAccountDuplicateUserID", testCreateAccountDuplicateUserID},
		{"CreateAccountDuplicateAPIKey", testCreateAccountDuplicateAPIKey},
		{"CreateAccountConcurrentSameUser", testCreateAccountConcurrentSameUser},
		{"CreateAccountConcurrentDistinct", testCreateAccountConcurrentDistinct},
		{"LookupNotFound", testLookupNotFound},
		{"ChangeTier", testChangeTier},
		{"SetStatus", testSetStatus},
		{"RotateCredentials", testRotateCredentials},
		{"TouchAccount", testTouchAccount},
		{"Reserve", testReserve},
		{"ReserveErrors", testReserveErrors},
		{"ReserveConcurrent", testReserveConcurrent},
		{"CommitReservation", testCommitReservation},
		{"ReleaseReservation", testReleaseReservation},
		{"ReleaseExpiredReservations", testReleaseExpired},
		{"SweepRacesCommits", testSweepRacesCommits},
		{"LogRequests", testLogRequests},
	}
	tests = append(tests, assetTests...)
	tests = append(tests, sessionTests...)
	tests = append(tests, edgeTests...)
	tests = append(tests, retentionTests...)
	tests = append(tests, usageTests...)
	tests = append(tests, webhookTests...)
	tests = append(tests, assetLookupTests...)
	tests = append(tests, sameEntryTests...)
	tests = append(tests, overviewTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

type storeTest struct {
	name string
	fn   func(t *testing.T, s server.Store)
}

// seedTiers is tier_configs as seed 002 defines it.
var seedTiers = []server.Tier{
	{Name: "free", StorageQuotaGB: 0, BandwidthQuotaGB: 0, JettySpeedEnabled: false, RateLimitPerMinute: 10, MaxFileSizeMB: 10},
	{Name: "starter", StorageQuotaGB: 2, BandwidthQuotaGB: 10, JettySpeedEnabled: false, RateLimitPerMinute: 60, MaxFileSizeMB: 50},
	{Name: "pro", StorageQuotaGB: 20, BandwidthQuotaGB: 50, JettySpeedEnabled: true, RateLimitPerMinute: 300, MaxFileSizeMB: 500},
	{Name: "business", StorageQuotaGB: 100, BandwidthQuotaGB: 200, JettySpeedEnabled: true, RateLimitPerMinute: 1000, MaxFileSizeMB: 1000},
	{Name: "enterprise", StorageQuotaGB: 1000, BandwidthQuotaGB: 5000, JettySpeedEnabled: true, RateLimitPerMinute: 10000, MaxFileSizeMB: 5000},
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// secretHash returns the hex SHA-256 of a random secret.
func secretHash() string {
	sum := sha256.Sum256([]byte("secret-" + randHex(16)))
	return hex.EncodeToString(sum[:])
}

func newAccount(tier string) server.NewAccount {
	id := "usr_test_" + randHex(6)
	return server.NewAccount{
		UserID:     id,
		Email:      id + "@example.com",
		Tier:       tier,
		APIKey:     "jt_" + randHex(16),
		SecretHash: secretHash(),
		S3Bucket:   "jetty-test",
		S3Prefix:   "users/" + id + "/",
	}
}

func mustCreate(t *testing.T, s server.Store, tier string) server.Account {
	t.Helper()
	a, err := s.CreateAccount(ctxFor(t), newAccount(tier))
	if err != nil {
		t.Fatalf("CreateAccount(%s): %v", tier, err)
	}
	return a
}

func mustAccount(t *testing.T, s server.Store, id string) server.Account {
	t.Helper()
	a, err := s.AccountByID(ctxFor(t), id)
	if err != nil {
		t.Fatalf("AccountByID: %v", err)
	}
	return a
}

// wantCode fails t unless err is a *server.Error with code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := server.ErrorCode(err); got != code {
		t.Fatalf("got error %v (code %s), want code %s", err, got, code)
	}
}

func wantUsage(t *testing.T, s server.Store, id string, used, reserved int64) {
	t.Helper()
	a := mustAccount(t, s, id)
	if a.StorageUsedBytes != used || a.StorageReservedBytes != reserved {
		t.Fatalf("used, reserved = %d, %d; want %d, %d", a.StorageUsedBytes, a.StorageReservedBytes, used, reserved)
	}
}

func testPing(t *testing.T, s server.Store) {
	if err := s.Ping(ctxFor(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testTiers(t *testing.T, s server.Store) {
	tiers, err := s.Tiers(ctxFor(t))
	if err != nil {
		t.Fatalf("Tiers: %v", err)
	}
	if len(tiers) != len(seedTiers) {
		t.Fatalf("Tiers returned %d rows, want %d: %+v", len(tiers), len(seedTiers), tiers)
	}
	for i, want := range seedTiers {
		if tiers[i] != want {
			t.Errorf("tier %d = %+v, want %+v", i, tiers[i], want)
		}
	}
}

func testTier(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	for _, want := range seedTiers {
		got, err := s.Tier(ctx, want.Name)
		if err != nil {
			t.Fatalf("Tier(%s): %v", want.Name, err)
		}
		if got != want {
			t.Errorf("Tier(%s) = %+v, want %+v", want.Name, got, want)
		}
	}
	pro, _ := s.Tier(ctx, "pro")
	if pro.StorageQuotaBytes() != 20*server.GiB || pro.MaxFileSizeBytes() != 500*server.MiB {
		t.Errorf("pro quota bytes = %d, max file = %d", pro.StorageQuotaBytes(), pro.MaxFileSizeBytes())
	}
	for _, name := range []string{"gold", "PRO", "", "pro "} {
		_, err := s.Tier(ctx, name)
		wantCode(t, err, server.EUnknownTier)
	}
}

func testCreateAccount(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Second)
	n := newAccount("pro")
	a, err := s.CreateAccount(ctx, n)
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	after := time.Now().Add(time.Second)
	if len(a.ID) != 36 || strings.Count(a.ID, "-") != 4 {
		t.Errorf("ID %q is not a UUID", a.ID)
	}
	if a.UserID != n.UserID || a.Email != n.Email || a.Tier != "pro" || a.APIKey != n.APIKey ||
		a.SecretHash != n.SecretHash || a.S3Bucket != n.S3Bucket || a.S3Prefix != n.S3Prefix {
		t.Errorf("account %+v does not match %+v", a, n)
	}
	if a.StorageQuotaGB != 20 || a.BandwidthQuotaGB != 50 || !a.JettySpeedEnabled {
		t.Errorf("pro account quotas = %d/%d/%v, want 20/50/true", a.StorageQuotaGB, a.BandwidthQuotaGB, a.JettySpeedEnabled)
	}
	if a.Status != server.StatusActive {
		t.Errorf("status = %q, want active", a.Status)
	}
	if a.StorageUsedBytes != 0 || a.StorageReservedBytes != 0 || a.BandwidthUsedBytes != 0 {
		t.Errorf("counters = %d/%d/%d, want 0", a.StorageUsedBytes, a.StorageReservedBytes, a.BandwidthUsedBytes)
	}
	if a.CreatedAt.Before(before) || a.CreatedAt.After(after) || a.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want UTC between %v and %v", a.CreatedAt, before, after)
	}
	if !a.UpdatedAt.Equal(a.CreatedAt) {
		t.Errorf("UpdatedAt = %v, want CreatedAt %v", a.UpdatedAt, a.CreatedAt)
	}
	if !a.LastAccessed.IsZero() {
		t.Errorf("LastAccessed = %v, want zero", a.LastAccessed)
	}

	for name, get := range map[string]func() (server.Account, error){
		"AccountByID":     func() (server.Account, error) { return s.AccountByID(ctx, a.ID) },
		"AccountByUserID": func() (server.Account, error) { return s.AccountByUserID(ctx, n.UserID) },
		"AccountByAPIKey": func() (server.Account, error) { return s.AccountByAPIKey(ctx, n.APIKey) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !sameAccount(got, a) {
			t.Errorf("%s = %+v, want %+v", name, got, a)
		}
	}

	// Seed ids (not UUIDs) are fine; a free account gets zero quotas.
	free := newAccount("free")
	free.UserID = "usr_test_123"
	fa, err := s.CreateAccount(ctx, free)
	if err != nil {
		t.Fatalf("CreateAccount(usr_test_123): %v", err)
	}
	if fa.UserID != "usr_test_123" || fa.StorageQuotaGB != 0 || fa.BandwidthQuotaGB != 0 || fa.JettySpeedEnabled {
		t.Errorf("free account = %+v", fa)
	}
	if fa.ID == a.ID {
		t.Errorf("two accounts share id %s", a.ID)
	}
}

// sameAccount compares accounts, times by instant.
func sameAccount(a, b server.Account) bool {
	ta := []time.Time{a.CreatedAt, a.UpdatedAt, a.LastAccessed}
	tb := []time.Time{b.CreatedAt, b.UpdatedAt, b.LastAccessed}
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.CreatedAt, a.UpdatedAt, a.LastAccessed = time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.UpdatedAt, b.LastAccessed = time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func testCreateAccountValidation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	cases := []struct {
		name   string
		change func(*server.NewAccount)
		code   string
	}{
		{"empty user id", func(n *server.NewAccount) { n.UserID = "" }, server.EInvalidUserID},
		{"slash in user id", func(n *server.NewAccount) { n.UserID = "../etc" }, server.EInvalidUserID},
		{"bad email", func(n *server.NewAccount) { n.Email = "not an address" }, server.EInvalid},
		{"empty tier", func(n *server.NewAccount) { n.Tier = "" }, server.EInvalid},
		{"plain secret", func(n *server.NewAccount) { n.SecretHash = "hunter2" }, server.EInvalid},
		{"non-hex hash", func(n *server.NewAccount) { n.SecretHash = strings.Repeat("z", 64) }, server.EInvalid},
		{"empty api key", func(n *server.NewAccount) { n.APIKey = "" }, server.EInvalid},
	}
	for _, c := range cases {
		n := newAccount("pro")
		c.change(&n)
		_, err := s.CreateAccount(ctx, n)
		if server.ErrorCode(err) != c.code {
			t.Errorf("%s: got %v, want code %s", c.name, err, c.code)
		}
		if n.UserID != "" {
			if _, err := s.AccountByUserID(ctx, n.UserID); server.ErrorCode(err) != server.ENotFound {
				t.Errorf("%s: account was stored anyway (lookup: %v)", c.name, err)
			}
		}
	}
}

func testCreateAccountUnknownTier(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	for _, tier := range []string{"gold", "Pro", "a-very-long-tier-name-indeed"} {
		n := newAccount(tier)
		_, err := s.CreateAccount(ctx, n)
		wantCode(t, err, server.EUnknownTier)
		_, err = s.AccountByUserID(ctx, n.UserID)
		wantCode(t, err, server.ENotFound)
	}
}

func testCreateAccountDuplicateUserID(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	first := mustCreate(t, s, "starter")
	again := newAccount("pro")
	again.UserID = first.UserID
	_, err := s.CreateAccount(ctx, again)
	wantCode(t, err, server.EAccountExists)
	if msg := server.ErrorMessage(err); strings.Contains(strings.ToLower(msg), "insert") || strings.Contains(msg, "agentcache_accounts") {
		t.Errorf("message leaks SQL: %q", msg)
	}
	got, err := s.AccountByUserID(ctx, first.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != first.ID || got.Tier != "starter" || got.APIKey != first.APIKey {
		t.Errorf("first account changed: %+v", got)
	}
	_, err = s.AccountByAPIKey(ctx, again.APIKey)
	wantCode(t, err, server.ENotFound)
}

func testCreateAccountDuplicateAPIKey(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	first := mustCreate(t, s, "starter")
	n := newAccount("starter")
	n.APIKey = first.APIKey
	if _, err := s.CreateAccount(ctx, n); err == nil {
		t.Fatal("CreateAccount with a taken API key succeeded")
	}
	_, err := s.AccountByUserID(ctx, n.UserID)
	wantCode(t, err, server.ENotFound)
	got, err := s.AccountByAPIKey(ctx, first.APIKey)
	if err != nil || got.ID != first.ID {
		t.Fatalf("AccountByAPIKey = %+v, %v; want the first account", got, err)
	}
}

func testCreateAccountConcurrentSameUser(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	const n = 50
	userID := "usr_race_" + randHex(6)
	keys := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		na := newAccount("pro")
		na.UserID = userID
		keys[i] = na.APIKey
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.CreateAccount(ctx, na)
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch server.ErrorCode(err) {
		case "":
			if winner >= 0 {
				t.Fatalf("CreateAccount succeeded twice (%d and %d)", winner, i)
			}
			winner = i
		case server.EAccountExists:
		default:
			t.Errorf("create %d: %v, want nil or %s", i, err, server.EAccountExists)
		}
	}
	if winner < 0 {
		t.Fatal("no CreateAccount succeeded")
	}
	a, err := s.AccountByUserID(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	if a.APIKey != keys[winner] {
		t.Errorf("stored key %s is not the winner's %s", a.APIKey, keys[winner])
	}
	// Exactly one row: no loser's key resolves to an account.
	for i, k := range keys {
		if i == winner {
			continue
		}
		if _, err := s.AccountByAPIKey(ctx, k); server.ErrorCode(err) != server.ENotFound {
			t.Fatalf("loser %d's key: %v, want %s", i, err, server.ENotFound)
		}
	}
}

func testCreateAccountConcurrentDistinct(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	const n = 100
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := s.CreateAccount(ctx, newAccount("starter"))
			if err == nil {
				ids[i] = a.ID
				err = s.TouchAccount(ctx, a.ID, time.Now())
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		if seen[ids[i]] {
			t.Fatalf("duplicate id %s", ids[i])
		}
		seen[ids[i]] = true
	}
	if a := mustAccount(t, s, ids[n-1]); a.LastAccessed.IsZero() {
		t.Error("TouchAccount did not set LastAccessed")
	}
}

func testLookupNotFound(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	mustCreate(t, s, "free")
	_, err := s.AccountByID(ctx, "00000000-0000-0000-0000-000000000000")
	wantCode(t, err, server.ENotFound)
	_, err = s.AccountByID(ctx, "not-a-uuid")
	wantCode(t, err, server.ENotFound)
	_, err = s.AccountByUserID(ctx, "usr_nobody")
	wantCode(t, err, server.ENotFound)
	_, err = s.AccountByAPIKey(ctx, "jt_nokey")
	wantCode(t, err, server.ENotFound)
	_, err = s.AccountByUserID(ctx, "")
	wantCode(t, err, server.ENotFound)
}

func testChangeTier(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "starter")
	time.Sleep(2 * time.Millisecond)
	b, err := s.ChangeTier(ctx, a.UserID, "business")
	if err != nil {
		t.Fatalf("ChangeTier: %v", err)
	}
	if b.Tier != "business" || b.StorageQuotaGB != 100 || b.BandwidthQuotaGB != 200 || !b.JettySpeedEnabled {
		t.Errorf("after upgrade: %+v", b)
	}
	if b.ID != a.ID || b.APIKey != a.APIKey || !b.CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("upgrade changed identity: %+v", b)
	}
	if !b.UpdatedAt.After(a.UpdatedAt) {
		t.Errorf("UpdatedAt %v not after %v", b.UpdatedAt, a.UpdatedAt)
	}
	got := mustAccount(t, s, a.ID)
	if !sameAccount(got, b) {
		t.Errorf("stored %+v, returned %+v", got, b)
	}
	f, err := s.ChangeTier(ctx, a.UserID, "free")
	if err != nil {
		t.Fatalf("ChangeTier(free): %v", err)
	}
	if f.StorageQuotaGB != 0 || f.BandwidthQuotaGB != 0 || f.JettySpeedEnabled {
		t.Errorf("after downgrade: %+v", f)
	}

	_, err = s.ChangeTier(ctx, a.UserID, "gold")
	wantCode(t, err, server.EUnknownTier)
	if got := mustAccount(t, s, a.ID); got.Tier != "free" {
		t.Errorf("failed change altered tier to %s", got.Tier)
	}
	_, err = s.ChangeTier(ctx, "usr_nobody", "pro")
	wantCode(t, err, server.ENotFound)

	if _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	_, err = s.ChangeTier(ctx, a.UserID, "pro")
	wantCode(t, err, server.EAccountDeleted)
	if got := mustAccount(t, s, a.ID); got.Tier != "free" || got.StorageQuotaGB != 0 {
		t.Errorf("deleted account changed tier: %+v", got)
	}
}

func testSetStatus(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	for _, st := range []server.AccountStatus{server.StatusSuspended, server.StatusSuspended, server.StatusActive, server.StatusDeleted, server.StatusDeleted} {
		got, err := s.SetStatus(ctx, a.UserID, st)
		if err != nil {
			t.Fatalf("SetStatus(%s): %v", st, err)
		}
		if got.Status != st {
			t.Fatalf("SetStatus(%s) returned status %s", st, got.Status)
		}
		if stored := mustAccount(t, s, a.ID); stored.Status != st {
			t.Fatalf("stored status %s, want %s", stored.Status, st)
		}
	}
	for _, st := range []server.AccountStatus{server.StatusActive, server.StatusSuspended} {
		_, err := s.SetStatus(ctx, a.UserID, st)
		wantCode(t, err, server.EAccountDeleted)
	}
	if stored := mustAccount(t, s, a.ID); stored.Status != server.StatusDeleted {
		t.Fatalf("deleted account left deleted: %s", stored.Status)
	}
	_, err := s.SetStatus(ctx, "usr_nobody", server.StatusActive)
	wantCode(t, err, server.ENotFound)
	b := mustCreate(t, s, "pro")
	_, err = s.SetStatus(ctx, b.UserID, "frozen")
	wantCode(t, err, server.EInvalid)
	if stored := mustAccount(t, s, b.ID); stored.Status != server.StatusActive {
		t.Fatalf("invalid status stored: %s", stored.Status)
	}
}

func testRotateCredentials(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	key, hash := "jt_"+randHex(16), secretHash()
	r, err := s.RotateCredentials(ctx, a.UserID, key, hash, time.Time{})
	if err != nil {
		t.Fatalf("RotateCredentials: %v", err)
	}
	if r.APIKey != key || r.SecretHash != hash || r.ID != a.ID {
		t.Errorf("rotated account %+v", r)
	}
	if got, err := s.AccountByAPIKey(ctx, key); err != nil || got.ID != a.ID || got.SecretHash != hash {
		t.Errorf("AccountByAPIKey(new) = %+v, %v", got, err)
	}
	_, err = s.AccountByAPIKey(ctx, a.APIKey)
	wantCode(t, err, server.ENotFound)

	_, err = s.RotateCredentials(ctx, a.UserID, "jt_"+randHex(16), "plaintext-secret", time.Time{})
	wantCode(t, err, server.EInvalid)
	_, err = s.RotateCredentials(ctx, a.UserID, "", secretHash(), time.Time{})
	wantCode(t, err, server.EInvalid)
	_, err = s.RotateCredentials(ctx, "usr_nobody", "jt_"+randHex(16), secretHash(), time.Time{})
	wantCode(t, err, server.ENotFound)

	// Another account's key is refused and changes nothing.
	b := mustCreate(t, s, "pro")
	if _, err := s.RotateCredentials(ctx, b.UserID, key, secretHash(), time.Time{}); err == nil {
		t.Error("rotating to a taken key succeeded")
	}
	if got := mustAccount(t, s, b.ID); got.APIKey != b.APIKey || got.SecretHash != b.SecretHash {
		t.Errorf("failed rotation changed credentials: %+v", got)
	}

	// With an overlap the outgoing pair is kept, findable by its key, with
	// its expiry; a second rotation replaces it; revocation drops it.
	c := mustCreate(t, s, "pro")
	k2, h2 := "jt_"+randHex(16), secretHash()
	r2, err := s.RotateCredentials(ctx, c.UserID, k2, h2, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if r2.PrevAPIKey != c.APIKey || r2.PrevSecretHash != c.SecretHash || r2.PrevKeyExpiresAt.Before(time.Now().Add(59*time.Minute)) || r2.PrevKeyExpiresAt.After(time.Now().Add(61*time.Minute)) {
		t.Fatalf("after a 1h-overlap rotation: prev %q %q until %v", r2.PrevAPIKey, r2.PrevSecretHash, r2.PrevKeyExpiresAt)
	}
	for _, k := range []string{c.APIKey, k2} {
		if got, err := s.AccountByAPIKey(ctx, k); err != nil || got.ID != c.ID {
			t.Fatalf("AccountByAPIKey(%s) during the overlap = %+v, %v", k, got, err)
		}
	}
	k3 := "jt_" + randHex(16)
	r3, err := s.RotateCredentials(ctx, c.UserID, k3, secretHash(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r3.PrevAPIKey != k2 {
		t.Fatalf("second rotation kept %q as previous, want %q", r3.PrevAPIKey, k2)
	}
	_, err = s.AccountByAPIKey(ctx, c.APIKey)
	wantCode(t, err, server.ENotFound)
	// A new key may not be another account's previous key.
	if _, err := s.RotateCredentials(ctx, b.UserID, k2, secretHash(), time.Time{}); err == nil {
		t.Error("rotating to another account's previous key succeeded")
	}
	rv, err := s.RevokePreviousCredentials(ctx, c.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.PrevAPIKey != "" || !rv.PrevKeyExpiresAt.IsZero() || rv.APIKey != k3 {
		t.Fatalf("after revocation: %+v", rv)
	}
	_, err = s.AccountByAPIKey(ctx, k2)
	wantCode(t, err, server.ENotFound)
	if _, err := s.RevokePreviousCredentials(ctx, c.UserID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	r4, err := s.RotateCredentials(ctx, c.UserID, "jt_"+randHex(16), secretHash(), time.Time{})
	if err != nil || r4.PrevAPIKey != "" {
		t.Fatalf("rotation without overlap kept %q (%v)", r4.PrevAPIKey, err)
	}
	_, err = s.RevokePreviousCredentials(ctx, "usr_nobody")
	wantCode(t, err, server.ENotFound)

	if _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	_, err = s.RotateCredentials(ctx, a.UserID, "jt_"+randHex(16), secretHash(), time.Time{})
	wantCode(t, err, server.EAccountDeleted)
	_, err = s.RevokePreviousCredentials(ctx, a.UserID)
	wantCode(t, err, server.EAccountDeleted)
}

func testTouchAccount(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	at := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	if err := s.TouchAccount(ctx, a.ID, at); err != nil {
		t.Fatalf("TouchAccount: %v", err)
	}
	got := mustAccount(t, s, a.ID)
	if want := at.Truncate(time.Microsecond); !got.LastAccessed.Equal(want) {
		t.Fatalf("LastAccessed = %v, want %v", got.LastAccessed, want)
	}
	// An older touch does not move it back; a newer one moves it on.
	if err := s.TouchAccount(ctx, a.ID, at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := mustAccount(t, s, a.ID); !got.LastAccessed.Equal(at.Truncate(time.Microsecond)) {
		t.Errorf("older touch moved LastAccessed to %v", got.LastAccessed)
	}
	later := at.Add(1500 * time.Microsecond)
	if err := s.TouchAccount(ctx, a.ID, later); err != nil {
		t.Fatal(err)
	}
	if got := mustAccount(t, s, a.ID); !got.LastAccessed.Equal(later.Truncate(time.Microsecond)) {
		t.Errorf("LastAccessed = %v, want %v", got.LastAccessed, later)
	}
	wantCode(t, s.TouchAccount(ctx, "no-such-account", at), server.ENotFound)
}

func testReserve(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "starter") // 2 GiB
	before := time.Now().Add(-time.Second)
	r, err := s.Reserve(ctx, a.ID, server.GiB, time.Hour)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if r.ID == "" || r.AccountID != a.ID || r.Bytes != server.GiB {
		t.Errorf("reservation %+v", r)
	}
	if r.CreatedAt.Before(before) || r.ExpiresAt.Sub(r.CreatedAt) != time.Hour {
		t.Errorf("reservation times %v .. %v", r.CreatedAt, r.ExpiresAt)
	}
	wantUsage(t, s, a.ID, 0, server.GiB)

	_, err = s.Reserve(ctx, a.ID, server.GiB+1, time.Hour)
	wantCode(t, err, server.EQuotaExceeded)
	msg := server.ErrorMessage(err)
	for _, want := range []string{"upgrade your tier or delete files", "2.0 GiB", "1.0 GiB"} {
		if !strings.Contains(msg, want) {
			t.Errorf("quota message %q lacks %q", msg, want)
		}
	}
	wantUsage(t, s, a.ID, 0, server.GiB)

	r2, err := s.Reserve(ctx, a.ID, server.GiB, time.Hour) // exactly full
	if err != nil {
		t.Fatalf("Reserve to the quota: %v", err)
	}
	if r2.ID == r.ID {
		t.Error("two reservations share an id")
	}
	wantUsage(t, s, a.ID, 0, 2*server.GiB)
	_, err = s.Reserve(ctx, a.ID, 1, time.Hour)
	wantCode(t, err, server.EQuotaExceeded)

	// Committed bytes count against the quota too.
	if err := s.CommitReservation(ctx, r.ID, server.GiB); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseReservation(ctx, r2.ID); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, a.ID, server.GiB, 0)
	_, err = s.Reserve(ctx, a.ID, server.GiB+1, time.Hour)
	wantCode(t, err, server.EQuotaExceeded)
	if _, err := s.Reserve(ctx, a.ID, server.GiB, time.Hour); err != nil {
		t.Fatalf("Reserve of the free GiB: %v", err)
	}

	// An upgrade makes room at once.
	if _, err := s.ChangeTier(ctx, a.UserID, "pro"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, a.ID, 10*server.GiB, time.Hour); err != nil {
		t.Fatalf("Reserve after upgrade: %v", err)
	}
	wantUsage(t, s, a.ID, server.GiB, 11*server.GiB)
}

func testReserveErrors(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	for _, b := range []int64{0, -1, -server.GiB} {
		_, err := s.Reserve(ctx, a.ID, b, time.Hour)
		wantCode(t, err, server.EInvalid)
	}
	_, err := s.Reserve(ctx, a.ID, 1, 0)
	wantCode(t, err, server.EInvalid)
	_, err = s.Reserve(ctx, a.ID, 1<<62, time.Hour)
	wantCode(t, err, server.EQuotaExceeded)
	_, err = s.Reserve(ctx, "no-such-account", 1, time.Hour)
	wantCode(t, err, server.ENotFound)

	free := mustCreate(t, s, "free")
	_, err = s.Reserve(ctx, free.ID, 1, time.Hour)
	wantCode(t, err, server.EQuotaExceeded)

	if _, err := s.SetStatus(ctx, a.UserID, server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	_, err = s.Reserve(ctx, a.ID, 1, time.Hour)
	wantCode(t, err, server.EAccountSuspended)
	if _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	_, err = s.Reserve(ctx, a.ID, 1, time.Hour)
	wantCode(t, err, server.EAccountDeleted)
	wantUsage(t, s, a.ID, 0, 0)
	wantUsage(t, s, free.ID, 0, 0)
}

func testReserveConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro") // 20 GiB
	quota := a.StorageQuotaBytes()
	const n = 100

	// Watch the account while the reservations race.
	done := make(chan struct{})
	var watched atomic.Int64
	var overshoot atomic.Value
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := s.AccountByID(ctx, a.ID)
			if err != nil {
				overshoot.Store(fmt.Sprintf("AccountByID: %v", err))
				return
			}
			watched.Add(1)
			if got.StorageUsedBytes+got.StorageReservedBytes > quota {
				overshoot.Store(fmt.Sprintf("used %d + reserved %d > quota %d", got.StorageUsedBytes, got.StorageReservedBytes, quota))
			}
			time.Sleep(time.Millisecond)
		}
	}()

	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := s.Reserve(ctx, a.ID, server.GiB, time.Hour)
			ids[i], errs[i] = r.ID, err
		}()
	}
	close(start)
	wg.Wait()
	close(done)
	<-watcher

	var won []string
	for i, err := range errs {
		switch server.ErrorCode(err) {
		case "":
			won = append(won, ids[i])
		case server.EQuotaExceeded:
		default:
			t.Errorf("reserve %d: %v", i, err)
		}
	}
	if len(won) != 20 {
		t.Fatalf("%d reservations of 1 GiB succeeded against a 20 GiB quota, want exactly 20", len(won))
	}
	if v := overshoot.Load(); v != nil {
		t.Fatalf("during the race: %v", v)
	}
	if watched.Load() == 0 {
		t.Error("watcher never read the account")
	}
	wantUsage(t, s, a.ID, 0, quota)

	// Commit them all concurrently, half the bytes each.
	errs = make([]error, len(won))
	for i, id := range won {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.CommitReservation(ctx, id, server.GiB/2)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	wantUsage(t, s, a.ID, 10*server.GiB, 0)
}

func testCommitReservation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	r, err := s.Reserve(ctx, a.ID, 100*server.MiB, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.CommitReservation(ctx, r.ID, 100*server.MiB+1), server.EInvalid)
	wantCode(t, s.CommitReservation(ctx, r.ID, -1), server.EInvalid)
	wantUsage(t, s, a.ID, 0, 100*server.MiB) // failed commits change nothing

	if err := s.CommitReservation(ctx, r.ID, 60*server.MiB); err != nil {
		t.Fatalf("CommitReservation: %v", err)
	}
	wantUsage(t, s, a.ID, 60*server.MiB, 0)
	wantCode(t, s.CommitReservation(ctx, r.ID, 60*server.MiB), server.ENotFound)
	wantCode(t, s.ReleaseReservation(ctx, r.ID), server.ENotFound)
	wantUsage(t, s, a.ID, 60*server.MiB, 0)

	// Deduplicated upload: nothing new stored.
	r2, err := s.Reserve(ctx, a.ID, 5*server.MiB, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitReservation(ctx, r2.ID, 0); err != nil {
		t.Fatalf("CommitReservation(0): %v", err)
	}
	wantUsage(t, s, a.ID, 60*server.MiB, 0)

	// The full amount.
	r3, err := s.Reserve(ctx, a.ID, 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitReservation(ctx, r3.ID, 7); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, a.ID, 60*server.MiB+7, 0)

	wantCode(t, s.CommitReservation(ctx, "no-such-reservation", 0), server.ENotFound)

	// A suspended account's upload in flight still lands.
	r4, err := s.Reserve(ctx, a.ID, 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, a.UserID, server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitReservation(ctx, r4.ID, 10); err != nil {
		t.Fatalf("commit on suspended account: %v", err)
	}
	wantUsage(t, s, a.ID, 60*server.MiB+17, 0)
}

func testReleaseReservation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "starter")
	r, err := s.Reserve(ctx, a.ID, 2*server.GiB, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Reserve(ctx, mustCreate(t, s, "starter").ID, server.GiB, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseReservation(ctx, r.ID); err != nil {
		t.Fatalf("ReleaseReservation: %v", err)
	}
	wantUsage(t, s, a.ID, 0, 0)
	wantUsage(t, s, other.AccountID, 0, server.GiB) // untouched
	wantCode(t, s.ReleaseReservation(ctx, r.ID), server.ENotFound)
	wantCode(t, s.CommitReservation(ctx, r.ID, 0), server.ENotFound)
	wantCode(t, s.ReleaseReservation(ctx, "no-such-reservation"), server.ENotFound)
	wantUsage(t, s, a.ID, 0, 0)
	// The quota is whole again.
	if _, err := s.Reserve(ctx, a.ID, 2*server.GiB, time.Hour); err != nil {
		t.Fatalf("Reserve after release: %v", err)
	}
}

func testReleaseExpired(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	r10, err := s.Reserve(ctx, a.ID, 10, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, a.ID, 20, 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, b.ID, 40, 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	r60, err := s.Reserve(ctx, a.ID, 100, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	n, err := s.ReleaseExpiredReservations(ctx, time.Now())
	if err != nil || n != 0 {
		t.Fatalf("sweep now = %d, %v; want 0", n, err)
	}
	// Exactly at expiry is not expired yet.
	if n, err := s.ReleaseExpiredReservations(ctx, r10.ExpiresAt); err != nil || n != 0 {
		t.Fatalf("sweep at expiry = %d, %v; want 0", n, err)
	}
	n, err = s.ReleaseExpiredReservations(ctx, r10.CreatedAt.Add(30*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("sweep +30m = %d, %v; want 3", n, err)
	}
	wantUsage(t, s, a.ID, 0, 100)
	wantUsage(t, s, b.ID, 0, 0)
	n, err = s.ReleaseExpiredReservations(ctx, r10.CreatedAt.Add(30*time.Minute))
	if err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v; want 0", n, err)
	}
	wantCode(t, s.CommitReservation(ctx, r10.ID, 10), server.ENotFound)
	if err := s.CommitReservation(ctx, r60.ID, 50); err != nil {
		t.Fatalf("commit of unexpired reservation: %v", err)
	}
	wantUsage(t, s, a.ID, 50, 0)
}

func testSweepRacesCommits(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		r, err := s.Reserve(ctx, a.ID, 1000, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
	}
	future := time.Now().Add(time.Hour) // everything is expired then
	var committed, swept atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 2*n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				err = s.CommitReservation(ctx, id, 300)
			} else {
				err = s.ReleaseReservation(ctx, id)
			}
			switch server.ErrorCode(err) {
			case "":
				if i%2 == 0 {
					committed.Add(1)
				} else {
					swept.Add(1) // a release counts like a sweep
				}
			case server.ENotFound:
			default:
				errc <- err
			}
		}()
		if i%8 == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := s.ReleaseExpiredReservations(ctx, future)
				if err != nil {
					errc <- err
				}
				swept.Add(int64(k))
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if got := committed.Load() + swept.Load(); got != n {
		t.Fatalf("%d commits + %d releases = %d settlements of %d reservations", committed.Load(), swept.Load(), got, n)
	}
	wantUsage(t, s, a.ID, committed.Load()*300, 0)
}

func testLogRequests(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	if err := s.LogRequests(ctx, nil); err != nil {
		t.Fatalf("LogRequests(nil): %v", err)
	}
	if got, err := s.RecentRequests(ctx, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("RecentRequests on empty log = %v, %v", got, err)
	}
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	base := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	var reqs []server.APIRequest
	for i := range 6 {
		acct := ""
		switch i % 3 {
		case 0:
			acct = a.ID
		case 1:
			acct = b.ID
		}
		reqs = append(reqs, server.APIRequest{
			AccountID:        acct,
			Method:           "POST",
			Endpoint:         fmt.Sprintf("/api/v1/files/{id}#%d", i),
			StatusCode:       200 + i,
			ResponseTimeMS:   int64(10 * i),
			BytesTransferred: int64(1000 * i),
			ErrorMessage:     map[bool]string{true: "quota_exceeded"}[i == 3],
			IPAddress:        "2001:db8::1",
			UserAgent:        "jetty-test/1.0",
			CreatedAt:        base.Add(time.Duration(i)*time.Second + 123456*time.Nanosecond),
		})
	}
	if err := s.LogRequests(ctx, reqs); err != nil {
		t.Fatalf("LogRequests: %v", err)
	}

	all, err := s.RecentRequests(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("RecentRequests(all) returned %d, want 6", len(all))
	}
	for i, got := range all {
		want := reqs[5-i] // newest first
		if !got.CreatedAt.Equal(want.CreatedAt.Truncate(time.Microsecond)) {
			t.Errorf("row %d CreatedAt = %v, want %v", i, got.CreatedAt, want.CreatedAt)
		}
		got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
		if got != want {
			t.Errorf("row %d = %+v, want %+v", i, got, want)
		}
	}

	mine, err := s.RecentRequests(ctx, a.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 2 || mine[0].Endpoint != reqs[3].Endpoint || mine[1].Endpoint != reqs[0].Endpoint {
		t.Errorf("RecentRequests(a) = %+v, want rows 3 and 0", mine)
	}
	for _, r := range mine {
		if r.AccountID != a.ID {
			t.Errorf("RecentRequests(a) returned a row of %q", r.AccountID)
		}
	}
	two, err := s.RecentRequests(ctx, "", 2)
	if err != nil || len(two) != 2 || two[0].StatusCode != 205 || two[1].StatusCode != 204 {
		t.Errorf("RecentRequests(limit 2) = %+v, %v", two, err)
	}
	none, err := s.RecentRequests(ctx, "no-such-account", 10)
	if err != nil || len(none) != 0 {
		t.Errorf("RecentRequests(unknown) = %+v, %v", none, err)
	}

	// A zero CreatedAt is logged as now.
	before := time.Now().Add(-time.Second)
	if err := s.LogRequests(ctx, []server.APIRequest{{AccountID: b.ID, Method: "GET", Endpoint: "/health", StatusCode: 200}}); err != nil {
		t.Fatal(err)
	}
	bs, err := s.RecentRequests(ctx, b.ID, 1)
	if err != nil || len(bs) != 1 {
		t.Fatalf("RecentRequests(b, 1) = %+v, %v", bs, err)
	}
	// base is in 2031, so the newest of b's rows is still a seeded one; the
	// one just logged is older.
	bAll, err := s.RecentRequests(ctx, b.ID, 10)
	if err != nil || len(bAll) != 3 {
		t.Fatalf("RecentRequests(b) = %+v, %v; want 3 rows", bAll, err)
	}
	last := bAll[2]
	if last.Endpoint != "/health" || last.CreatedAt.Before(before) || last.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("row logged without time: %+v", last)
	}
}
