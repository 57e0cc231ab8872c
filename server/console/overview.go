package console

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/jettythunder/jetty/server"
)

// The overview page (GET /console/): the figures of the service over the
// last server.OverviewDays UTC days, read by server.OverviewStore and,
// for costs, by the usage roll-up's UsageByTier (the figures GET
// /api/agentcache/usage gives). Charts are inline SVG drawn here, each
// with a table of its numbers beside it: no script.

// chartWidth and chartHeight are the charts' viewBox; a bar is
// chartWidth/days wide.
const (
	chartWidth  = 300
	chartHeight = 80
)

// bar is one day's bar of a chart: a stack of up to two parts (Low at the
// bottom, High above it), in viewBox units.
type bar struct {
	X, W         float64
	LowY, LowH   float64
	HighY, HighH float64
	Title        string // what a pointer hovering it reads
}

// chart is an inline SVG bar chart of one value per day.
type chart struct {
	ID, Title, Desc string
	Bars            []bar
	Width, Height   int
	LowClass        string // CSS class of the lower part
	HighClass       string
}

// newChart draws days bars: low[i] and high[i] stacked, scaled to the
// largest total.
func newChart(id, title, desc string, days []time.Time, low, high []float64, label func(i int) string) chart {
	c := chart{ID: id, Title: title, Desc: desc, Width: chartWidth, Height: chartHeight}
	peak := 0.0
	for i := range days {
		peak = max(peak, low[i]+high[i])
	}
	w := float64(chartWidth) / float64(max(len(days), 1))
	for i := range days {
		b := bar{X: float64(i)*w + w*0.1, W: w * 0.8, Title: label(i)}
		if peak > 0 {
			b.LowH = low[i] / peak * chartHeight
			b.HighH = high[i] / peak * chartHeight
		}
		b.LowY = chartHeight - b.LowH
		b.HighY = b.LowY - b.HighH
		c.Bars = append(c.Bars, b)
	}
	return c
}

// tierAccounts is one row of the accounts table.
type tierAccounts struct {
	Tier                              string
	Active, Suspended, Deleted, Total int64
}

// provisionRow is one day of provisioning calls.
type provisionRow struct {
	Day         string
	Calls, OK   int64
	SuccessRate string
}

// uploadRow is one day of uploads.
type uploadRow struct {
	Day                                   string
	Uploads, Bytes, DedupHits, DedupBytes int64
}

// storageRow is one tier's storage against its quota.
type storageRow struct {
	server.TierStorage
	Percent string
	Meter   float64 // used+reserved of quota, 0..100, for the meter
}

// costRow is one tier's usage and cost over the window.
type costRow struct {
	server.TierUsage
	Cost string // dollars, or "custom" when the tier's price is not set
}

// overviewData is the data of the overview page.
type overviewData struct {
	From, To string
	Now      string

	Accounts      []tierAccounts
	AccountsTotal tierAccounts

	Provisioning      []provisionRow
	ProvisionCalls    int64
	ProvisionOK       int64
	ProvisionRate     string
	ProvisionChart    chart
	Uploads           []uploadRow
	UploadCount       int64
	UploadBytes       int64
	DedupHits         int64
	DedupBytes        int64
	DedupRate         string
	UploadChart       chart
	SpeedSamples      int
	SpeedMedian       string // MiB/s, "—" without samples
	SpeedP95          string
	SpeedCapped       bool // the window had more uploads than were read
	Storage           []storageRow
	StorageTotal      storageRow
	Costs             []costRow
	CostTotal         string
	CostPriced        bool
	CostRolledUpUntil string
	Outbox            server.OutboxCounts
}

// handleOverview shows the overview page (GET /console/).
func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := c.now().UTC()
	o, err := c.store.Overview(ctx, now)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	tiers, err := c.store.UsageByTier(ctx, o.From, o.To, "")
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	c.render(w, r, "overview", buildOverview(o, tiers, now))
}

