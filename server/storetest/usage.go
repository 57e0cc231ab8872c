package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// usageTests cover server.UsageStore.
var usageTests = []storeTest{
	{"RollupUsageDay", testRollupUsageDay},
	{"RollupUsageDayConcurrent", testRollupUsageDayConcurrent},
	{"UsageRowsPages", testUsageRowsPages},
	{"UsageRangeErrors", testUsageRangeErrors},
}

// usageRow finds the row of one account and day.
func usageRow(t *testing.T, s server.Store, a server.Account, day time.Time) (server.UsageRow, bool) {
	t.Helper()
	p, err := s.UsageRows(ctxFor(t), server.UsageQuery{From: day, To: day, UserID: a.UserID, Accounts: 10})
	if err != nil {
		t.Fatalf("UsageRows: %v", err)
	}
	switch len(p.Rows) {
	case 0:
		return server.UsageRow{}, false
	case 1:
		return p.Rows[0], true
	}
	t.Fatalf("UsageRows(%s, %s) = %+v, want one row", a.UserID, day.Format(time.DateOnly), p.Rows)
	return server.UsageRow{}, false
}

// testRollupUsageDay: rows for the days an account existed only, storage
// at the day's end carried forward, bytes in and out of each day from the
// ledger, requests from the log, the tier of the day and its price, final
// rows never rewritten.
func testRollupUsageDay(t *testing.T, s server.Store) {
	AvoidMidnight()
	ctx := ctxFor(t)
	now := time.Now().UTC()
	today := server.UsageDay(now)
	yesterday, tomorrow := today.AddDate(0, 0, -1), today.AddDate(0, 0, 1)
	a := mustCreate(t, s, "pro")
	ent := mustCreate(t, s, "enterprise")
	gone := mustCreate(t, s, "starter")
	asset, _, _ := mustUpload(t, s, a, "0123456789", "") // 10 bytes in, 10 stored
	mustUpload(t, s, a, "0123456789", "")                // deduplicated: 10 bytes in, nothing stored
	if err := s.RecordDownload(ctx, a.ID, asset.ID, 300, now); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDownload(ctx, a.ID, asset.ID, 4000, tomorrow.Add(12*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.LogRequests(ctx, []server.APIRequest{
		{AccountID: a.ID, Method: "GET", Endpoint: downloadEndpoint, StatusCode: 200, BytesTransferred: 300, CreatedAt: now},
		{AccountID: a.ID, Method: "GET", Endpoint: "GET /api/agentcache/quota", StatusCode: 200, CreatedAt: now},
		{AccountID: a.ID, Method: "GET", Endpoint: "GET /api/agentcache/quota", StatusCode: 200, CreatedAt: tomorrow},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, gone.UserID, server.StatusDeleted); err != nil {
		t.Fatal(err)
	}

	// Yesterday none of them existed.
	if n, err := s.RollupUsageDay(ctx, yesterday, true); err != nil || n != 0 {
		t.Fatalf("RollupUsageDay(yesterday) = %d, %v; want no rows: the accounts were created today", n, err)
	}
	if _, ok := usageRow(t, s, a, yesterday); ok {
		t.Fatal("a row for the day before the account existed")
	}
	// Today: all three (the deleted one was deleted today).
	if n, err := s.RollupUsageDay(ctx, today, false); err != nil || n != 3 {
		t.Fatalf("RollupUsageDay(today) = %d, %v; want 3", n, err)
	}
	r, _ := usageRow(t, s, a, today)
	price := server.DailyPrice(4900, today)
	if r.AccountID != a.ID || r.Tier != "pro" || r.StorageBytes != 10 || r.BytesIn != 20 || r.BytesOut != 300 || r.RequestCount != 2 ||
		!r.Priced || r.StorageCost != price || r.BandwidthCost != 0 || r.TotalCost != price || r.Final || !r.Day.Equal(today) {
		t.Fatalf("today's row %+v; want pro, 10 stored, 20 in, 300 out, 2 requests, cost %s, provisional", r, price)
	}
	if r, _ := usageRow(t, s, ent, today); r.Priced || r.Tier != "enterprise" {
		t.Fatalf("enterprise row %+v: its price is custom", r)
	}

	// Today's row follows the day until it is final.
	if _, err := s.ChangeTier(ctx, a.UserID, "business"); err != nil {
		t.Fatal(err)
	}
	mustUpload(t, s, a, "abcde", "")
	if _, err := s.RollupUsageDay(ctx, today, false); err != nil {
		t.Fatal(err)
	}
	r, _ = usageRow(t, s, a, today)
	if price := server.DailyPrice(14900, today); r.Tier != "business" || r.StorageBytes != 15 || r.BytesIn != 25 || r.TotalCost != price {
		t.Fatalf("today's row after a tier change and an upload: %+v; want business, 15 stored, 25 in, cost %s", r, price)
	}

	// Tomorrow: storage carried forward, tomorrow's bytes out only.
	if n, err := s.RollupUsageDay(ctx, tomorrow, true); err != nil || n != 2 {
		t.Fatalf("RollupUsageDay(tomorrow) = %d, %v; want 2 (the deleted account is gone)", n, err)
	}
	r, _ = usageRow(t, s, a, tomorrow)
	if r.StorageBytes != 15 || r.BytesIn != 0 || r.BytesOut != 4000 || r.RequestCount != 1 || !r.Final || r.Tier != "business" {
		t.Fatalf("tomorrow's row %+v; want 15 stored, 4000 out, 1 request, final", r)
	}
	if _, ok := usageRow(t, s, gone, tomorrow); ok {
		t.Fatal("a row for a day after the account was deleted")
	}
	// A final day is never rewritten.
	if err := s.RecordDownload(ctx, a.ID, asset.ID, 1, tomorrow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, final := range []bool{true, false} {
		if n, err := s.RollupUsageDay(ctx, tomorrow, final); err != nil || n != 0 {
			t.Fatalf("RollupUsageDay(tomorrow, %v) again = %d, %v; want 0", final, n, err)
		}
	}
	if r2, _ := usageRow(t, s, a, tomorrow); r2 != r {
		t.Fatalf("final row rewritten: %+v, was %+v", r2, r)
	}
	w, err := s.UsageWatermark(ctx)
	if err != nil || !w.LastFinal.Equal(tomorrow) || w.FirstAccount.IsZero() || server.UsageDay(w.FirstAccount) != today {
		t.Fatalf("UsageWatermark = %+v, %v; want last final %s, first account today", w, err, tomorrow)
	}

	// Per-tier totals over the two days.
	tiers, err := s.UsageByTier(ctx, today, tomorrow, "")
	if err != nil {
		t.Fatal(err)
	}
	byTier := map[string]server.TierUsage{}
	for _, tu := range tiers {
		byTier[tu.Tier] = tu
	}
	b := byTier["business"]
	wantCost := server.DailyPrice(14900, today) + server.DailyPrice(14900, tomorrow)
	if b.Accounts != 1 || b.Days != 2 || b.StorageByteDays != 30 || b.BytesIn != 25 || b.BytesOut != 4300 || b.RequestCount != 3 ||
		!b.Priced || b.TotalCost != wantCost || b.StorageCost != wantCost {
		t.Fatalf("business totals %+v; want 1 account, 2 days, 30 byte-days, 25 in, 4300 out, 3 requests, %s", b, wantCost)
	}
	if e := byTier["enterprise"]; e.Priced || e.Days != 2 {
		t.Fatalf("enterprise totals %+v", e)
	}
	if st := byTier["starter"]; st.Days != 1 || st.TotalCost != server.DailyPrice(1900, today) {
		t.Fatalf("starter totals %+v", st)
	}
	if one, err := s.UsageByTier(ctx, today, tomorrow, ent.UserID); err != nil || len(one) != 1 || one[0].Tier != "enterprise" {
		t.Fatalf("UsageByTier(one account) = %+v, %v", one, err)
	}
}

// testRollupUsageDayConcurrent: runners rolling up the same days at once
// write one row per account and day, the same as one runner.
func testRollupUsageDayConcurrent(t *testing.T, s server.Store) {
	AvoidMidnight()
	ctx := ctxFor(t)
	today := server.UsageDay(time.Now())
	var accts []server.Account
	for range 4 {
		a := mustCreate(t, s, "starter")
		mustUpload(t, s, a, "same bytes "+a.UserID, "")
		accts = append(accts, a)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.RollupUsageDay(ctx, today, i%2 == 0)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent RollupUsageDay: %v", err)
		}
	}
	p, err := s.UsageRows(ctx, server.UsageQuery{From: today, To: today, Accounts: 100})
	if err != nil || len(p.Rows) != len(accts) {
		t.Fatalf("UsageRows = %+v, %v; want %d rows", p.Rows, err, len(accts))
	}
	for _, r := range p.Rows {
		if !r.Final || r.StorageBytes != int64(len("same bytes ")+len(r.UserID)) {
			t.Fatalf("row %+v", r)
		}
	}
}

// testUsageRowsPages: pages of accounts by user id, every day of an
// account on its page, the user filter.
func testUsageRowsPages(t *testing.T, s server.Store) {
	AvoidMidnight()
	ctx := ctxFor(t)
	today := server.UsageDay(time.Now())
	var users []string
	for range 3 {
		users = append(users, mustCreate(t, s, "free").UserID)
	}
	for _, d := range []time.Time{today, today.AddDate(0, 0, 1)} {
		if _, err := s.RollupUsageDay(ctx, d, false); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pages never end")
		}
		p, err := s.UsageRows(ctx, server.UsageQuery{From: today, To: today.AddDate(0, 0, 5), After: after, Accounts: 2})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range p.Rows {
			if i%2 == 0 {
				got = append(got, r.UserID)
			} else if r.UserID != got[len(got)-1] || !r.Day.Equal(today.AddDate(0, 0, 1)) {
				t.Fatalf("page rows %+v: each account's two days in order", p.Rows)
			}
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(got) != 3 || !(got[0] < got[1] && got[1] < got[2]) {
		t.Fatalf("accounts over the pages: %v; want %v in order", got, users)
	}
	p, err := s.UsageRows(ctx, server.UsageQuery{From: today, To: today, UserID: users[1], Accounts: 1})
	if err != nil || len(p.Rows) != 1 || p.Rows[0].UserID != users[1] || p.Next != "" {
		t.Fatalf("one user: %+v, %v", p, err)
	}
}

func testUsageRangeErrors(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	today := server.UsageDay(time.Now())
	_, err := s.UsageRows(ctx, server.UsageQuery{From: today, To: today.AddDate(0, 0, -1), Accounts: 1})
	wantCode(t, err, server.EInvalid)
	_, err = s.UsageRows(ctx, server.UsageQuery{From: today, To: today, Accounts: 0})
	wantCode(t, err, server.EInvalid)
	_, err = s.UsageByTier(ctx, today, today.AddDate(0, 0, -1), "")
	wantCode(t, err, server.EInvalid)
}

// AvoidMidnight waits, when the UTC day ends within a minute, until it
// has ended: tests that name "today" must not see the day change under
// them.
func AvoidMidnight() {
	now := time.Now().UTC()
	if left := server.UsageDay(now).AddDate(0, 0, 1).Sub(now); left < time.Minute {
		time.Sleep(left + time.Second)
	}
}
