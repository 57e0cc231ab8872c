package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/console"
)

// textOf is the text content of the element sel (also inside a closed
// <details>), trimmed.
func textOf(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.Join(strings.Fields(v), " ")
}

// cells is the text of each cell of the table row sel, joined by
// spaces.
func cells(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	q, _ := json.Marshal(sel + " > th, " + sel + " > td")
	v, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(`+string(q)+`), c => c.textContent.trim().split(/\s+/).join(" "))`))
	if err != nil {
		t.Fatalf("cells of %s: %v", sel, err)
	}
	if len(v) == 0 {
		t.Fatalf("no row %s", sel)
	}
	return strings.Join(v, " ")
}

// speed prints a recorded speed (megabits per second) as the page does.
func speed(mbps float64) string { return fmt.Sprintf("%.1f MiB/s", mbps*1e6/8/(1<<20)) }

// TestConsoleOverviewMatchesDatabase: accounts provisioned, files
// uploaded (one deduplicated) and usage rolled up through the real API;
// the overview in Chromium shows the figures the store reads, and they
// are the ones seeded.
func TestConsoleOverviewMatchesDatabase(t *testing.T) {
	tab := newTab(t)
	s := startServer(t, withEdges)
	d := seed(t, s)
	ctx := context.Background()
	now := time.Now()
	o, err := s.Store().Overview(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	tiers, err := s.Store().UsageByTier(ctx, o.From, o.To, "")
	if err != nil {
		t.Fatal(err)
	}

	browserSignIn(t, tab, s, consoleToken)
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.ID("fig-accounts"))); err != nil {
		t.Fatal(err)
	}

	// Accounts by tier and status.
	var total int64
	counts := map[string][4]int64{} // active, suspended, deleted, all
	for _, a := range o.Accounts {
		c := counts[a.Tier]
		c[map[server.AccountStatus]int{server.StatusActive: 0, server.StatusSuspended: 1, server.StatusDeleted: 2}[a.Status]] += a.Count
		c[3] += a.Count
		counts[a.Tier] = c
		total += a.Count
	}
	if total != 3 || counts["free"] != [4]int64{0, 1, 0, 1} || counts["pro"] != [4]int64{1, 0, 0, 1} {
		t.Fatalf("the store counts %v accounts: not what was seeded", counts)
	}
	if got := textOf(t, tab, "#fig-accounts"); got != strconv.FormatInt(total, 10) {
		t.Errorf("accounts figure %q, want %d", got, total)
	}
	for tier, c := range counts {
		want := fmt.Sprintf("%s %d %d %d %d", tier, c[0], c[1], c[2], c[3])
		if got := cells(t, tab, `#accounts-by-tier tr[data-tier="`+tier+`"]`); got != want {
			t.Errorf("accounts of tier %s: %q, want %q", tier, got, want)
		}
	}

	// Provisioning calls and their success rate, today's row too.
	today := o.Provisioning[len(o.Provisioning)-1]
	if today.Calls != d.provisions || today.OK != d.provisionsOK {
		t.Fatalf("the store counts %+v provisioning calls today, want %d (%d ok)", today, d.provisions, d.provisionsOK)
	}
	if got := textOf(t, tab, "#fig-provision-calls"); got != strconv.FormatInt(today.Calls, 10) {
		t.Errorf("provisioning calls %q, want %d", got, today.Calls)
	}
	if got := textOf(t, tab, "#fig-provision-rate"); got != "75.0%" {
		t.Errorf("provisioning success rate %q, want 75.0%%", got)
	}
	day := today.Day.Format(time.DateOnly)
	if got, want := cells(t, tab, `#provisioning-days tr[data-day="`+day+`"]`), fmt.Sprintf("%s %d %d 75.0%%", day, today.Calls, today.OK); got != want {
		t.Errorf("today's provisioning row %q, want %q", got, want)
	}

	// Uploads, bytes, deduplication.
	up := o.Uploads[len(o.Uploads)-1]
	if up.Uploads != 3 || up.DedupHits != 1 || up.DedupBytes != 300<<10 || up.Bytes != 640<<10 {
		t.Fatalf("the store counts today's uploads as %+v; want 3 files, 640 KiB, one deduplicated of 300 KiB", up)
	}
	for sel, want := range map[string]string{
		"#fig-uploads":      strconv.FormatInt(up.Uploads, 10),
		"#fig-upload-bytes": units.HumanBytes(up.Bytes),
		"#fig-dedup-hits":   strconv.FormatInt(up.DedupHits, 10),
		"#fig-dedup-bytes":  units.HumanBytes(up.DedupBytes),
	} {
		if got := textOf(t, tab, sel); got != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
	if got, want := cells(t, tab, `#upload-days tr[data-day="`+day+`"]`),
		fmt.Sprintf("%s 3 %s 1 %s", day, units.HumanBytes(up.Bytes), units.HumanBytes(up.DedupBytes)); got != want {
		t.Errorf("today's upload row %q, want %q", got, want)
	}

	// Upload speeds: the median and p95 of what the store recorded.
	if len(o.Speeds) != 3 {
		t.Fatalf("the store recorded %d upload speeds, want 3", len(o.Speeds))
	}
	sorted := slices.Sorted(slices.Values(o.Speeds))
	if got, want := textOf(t, tab, "#fig-speed-median"), speed(console.Percentile(sorted, 50)); got != want {
		t.Errorf("median speed %q, want %q", got, want)
	}
	if got, want := textOf(t, tab, "#fig-speed-p95"), speed(sorted[2]); got != want {
		t.Errorf("p95 speed %q, want %q (the fastest of three)", got, want)
	}

	// Storage against quota, per tier.
	for _, st := range o.Storage {
		want := fmt.Sprintf("%s %d %s %s %s", st.Tier, st.Accounts, units.HumanBytes(st.UsedBytes), units.HumanBytes(st.ReservedBytes), units.HumanBytes(st.QuotaBytes))
		if got := cells(t, tab, `#storage-by-tier tr[data-tier="`+st.Tier+`"]`); !strings.HasPrefix(got, want) {
			t.Errorf("storage of %s: %q, want it to begin %q", st.Tier, got, want)
		}
		if st.Tier == "pro" && (st.UsedBytes != 300<<10 || st.QuotaBytes != 20*server.GiB) {
			t.Errorf("the store says pro uses %d of %d bytes; want 300 KiB (stored once) of 20 GiB", st.UsedBytes, st.QuotaBytes)
		}
	}

	// Cost by tier: the roll-up's figures (GET /api/agentcache/usage's).
	if len(tiers) != 3 {
		t.Fatalf("usage by tier: %+v, want the three tiers", tiers)
	}
	for _, tu := range tiers {
		want := "$" + tu.TotalCost.String()
		if got := textOf(t, tab, `#cost-by-tier tr[data-tier="`+tu.Tier+`"] .cost`); got != want {
			t.Errorf("cost of %s: %q, want %q", tu.Tier, got, want)
		}
		if tu.Tier == "pro" && tu.TotalCost != server.DailyPrice(4900, now) {
			t.Errorf("the roll-up prices a pro day at %s, want %s", tu.TotalCost, server.DailyPrice(4900, now))
		}
	}

	// The outbox: no account has a webhook URL, so nothing is queued.
	for _, id := range []string{"outbox-pending", "outbox-failing", "outbox-failed", "outbox-delivered"} {
		if got := textOf(t, tab, "#"+id); got != "0" {
			t.Errorf("%s shows %q, want 0", id, got)
		}
	}
}