// buildOverview turns the store's figures into the page's.
func buildOverview(o server.Overview, tiers []server.TierUsage, now time.Time) overviewData {
	d := overviewData{
		From: o.From.Format(time.DateOnly), To: o.To.Format(time.DateOnly),
		Now: now.Format("2006-01-02 15:04 UTC"), Outbox: o.Outbox,
	}

	index := map[string]int{}
	for _, a := range o.Accounts {
		i, ok := index[a.Tier]
		if !ok {
			i = len(d.Accounts)
			index[a.Tier] = i
			d.Accounts = append(d.Accounts, tierAccounts{Tier: a.Tier})
		}
		t := &d.Accounts[i]
		switch a.Status {
		case server.StatusActive:
			t.Active += a.Count
		case server.StatusSuspended:
			t.Suspended += a.Count
		case server.StatusDeleted:
			t.Deleted += a.Count
		}
		t.Total += a.Count
	}
	d.AccountsTotal.Tier = "all tiers"
	for _, t := range d.Accounts {
		d.AccountsTotal.Active += t.Active
		d.AccountsTotal.Suspended += t.Suspended
		d.AccountsTotal.Deleted += t.Deleted
		d.AccountsTotal.Total += t.Total
	}

	days := make([]time.Time, len(o.Provisioning))
	okCalls, failed := make([]float64, len(days)), make([]float64, len(days))
	for i, p := range o.Provisioning {
		days[i] = p.Day
		okCalls[i], failed[i] = float64(p.OK), float64(p.Calls-p.OK)
		d.ProvisionCalls += p.Calls
		d.ProvisionOK += p.OK
		d.Provisioning = append(d.Provisioning, provisionRow{Day: p.Day.Format(time.DateOnly), Calls: p.Calls, OK: p.OK, SuccessRate: percent(p.OK, p.Calls)})
	}
	slices.Reverse(d.Provisioning) // newest first in the table
	d.ProvisionRate = percent(d.ProvisionOK, d.ProvisionCalls)
	d.ProvisionChart = newChart("chart-provisioning", "Provisioning calls per day",
		fmt.Sprintf("%d calls from %s to %s, %s succeeded", d.ProvisionCalls, d.From, d.To, d.ProvisionRate),
		days, okCalls, failed, func(i int) string {
			p := o.Provisioning[i]
			return fmt.Sprintf("%s: %d calls, %d succeeded", p.Day.Format(time.DateOnly), p.Calls, p.OK)
		})
	d.ProvisionChart.LowClass, d.ProvisionChart.HighClass = "bar-ok", "bar-bad"

	stored, saved := make([]float64, len(o.Uploads)), make([]float64, len(o.Uploads))
	updays := make([]time.Time, len(o.Uploads))
	for i, u := range o.Uploads {
		updays[i] = u.Day
		stored[i], saved[i] = float64(u.Bytes-u.DedupBytes), float64(u.DedupBytes)
		d.UploadCount += u.Uploads
		d.UploadBytes += u.Bytes
		d.DedupHits += u.DedupHits
		d.DedupBytes += u.DedupBytes
		d.Uploads = append(d.Uploads, uploadRow{Day: u.Day.Format(time.DateOnly), Uploads: u.Uploads, Bytes: u.Bytes, DedupHits: u.DedupHits, DedupBytes: u.DedupBytes})
	}
	slices.Reverse(d.Uploads)
	d.DedupRate = percent(d.DedupHits, d.UploadCount)
	d.UploadChart = newChart("chart-uploads", "Bytes uploaded per day",
		fmt.Sprintf("%d files, %s from %s to %s; %s of them deduplicated", d.UploadCount, humanBytes(d.UploadBytes), d.From, d.To, humanBytes(d.DedupBytes)),
		updays, stored, saved, func(i int) string {
			u := o.Uploads[i]
			return fmt.Sprintf("%s: %d files, %s (%s deduplicated)", u.Day.Format(time.DateOnly), u.Uploads, humanBytes(u.Bytes), humanBytes(u.DedupBytes))
		})
	d.UploadChart.LowClass, d.UploadChart.HighClass = "bar-stored", "bar-dedup"

	d.SpeedSamples = len(o.Speeds)
	d.SpeedCapped = len(o.Speeds) >= server.MaxOverviewSpeeds
	d.SpeedMedian, d.SpeedP95 = "—", "—"
	if len(o.Speeds) > 0 {
		s := slices.Clone(o.Speeds)
		slices.Sort(s)
		d.SpeedMedian = mibps(Percentile(s, 50))
		d.SpeedP95 = mibps(Percentile(s, 95))
	}

	d.StorageTotal.Tier = "all tiers"
	for _, t := range o.Storage {
		d.Storage = append(d.Storage, storageRow{TierStorage: t})
		d.StorageTotal.Accounts += t.Accounts
		d.StorageTotal.UsedBytes += t.UsedBytes
		d.StorageTotal.ReservedBytes += t.ReservedBytes
		d.StorageTotal.QuotaBytes += t.QuotaBytes
	}
	for i := range d.Storage {
		d.Storage[i].fill()
	}
	d.StorageTotal.fill()

	var total server.Money
	d.CostPriced = true
	for _, t := range tiers {
		row := costRow{TierUsage: t, Cost: "$" + t.TotalCost.String()}
		if !t.Priced {
			row.Cost = "custom price"
			if t.TotalCost != 0 {
				row.Cost = "$" + t.TotalCost.String() + " + custom"
			}
			d.CostPriced = false
		}
		total += t.TotalCost
		d.Costs = append(d.Costs, row)
	}
	d.CostTotal = "$" + total.String()
	return d
}

// fill sets the percentage and meter of a storage row.
func (s *storageRow) fill() {
	s.Percent = share(s.UsedBytes+s.ReservedBytes, s.QuotaBytes)
	if s.QuotaBytes > 0 {
		s.Meter = math.Min(100, float64(s.UsedBytes+s.ReservedBytes)*100/float64(s.QuotaBytes))
	}
}

// share is percent, except that a part too small to show as 0.1% reads
// "<0.1%" rather than "0.0%".
func share(part, whole int64) string {
	if part > 0 && whole > 0 && float64(part)*1000 < float64(whole) {
		return "<0.1%"
	}
	return percent(part, whole)
}

// Percentile is the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method: the smallest value that at least p percent of the
// values do not exceed. sorted must be sorted and not empty.
func Percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// mibps prints a speed recorded in megabits per second (decimal, as
// assets.upload_speed_mbps holds it) in MiB/s, the project's unit.
func mibps(mbps float64) string {
	return fmt.Sprintf("%.1f MiB/s", mbps*1e6/8/(1<<20))
}
