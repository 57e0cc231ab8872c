package protocol

// The partner's usage report: GET /api/agentcache/usage (docs/api.md,
// "Usage and cost"). Money is a decimal string of US dollars with four
// decimals ("1.5806"), exact; a cost is null when the tier's price is
// custom (enterprise).

// UsageDay is one account's usage on one UTC day.
type UsageDay struct {
	Date string `json:"date"` // YYYY-MM-DD, UTC
	Tier string `json:"tier"` // the account's tier at the end of the day
	// StorageBytes is what the account stored at the end of the day (for
	// a provisional day: when it was last rolled up).
	StorageBytes  int64   `json:"storage_bytes"`
	BytesIn       int64   `json:"bytes_in"`
	BytesOut      int64   `json:"bytes_out"`
	Requests      int64   `json:"requests"`
	StorageCost   *string `json:"storage_cost"`
	BandwidthCost *string `json:"bandwidth_cost"`
	TotalCost     *string `json:"total_cost"`
	// Final: the day is over and its row will never change. Today's row
	// (and yesterday's in the first minutes after midnight) is provisional.
	Final bool `json:"final"`
}

// UsageTotals adds up days.
type UsageTotals struct {
	Accounts        int64 `json:"accounts,omitempty"` // distinct accounts (per-tier totals)
	Days            int64 `json:"days"`
	StorageByteDays int64 `json:"storage_byte_days"` // sum of the days' storage_bytes
	BytesIn         int64 `json:"bytes_in"`
	BytesOut        int64 `json:"bytes_out"`
	Requests        int64 `json:"requests"`
	// Priced is false when some day had a custom price: the costs then
	// add up the priced days only.
	Priced        bool   `json:"priced"`
	StorageCost   string `json:"storage_cost"`
	BandwidthCost string `json:"bandwidth_cost"`
	TotalCost     string `json:"total_cost"`
}

// UsageAccount is one account's days and their totals.
type UsageAccount struct {
	UserID string      `json:"user_id"`
	Days   []UsageDay  `json:"days"`
	Totals UsageTotals `json:"totals"`
}

// UsageTier is the totals of one tier over the range, all accounts (or
// the user_id asked for), whatever the page.
type UsageTier struct {
	Tier string `json:"tier"`
	UsageTotals
}

// UsageResponse answers GET /api/agentcache/usage.
type UsageResponse struct {
	From     string         `json:"from"`
	To       string         `json:"to"`
	Currency string         `json:"currency"`
	Accounts []UsageAccount `json:"accounts"`
	Tiers    []UsageTier    `json:"tiers"`
	// Totals adds up every tier (every account, not only this page).
	Totals UsageTotals `json:"totals"`
	// NextCursor, when not empty, is the cursor= of the next page of
	// accounts.
	NextCursor string `json:"next_cursor,omitempty"`
}
