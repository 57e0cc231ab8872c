package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/storetest"
)

// usageCall asks for the partner's usage report.
func (e *env) usageCall(query string) (resp, protocol.UsageResponse) {
	e.t.Helper()
	r := e.do("GET", "/api/agentcache/usage?"+query, "", partnerHeaders())
	var out protocol.UsageResponse
	if r.status == 200 {
		if err := json.Unmarshal([]byte(r.raw), &out); err != nil {
			e.t.Fatalf("usage body: %v: %s", err, r.raw)
		}
	}
	return r, out
}

// TestUsageRoute: GET /api/agentcache/usage answers the partner, and only
// the partner, with each account's days (storage at the day's end, bytes
// in and out, requests, the cost of the day), its totals and the totals
// per tier; a custom-priced tier has no cost; pages of accounts; a bad
// range or parameter is 400 with a message saying what to send.
func TestUsageRoute(t *testing.T) {
	storetest.AvoidMidnight()
	eachStorage(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		today := server.UsageDay(time.Now())
		day := today.Format(time.DateOnly)
		ka, sa := e.provision("usr_usage_a", "pro")
		kb, sb := e.provision("usr_usage_b", "starter")
		e.provision("usr_usage_c", "enterprise")
		up := e.upload(ka, sa, "a.bin", strings.NewReader("0123456789"), 10, nil)
		if up.status != 201 {
			t.Fatalf("upload: %d %s", up.status, up.raw)
		}
		if r := e.upload(kb, sb, "b.bin", strings.NewReader("abcde"), 5, nil); r.status != 201 {
			t.Fatalf("upload: %d %s", r.status, r.raw)
		}
		if code, _, _, n := e.download(ka, sa, up.asset["id"].(string), ""); code != 200 || n != 10 {
			t.Fatalf("download: %d %d", code, n)
		}
		if _, err := e.store.RollupUsageDay(ctx, today, false); err != nil {
			t.Fatal(err)
		}

		if r := e.do("GET", "/api/agentcache/usage?from="+day+"&to="+day, "", nil); r.status != 401 {
			t.Fatalf("without the partner secret: %d %s", r.status, r.raw)
		}
		if r := e.do("GET", "/api/agentcache/usage?from="+day+"&to="+day, "", userHeaders(ka, sa)); r.status != 401 {
			t.Fatalf("with a user's credentials: %d %s", r.status, r.raw)
		}

		yesterday := today.AddDate(0, 0, -1).Format(time.DateOnly)
		r, out := e.usageCall("from=" + yesterday + "&to=" + day)
		if r.status != 200 || out.From != yesterday || out.To != day || out.Currency != "USD" || len(out.Accounts) != 3 || out.NextCursor != "" {
			t.Fatalf("usage: %d %s", r.status, r.raw)
		}
		a := out.Accounts[0]
		price := server.DailyPrice(4900, today).String()
		if a.UserID != "usr_usage_a" || len(a.Days) != 1 {
			t.Fatalf("first account %+v; want usr_usage_a with today only (it did not exist yesterday)", a)
		}
		if d := a.Days[0]; d.Date != day || d.Tier != "pro" || d.StorageBytes != 10 || d.BytesIn != 10 || d.BytesOut != 10 || d.Final ||
			d.TotalCost == nil || *d.TotalCost != price || *d.StorageCost != price || *d.BandwidthCost != "0.0000" {
			t.Fatalf("usr_usage_a's day %+v; want pro, 10 stored, 10 in, 10 out, cost %s, provisional", d, price)
		}
		if a.Totals.Days != 1 || a.Totals.StorageByteDays != 10 || a.Totals.TotalCost != price || !a.Totals.Priced {
			t.Fatalf("usr_usage_a's totals %+v", a.Totals)
		}
		if c := out.Accounts[2]; c.UserID != "usr_usage_c" || c.Days[0].TotalCost != nil || c.Totals.Priced {
			t.Fatalf("enterprise account %+v: its price is custom, no cost", c)
		}
		tiers := map[string]protocol.UsageTier{}
		for _, tu := range out.Tiers {
			tiers[tu.Tier] = tu
		}
		if p := tiers["pro"]; p.Accounts != 1 || p.BytesIn != 10 || p.BytesOut != 10 || p.TotalCost != price || !p.Priced {
			t.Fatalf("pro totals %+v", p)
		}
		starter := server.DailyPrice(1900, today)
		if s := tiers["starter"]; s.Accounts != 1 || s.StorageByteDays != 5 || s.TotalCost != starter.String() {
			t.Fatalf("starter totals %+v", s)
		}
		if ent := tiers["enterprise"]; ent.Accounts != 1 || ent.Priced {
			t.Fatalf("enterprise totals %+v", ent)
		}
		if tot := out.Totals; tot.Days != 3 || tot.BytesIn != 15 || tot.Priced || tot.TotalCost != (server.DailyPrice(4900, today)+starter).String() {
			t.Fatalf("totals %+v", tot)
		}

		// One account.
		r, one := e.usageCall("from=" + day + "&to=" + day + "&user_id=usr_usage_b")
		if r.status != 200 || len(one.Accounts) != 1 || one.Accounts[0].UserID != "usr_usage_b" || len(one.Tiers) != 1 || one.Tiers[0].Tier != "starter" {
			t.Fatalf("user_id filter: %d %s", r.status, r.raw)
		}
		r, _ = e.usageCall("from=" + day + "&to=" + day + "&user_id=usr_nobody")
		wantError(t, r, 404, server.ENotFound)

		// Pages of accounts.
		var users []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("pages never end")
			}
			r, p := e.usageCall("from=" + day + "&to=" + day + "&limit=2&cursor=" + cursor)
			if r.status != 200 || len(p.Accounts) == 0 || len(p.Accounts) > 2 || len(p.Tiers) != 3 {
				t.Fatalf("page %d: %d %s", pages, r.status, r.raw)
			}
			for _, a := range p.Accounts {
				users = append(users, a.UserID)
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if fmt.Sprint(users) != "[usr_usage_a usr_usage_b usr_usage_c]" {
			t.Fatalf("accounts over the pages: %v", users)
		}

		for query, msg := range map[string]string{
			"":                                           "from and to are required",
			"from=" + day:                                "from and to are required",
			"from=2026-13-01&to=2026-12-31":              `from "2026-13-01" is not a date`,
			"from=2026-12-01&to=tomorrow":                `to "tomorrow" is not a date`,
			"from=2026-12-02&to=2026-12-01":              "is after to",
			"from=2025-01-01&to=2026-12-31":              "ask for at most 366 per call",
			"from=" + day + "&to=" + day + "&limit=0":    "limit must be",
			"from=" + day + "&to=" + day + "&cursor=!!!": "cursor is not one this server handed out",
		} {
			r, _ := e.usageCall(query)
			wantError(t, r, 400, server.EInvalid)
			if !strings.Contains(r.body["error"].(string), msg) {
				t.Errorf("%q: error %q does not say %q", query, r.body["error"], msg)
			}
		}
		r, _ = e.usageCall("from=" + day + "&to=" + day + "&user_id=../x")
		wantError(t, r, 400, server.EInvalidUserID)
	})
}

