package server

import (
	"context"
	"time"
)

// Asset is one named file of an account (a row of agentcache_assets).
//
// Deduplication is per account: assets of one account with the same
// content id (ContentID) share one stored object (ObjectKey), counted once
// against the quota. A content id is always one the server verified: the
// whole-file SHA-256 where it hashed every byte in order, else the
// manifest's chunk-list id ("m1-…", see engine.Manifest.ChunkListID),
// which the per-chunk checks verify (docs/protocol.md). Deleting an asset deletes the object only when no other asset of
// the account references it. Accounts never share objects, so nothing about
// one account's content can be learned from another.
type Asset struct {
	ID          string
	AccountID   string
	ObjectKey   string // s3_key: users/{user_id}/{unix_ms}-{random}{.ext}
	Bucket      string
	Filename    string // the user's name for it: metadata, never a path
	ContentType string
	Size        int64
	SHA256      string // hex, the whole file's, as the uploader declared it
	// SHA256Verified: the server hashed every byte of the file in order
	// and got SHA256. When false, SHA256 is the uploader's claim: every
	// chunk was verified (ContentID), the whole-file hash was not.
	SHA256Verified bool
	// ContentID is the verified identity the account's object is found
	// by for deduplication, and the ETag: SHA256 when verified, else the
	// chunk-list id "m1-…".
	ContentID string
	CacheKey  string
	// PipelineID is the AgentCache pipeline the asset belongs to
	// (agentcache_pipeline_id): a UUID in canonical form
	// (NormalizePipelineID), "" when none.
	PipelineID      string
	HitCount        int64
	LastAccessed    time.Time // zero when never downloaded
	ExpiresAt       time.Time // zero when it never expires
	UploadedVia     string    // "api" or "jettyspeed"
	UploadSpeedMbps float64
	CreatedAt       time.Time
}

// NewAsset is a finished upload to record.
type NewAsset struct {
	AccountID   string
	ObjectKey   string // where the bytes were written for this upload
	Bucket      string
	Filename    string
	ContentType string
	Size        int64
	SHA256      string // hex
	// SHA256Verified says the server computed SHA256 from the bytes.
	SHA256Verified bool
	// ContentID is the verified identity deduplication uses: SHA256 (then
	// SHA256Verified must be set) or a chunk-list id "m1-" + 64 hex. Empty
	// means SHA256, for callers that verified it.
	ContentID string
	CacheKey  string
	// PipelineID is "" or a UUID in canonical form (NormalizePipelineID).
	PipelineID      string
	ExpiresAt       time.Time
	UploadedVia     string
	UploadSpeedMbps float64
	// SessionID is the upload session (state completing) whose completion
	// this is, if any: CreateAsset moves it to completed in the same
	// transaction, so that no crash leaves the asset recorded and its
	// session still completing (a resume would then record the content a
	// second time).
	SessionID string
}

// GarbageObject is a stored object (or multipart upload) due for removal:
// a crashed or abandoned upload, the redundant copy of a deduplicated
// upload, or the object of a deleted asset.
type GarbageObject struct {
	ObjectKey string
	UploadID  string // multipart upload to abort, when there is one
	NotBefore time.Time
}

// AssetFilter narrows a listing to the assets matching every field set;
// the zero value lists all of an account's assets.
type AssetFilter struct {
	// CacheKey, when set, matches assets recorded with exactly that cache
	// key (byte for byte: no case folding, no trimming).
	CacheKey string
	// PipelineID, when set, matches assets of that pipeline: a UUID
	// (NormalizePipelineID; either case).
	PipelineID string
	// Name, when set, matches assets whose file name is exactly Name
	// (byte for byte, as CacheKey), the names the command line resolves.
	Name string
	// NamePrefix, when set, matches assets whose file name begins with it
	// (byte for byte: no case folding, no wildcards).
	NamePrefix string
}

// AssetPage is one page of a listing.
type AssetPage struct {
	Assets []Asset
	// Next is the cursor of the next page; empty on the last page.
	Next string
}

