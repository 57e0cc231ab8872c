package jobs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/storetest"
)

// usageRows lists the account's rows of the days from..to.
func usageRows(t *testing.T, f fixture, from, to time.Time) []server.UsageRow {
	t.Helper()
	p, err := f.store.UsageRows(context.Background(), server.UsageQuery{From: from, To: to, UserID: f.acct.UserID, Accounts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p.Rows
}

// TestUsageRollupDays moves the jobs' clock: an account created today has
// no row for yesterday; today's row is provisional until the day is over
// and settled; after days without a pass (downtime) the next pass writes
// every missed day, final, with the bytes stored at each day's end, each
// day's bandwidth and the pro plan's daily price; passes again, and two
// runners at once, change nothing.
func TestUsageRollupDays(t *testing.T) {
	storetest.AvoidMidnight()
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := time.Now().UTC()
		today := server.UsageDay(now)
		a := storeAsset(t, f, "users/usr_jobs/6-usage.txt", "usage-bytes", time.Time{})
		if err := f.store.RecordDownload(ctx, f.acct.ID, a.ID, 700, now); err != nil {
			t.Fatal(err)
		}
		if err := f.store.LogRequests(ctx, []server.APIRequest{
			{AccountID: f.acct.ID, Method: "GET", Endpoint: "GET /api/agentcache/quota", StatusCode: 200, CreatedAt: now},
		}); err != nil {
			t.Fatal(err)
		}

		for i := 0; i < 2; i++ {
			if _, err := runner(f, now).RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		rows := usageRows(t, f, today.AddDate(0, 0, -7), today)
		if len(rows) != 1 || !rows[0].Day.Equal(today) {
			t.Fatalf("rows after passes today: %+v; want today's only (the account was created today)", rows)
		}
		if r := rows[0]; r.StorageBytes != 11 || r.BytesIn != 11 || r.BytesOut != 700 || r.RequestCount != 1 || r.Final {
			t.Fatalf("today's row %+v; want 11 stored, 11 in, 700 out, 1 request, provisional", r)
		}

		// Just after midnight the day is not settled yet.
		if _, err := runner(f, today.AddDate(0, 0, 1).Add(server.UsageSettle/2)).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if rows := usageRows(t, f, today, today); len(rows) != 1 || rows[0].Final {
			t.Fatalf("today's row right after midnight: %+v; want provisional", rows)
		}

		// Three days without a pass, then two runners at once.
		later := today.AddDate(0, 0, 3).Add(10 * time.Hour)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := runner(f, later)
				r.Holder = []string{"a", "b"}[i]
				_, errs[i] = r.RunOnce(ctx)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		check := func() []server.UsageRow {
			t.Helper()
			rows := usageRows(t, f, today.AddDate(0, 0, -7), today.AddDate(0, 0, 7))
			if len(rows) != 4 {
				t.Fatalf("rows after catching up: %+v; want 4 days", rows)
			}
			for i, r := range rows {
				day := today.AddDate(0, 0, i)
				in, out := int64(0), int64(0)
				if i == 0 {
					in, out = 11, 700
				}
				if !r.Day.Equal(day) || r.StorageBytes != 11 || r.BytesIn != in || r.BytesOut != out || r.Final != (i < 3) ||
					r.Tier != "pro" || r.TotalCost != server.DailyPrice(4900, day) {
					t.Fatalf("row %d: %+v; want %s: 11 stored, %d in, %d out, final %v, cost %s", i, r, day.Format(time.DateOnly), in, out, i < 3, server.DailyPrice(4900, day))
				}
			}
			return rows
		}
		before := check()
		if _, err := runner(f, later).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		after := check()
		for i := range before[:3] {
			if before[i] != after[i] {
				t.Fatalf("final row %d changed: %+v, was %+v", i, after[i], before[i])
			}
		}
	})
}

// failingWatermark is a store whose usage roll-up cannot start.
type failingWatermark struct{ server.Store }

func (failingWatermark) UsageWatermark(context.Context) (server.UsageWatermark, error) {
	return server.UsageWatermark{}, errors.New("database on fire")
}

// TestRequestsKeptWhenRollupFails: a pass whose usage roll-up failed
// deletes no request log rows (the days they belong to may not be final
// yet); the next good pass does.
func TestRequestsKeptWhenRollupFails(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := time.Now().UTC()
		if err := f.store.LogRequests(ctx, []server.APIRequest{
			{AccountID: f.acct.ID, Method: "GET", Endpoint: "GET /api/agentcache/quota", StatusCode: 200, CreatedAt: now.AddDate(0, 0, -40)},
		}); err != nil {
			t.Fatal(err)
		}
		r := runner(f, now)
		r.RequestLogRetention = 30 * 24 * time.Hour
		r.Store = failingWatermark{f.store}
		rep, err := r.RunOnce(ctx)
		if err == nil || !strings.Contains(err.Error(), "roll up usage") || rep.RequestsDeleted != 0 {
			t.Fatalf("pass with a failed roll-up: %+v, %v; want the error and no request deleted", rep, err)
		}
		r.Store = f.store
		if rep, err := r.RunOnce(ctx); err != nil || rep.RequestsDeleted != 1 {
			t.Fatalf("good pass: %+v, %v; want the old request deleted", rep, err)
		}
	})
}
