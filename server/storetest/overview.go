package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// overviewTests cover server.OverviewStore (issue 22: the operator
// console).
var overviewTests = []storeTest{
	{"OverviewEmpty", testOverviewEmpty},
	{"Overview", testOverview},
	{"EdgeNodes", testEdgeNodes},
}

func testOverviewEmpty(t *testing.T, s server.Store) {
	now := time.Now().UTC()
	o, err := s.Overview(ctxFor(t), now)
	if err != nil {
		t.Fatalf("Overview: %v", err)
	}
	from, to := server.OverviewWindow(now)
	if !o.From.Equal(from) || !o.To.Equal(to) || len(o.Provisioning) != server.OverviewDays || len(o.Uploads) != server.OverviewDays {
		t.Fatalf("window %s..%s with %d and %d days; want %s..%s, %d days each", o.From, o.To, len(o.Provisioning), len(o.Uploads), from, to, server.OverviewDays)
	}
	for i, d := range o.Uploads {
		if want := from.AddDate(0, 0, i); !d.Day.Equal(want) || !o.Provisioning[i].Day.Equal(want) || d.Uploads != 0 || o.Provisioning[i].Calls != 0 {
			t.Fatalf("day %d: %+v / %+v; want %s with nothing", i, d, o.Provisioning[i], want)
		}
	}
	if len(o.Accounts) != 0 || len(o.Speeds) != 0 || len(o.Storage) != 0 || o.Outbox != (server.OutboxCounts{}) {
		t.Fatalf("an empty database's overview: %+v", o)
	}
}