// AssetStore is the part of Store that tracks objects and assets. Every
// method that frees or adds storage adjusts storage_used_bytes in the same
// transaction.
type AssetStore interface {
	// AddPendingObject records, before any byte is written, that key (and
	// uploadID, for a multipart upload) is being written. Unless the
	// upload is recorded by CreateAsset first, the object becomes garbage
	// at notBefore and the collector removes it: a crash never leaks it.
	AddPendingObject(ctx context.Context, key, uploadID string, notBefore time.Time) error

	// CreateAsset records a finished upload in one transaction, claiming
	// its pending object and settling reservationID (may be empty when no
	// reservation was taken):
	//   - if the account already stores an object with n.ContentID, the new
	//     asset points at that object (its reference count grows), the
	//     reservation is committed with 0 bytes, and n.ObjectKey becomes
	//     garbage due now: deduplicated is true and the caller should
	//     delete that object and call ObjectCollected;
	//     When that object already has an asset of the same entry (the
	//     same Filename, SHA256, CacheKey and PipelineID), no asset is
	//     added: that asset is returned (its expiry becomes the later of
	//     the two, none when either has none) and the reference taken is
	//     given back; the reservation, garbage and session are handled
	//     as for any deduplicated upload;
	//   - otherwise n.ObjectKey becomes the account's object for that
	//     content id and the reservation is committed with n.Size bytes.
	// With n.SessionID set, that session of the account moves from
	// completing to completed, recording the asset, in the same
	// transaction; a session in another state is EConflict.
	// If the pending record of n.ObjectKey is gone or claimed by the
	// collector (the upload outlived its deadline), CreateAsset fails with
	// EConflict and changes nothing.
	CreateAsset(ctx context.Context, n NewAsset, reservationID string) (a Asset, deduplicated bool, err error)

	// LinkAsset records a new asset for content the account already holds
	// (an upload answered by deduplication before any byte moved), or
	// returns the asset of the same entry as CreateAsset does. It fails
	// with ENotFound when the account has no object with n.ContentID.
	LinkAsset(ctx context.Context, n NewAsset) (Asset, error)

	// AssetByID returns an asset of accountID; another account's asset is
	// ENotFound.
	AssetByID(ctx context.Context, accountID, id string) (Asset, error)
	// AssetByContent returns the newest asset of accountID with that
	// content id (a verified whole-file SHA-256 in hex, or a chunk-list id
	// "m1-…"), or ENotFound.
	AssetByContent(ctx context.Context, accountID, contentID string) (Asset, error)
	// ListAssets lists an account's assets matching f, newest first,
	// limit per page (1..1000), continuing after cursor (empty for the
	// first page; a cursor continues the listing it came from, so pass
	// the same filter). A malformed cursor, or a filter value no asset
	// could hold (a pipeline id that is not a UUID, a cache key or name
	// longer than any stored), is EInvalid. Another account's assets never match.
	ListAssets(ctx context.Context, accountID string, f AssetFilter, cursor string, limit int) (AssetPage, error)
	// DeleteAsset removes an asset. When it was the last reference to its
	// object, the object's bytes are freed from storage_used_bytes and the
	// object key is returned as garbage due now (the caller deletes it and
	// calls ObjectCollected); otherwise garbageKey is empty.
	DeleteAsset(ctx context.Context, accountID, id string) (garbageKey string, err error)
	// DeleteExpiredAssets deletes up to limit assets whose expires_at is
	// before now, as DeleteAsset does, and reports how many it deleted.
	DeleteExpiredAssets(ctx context.Context, now time.Time, limit int) (int, error)

	// RecordDownload counts a download of bytes: hit_count+1 and
	// last_accessed on the asset, bytes added to the account's bandwidth
	// for the calendar month (UTC) of now.
	RecordDownload(ctx context.Context, accountID, assetID string, bytes int64, now time.Time) error
	// BandwidthUsed returns the bytes downloaded by the account in the
	// calendar month (UTC) of now.
	BandwidthUsed(ctx context.Context, accountID string, now time.Time) (int64, error)

	// ClaimGarbage claims up to limit garbage objects due before now, so
	// no other collector takes them for the next lease period, and
	// returns them. Pending objects whose notBefore has passed count as
	// garbage (and can then no longer be recorded by CreateAsset).
	ClaimGarbage(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]GarbageObject, error)
	// ObjectCollected forgets a garbage object once its bytes are gone.
	ObjectCollected(ctx context.Context, key string) error
	// IsKnownObject reports whether key is recorded at all (as an asset's
	// object, pending, or garbage): the orphan sweep leaves such keys to
	// the collector.
	IsKnownObject(ctx context.Context, key string) (bool, error)

	// TryLease takes or renews the named lease for holder until now+ttl,
	// and reports whether holder has it. Jobs use it so that one server
	// instance at a time runs them.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}