// TestUsageMetrics reads /metrics after uploads of two tiers: uploads and
// bytes per tier, deduplication hits and bytes saved at each stage (a
// session's open that found the content held, an upload whose bytes
// matched content held).
func TestUsageMetrics(t *testing.T) {
	b := backends()[0]
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, b.store(t), b.limit(t), fs, nil, func(c *api.Config) { c.MetricsToken = metricsToken })
	kp, sp := e.provision("usr_metrics_pro", "pro")
	ks, ss := e.provision("usr_metrics_starter", "starter")
	data := []byte("0123456789")
	for i, want := range []bool{false, true} { // new, then deduplicated
		r := e.upload(kp, sp, "ten.bin", bytes.NewReader(data), 10, nil)
		if r.status != 201 || r.body["deduplicated"] != want {
			t.Fatalf("upload %d: %d %s", i, r.status, r.raw)
		}
	}
	if o := e.open(kp, sp, plan("ten.bin", data, 5*mib)); o.status != 200 || !o.Deduplicated {
		t.Fatalf("open of held content: %d %s", o.status, o.raw)
	}
	other := randBytes(7, 1000)
	m := plan("other.bin", other, 5*mib)
	o := e.open(kp, sp, m)
	if o.status != 201 || o.Session == nil {
		t.Fatalf("open: %d %s", o.status, o.raw)
	}
	sendAll(t, o.Session, m, other, []int{0})
	if c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", kp, sp, nil); c.status != 200 || c.Deduplicated {
		t.Fatalf("complete: %d %s", c.status, c.raw)
	}
	if r := e.upload(ks, ss, "five.bin", strings.NewReader("abcde"), 5, nil); r.status != 201 {
		t.Fatalf("starter upload: %d %s", r.status, r.raw)
	}

	r := e.do("GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + metricsToken})
	if r.status != 200 {
		t.Fatalf("metrics: %d %.300s", r.status, r.raw)
	}
	for series, want := range map[string]string{
		`jetty_tier_uploads_total{tier="pro"}`:            "4",
		`jetty_tier_uploaded_bytes_total{tier="pro"}`:     "1030",
		`jetty_tier_uploads_total{tier="starter"}`:        "1",
		`jetty_tier_uploaded_bytes_total{tier="starter"}`: "5",
		`jetty_dedup_hits_total{stage="open"}`:            "1",
		`jetty_dedup_hits_total{stage="upload"}`:          "1",
		`jetty_dedup_saved_bytes_total{stage="open"}`:     "10",
		`jetty_dedup_saved_bytes_total{stage="upload"}`:   "10",
	} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
		got := re.FindStringSubmatch(r.raw)
		if got == nil || got[1] != want {
			t.Errorf("%s = %v, want %s", series, got, want)
		}
	}
}
