package server

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Status events sent to an account's webhook_url (issue 19). The store
// records one in the transaction of the change it describes (the outbox);
// server/webhooks delivers them, signed, at least once, in order per
// account. See docs/partner-webhooks.md.
const (
	EventAccountProvisioned = "account.provisioned"
	EventAccountTierChanged = "account.tier_changed"
	EventAccountSuspended   = "account.suspended"
	EventAccountReactivated = "account.reactivated"
	EventAccountDeleted     = "account.deleted"
	EventCredentialsRotated = "credentials.rotated"
	EventCredentialsRevoked = "credentials.revoked"
	EventQuotaWarning       = "quota.warning"
	EventQuotaExceeded      = "quota.exceeded"
)

// WebhookState is where an event is in its delivery.
type WebhookState string

// Webhook event states: pending until a receiver answers 2xx (delivered)
// or the retry window ends (failed). Both ends are final.
const (
	WebhookPending   WebhookState = "pending"
	WebhookDelivered WebhookState = "delivered"
	WebhookFailed    WebhookState = "failed"
)

// MaxWebhookURL bounds a webhook_url, in bytes.
const MaxWebhookURL = 2048

// QuotaThresholds are the storage levels, in percent of the quota, that
// raise a quota event when usage crosses them upward: 80 and 95 are
// quota.warning, 100 (usage at or over the quota) quota.exceeded.
var QuotaThresholds = []int{80, 95, 100}

// QuotaLevel is the highest threshold of QuotaThresholds that used bytes
// reach of a quota of quota bytes, or 0. A zero quota (the free tier) is
// exceeded by any stored byte and reached by none.
func QuotaLevel(used, quota int64) int {
	if quota <= 0 {
		if used > 0 {
			return 100
		}
		return 0
	}
	level := 0
	for _, p := range QuotaThresholds {
		// used/quota >= p/100 without floating point; quotas are at most
		// 10^6 GiB (2^50), so quota*100 cannot overflow.
		if used >= quota || (p < 100 && used*100 >= quota*int64(p)) {
			level = p
		}
	}
	return level
}

// WebhookEventBody is the JSON body of every event, exactly as sent.
type WebhookEventBody struct {
	// ID is unique per event ("evt_" and a UUID) and the same on every
	// attempt: receivers deduplicate on it.
	ID         string           `json:"id"`
	Type       string           `json:"type"`
	UserID     string           `json:"agentcache_user_id"`
	AccountID  string           `json:"account_id"`
	OccurredAt time.Time        `json:"occurred_at"`
	Sequence   int64            `json:"sequence"`
	Data       WebhookEventData `json:"data"`
}

// WebhookEventData is the account as the change left it, and what changed.
// It never holds a secret or a whole key: APIKeyPrefix and
// PreviousKeyPrefix are redacted keys (jt_live_abcd…).
type WebhookEventData struct {
	Tier              string `json:"tier"`
	Status            string `json:"status"`
	StorageQuotaGB    int64  `json:"storage_quota_gb"`
	BandwidthQuotaGB  int64  `json:"bandwidth_quota_gb"`
	JettySpeedEnabled bool   `json:"jetty_speed_enabled"`
	StorageUsedBytes  int64  `json:"storage_used_bytes"`
	StorageQuotaBytes int64  `json:"storage_quota_bytes"`

	PreviousTier         string     `json:"previous_tier,omitempty"`
	PreviousStatus       string     `json:"previous_status,omitempty"`
	APIKeyPrefix         string     `json:"api_key_prefix,omitempty"`
	PreviousKeyPrefix    string     `json:"previous_key_prefix,omitempty"`
	PreviousKeyExpiresAt *time.Time `json:"previous_key_expires_at,omitempty"`
	ThresholdPercent     int        `json:"threshold_percent,omitempty"`
}

// WebhookDataFor is the account part of an event's data.
func WebhookDataFor(a Account) WebhookEventData {
	return WebhookEventData{
		Tier:              a.Tier,
		Status:            string(a.Status),
		StorageQuotaGB:    a.StorageQuotaGB,
		BandwidthQuotaGB:  a.BandwidthQuotaGB,
		JettySpeedEnabled: a.JettySpeedEnabled,
		StorageUsedBytes:  a.StorageUsedBytes,
		StorageQuotaBytes: a.StorageQuotaBytes(),
	}
}

// WebhookEvent is one row of the outbox and its delivery state.
type WebhookEvent struct {
	ID        string
	AccountID string
	UserID    string
	Seq       int64
	Type      string
	Payload   []byte // the body, exactly as sent
	State     WebhookState
	Attempts  int

	NextAttemptAt time.Time
	LastAttemptAt time.Time // zero before the first attempt
	LastStatus    int       // HTTP status of the last answer; 0: none
	LastError     string
	CreatedAt     time.Time
	DeliveredAt   time.Time
	FailedAt      time.Time

	// URL is the account's webhook_url now (set by ClaimWebhookEvents):
	// a changed URL applies to events still pending.
	URL string
}

