// Package server holds the domain of the jetty companion server: accounts,
// tiers, quota reservations and request logs, the one error type the server
// speaks, and the small interfaces its technology adapters implement
// (Store for SQL; Limiter, Cache and Semaphore for Redis or in-process
// memory).
//
// Adapters live in sub-packages, one per technology: server/sqlstore
// (SQLite and PostgreSQL), server/redis and server/memory. The HTTP API is in
// server/api. Nothing in this package does I/O.
package server

import (
	"context"
	"time"
)

// GiB and MiB are the units quotas are expressed in. Tier quotas in the
// seeds are "GB" and "MB"; jetty reads them as binary units (see
// docs/decisions.md).
const (
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// Tier is one row of tier_configs: what a plan allows.
type Tier struct {
	Name               string `json:"tier"`
	StorageQuotaGB     int64  `json:"storage_quota_gb"`
	BandwidthQuotaGB   int64  `json:"bandwidth_quota_gb"`
	JettySpeedEnabled  bool   `json:"jetty_speed_enabled"`
	RateLimitPerMinute int    `json:"rate_limit_per_minute"`
	MaxFileSizeMB      int64  `json:"max_file_size_mb"`
}

// StorageQuotaBytes is the tier's storage quota in bytes.
func (t Tier) StorageQuotaBytes() int64 { return t.StorageQuotaGB * GiB }

// BandwidthQuotaBytes is the tier's bandwidth quota in bytes.
func (t Tier) BandwidthQuotaBytes() int64 { return t.BandwidthQuotaGB * GiB }

// MaxFileSizeBytes is the largest single file the tier accepts.
func (t Tier) MaxFileSizeBytes() int64 { return t.MaxFileSizeMB * MiB }

// AccountStatus is the lifecycle state of an account.
type AccountStatus string

// Account states, as in seed 002's check constraint.
const (
	StatusActive    AccountStatus = "active"
	StatusSuspended AccountStatus = "suspended"
	StatusDeleted   AccountStatus = "deleted"
)

// Account is a storage account provisioned for one AgentCache user.
//
// The API key is an identifier (like an access key id) and is stored as is;
// the API secret is never stored, only its SHA-256 (SecretHash, hex).
type Account struct {
	ID                string
	UserID            string // agentcache_user_id, validated by ValidateUserID
	Email             string
	Tier              string
	APIKey            string
	SecretHash        string
	StorageQuotaGB    int64
	BandwidthQuotaGB  int64
	JettySpeedEnabled bool
	S3Bucket          string
	S3Prefix          string
	Status            AccountStatus

	StorageUsedBytes     int64 // committed bytes of stored objects
	StorageReservedBytes int64 // bytes held by open reservations
	BandwidthUsedBytes   int64

	CreatedAt    time.Time
	UpdatedAt    time.Time
	LastAccessed time.Time // zero when never used

	// The outgoing credentials of a rotation with an overlap window: they
	// keep working until PrevKeyExpiresAt (all empty/zero when none).
	PrevAPIKey       string
	PrevSecretHash   string
	PrevKeyExpiresAt time.Time

	// DeletedAt is when the account was deleted (zero unless deleted);
	// PurgedAt when the jobs removed its data after the grace period (zero
	// until then). A purged account stays as a tombstone.
	DeletedAt time.Time
	PurgedAt  time.Time

	// WebhookURL is where status events are sent (empty: none are
	// recorded); see WebhookStore.
	WebhookURL string
}

// MaxKeyOverlap is the longest overlap window a credential rotation may
// ask for.
const MaxKeyOverlap = 7 * 24 * time.Hour

// StorageQuotaBytes is the account's storage quota in bytes.
func (a Account) StorageQuotaBytes() int64 { return a.StorageQuotaGB * GiB }

// BandwidthQuotaBytes is the account's bandwidth quota in bytes.
func (a Account) BandwidthQuotaBytes() int64 { return a.BandwidthQuotaGB * GiB }

// NewAccount is what provisioning hands the store. Quotas and the
// JettySpeed flag are copied from the tier by the store, in the same
// statement, so a concurrent tier change cannot tear them.
type NewAccount struct {
	UserID     string
	Email      string
	Tier       string
	APIKey     string
	SecretHash string
	S3Bucket   string
	S3Prefix   string
	// WebhookURL, when set, receives the account's status events, the
	// first being account.provisioned. The caller validates it
	// (ValidateWebhookURL).
	WebhookURL string
}

// Reservation holds quota bytes for an upload that has not finished yet.
// It is committed (bytes become used) or released (bytes return), exactly
// once; expired reservations are released by a sweeper.
type Reservation struct {
	ID        string
	AccountID string
	Bytes     int64
	CreatedAt time.Time
	ExpiresAt time.Time
}

// APIRequest is one row of api_requests. It never holds a credential:
// Endpoint is the route pattern, not the raw URL.
type APIRequest struct {
	AccountID        string // empty when the caller was not authenticated
	Method           string
	Endpoint         string
	StatusCode       int
	ResponseTimeMS   int64
	BytesTransferred int64
	ErrorMessage     string
	IPAddress        string
	UserAgent        string
	CreatedAt        time.Time
}

// Store is the server's database. Implementations: server/sqlstore
// (SQLite, PostgreSQL). All of them pass server/storetest.
//
// Errors are *Error with the codes below: ENotFound for a missing row,
// EAccountExists when the user id is taken, EUnknownTier for a tier not in
// tier_configs, EQuotaExceeded when a reservation does not fit.
//
// Every change a partner hears about (provisioning, tier, status,
// credentials, storage crossing a quota threshold) records its status
// event (WebhookStore) in the same transaction, when the account has a
// webhook_url.
type Store interface {
	Ping(ctx context.Context) error
	Close() error

	Tiers(ctx context.Context) ([]Tier, error)
	Tier(ctx context.Context, name string) (Tier, error)

	CreateAccount(ctx context.Context, n NewAccount) (Account, error)
	AccountByID(ctx context.Context, id string) (Account, error)
	AccountByUserID(ctx context.Context, userID string) (Account, error)
	// AccountByAPIKey finds the account by its current or previous key
	// (a previous key whatever its expiry: callers check it).
	AccountByAPIKey(ctx context.Context, apiKey string) (Account, error)
	// ChangeTier moves an account to another tier, copying its quotas.
	ChangeTier(ctx context.Context, userID, tier string) (Account, error)
	SetStatus(ctx context.Context, userID string, status AccountStatus) (Account, error)
	// RotateCredentials replaces the key and secret hash of an account;
	// the outgoing pair keeps working until prevUntil (zero: not at all).
	RotateCredentials(ctx context.Context, userID, apiKey, secretHash string, prevUntil time.Time) (Account, error)
	// RevokePreviousCredentials ends a rotation's overlap at once.
	RevokePreviousCredentials(ctx context.Context, userID string) (Account, error)
	// TouchAccount records a use of the account (last_accessed).
	TouchAccount(ctx context.Context, accountID string, at time.Time) error

	// Reserve holds bytes of storage quota for accountID until ttl passes.
	// It succeeds only if used + reserved + bytes <= quota, atomically, so
	// concurrent reservations can never overshoot. Only active accounts
	// can reserve.
	Reserve(ctx context.Context, accountID string, bytes int64, ttl time.Duration) (Reservation, error)
	// CommitReservation turns a reservation into used storage. actual is
	// the number of bytes really stored (at most the reserved amount; 0
	// when deduplication stored nothing new). The rest is released.
	CommitReservation(ctx context.Context, reservationID string, actual int64) error
	// ReleaseReservation returns a reservation's bytes to the account.
	ReleaseReservation(ctx context.Context, reservationID string) error
	// ReleaseExpiredReservations releases every reservation that expired
	// before now and reports how many it released.
	ReleaseExpiredReservations(ctx context.Context, now time.Time) (int, error)

	AssetStore
	SessionStore
	EdgeStore
	RetentionStore
	UsageStore
	WebhookStore
	OverviewStore

	LogRequests(ctx context.Context, reqs []APIRequest) error
	// RecentRequests lists the newest logged requests, newest first
	// (all accounts when accountID is empty).
	RecentRequests(ctx context.Context, accountID string, limit int) ([]APIRequest, error)
}

// LimitResult is the answer of a Limiter.
type LimitResult struct {
	Allowed    bool
	Limit      int
	Remaining  int
	RetryAfter time.Duration // when not allowed: how long until a request would pass
}

// Limiter counts requests per key in fixed windows. Implementations:
// server/memory (one process) and server/redis (shared by all instances).
type Limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (LimitResult, error)
}

