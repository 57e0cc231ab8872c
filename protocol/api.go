package protocol

import "time"

// Asset is a stored file as the server describes it: seed 000's shape
// ({id, url, key, size, hash}) plus seed 002's metadata (docs/api.md).
type Asset struct {
	ID   string `json:"id"`
	URL  string `json:"url"`
	Key  string `json:"key"`
	Size int64  `json:"size"`
	Hash string `json:"hash"`
	// HashVerified: the server hashed every byte of the file in order and
	// got Hash. When false, Hash is the uploader's declaration; every
	// chunk was verified, and ContentID names the content
	// (docs/protocol.md, "What the server verifies").
	HashVerified bool   `json:"hash_verified"`
	ContentID    string `json:"content_id,omitempty"`
	Filename     string `json:"filename"`
	ContentType  string `json:"content_type,omitempty"`
	CacheKey     string `json:"cache_key,omitempty"`
	// PipelineID is the AgentCache pipeline the asset belongs to
	// (agentcache_pipeline_id): a lower-case UUID, absent when none.
	PipelineID      string     `json:"agentcache_pipeline_id,omitempty"`
	HitCount        int64      `json:"hit_count"`
	LastAccessed    *time.Time `json:"last_accessed,omitempty"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
	UploadedVia     string     `json:"uploaded_via"`
	UploadSpeedMbps float64    `json:"upload_speed_mbps,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
}

// UploadResponse answers a single-request upload (201).
type UploadResponse struct {
	Success      bool  `json:"success"`
	Deduplicated bool  `json:"deduplicated"`
	Asset        Asset `json:"asset"`
}

// AssetResponse answers GET /api/storage/assets/{id}.
type AssetResponse struct {
	Success bool  `json:"success"`
	Asset   Asset `json:"asset"`
}