// TestConsoleEdgesShowsRelays: a relay running in-process (registered:
// its first heartbeat accepted) shows as healthy, in words, at its
// location; a relay whose heartbeats stopped an hour ago shows as down;
// a location nobody serves says so.
func TestConsoleEdgesShowsRelays(t *testing.T) {
	tab := newTab(t)
	s := startServer(t, withEdges)
	startRelay(t, s, "edge_console_fra", "fra")
	deadRelay(t, s, "edge_console_gone", "nrt")

	browserSignIn(t, tab, s, consoleToken)
	err := chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`nav a[href="/console/edges"]`)),
		chromedp.WaitVisible(chromedp.ID("relay-edge_console_fra")),
	)
	if err != nil {
		t.Fatal(err)
	}
	attr := func(sel, name string) string {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("%s[%s]: %v", sel, name, err)
		}
		return v.Value
	}
	if h := attr("#relay-edge_console_fra", "data-health"); h != "healthy" {
		t.Fatalf("the live relay is %q, want healthy", h)
	}
	row := textOf(t, tab, "#relay-edge_console_fra")
	for _, want := range []string{"healthy", "Frankfurt", "0 of 64 chunks", "relay"} {
		if !strings.Contains(row, want) {
			t.Errorf("the live relay's row %q does not say %q", row, want)
		}
	}
	if got := textOf(t, tab, "#relay-edge_console_gone"); !strings.Contains(got, "down") || !strings.Contains(got, "Tokyo") {
		t.Errorf("the silent relay's row %q; want down, in Tokyo", got)
	}
	for loc, want := range map[string]string{"fra": "healthy", "nrt": "down", "syd": "no relay"} {
		if h := attr("#loc-"+loc, "data-health"); h != want {
			t.Errorf("location %s is %q, want %q", loc, h, want)
		}
		if got := textOf(t, tab, "#loc-"+loc+" .health"); got != want {
			t.Errorf("location %s says %q, want %q in words", loc, got, want)
		}
	}
	if got := textOf(t, tab, "#fig-served"); got != "1" {
		t.Errorf("locations served: %q, want 1", got)
	}
	n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("#locations > li").length`))
	if err != nil || n != 20 {
		t.Errorf("%d location cards (%v), want the catalogue's 20", n, err)
	}
}