// Cache is a small key-value store with expiry. Implementations:
// server/memory and server/redis. Values are opaque bytes; callers encrypt
// anything secret before storing it.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only if key is absent and reports whether it did.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	Delete(ctx context.Context, key string) error
}

// Semaphore caps how many holders hold slots under one key at once: the
// chunk uploads in flight on one upload session, whichever instance took
// them. Implementations: server/memory (one process) and server/redis
// (shared by every instance on the same Redis); both pass
// server/kvtest.RunSemaphore.
//
// A slot is a lease: it lapses lease after it was taken or last renewed,
// so a holder that dies without releasing (its process killed mid-chunk)
// frees its slot within a bounded time. Holders renew well inside the
// lease while they work.
type Semaphore interface {
	// Acquire takes one of limit slots under key for lease. ok is false
	// when limit live slots are held; id names the slot taken otherwise.
	// A limit or lease that is not positive is an EInvalid error.
	Acquire(ctx context.Context, key string, limit int, lease time.Duration) (id string, ok bool, err error)
	// Renew extends the slot's lease to lease from now. It reports false
	// when the slot is no longer held (released, or lapsed: then it may
	// have been given to another holder, and is not taken back).
	Renew(ctx context.Context, key, id string, lease time.Duration) (bool, error)
	// Release gives the slot back; releasing a slot not held (twice, or
	// after it lapsed) changes nothing.
	Release(ctx context.Context, key, id string) error
}

// CheckSlot refuses a Semaphore limit or lease that is not positive
// (EInvalid), as every Semaphore does.
func CheckSlot(limit int, lease time.Duration) error {
	if limit <= 0 {
		return Errorf(EInvalid, "slot limit must be positive, got %d", limit)
	}
	if lease <= 0 {
		return Errorf(EInvalid, "slot lease must be positive, got %s", lease)
	}
	return nil
}
