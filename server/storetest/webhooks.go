package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// webhookTests are the outbox's conformance tests (issue 19).
var webhookTests = []storeTest{
	{"WebhookEventsRecorded", testWebhookEventsRecorded},
	{"WebhookQuotaThresholds", testWebhookQuotaThresholds},
	{"WebhookClaimInOrder", testWebhookClaimInOrder},
	{"WebhookClaimConcurrent", testWebhookClaimConcurrent},
	{"WebhookURL", testWebhookURL},
	{"WebhookCountPrune", testWebhookCountPrune},
}

func createWithHook(t *testing.T, s server.Store, tier string) server.Account {
	t.Helper()
	n := newAccount(tier)
	n.WebhookURL = "https://hooks.example.com/jetty/" + n.UserID
	a, err := s.CreateAccount(ctxFor(t), n)
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if a.WebhookURL != n.WebhookURL {
		t.Fatalf("WebhookURL = %q, want %q", a.WebhookURL, n.WebhookURL)
	}
	return a
}

// eventsOf lists an account's events oldest first, with their bodies.
func eventsOf(t *testing.T, s server.Store, accountID string) ([]server.WebhookEvent, []server.WebhookEventBody) {
	t.Helper()
	evs, err := s.WebhookEvents(ctxFor(t), accountID, 100)
	if err != nil {
		t.Fatalf("WebhookEvents: %v", err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	bodies := make([]server.WebhookEventBody, len(evs))
	for i, e := range evs {
		if err := json.Unmarshal(e.Payload, &bodies[i]); err != nil {
			t.Fatalf("payload %s: %v", e.Payload, err)
		}
		b := bodies[i]
		if b.ID != e.ID || b.Type != e.Type || b.Sequence != e.Seq || b.AccountID != accountID || b.UserID != e.UserID {
			t.Fatalf("payload %s disagrees with its row %+v", e.Payload, e)
		}
	}
	return evs, bodies
}

func eventTypes(evs []server.WebhookEvent) []string {
	var ts []string
	for _, e := range evs {
		ts = append(ts, e.Type)
	}
	return ts
}

func testWebhookEventsRecorded(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := createWithHook(t, s, "starter")
	steps := []func() error{
		func() error { _, err := s.ChangeTier(ctx, a.UserID, "pro"); return err },
		func() error { _, err := s.ChangeTier(ctx, a.UserID, "pro"); return err }, // no change: no event
		func() error { _, err := s.SetStatus(ctx, a.UserID, server.StatusSuspended); return err },
		func() error { _, err := s.SetStatus(ctx, a.UserID, server.StatusSuspended); return err }, // no change
		func() error { _, err := s.SetStatus(ctx, a.UserID, server.StatusActive); return err },
		func() error { _, err := s.RevokePreviousCredentials(ctx, a.UserID); return err }, // nothing to revoke
		func() error {
			_, err := s.RotateCredentials(ctx, a.UserID, "jt_live_"+randHex(16), secretHash(), time.Now().Add(time.Hour))
			return err
		},
		func() error { _, err := s.RevokePreviousCredentials(ctx, a.UserID); return err },
		func() error { _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); return err },
		func() error { _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); return err }, // again: no event
	}
	for i, f := range steps {
		if err := f(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	evs, bodies := eventsOf(t, s, a.ID)
	want := []string{server.EventAccountProvisioned, server.EventAccountTierChanged, server.EventAccountSuspended,
		server.EventAccountReactivated, server.EventCredentialsRotated, server.EventCredentialsRevoked, server.EventAccountDeleted}
	if got := eventTypes(evs); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
	final := mustAccount(t, s, a.ID)
	seen := map[string]bool{}
	for i, e := range evs {
		b := bodies[i]
		if e.Seq != int64(i+1) || e.State != server.WebhookPending || e.Attempts != 0 || seen[e.ID] || !strings.HasPrefix(e.ID, "evt_") {
			t.Fatalf("event %d: %+v", i, e)
		}
		seen[e.ID] = true
		if b.OccurredAt.IsZero() || b.UserID != a.UserID {
			t.Fatalf("event %d body %+v", i, b)
		}
		// Never a credential: not the key, not the secret hash.
		for _, secret := range []string{a.APIKey, a.SecretHash, final.APIKey, final.SecretHash} {
			if strings.Contains(string(e.Payload), secret) {
				t.Fatalf("event %s carries a credential: %s", e.Type, e.Payload)
			}
		}
	}
	if d := bodies[0].Data; d.Tier != "starter" || d.Status != "active" || d.StorageQuotaGB != 2 || d.StorageQuotaBytes != 2*server.GiB {
		t.Fatalf("provisioned data %+v", d)
	}
	if d := bodies[1].Data; d.Tier != "pro" || d.PreviousTier != "starter" || d.StorageQuotaGB != 20 || !d.JettySpeedEnabled {
		t.Fatalf("tier_changed data %+v", d)
	}
	if d := bodies[2].Data; d.Status != "suspended" || d.PreviousStatus != "active" {
		t.Fatalf("suspended data %+v", d)
	}
	if d := bodies[3].Data; d.Status != "active" || d.PreviousStatus != "suspended" {
		t.Fatalf("reactivated data %+v", d)
	}
	if d := bodies[4].Data; !strings.HasPrefix(d.APIKeyPrefix, "jt_live_") || !strings.HasSuffix(d.APIKeyPrefix, "…") || d.PreviousKeyExpiresAt == nil {
		t.Fatalf("rotated data %+v", d)
	}
	if d := bodies[5].Data; d.PreviousKeyPrefix == "" || d.APIKeyPrefix != bodies[4].Data.APIKeyPrefix {
		t.Fatalf("revoked data %+v", d)
	}
	if d := bodies[6].Data; d.Status != "deleted" || d.PreviousStatus != "active" {
		t.Fatalf("deleted data %+v", d)
	}

	// An account without a webhook_url records nothing.
	b := mustCreate(t, s, "starter")
	if _, err := s.ChangeTier(ctx, b.UserID, "pro"); err != nil {
		t.Fatal(err)
	}
	if evs, _ := eventsOf(t, s, b.ID); len(evs) != 0 {
		t.Fatalf("account without webhook_url has events %v", eventTypes(evs))
	}
	// A failed change records nothing.
	if _, err := s.ChangeTier(ctx, a.UserID, "business"); server.ErrorCode(err) != server.EAccountDeleted {
		t.Fatalf("ChangeTier of a deleted account: %v", err)
	}
	if evs, _ := eventsOf(t, s, a.ID); len(evs) != len(want) {
		t.Fatalf("a refused change recorded an event: %v", eventTypes(evs))
	}
}

// commit reserves and commits n bytes of account a.
func commit(t *testing.T, s server.Store, accountID string, n int64) {
	t.Helper()
	ctx := ctxFor(t)
	r, err := s.Reserve(ctx, accountID, n, time.Hour)
	if err != nil {
		t.Fatalf("Reserve(%d): %v", n, err)
	}
	if err := s.CommitReservation(ctx, r.ID, n); err != nil {
		t.Fatalf("CommitReservation: %v", err)
	}
}

func testWebhookQuotaThresholds(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := createWithHook(t, s, "starter") // 2 GiB
	q := 2 * server.GiB
	quotaEvents := func() []string {
		evs, bodies := eventsOf(t, s, a.ID)
		var got []string
		for i, e := range evs {
			if strings.HasPrefix(e.Type, "quota.") {
				got = append(got, fmt.Sprintf("%s/%d", e.Type, bodies[i].Data.ThresholdPercent))
			}
		}
		return got
	}
	want := func(w ...string) {
		t.Helper()
		if got := quotaEvents(); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Fatalf("quota events %v, want %v", got, w)
		}
	}
	var used int64
	to := func(pct int64) { // commits up to pct% of the quota, rounded up
		t.Helper()
		target := (q*pct + 99) / 100
		commit(t, s, a.ID, target-used)
		used = target
	}
	to(50)
	to(79)
	want() // nothing yet
	to(80)
	want("quota.warning/80")
	to(81) // no second warning
	to(82)
	want("quota.warning/80")
	r, err := s.Reserve(ctx, a.ID, q/10, time.Hour) // reserved bytes do not count
	if err != nil {
		t.Fatal(err)
	}
	want("quota.warning/80")
	if err := s.ReleaseReservation(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	to(94)
	want("quota.warning/80")
	to(95)
	want("quota.warning/80", "quota.warning/95")
	to(100)
	want("quota.warning/80", "quota.warning/95", "quota.exceeded/100")
	evs, bodies := eventsOf(t, s, a.ID)
	last := bodies[len(evs)-1].Data
	if last.StorageUsedBytes != q || last.StorageQuotaBytes != q {
		t.Fatalf("exceeded data %+v", last)
	}

	// A bigger quota re-arms (usage is 10% of pro's 20 GiB); moving back
	// crosses every threshold at once: one event, the highest.
	if _, err := s.ChangeTier(ctx, a.UserID, "pro"); err != nil {
		t.Fatal(err)
	}
	want("quota.warning/80", "quota.warning/95", "quota.exceeded/100")
	if _, err := s.ChangeTier(ctx, a.UserID, "starter"); err != nil {
		t.Fatal(err)
	}
	want("quota.warning/80", "quota.warning/95", "quota.exceeded/100", "quota.exceeded/100")

	// Uploads without a reservation count too (CreateAsset's own check is
	// covered by the asset tests); the free tier (0 bytes) is never warned
	// about while empty.
	f := createWithHook(t, s, "free")
	if evs, _ := eventsOf(t, s, f.ID); len(evs) != 1 {
		t.Fatalf("free account events %v", eventTypes(evs))
	}
}

func testWebhookClaimInOrder(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := createWithHook(t, s, "starter")
	b := createWithHook(t, s, "starter")
	for _, u := range []string{a.UserID, b.UserID} {
		if _, err := s.ChangeTier(ctx, u, "pro"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetStatus(ctx, u, server.StatusSuspended); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	lease := time.Minute
	claim := func(holder string, at time.Time) map[string]server.WebhookEvent {
		t.Helper()
		evs, err := s.ClaimWebhookEvents(ctx, holder, at, lease, 10)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		m := map[string]server.WebhookEvent{}
		for _, e := range evs {
			if _, dup := m[e.AccountID]; dup {
				t.Fatalf("two events of one account claimed at once: %+v", evs)
			}
			m[e.AccountID] = e
		}
		return m
	}
	got := claim("h1", now)
	if len(got) != 2 || got[a.ID].Seq != 1 || got[b.ID].Seq != 1 || got[a.ID].URL != a.WebhookURL || got[a.ID].UserID != a.UserID {
		t.Fatalf("first claim %+v", got)
	}
	if string(got[a.ID].Payload) == "" || got[a.ID].Type != server.EventAccountProvisioned {
		t.Fatalf("claimed event %+v", got[a.ID])
	}
	// Leased: nobody else gets them, nor the events behind them.
	if again := claim("h2", now.Add(time.Second)); len(again) != 0 {
		t.Fatalf("claimed while leased: %+v", again)
	}
	// Only the holder records.
	err := s.RecordWebhookAttempt(ctx, got[a.ID].ID, "h2", server.WebhookAttempt{At: now, Delivered: true, Status: 200})
	wantCode(t, err, server.ENotFound)

	// a's first event fails for now (retry in an hour); b's is delivered.
	if err := s.RecordWebhookAttempt(ctx, got[a.ID].ID, "h1", server.WebhookAttempt{At: now, Status: 500, Error: "HTTP 500",
		NextAttemptAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordWebhookAttempt(ctx, got[b.ID].ID, "h1", server.WebhookAttempt{At: now, Status: 204, Delivered: true}); err != nil {
		t.Fatal(err)
	}
	// Twice is refused: the lease is over.
	wantCode(t, s.RecordWebhookAttempt(ctx, got[b.ID].ID, "h1", server.WebhookAttempt{At: now, Delivered: true}), server.ENotFound)

	// a is blocked behind its failing event; b moves on to its second.
	got = claim("h2", now.Add(time.Second))
	if len(got) != 1 || got[b.ID].Seq != 2 {
		t.Fatalf("second claim %+v", got)
	}
	// The lease runs out without a record (the holder died): another
	// holder takes the event over.
	got = claim("h3", now.Add(time.Second+lease+time.Millisecond))
	if len(got) != 1 || got[b.ID].Seq != 2 {
		t.Fatalf("claim after the lease ran out %+v", got)
	}
	if err := s.RecordWebhookAttempt(ctx, got[b.ID].ID, "h3", server.WebhookAttempt{At: now, Status: 200, Delivered: true}); err != nil {
		t.Fatal(err)
	}
	// At a's retry time its first event comes back, with its history.
	got = claim("h1", now.Add(time.Hour+time.Second))
	ea := got[a.ID]
	if len(got) != 2 || got[b.ID].Seq != 3 || ea.Seq != 1 || ea.Attempts != 1 || ea.LastStatus != 500 || ea.LastError != "HTTP 500" || ea.LastAttemptAt.IsZero() {
		t.Fatalf("retry claim %+v", got)
	}
	if err := s.RecordWebhookAttempt(ctx, got[b.ID].ID, "h1", server.WebhookAttempt{At: now, Status: 200, Delivered: true}); err != nil {
		t.Fatal(err)
	}
	// Given up: failed, and the account's next event is free to go.
	if err := s.RecordWebhookAttempt(ctx, ea.ID, "h1", server.WebhookAttempt{At: now.Add(time.Hour), Status: 0, Error: "connection refused", GiveUp: true}); err != nil {
		t.Fatal(err)
	}
	got = claim("h1", now.Add(time.Hour+2*time.Second))
	if len(got) != 1 || got[a.ID].Seq != 2 {
		t.Fatalf("claim after giving up %+v", got)
	}
	evs, _ := eventsOf(t, s, a.ID)
	if evs[0].State != server.WebhookFailed || evs[0].FailedAt.IsZero() || evs[0].Attempts != 2 || evs[0].LastError != "connection refused" {
		t.Fatalf("failed event %+v", evs[0])
	}
	evs, _ = eventsOf(t, s, b.ID)
	if evs[0].State != server.WebhookDelivered || evs[0].DeliveredAt.IsZero() || evs[1].State != server.WebhookDelivered || evs[1].Attempts != 1 || evs[2].State != server.WebhookDelivered {
		t.Fatalf("delivered events %+v", evs)
	}
	_, err = s.ClaimWebhookEvents(ctx, "", now, lease, 1)
	wantCode(t, err, server.EInvalid)
}

// testWebhookClaimConcurrent: holders claiming at once never hold the same
// event, and every event is delivered exactly once when every attempt
// succeeds, in sequence order per account.
func testWebhookClaimConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	var accts []server.Account
	for range 4 {
		a := createWithHook(t, s, "starter")
		for _, tier := range []string{"pro", "business", "pro"} {
			if _, err := s.ChangeTier(ctx, a.UserID, tier); err != nil {
				t.Fatal(err)
			}
		}
		accts = append(accts, a)
	}
	var (
		mu        sync.Mutex
		delivered = map[string][]int64{}
		wg        sync.WaitGroup
	)
	for h := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holder := fmt.Sprintf("holder-%d", h)
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				evs, err := s.ClaimWebhookEvents(ctx, holder, time.Now(), time.Minute, 2)
				if err != nil {
					t.Error(err)
					return
				}
				for _, e := range evs {
					mu.Lock()
					delivered[e.AccountID] = append(delivered[e.AccountID], e.Seq)
					mu.Unlock()
					if err := s.RecordWebhookAttempt(ctx, e.ID, holder, server.WebhookAttempt{At: time.Now(), Status: 200, Delivered: true}); err != nil {
						t.Error(err)
						return
					}
				}
				mu.Lock()
				n := 0
				for _, d := range delivered {
					n += len(d)
				}
				mu.Unlock()
				if n == 16 {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, a := range accts {
		if got := fmt.Sprint(delivered[a.ID]); got != "[1 2 3 4]" {
			t.Fatalf("account %s delivered %s, want [1 2 3 4] once each in order", a.ID, got)
		}
	}
}

func testWebhookURL(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "starter")
	if a.WebhookURL != "" {
		t.Fatalf("WebhookURL = %q", a.WebhookURL)
	}
	u := "https://hooks.example.com/x?account=1"
	got, err := s.SetWebhookURL(ctx, a.UserID, u)
	if err != nil || got.WebhookURL != u || mustAccount(t, s, a.ID).WebhookURL != u {
		t.Fatalf("SetWebhookURL: %+v %v", got, err)
	}
	if _, err := s.ChangeTier(ctx, a.UserID, "pro"); err != nil {
		t.Fatal(err)
	}
	if evs, _ := eventsOf(t, s, a.ID); len(evs) != 1 || evs[0].Seq != 1 || evs[0].Type != server.EventAccountTierChanged {
		t.Fatalf("events after setting the url: %+v", evs)
	}
	for _, bad := range []string{"ftp://x/y", "https://user:pw@x/", "/relative", "https://", "https://x/#frag", "https://x/" + strings.Repeat("a", server.MaxWebhookURL)} {
		_, err := s.SetWebhookURL(ctx, a.UserID, bad)
		wantCode(t, err, server.EInvalid)
	}
	_, err = s.SetWebhookURL(ctx, "usr_nobody", u)
	wantCode(t, err, server.ENotFound)
	_, err = s.CreateAccount(ctx, func() server.NewAccount { n := newAccount("pro"); n.WebhookURL = "javascript:alert(1)"; return n }())
	wantCode(t, err, server.EInvalid)

	// Removing the url fails what is still pending: nowhere to send it.
	if _, err := s.SetWebhookURL(ctx, a.UserID, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ClaimWebhookEvents(ctx, "h", time.Now(), time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("claim after removing the url: %+v %v", got, err)
	}
	evs, _ := eventsOf(t, s, a.ID)
	if evs[0].State != server.WebhookFailed || !strings.Contains(evs[0].LastError, "webhook_url removed") {
		t.Fatalf("event after removing the url: %+v", evs[0])
	}
	if _, err := s.SetStatus(ctx, a.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	_, err = s.SetWebhookURL(ctx, a.UserID, u)
	wantCode(t, err, server.EAccountDeleted)
}

func testWebhookCountPrune(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := createWithHook(t, s, "starter")
	if _, err := s.ChangeTier(ctx, a.UserID, "pro"); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ClaimWebhookEvents(ctx, "h", time.Now(), time.Minute, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("claim: %v %v", evs, err)
	}
	if err := s.RecordWebhookAttempt(ctx, evs[0].ID, "h", server.WebhookAttempt{At: time.Now(), Status: 200, Delivered: true}); err != nil {
		t.Fatal(err)
	}
	c, err := s.CountWebhookEvents(ctx)
	if err != nil || c[server.WebhookPending] != 1 || c[server.WebhookDelivered] != 1 || c[server.WebhookFailed] != 0 {
		t.Fatalf("counts %v %v", c, err)
	}
	if n, err := s.PruneWebhookEvents(ctx, time.Now().Add(-time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("prune of nothing old: %d %v", n, err)
	}
	if n, err := s.PruneWebhookEvents(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 1 {
		t.Fatalf("prune: %d %v (pending events are never pruned)", n, err)
	}
	c, _ = s.CountWebhookEvents(ctx)
	if c[server.WebhookPending] != 1 || c[server.WebhookDelivered] != 0 {
		t.Fatalf("counts after prune %v", c)
	}
}
