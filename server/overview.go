package server

import (
	"context"
	"time"
)

// OverviewDays is how many UTC days (today included) the console's
// overview covers.
const OverviewDays = 30

// MaxOverviewSpeeds bounds the upload speeds an overview reads: the
// newest uploads of the window, at most this many.
const MaxOverviewSpeeds = 100000

// AccountCount is the number of accounts of one tier in one status.
type AccountCount struct {
	Tier   string
	Status AccountStatus
	Count  int64
}

// ProvisionDay counts the provisioning calls (POST
// /api/agentcache/provision in the request log) of one UTC day and how
// many of them succeeded (2xx).
type ProvisionDay struct {
	Day   time.Time
	Calls int64
	OK    int64
}

// UploadDay counts the files recorded on one UTC day: every asset row
// created that day, its bytes (the file's size), and the deduplicated ones
// among them (the asset's stored object was recorded in another
// transaction, before it: its bytes were not stored again).
type UploadDay struct {
	Day        time.Time
	Uploads    int64
	Bytes      int64
	DedupHits  int64
	DedupBytes int64
}

// TierStorage is the storage of the accounts of one tier that are not
// deleted: used and reserved bytes against the sum of their quotas.
type TierStorage struct {
	Tier          string
	Accounts      int64
	UsedBytes     int64
	ReservedBytes int64
	QuotaBytes    int64
}

// OutboxCounts counts the webhook outbox (webhook_events) by state:
// Pending were never tried yet, Failing are pending after a failed
// attempt (they are retried), Failed gave up, Delivered arrived.
type OutboxCounts struct {
	Pending   int64
	Failing   int64
	Failed    int64
	Delivered int64
}

// Overview is what the operator console's overview shows, read from the
// database in one call (the usage costs come from UsageByTier).
type Overview struct {
	From, To     time.Time // the window's first and last UTC day
	Accounts     []AccountCount
	Provisioning []ProvisionDay // one per day of the window, oldest first
	Uploads      []UploadDay    // one per day of the window, oldest first
	// Speeds are the upload speeds (megabits per second, as recorded)
	// of the window's uploads that recorded one, newest first, at most
	// MaxOverviewSpeeds.
	Speeds  []float64
	Storage []TierStorage // ordered by tier
	Outbox  OutboxCounts
}

// OverviewStore is the part of Store the operator console reads.
type OverviewStore interface {
	// Overview reads the figures of the OverviewDays UTC days that end
	// with the day of now: accounts by tier and status, provisioning calls
	// and uploads per day (days without any are present with zeros),
	// upload speeds, storage per tier, the webhook outbox.
	Overview(ctx context.Context, now time.Time) (Overview, error)
	// EdgeNodes lists every relay recorded, live or not (draining ones
	// and those whose heartbeat is late, until PruneEdges deletes them),
	// ordered by ID.
	EdgeNodes(ctx context.Context) ([]EdgeNode, error)
}

// OverviewWindow returns the first and last UTC day of the overview of
// now.
func OverviewWindow(now time.Time) (from, to time.Time) {
	to = UsageDay(now)
	return to.AddDate(0, 0, -(OverviewDays - 1)), to
}
