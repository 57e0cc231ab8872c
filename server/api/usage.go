package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// Bounds of GET /api/agentcache/usage.
const (
	maxUsageDays         = 366 // days per call
	defaultUsageAccounts = 100 // accounts per page
	maxUsageAccounts     = 200
)

// handleUsage answers GET /api/agentcache/usage?from=YYYY-MM-DD&to=YYYY-MM-DD
// (UTC days, both included) with optional user_id, limit (accounts per
// page) and cursor: the storage_usage rows of each account, its totals,
// and the totals per tier (docs/api.md, "Usage and cost").
func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	from, to, err := usageRange(q.Get("from"), q.Get("to"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	uq := server.UsageQuery{From: from, To: to, Accounts: defaultUsageAccounts, UserID: q.Get("user_id")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxUsageAccounts {
			s.writeError(w, r, server.Errorf(server.EInvalid, "limit must be a number of accounts from 1 to %d, got %q", maxUsageAccounts, v))
			return
		}
		uq.Accounts = n
	}
	if v := q.Get("cursor"); v != "" {
		after, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || server.ValidateUserID(string(after)) != nil {
			s.writeError(w, r, server.Errorf(server.EInvalid, "cursor is not one this server handed out: pass next_cursor as it came"))
			return
		}
		uq.After = string(after)
	}
	if uq.UserID != "" {
		if err := server.ValidateUserID(uq.UserID); err != nil {
			s.writeError(w, r, err)
			return
		}
		if _, err := s.store.AccountByUserID(ctx, uq.UserID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	page, err := s.store.UsageRows(ctx, uq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tiers, err := s.store.UsageByTier(ctx, from, to, uq.UserID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := protocol.UsageResponse{
		From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Currency: "USD",
		Accounts: []protocol.UsageAccount{}, Tiers: []protocol.UsageTier{},
	}
	var totals []server.UsageTotals // of out.Accounts
	for _, row := range page.Rows {
		if n := len(out.Accounts); n == 0 || out.Accounts[n-1].UserID != row.UserID {
			out.Accounts = append(out.Accounts, protocol.UsageAccount{UserID: row.UserID, Days: []protocol.UsageDay{}})
			totals = append(totals, server.UsageTotals{})
		}
		acct := &out.Accounts[len(out.Accounts)-1]
		acct.Days = append(acct.Days, usageDayBody(row))
		totals[len(totals)-1].Add(row)
	}
	for i := range out.Accounts {
		totals[i].Accounts = 1
		out.Accounts[i].Totals = usageTotalsBody(totals[i])
	}
	all := server.UsageTotals{Priced: true}
	for _, t := range tiers {
		out.Tiers = append(out.Tiers, protocol.UsageTier{Tier: t.Tier, UsageTotals: usageTotalsBody(t.UsageTotals)})
		all.Days += t.Days
		all.StorageByteDays += t.StorageByteDays
		all.BytesIn += t.BytesIn
		all.BytesOut += t.BytesOut
		all.RequestCount += t.RequestCount
		all.Priced = all.Priced && t.Priced
		all.StorageCost += t.StorageCost
		all.BandwidthCost += t.BandwidthCost
		all.TotalCost += t.TotalCost
	}
	out.Totals = usageTotalsBody(all)
	out.Totals.Accounts = 0 // an account may have been in two tiers
	if page.Next != "" {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(page.Next))
	}
	writeJSON(w, http.StatusOK, out)
}

// usageRange parses and checks the from and to of a usage call.
func usageRange(fromS, toS string) (time.Time, time.Time, error) {
	if fromS == "" || toS == "" {
		return time.Time{}, time.Time{}, server.Errorf(server.EInvalid, "from and to are required: ?from=YYYY-MM-DD&to=YYYY-MM-DD (UTC days, both included)")
	}
	from, err := time.Parse(time.DateOnly, fromS)
	if err != nil {
		return time.Time{}, time.Time{}, server.Errorf(server.EInvalid, "from %q is not a date: use YYYY-MM-DD", fromS)
	}
	to, err := time.Parse(time.DateOnly, toS)
	if err != nil {
		return time.Time{}, time.Time{}, server.Errorf(server.EInvalid, "to %q is not a date: use YYYY-MM-DD", toS)
	}
	if to.Before(from) {
		return time.Time{}, time.Time{}, server.Errorf(server.EInvalid, "from (%s) is after to (%s)", fromS, toS)
	}
	if days := int(to.Sub(from)/(24*time.Hour)) + 1; days > maxUsageDays {
		return time.Time{}, time.Time{}, server.Errorf(server.EInvalid, "the range covers %d days; ask for at most %d per call", days, maxUsageDays)
	}
	return from, to, nil
}

func usageDayBody(r server.UsageRow) protocol.UsageDay {
	d := protocol.UsageDay{
		Date: r.Day.Format(time.DateOnly), Tier: r.Tier, StorageBytes: r.StorageBytes,
		BytesIn: r.BytesIn, BytesOut: r.BytesOut, Requests: r.RequestCount, Final: r.Final,
	}
	if r.Priced {
		sc, bc, tc := r.StorageCost.String(), r.BandwidthCost.String(), r.TotalCost.String()
		d.StorageCost, d.BandwidthCost, d.TotalCost = &sc, &bc, &tc
	}
	return d
}

func usageTotalsBody(t server.UsageTotals) protocol.UsageTotals {
	return protocol.UsageTotals{
		Accounts: t.Accounts, Days: t.Days, StorageByteDays: t.StorageByteDays,
		BytesIn: t.BytesIn, BytesOut: t.BytesOut, Requests: t.RequestCount, Priced: t.Priced || t.Days == 0,
		StorageCost: t.StorageCost.String(), BandwidthCost: t.BandwidthCost.String(), TotalCost: t.TotalCost.String(),
	}
}

// usageMetrics are the deduplication and per-tier upload figures of seed
// 000's monitoring list. The tier label takes the names of tier_configs'
// rows (a handful, chosen by the operator), nothing a client sends.
type usageMetrics struct {
	dedupHits   *prometheus.CounterVec
	dedupSaved  *prometheus.CounterVec
	tierUploads *prometheus.CounterVec
	tierBytes   *prometheus.CounterVec
}

// Stages of deduplication (the stage label).
const (
	dedupAtOpen   = "open"   // a session's open found the content held: no byte sent
	dedupAtUpload = "upload" // the bytes came and matched content held: none stored
)

func newUsageMetrics(reg prometheus.Registerer) *usageMetrics {
	m := &usageMetrics{
		dedupHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_dedup_hits_total",
			Help: "Uploads answered by content the account already held, by stage (open: no byte sent; upload: the bytes came, none were stored).",
		}, []string{"stage"}),
		dedupSaved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_dedup_saved_bytes_total",
			Help: "Bytes not stored again thanks to deduplication (and, at stage open, not sent either), by stage.",
		}, []string{"stage"}),
		tierUploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_tier_uploads_total",
			Help: "Uploads recorded as assets (deduplicated ones included), by the account's tier.",
		}, []string{"tier"}),
		tierBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_tier_uploaded_bytes_total",
			Help: "Bytes of the uploads recorded as assets (their files' sizes, deduplicated ones included), by the account's tier.",
		}, []string{"tier"}),
	}
	for _, stage := range []string{dedupAtOpen, dedupAtUpload} {
		m.dedupHits.WithLabelValues(stage)
		m.dedupSaved.WithLabelValues(stage)
	}
	reg.MustRegister(m.dedupHits, m.dedupSaved, m.tierUploads, m.tierBytes)
	return m
}

// countUpload counts an upload recorded as an asset of size bytes for
// acct; dedup is the stage at which deduplication answered it ("" when it
// stored new content).
func (s *Server) countUpload(acct server.Account, size int64, dedup string) {
	m := s.metrics.usage
	tier := acct.Tier
	if server.ValidateTierName(tier) != nil {
		tier = "other"
	}
	m.tierUploads.WithLabelValues(tier).Inc()
	m.tierBytes.WithLabelValues(tier).Add(float64(size))
	if dedup != "" {
		m.dedupHits.WithLabelValues(dedup).Inc()
		m.dedupSaved.WithLabelValues(dedup).Add(float64(size))
	}
}

// dedupStage is stage when deduplicated, else "".
func dedupStage(deduplicated bool, stage string) string {
	if deduplicated {
		return stage
	}
	return ""
}