// testOverview: every figure of the overview against what was written.
func testOverview(t *testing.T, s server.Store) {
	AvoidMidnight()
	ctx := ctxFor(t)
	now := time.Now().UTC()
	today := server.UsageDay(now)
	pro := mustCreate(t, s, "pro")
	pro2 := mustCreate(t, s, "pro")
	starter := createWithHook(t, s, "starter") // one account.provisioned event
	free := mustCreate(t, s, "free")
	gone := mustCreate(t, s, "business")
	if _, err := s.SetStatus(ctx, pro2.UserID, server.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, gone.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}

	// Three uploads, the second a duplicate of the first under another
	// name: 10 + 10 + 5 bytes came, 10 were not stored again.
	speed := func(v float64) func(*server.NewAsset) { return func(n *server.NewAsset) { n.UploadSpeedMbps = v } }
	if _, dedup, _ := mustUpload(t, s, pro, "0123456789", "", speed(80)); dedup {
		t.Fatal("first upload deduplicated")
	}
	if _, dedup, _ := mustUpload(t, s, pro, "0123456789", "", speed(400)); !dedup {
		t.Fatal("second upload not deduplicated")
	}
	mustUpload(t, s, starter, "abcde", "") // no speed recorded

	old := today.AddDate(0, 0, -3).Add(5 * time.Hour)
	outside := today.AddDate(0, 0, -server.OverviewDays).Add(time.Hour)
	if err := s.LogRequests(ctx, []server.APIRequest{
		{Method: "POST", Endpoint: "POST /api/agentcache/provision", StatusCode: 201, CreatedAt: now},
		{Method: "POST", Endpoint: "POST /api/agentcache/provision", StatusCode: 201, CreatedAt: now},
		{Method: "POST", Endpoint: "POST /api/agentcache/provision", StatusCode: 409, CreatedAt: now},
		{Method: "POST", Endpoint: "POST /api/agentcache/provision", StatusCode: 201, CreatedAt: old},
		{Method: "POST", Endpoint: "POST /api/agentcache/provision", StatusCode: 201, CreatedAt: outside},
		{Method: "POST", Endpoint: "POST /api/agentcache/upgrade", StatusCode: 200, CreatedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	r := mustReserve(t, s, pro.ID, 1000)

	o, err := s.Overview(ctx, now)
	if err != nil {
		t.Fatalf("Overview: %v", err)
	}
	wantAccounts := []server.AccountCount{
		{Tier: "business", Status: server.StatusDeleted, Count: 1},
		{Tier: "free", Status: server.StatusActive, Count: 1},
		{Tier: "pro", Status: server.StatusActive, Count: 1},
		{Tier: "pro", Status: server.StatusSuspended, Count: 1},
		{Tier: "starter", Status: server.StatusActive, Count: 1},
	}
	if !slices.Equal(o.Accounts, wantAccounts) {
		t.Fatalf("Accounts = %+v, want %+v", o.Accounts, wantAccounts)
	}
	last := len(o.Provisioning) - 1
	if p := o.Provisioning[last]; !p.Day.Equal(today) || p.Calls != 3 || p.OK != 2 {
		t.Fatalf("today's provisioning %+v; want 3 calls, 2 OK", p)
	}
	if p := o.Provisioning[last-3]; p.Calls != 1 || p.OK != 1 {
		t.Fatalf("provisioning three days ago %+v; want 1 call, 1 OK", p)
	}
	var calls int64
	for _, p := range o.Provisioning {
		calls += p.Calls
	}
	if calls != 4 {
		t.Fatalf("%d provisioning calls in the window, want 4 (one is older, the upgrade is not one)", calls)
	}
	if u := o.Uploads[last]; !u.Day.Equal(today) || u.Uploads != 3 || u.Bytes != 25 || u.DedupHits != 1 || u.DedupBytes != 10 {
		t.Fatalf("today's uploads %+v; want 3 uploads, 25 bytes, 1 dedup hit of 10 bytes", u)
	}
	if !slices.Equal(o.Speeds, []float64{400, 80}) {
		t.Fatalf("Speeds = %v, want [400 80] (newest first, none for the upload without one)", o.Speeds)
	}
	wantStorage := []server.TierStorage{
		{Tier: "free", Accounts: 1, QuotaBytes: 0},
		{Tier: "pro", Accounts: 2, UsedBytes: 10, ReservedBytes: 1000, QuotaBytes: 40 * server.GiB},
		{Tier: "starter", Accounts: 1, UsedBytes: 5, QuotaBytes: 2 * server.GiB},
	}
	if !slices.Equal(o.Storage, wantStorage) {
		t.Fatalf("Storage = %+v, want %+v (the deleted account left out)", o.Storage, wantStorage)
	}
	if o.Outbox != (server.OutboxCounts{Pending: 1}) {
		t.Fatalf("Outbox = %+v, want one pending event", o.Outbox)
	}
	_ = free

	// The outbox's states: a failed attempt leaves the event pending
	// (failing); a delivered one counts as delivered.
	at := time.Now().UTC().Add(time.Second) // after the event was recorded
	evs, err := s.ClaimWebhookEvents(ctx, "h1", at, time.Minute, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("ClaimWebhookEvents = %d, %v; want 1", len(evs), err)
	}
	if err := s.RecordWebhookAttempt(ctx, evs[0].ID, "h1", server.WebhookAttempt{At: at, Status: 500, Error: "HTTP 500", NextAttemptAt: at}); err != nil {
		t.Fatal(err)
	}
	if o, err = s.Overview(ctx, now); err != nil || o.Outbox != (server.OutboxCounts{Failing: 1}) {
		t.Fatalf("Outbox after a failed attempt = %+v, %v; want one failing", o.Outbox, err)
	}
	if evs, err = s.ClaimWebhookEvents(ctx, "h1", at.Add(time.Second), time.Minute, 10); err != nil || len(evs) != 1 {
		t.Fatalf("ClaimWebhookEvents again = %d, %v", len(evs), err)
	}
	if err := s.RecordWebhookAttempt(ctx, evs[0].ID, "h1", server.WebhookAttempt{At: at, Status: 204, Delivered: true}); err != nil {
		t.Fatal(err)
	}
	if o, err = s.Overview(ctx, now); err != nil || o.Outbox != (server.OutboxCounts{Delivered: 1}) {
		t.Fatalf("Outbox after delivery = %+v, %v; want one delivered", o.Outbox, err)
	}
	if err := s.ReleaseReservation(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
}

// testEdgeNodes: every recorded node, live or not, by id.
func testEdgeNodes(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	now := time.Now().UTC()
	for _, n := range []server.EdgeNode{
		{ID: "edge_b", URL: "http://b.example", LocationID: "fra", Mode: "relay", Capacity: 8, InFlight: 3, Interval: time.Second, BytesIn: 5 << 20, Throughput: 1 << 20},
		{ID: "edge_a", URL: "http://a.example", Mode: "relay", Capacity: 4, Interval: time.Second, Draining: true},
	} {
		if _, err := s.EdgeHeartbeat(ctx, n, now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EdgeHeartbeat(ctx, server.EdgeNode{ID: "edge_c", URL: "http://c.example", LocationID: "nrt", Mode: "relay", Capacity: 2, Interval: time.Second}, now); err != nil {
		t.Fatal(err)
	}
	ns, err := s.EdgeNodes(ctx)
	if err != nil {
		t.Fatalf("EdgeNodes: %v", err)
	}
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	if !slices.Equal(ids, []string{"edge_a", "edge_b", "edge_c"}) {
		t.Fatalf("EdgeNodes = %v, want edge_a, edge_b, edge_c (stale and draining ones too)", ids)
	}
	if b := ns[1]; b.LocationID != "fra" || b.Capacity != 8 || b.InFlight != 3 || b.Interval != time.Second || b.BytesIn != 5<<20 || b.Throughput != 1<<20 || !b.LastSeen.Equal(now.Add(-time.Hour).Truncate(time.Microsecond)) {
		t.Fatalf("edge_b = %+v", b)
	}
	if !ns[0].Draining {
		t.Fatalf("edge_a = %+v, want draining", ns[0])
	}
}