// WebhookAttempt is the outcome of one delivery attempt.
type WebhookAttempt struct {
	At        time.Time
	Status    int    // HTTP status; 0 when no answer came
	Error     string // empty when delivered
	Delivered bool
	// GiveUp marks the event failed (the retry window is over); otherwise
	// an undelivered event is tried again at NextAttemptAt.
	GiveUp        bool
	NextAttemptAt time.Time
}

// WebhookStore is the outbox. Events are written by the account and
// reservation methods of Store themselves, in their transactions; these
// methods configure the receiver and deliver.
type WebhookStore interface {
	// SetWebhookURL sets (or, with "", removes) the webhook_url of the
	// account of userID. The caller validates it (ValidateWebhookURL).
	// Errors: ENotFound, EAccountDeleted, EInvalid.
	SetWebhookURL(ctx context.Context, userID, url string) (Account, error)
	// ClaimWebhookEvents leases up to limit events for holder until
	// now+lease: for each account, its oldest pending event, when it is
	// due and not leased by another holder. An account whose webhook_url
	// was removed has its pending events failed instead.
	ClaimWebhookEvents(ctx context.Context, holder string, now time.Time, lease time.Duration, limit int) ([]WebhookEvent, error)
	// RecordWebhookAttempt records an attempt on an event claimed by
	// holder and ends the lease. ENotFound when the lease was lost (to
	// another holder after it expired) or the event is not pending.
	RecordWebhookAttempt(ctx context.Context, eventID, holder string, a WebhookAttempt) error
	// WebhookEvents lists an account's newest events, newest first.
	WebhookEvents(ctx context.Context, accountID string, limit int) ([]WebhookEvent, error)
	// CountWebhookEvents counts the events in each state.
	CountWebhookEvents(ctx context.Context) (map[WebhookState]int64, error)
	// PruneWebhookEvents deletes up to limit delivered or failed events
	// created before before, and reports how many.
	PruneWebhookEvents(ctx context.Context, before time.Time, limit int) (int, error)
}

// WebhookURLPolicy says which webhook URLs are accepted.
type WebhookURLPolicy struct {
	// AllowHTTP accepts http:// (else only https://): --dev, or
	// JETTY_WEBHOOK_ALLOW_HTTP for tests and private networks.
	AllowHTTP bool
	// AllowPrivate accepts loopback, private, link-local and other
	// non-public addresses (JETTY_WEBHOOK_ALLOW_PRIVATE, on in --dev).
	AllowPrivate bool
}

// ValidateWebhookURL checks a partner-supplied webhook URL: absolute,
// https (or http when the policy allows it), a host, no user name or
// password, no fragment, at most MaxWebhookURL bytes, and, unless the
// policy allows private addresses, not an IP literal of a loopback,
// private or otherwise non-public address. (Names are checked again when
// the sender connects, against what they resolve to.)
func ValidateWebhookURL(raw string, p WebhookURLPolicy) error {
	if len(raw) > MaxWebhookURL {
		return Errorf(EInvalid, "webhook_url is longer than %d bytes", MaxWebhookURL)
	}
	if strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, "\x00\r\n\t") {
		return Errorf(EInvalid, "webhook_url must not contain spaces or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return Errorf(EInvalid, "webhook_url must be an absolute URL such as https://agentcache.example/webhooks/jetty")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowHTTP {
			return Errorf(EInvalid, "webhook_url must use https:// (http:// is accepted only by a server run with --dev or JETTY_WEBHOOK_ALLOW_HTTP=1)")
		}
	default:
		return Errorf(EInvalid, "webhook_url must use https:// (got scheme %q)", u.Scheme)
	}
	if u.User != nil {
		return Errorf(EInvalid, "webhook_url must not contain a user name or password: events are signed with X-Jetty-Signature instead")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return Errorf(EInvalid, "webhook_url must not contain a fragment (#...)")
	}
	host := u.Hostname()
	if host == "" {
		return Errorf(EInvalid, "webhook_url has no host")
	}
	if ip, err := netip.ParseAddr(host); err == nil && !p.AllowPrivate && !PublicAddr(ip) {
		return Errorf(EInvalid, "webhook_url points at a non-public address (%s); only public addresses are called unless the server runs with JETTY_WEBHOOK_ALLOW_PRIVATE=1", host)
	}
	if !p.AllowPrivate && (strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost")) {
		return Errorf(EInvalid, "webhook_url points at localhost; only public addresses are called unless the server runs with JETTY_WEBHOOK_ALLOW_PRIVATE=1")
	}
	return nil
}

// nonPublic are address ranges a webhook sender never calls unless told to
// (besides what netip's predicates cover).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"), // documentation
}

// PublicAddr reports whether ip is a public unicast address: not
// loopback, private (RFC 1918, fc00::/7), link-local (cloud metadata
// services live there), multicast, unspecified, CGNAT or reserved.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