// AssetList answers GET /api/storage/assets?limit=&cursor=: a page of
// assets, newest first, and the cursor of the next page when there is one.
// The query may narrow the list: cache_key (exact match) and pipeline_id
// (a UUID); a cursor continues the listing of the same query.
type AssetList struct {
	Assets     []Asset `json:"assets"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// DeleteResponse answers DELETE /api/storage/assets/{id}.
type DeleteResponse struct {
	Success    bool   `json:"success"`
	Deleted    string `json:"deleted"`
	FreedBytes int64  `json:"freed_bytes"`
}

// OpenRequest is the body of POST /api/jetty/sessions: exactly one of
// Manifest and Stream.
type OpenRequest struct {
	Manifest    *Manifest   `json:"manifest,omitempty"`
	Stream      *StreamSpec `json:"stream,omitempty"`
	ContentType string      `json:"content_type,omitempty"`
	CacheKey    string      `json:"cache_key,omitempty"`
	// TTL is the asset's lifetime in seconds (0: no expiry).
	TTL int64 `json:"ttl,omitempty"`
	// PipelineID is the AgentCache pipeline (a UUID) the asset will
	// belong to, recorded with it at completion (or at once when the
	// open is answered by deduplication). Optional: a server that does
	// not know the field ignores it, and a client that leaves it out
	// records no pipeline.
	PipelineID string `json:"agentcache_pipeline_id,omitempty"`
}

// StreamSpec opens a session whose manifest comes with the completion: a
// stream of unknown length, or (Size > 0) a file of known size whose
// chunks are hashed and sent in one pass (the pipelined path,
// docs/protocol.md). A sized session reserves exactly Size bytes, and the
// tier's per-file limit and the quota are checked before any byte moves.
type StreamSpec struct {
	Name      string `json:"name"`
	ChunkSize int64  `json:"chunk_size"`
	// Size is the file's size; 0 or absent: unknown (a stream).
	Size int64 `json:"size,omitempty"`
	// Ref is the client's own name for this upload (ValidClientRef),
	// chosen before the open and kept in its journal: an open naming the
	// ref of the account's open session answers that session (200)
	// instead of reserving another, so a client killed between the open
	// and its journal finds its session again.
	Ref string `json:"ref,omitempty"`
}

// ValidClientRef reports whether ref can name an upload: 16 to 64
// characters of A-Z, a-z, 0-9, '-' and '_'.
func ValidClientRef(ref string) bool {
	if len(ref) < 16 || len(ref) > 64 {
		return false
	}
	for _, c := range ref {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NormalizePipelineID returns an AgentCache pipeline id in canonical form
// (the 36-character hyphenated UUID, lower case) and whether id is one:
// 8-4-4-4-12 hex digits, either case. Other UUID spellings (braces,
// "urn:uuid:", no hyphens) are not, so one pipeline has one spelling.
func NormalizePipelineID(id string) (string, bool) {
	if len(id) != 36 {
		return "", false
	}
	b := []byte(id)
	for i, c := range b {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + ('a' - 'A')
		default:
			return "", false
		}
	}
	return string(b), true
}

// OpenResponse answers a session open: either Deduplicated is true and
// Asset is the new asset (no byte needs to move, 200), or Session is set
// (201 when created, 200 when the server already had one for this
// content: a resumed or concurrent upload).
type OpenResponse struct {
	Deduplicated bool     `json:"deduplicated"`
	Session      *Session `json:"session,omitempty"`
	Asset        *Asset   `json:"asset,omitempty"`
}

// Session is an open upload session.
type Session struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	// ChunkURL is the PUT address of chunks, with "{index}" standing for
	// the chunk index.
	ChunkURL       string    `json:"chunk_url"`
	UploadToken    string    `json:"upload_token"`
	TokenExpiresAt time.Time `json:"token_expires_at"`
	// Missing lists the chunks the server does not hold yet.
	Missing  []int    `json:"missing"`
	Strategy Strategy `json:"strategy"`
	// Size echoes StreamSpec.Size of a sized session: a server that
	// leaves it out reserved for a stream of unknown length (an older
	// one), and presigns no part for it.
	Size int64 `json:"size,omitempty"`
}

// Strategy is the server's advice for a session.
type Strategy struct {
	// Workers is the suggested number of parallel chunk PUTs.
	Workers int `json:"workers"`
	// MaxWorkers is the tier's ceiling, enforced by the server.
	MaxWorkers int `json:"max_workers"`
	// ChunkSize is the session's chunk size.
	ChunkSize int64 `json:"chunk_size"`
}

// Session states as SessionState reports them.
const (
	StateOpen       = "open"
	StateCompleting = "completing"
	StateCompleted  = "completed"
	StateAborted    = "aborted"
	// StateExpired: open, but past its expiry.
	StateExpired = "expired"
)

// SessionState answers GET /api/jetty/sessions/{id}.
type SessionState struct {
	ID string `json:"id"`
	// State is open, completing, completed, aborted or expired.
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	Held      []int     `json:"held"`
	Missing   []int     `json:"missing"`
	AssetID   string    `json:"asset_id,omitempty"`
	// ChunkURL and Strategy (open sessions) are what a client resuming
	// the session needs besides a fresh token (POST …/token): a sized
	// session has no manifest to reopen it by.
	ChunkURL string    `json:"chunk_url,omitempty"`
	Strategy *Strategy `json:"strategy,omitempty"`
}

// Token answers POST /api/jetty/sessions/{id}/token: a fresh upload token.
type Token struct {
	UploadToken    string    `json:"upload_token"`
	TokenExpiresAt time.Time `json:"token_expires_at"`
}

// ChunkAck answers a stored chunk PUT.
type ChunkAck struct {
	Index  int    `json:"index"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Edge is the relay that took the chunk (relays only).
	Edge string `json:"edge,omitempty"`
}

