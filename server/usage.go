package server

import (
	"context"
	"fmt"
	"time"
)

// Money is an amount of US dollars in ten-thousandths, the unit of the
// DECIMAL(10,4) cost columns of storage_usage. Sums of money are integer
// sums of Money, never floating point.
type Money int64

// MoneyScale is the number of Money units in a dollar.
const MoneyScale = 10000

// String formats m as dollars with four decimals ("1.5806", "-0.0001").
func (m Money) String() string {
	sign := ""
	v := int64(m)
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%04d", sign, v/MoneyScale, v%MoneyScale)
}

// DailyPrice is the share of a monthly price (in US cents) that the UTC
// day of day carries: the month's price spread over its days so that the
// shares of a whole calendar month add up to exactly the price (day k of
// an n-day month gets floor(k*P/n) - floor((k-1)*P/n), P in Money units),
// so no two days differ by more than 0.0001 dollars.
func DailyPrice(monthlyCents int64, day time.Time) Money {
	k, n := DayOfMonth(day)
	p := monthlyCents * (MoneyScale / 100)
	return Money(k*p/n - (k-1)*p/n)
}

// DayOfMonth returns the day of the month (1-based) of the UTC day of t
// and the number of days of that month.
func DayOfMonth(t time.Time) (k, n int64) {
	t = t.UTC()
	first := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return int64(t.Day()), int64(first.AddDate(0, 1, 0).Sub(first) / (24 * time.Hour))
}

// UsageDay truncates t to the start of its UTC day.
func UsageDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// UsageSettle is how long after its end a day's usage rows become final:
// the time the request log's buffer and transactions in flight at
// midnight need to land. Until then the day's rows are provisional and
// each roll-up rewrites them; a final row is never rewritten.
const UsageSettle = 15 * time.Minute

// UsageRow is one row of storage_usage: one account, one UTC day.
type UsageRow struct {
	AccountID string
	UserID    string // the account's agentcache_user_id
	Tier      string // the account's tier at the end of the day
	Day       time.Time
	// StorageBytes is what the account stored at the end of the day (for
	// a provisional row: when it was rolled up).
	StorageBytes int64
	BytesIn      int64 // payload bytes of the uploads recorded that day
	BytesOut     int64 // bytes sent by the day's downloads
	RequestCount int64 // requests of the account in the request log that day
	// Priced is false when the tier's price is custom (NULL): the costs
	// are then zero and mean nothing.
	Priced        bool
	StorageCost   Money
	BandwidthCost Money
	TotalCost     Money
	Final         bool
}

// UsageQuery selects usage rows: the days From..To (inclusive, UTC),
// of one account (UserID) or all, a page of at most Accounts accounts
// (by user id) after the cursor After.
type UsageQuery struct {
	From, To time.Time
	UserID   string
	After    string
	Accounts int
}

// UsagePage is one page of usage rows, ordered by user id then day.
// Next is the cursor of the next page, empty on the last.
type UsagePage struct {
	Rows []UsageRow
	Next string
}

// UsageTotals adds up usage rows.
type UsageTotals struct {
	Accounts        int64 // distinct accounts (tier totals only)
	Days            int64 // rows added up
	StorageByteDays int64 // sum of the days' end-of-day bytes
	BytesIn         int64
	BytesOut        int64
	RequestCount    int64
	// Priced is false when some row had a custom price; the costs then
	// add up the priced rows only.
	Priced        bool
	StorageCost   Money
	BandwidthCost Money
	TotalCost     Money
}

// Add adds one row to t (Accounts is left alone).
func (t *UsageTotals) Add(r UsageRow) {
	if t.Days == 0 {
		t.Priced = true
	}
	t.Days++
	t.StorageByteDays += r.StorageBytes
	t.BytesIn += r.BytesIn
	t.BytesOut += r.BytesOut
	t.RequestCount += r.RequestCount
	if !r.Priced {
		t.Priced = false
		return
	}
	t.StorageCost += r.StorageCost
	t.BandwidthCost += r.BandwidthCost
	t.TotalCost += r.TotalCost
}

// TierUsage is the usage of one tier over a range of days.
type TierUsage struct {
	Tier string
	UsageTotals
}

// UsageWatermark says where the roll-up stands.
type UsageWatermark struct {
	LastFinal    time.Time // the last day whose rows are final (zero: none)
	FirstAccount time.Time // the creation time of the oldest account (zero: none)
}

// UsageStore is the part of Store that rolls usage up into storage_usage
// and reads it back. The store keeps a ledger per account and UTC day,
// written in the transactions that change it: bytes uploaded (CreateAsset)
// and downloaded (RecordDownload), the storage after the day's last
// change, the tier after the day's last change.
type UsageStore interface {
	// RollupUsageDay writes the storage_usage rows of the UTC day that
	// starts at day (truncated to its day): one per account that existed
	// during the day (created before its end, not deleted before its
	// start), with the storage and tier at the end of the day, the day's
	// bytes in and out and requests, and its cost (the tier's monthly
	// price spread over the month's days, DailyPrice). Rows that are final
	// are never rewritten. With final, the rows become final and the day
	// is recorded as finalized; running it again is a no-op. Concurrent
	// calls for one day are safe. It reports how many rows it wrote.
	RollupUsageDay(ctx context.Context, day time.Time, final bool) (int, error)
	// UsageWatermark reports the last finalized day and the oldest
	// account's creation time.
	UsageWatermark(ctx context.Context) (UsageWatermark, error)
	// UsageRows lists the rows of q, a page of accounts at a time
	// (q.Accounts in 1..1000, else EInvalid).
	UsageRows(ctx context.Context, q UsageQuery) (UsagePage, error)
	// UsageByTier adds up the rows of the days from..to (inclusive) per
	// tier, of one account (userID) or all, ordered by tier.
	UsageByTier(ctx context.Context, from, to time.Time, userID string) ([]TierUsage, error)
}