// CompleteRequest is the body of POST /api/jetty/sessions/{id}/complete:
// the manifest (required for a stream session, optional otherwise).
type CompleteRequest struct {
	Manifest *Manifest `json:"manifest,omitempty"`
}

// CompleteResponse answers a completion.
type CompleteResponse struct {
	Deduplicated bool  `json:"deduplicated"`
	Asset        Asset `json:"asset"`
}

// AbortResponse answers DELETE /api/jetty/sessions/{id}.
type AbortResponse struct {
	Success bool   `json:"success"`
	ID      string `json:"id"`
	State   string `json:"state"`
}

// MaxPresign is the most parts one presign call may ask for.
const MaxPresign = 64

// PresignRequest asks for presigned part URLs of a session's chunks:
// POST /api/jetty/sessions/{id}/presign with the upload token.
type PresignRequest struct {
	Chunks []int `json:"chunks"`
	// SHA256 is the hex SHA-256 of each chunk of Chunks, in the same
	// order: required for a sized session (no manifest until it
	// completes; the store checks each part against the hash signed into
	// its URL), refused for a session opened with a manifest.
	SHA256 []string `json:"sha256,omitempty"`
}

// PresignedPart is where and how to PUT one chunk straight to storage:
// the request must carry Headers exactly (the chunk's SHA-256 is one of
// them, signed into the URL) and the chunk's bytes.
type PresignedPart struct {
	Index     int               `json:"index"`
	URL       string            `json:"url"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// PresignResponse answers a presign call.
type PresignResponse struct {
	Parts []PresignedPart `json:"parts"`
}

// Whoami answers GET /api/whoami: the account the credentials belong to.
type Whoami struct {
	AccountID         string    `json:"account_id"`
	UserID            string    `json:"agentcache_user_id"`
	Email             string    `json:"email"`
	Tier              string    `json:"tier"`
	Status            string    `json:"status"`
	JettySpeedEnabled bool      `json:"jetty_speed_enabled"`
	S3Prefix          string    `json:"s3_prefix"`
	CreatedAt         time.Time `json:"created_at"`
}

// Usage is one resource in the quota answer: the union of seed 000's
// {used_gb, quota_gb, percent} and seed 002's {quota_gb, used_gb,
// available_gb, percent_used}, plus exact byte counts.
type Usage struct {
	UsedGB         float64 `json:"used_gb"`
	QuotaGB        int64   `json:"quota_gb"`
	AvailableGB    float64 `json:"available_gb"`
	Percent        float64 `json:"percent"`
	PercentUsed    float64 `json:"percent_used"`
	UsedBytes      int64   `json:"used_bytes"`
	ReservedBytes  int64   `json:"reserved_bytes,omitempty"`
	QuotaBytes     int64   `json:"quota_bytes"`
	AvailableBytes int64   `json:"available_bytes"`
}

// Limits are a tier's per-file and per-minute limits.
type Limits struct {
	MaxFileSizeMB      int64 `json:"max_file_size_mb"`
	MaxFileSizeBytes   int64 `json:"max_file_size_bytes"`
	RateLimitPerMinute int   `json:"rate_limit_per_minute"`
}

// Quota answers GET /api/agentcache/quota.
type Quota struct {
	Tier              string `json:"tier"`
	Status            string `json:"status"`
	JettySpeedEnabled bool   `json:"jetty_speed_enabled"`
	Storage           Usage  `json:"storage"`
	Bandwidth         Usage  `json:"bandwidth"`
	Limits            Limits `json:"limits"`
	// Tiers are the limits of every tier, smallest quota first, so that a
	// client can say which tier takes a file too large for this one.
	Tiers []TierLimits `json:"tiers,omitempty"`
}

// TierLimits are one tier's storage quota and largest file.
type TierLimits struct {
	Tier              string `json:"tier"`
	StorageQuotaBytes int64  `json:"storage_quota_bytes"`
	MaxFileSizeBytes  int64  `json:"max_file_size_bytes"`
}
