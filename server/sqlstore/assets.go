package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/jettythunder/jetty/server"
)

// Bounds of asset metadata. Longer values are EInvalid rather than cut:
// a cut key or content type would be wrong, not just short.
const (
	maxObjectKeyLen   = 1024
	maxFilenameLen    = 1024
	maxContentTypeLen = 100 // VARCHAR(100) in seed 002
	maxCacheKeyLen    = 1024
	maxBucketLen      = 255
	maxUploadIDLen    = 1024
	// maxSpeedMbps is the largest value of DECIMAL(10,2).
	maxSpeedMbps = 99999999.99
)

// Page sizes of ListAssets.
const (
	minListLimit = 1
	maxListLimit = 1000
)

// createAttempts bounds how often CreateAsset and LinkAsset retry finding
// or creating the account's object for a hash when the object they found
// was deleted by a concurrent DeleteAsset before they could reference it.
const createAttempts = 4

var (
	uniquePendingKey = uniqueKey{"blob_garbage_pkey", "blob_garbage.object_key"}
	uniqueObjectKey  = uniqueKey{"stored_objects_object_key_key", "stored_objects.object_key"}
)

const assetCols = `id, account_id, s3_key, s3_bucket, filename, content_type, size_bytes, content_hash, cache_key,
  hit_count, last_accessed, expires_at, uploaded_via, upload_speed_mbps, created_at, sha256_verified, content_id,
  agentcache_pipeline_id`

func scanAsset(r scanner) (server.Asset, error) {
	var (
		a                       server.Asset
		contentType, cacheKey   sql.NullString
		pipelineID              sql.NullString
		lastAccessed, expiresAt sql.NullTime
		speed                   sql.NullFloat64
	)
	err := r.Scan(&a.ID, &a.AccountID, &a.ObjectKey, &a.Bucket, &a.Filename, &contentType, &a.Size, &a.SHA256, &cacheKey,
		&a.HitCount, &lastAccessed, &expiresAt, &a.UploadedVia, &speed, &a.CreatedAt, &a.SHA256Verified, &a.ContentID,
		&pipelineID)
	if err != nil {
		return server.Asset{}, err
	}
	a.ContentType = contentType.String
	a.CacheKey = cacheKey.String
	a.PipelineID = pipelineID.String
	if lastAccessed.Valid {
		a.LastAccessed = lastAccessed.Time.UTC()
	}
	if expiresAt.Valid {
		a.ExpiresAt = expiresAt.Time.UTC()
	}
	a.UploadSpeedMbps = speed.Float64
	a.CreatedAt = a.CreatedAt.UTC()
	return a, nil
}

// nullTime maps the zero time to NULL and any other to its stored form.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ts(t)
}

// validText reports whether s fits a text column: valid UTF-8 without NUL
// bytes (PostgreSQL refuses both), at most limit bytes.
func validText(s string, limit int) bool {
	return len(s) <= limit && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validKey reports whether an id or key can be looked up at all:
// PostgreSQL refuses invalid UTF-8 and NUL bytes in text parameters, and
// no row can hold them, so such a value is simply not found.
func validKey(v string) bool {
	return utf8.ValidString(v) && !strings.ContainsRune(v, 0)
}

// normalizeContentID returns id in canonical form if it is a content id:
// a hex SHA-256 or a chunk-list id ("m1-" and 64 hex digits).
func normalizeContentID(id string) (string, bool) {
	id = strings.ToLower(id)
	if rest, ok := strings.CutPrefix(id, chunkListPrefix); ok {
		h, ok := normalizeHash(rest)
		return chunkListPrefix + h, ok
	}
	return normalizeHash(id)
}

// chunkListPrefix starts a chunk-list content id (engine.ChunkListPrefix).
const chunkListPrefix = "m1-"

// normalizeHash returns h in lower case if it is a hex SHA-256.
func normalizeHash(h string) (string, bool) {
	if len(h) != 64 {
		return "", false
	}
	h = strings.ToLower(h)
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return h, true
}

func validObjectKey(key string) error {
	if key == "" || !validText(key, maxObjectKeyLen) {
		return server.Errorf(server.EInvalid, "object key must be 1 to %d bytes of UTF-8", maxObjectKeyLen)
	}
	return nil
}

// checkNewAsset validates n and normalizes it in place: the hash in lower
// case, UploadedVia defaulted to "api", the speed rounded to the column's
// two decimals. The object key is checked by the callers that use it.
func checkNewAsset(n *server.NewAsset) error {
	if n.AccountID == "" || !validKey(n.AccountID) {
		return server.Errorf(server.ENotFound, "account not found")
	}
	h, ok := normalizeHash(n.SHA256)
	if !ok {
		return server.Errorf(server.EInvalid, "content hash must be a hex SHA-256 (64 hex digits)")
	}
	n.SHA256 = h
	switch id, ok := normalizeContentID(n.ContentID); {
	case n.ContentID == "" && n.SHA256Verified:
		n.ContentID = h
	case n.ContentID == "":
		return server.Errorf(server.EInvalid, "a content id is needed when the whole-file hash is not verified")
	case !ok:
		return server.Errorf(server.EInvalid, "content id must be a hex SHA-256 or %q and 64 hex digits", chunkListPrefix)
	case !strings.HasPrefix(id, chunkListPrefix) && (id != h || !n.SHA256Verified):
		return server.Errorf(server.EInvalid, "a content id that is a SHA-256 must be the verified whole-file hash")
	default:
		n.ContentID = id
	}
	switch {
	case n.Size < 0 || n.Size > maxReserveBytes:
		return server.Errorf(server.EInvalid, "size must be between 0 and %d bytes, got %d", int64(maxReserveBytes), n.Size)
	case !validText(n.Filename, maxFilenameLen):
		return server.Errorf(server.EInvalid, "file name must be at most %d bytes of UTF-8 without NUL", maxFilenameLen)
	case !validText(n.ContentType, maxContentTypeLen):
		return server.Errorf(server.EInvalid, "content type must be at most %d bytes of UTF-8", maxContentTypeLen)
	case !validText(n.CacheKey, maxCacheKeyLen):
		return server.Errorf(server.EInvalid, "cache key must be at most %d bytes of UTF-8 without NUL", maxCacheKeyLen)
	case !validText(n.Bucket, maxBucketLen):
		return server.Errorf(server.EInvalid, "bucket name must be at most %d bytes", maxBucketLen)
	case n.SessionID != "" && !server.ValidSessionID(n.SessionID):
		return server.Errorf(server.EInvalid, "malformed upload session id")
	}
	p, err := server.NormalizePipelineID(n.PipelineID)
	if err != nil {
		return err
	}
	n.PipelineID = p
	switch n.UploadedVia {
	case "":
		n.UploadedVia = "api"
	case "api", "jettyspeed":
	default:
		return server.Errorf(server.EInvalid, `uploaded_via must be "api" or "jettyspeed"`)
	}
	if math.IsNaN(n.UploadSpeedMbps) || n.UploadSpeedMbps < 0 {
		return server.Errorf(server.EInvalid, "upload speed must be a non-negative number")
	}
	n.UploadSpeedMbps = min(n.UploadSpeedMbps, maxSpeedMbps)
	n.UploadSpeedMbps, _ = strconv.ParseFloat(strconv.FormatFloat(n.UploadSpeedMbps, 'f', 2, 64), 64)
	return nil
}

// object is a row of stored_objects.
type object struct {
	ID     string
	Key    string
	Bucket string
	Size   int64
}

// AddPendingObject records that key (and uploadID, for a multipart upload)
// is about to be written; see server.AssetStore. A key that is already
// recorded (pending, garbage or an asset's object) is EConflict.
func (s *Store) AddPendingObject(ctx context.Context, key, uploadID string, notBefore time.Time) error {
	if err := validObjectKey(key); err != nil {
		return err
	}
	if !validText(uploadID, maxUploadIDLen) {
		return server.Errorf(server.EInvalid, "upload id must be at most %d bytes of UTF-8", maxUploadIDLen)
	}
	if notBefore.IsZero() {
		return server.Errorf(server.EInvalid, "pending object needs a deadline")
	}
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO blob_garbage (object_key, upload_id, state, not_before, claimed_until, created_at)
SELECT ?, ?, 'pending', `+s.tsParam()+`, NULL, `+s.tsParam()+`
WHERE NOT EXISTS (SELECT 1 FROM stored_objects WHERE object_key = ?)`),
		key, uploadID, ts(notBefore), s.nowUTC(), key)
	if isUniqueViolation(err, uniquePendingKey) {
		return server.Errorf(server.EConflict, "object key is already recorded")
	}
	if err != nil {
		return wrap("add pending object", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("add pending object", err)
	} else if n == 0 {
		return server.Errorf(server.EConflict, "object key is already recorded")
	}
	return nil
}

// tsParam is a placeholder for a timestamp in a position (a SELECT list)
// where PostgreSQL cannot infer its type.
func (s *Store) tsParam() string {
	if s.dialect == Postgres {
		return "CAST(? AS TIMESTAMPTZ)"
	}
	return "?"
}

// CreateAsset records a finished upload; see server.AssetStore. In one
// transaction it claims the pending record of n.ObjectKey (EConflict when
// it is gone, claimed, or past its deadline), finds or creates the
// account's object for n.SHA256, inserts the asset, settles the
// reservation and, when deduplicated, makes n.ObjectKey garbage due now.
//
// With an empty reservationID the new bytes are added to the account's
// used storage under the same check as Reserve (EQuotaExceeded,
// EAccountSuspended, EAccountDeleted, ENotFound). A reservation of another
// account, or one already settled, is ENotFound; committing more than
// was reserved is EInvalid. Any error leaves everything as it was.
func (s *Store) CreateAsset(ctx context.Context, n server.NewAsset, reservationID string) (server.Asset, bool, error) {
	const op = "create asset"
	if err := checkNewAsset(&n); err != nil {
		return server.Asset{}, false, err
	}
	if err := validObjectKey(n.ObjectKey); err != nil {
		return server.Asset{}, false, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return server.Asset{}, false, wrap(op, err)
	}
	defer rollback(tx)
	now := s.nowUTC()

	// Claim the pending record: only an upload within its deadline that no
	// collector has claimed may be recorded.
	var claimed string
	err = tx.QueryRowContext(ctx, s.q(`DELETE FROM blob_garbage
WHERE object_key = ? AND state = 'pending' AND not_before > ? AND claimed_until IS NULL
RETURNING object_key`), n.ObjectKey, now).Scan(&claimed)
	if errors.Is(err, sql.ErrNoRows) {
		return server.Asset{}, false, server.Errorf(server.EConflict, "upload took too long; try again")
	}
	if err != nil {
		return server.Asset{}, false, wrap(op, err)
	}

	obj, dedup, err := s.findOrCreateObject(ctx, tx, n, now)
	if err != nil {
		return server.Asset{}, false, err
	}
	if dedup && obj.Key == n.ObjectKey {
		// The upload wrote over the account's own object: never make it garbage.
		return server.Asset{}, false, wrap(op, errors.New("upload key is already the stored object of its hash"))
	}
	var a server.Asset
	found := false
	if dedup {
		if a, found, err = s.sameEntry(ctx, tx, n, obj); err != nil {
			return server.Asset{}, false, err
		}
	}
	if !found {
		if a, err = s.insertAsset(ctx, tx, n, obj, now); err != nil {
			return server.Asset{}, false, err
		}
	}

	added := n.Size
	if dedup {
		added = 0
	}
	switch {
	case reservationID != "":
		if err := s.settleTx(ctx, tx, op, reservationID, n.AccountID, added, nil); err != nil {
			return server.Asset{}, false, err
		}
	case added > 0:
		if err := s.addUsed(ctx, tx, n.AccountID, added); err != nil {
			return server.Asset{}, false, err
		}
	}
	// The day's bytes in (deduplicated or not, the bytes came) and, when
	// it grew, the storage at this point of the day.
	if err := s.noteUsage(ctx, tx, n.AccountID, now, n.Size, 0, added > 0); err != nil {
		return server.Asset{}, false, err
	}
	if n.SessionID != "" {
		// The session's completion, with the asset: no crash between them.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE upload_sessions SET state = 'completed', asset_id = ?, deduplicated = ?, updated_at = ?, lease_until = NULL
WHERE id = ? AND account_id = ? AND state = 'completing'`), a.ID, dedup, now, n.SessionID, n.AccountID)
		if err != nil {
			return server.Asset{}, false, wrap(op, err)
		}
		if k, err := res.RowsAffected(); err != nil {
			return server.Asset{}, false, wrap(op, err)
		} else if k != 1 {
			return server.Asset{}, false, server.Errorf(server.EConflict, "upload session is not being completed")
		}
	}
	if dedup {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO blob_garbage (object_key, upload_id, state, not_before, claimed_until, created_at)
VALUES (?, '', 'garbage', ?, NULL, ?)`), n.ObjectKey, now, now); err != nil {
			return server.Asset{}, false, wrap(op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return server.Asset{}, false, wrap(op, err)
	}
	return a, dedup, nil
}

// findOrCreateObject references the account's object for n.SHA256 (its
// ref_count grows by one; dedup is true) or, when there is none, makes
// n.ObjectKey that object with one reference. INSERT ... ON CONFLICT DO
// NOTHING waits, on PostgreSQL, for a concurrent transaction inserting the
// same hash, so concurrent uploads of one content end with one object.
func (s *Store) findOrCreateObject(ctx context.Context, tx *sql.Tx, n server.NewAsset, now time.Time) (object, bool, error) {
	const op = "create asset"
	for range createAttempts {
		o := object{ID: uuid.NewString(), Key: n.ObjectKey, Bucket: n.Bucket, Size: n.Size}
		var id string
		err := tx.QueryRowContext(ctx, s.q(`INSERT INTO stored_objects (id, account_id, content_hash, object_key, s3_bucket, size_bytes, ref_count, created_at)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (account_id, content_hash) DO NOTHING
RETURNING id`), o.ID, n.AccountID, n.ContentID, o.Key, o.Bucket, o.Size, now).Scan(&id)
		switch {
		case err == nil:
			return o, false, nil
		case isUniqueViolation(err, uniqueObjectKey):
			return object{}, false, server.Errorf(server.EConflict, "object key is already recorded")
		case isForeignKeyViolation(err):
			return object{}, false, server.Errorf(server.ENotFound, "account not found")
		case !errors.Is(err, sql.ErrNoRows):
			return object{}, false, wrap(op, err)
		}
		o, found, err := s.refObject(ctx, tx, n.AccountID, n.ContentID)
		if err != nil {
			return object{}, false, wrap(op, err)
		}
		if found {
			if o.Size != n.Size {
				return object{}, false, sizeMismatch(n.Size, o.Size)
			}
			return o, true, nil
		}
		// Deleted between the two statements: try again.
	}
	return object{}, false, wrap(op, errors.New("stored object keeps disappearing"))
}

// refObject adds a reference to the account's object for a content id,
// if any.
func (s *Store) refObject(ctx context.Context, tx *sql.Tx, accountID, contentID string) (object, bool, error) {
	var o object
	err := tx.QueryRowContext(ctx, s.q(`UPDATE stored_objects SET ref_count = ref_count + 1
WHERE account_id = ? AND content_hash = ?
RETURNING id, object_key, s3_bucket, size_bytes`), accountID, contentID).Scan(&o.ID, &o.Key, &o.Bucket, &o.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return object{}, false, nil
	}
	if err != nil {
		return object{}, false, err
	}
	return o, true, nil
}

func sizeMismatch(got, stored int64) error {
	return server.Errorf(server.EInvalid, "size %d bytes does not match the %d bytes stored for that content", got, stored)
}

// insertAsset inserts the asset of n, pointing at obj (whose key and
// bucket it takes).
func (s *Store) insertAsset(ctx context.Context, tx *sql.Tx, n server.NewAsset, obj object, now time.Time) (server.Asset, error) {
	var speed any
	if n.UploadSpeedMbps != 0 {
		speed = n.UploadSpeedMbps
	}
	a, err := scanAsset(tx.QueryRowContext(ctx, s.q(`INSERT INTO agentcache_assets (
  id, account_id, object_id, s3_key, s3_bucket, filename, content_type, size_bytes, content_hash, cache_key,
  hit_count, last_accessed, expires_at, uploaded_via, upload_speed_mbps, created_at, sha256_verified, content_id,
  agentcache_pipeline_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, ?, ?, ?, ?)
RETURNING `+assetCols),
		uuid.NewString(), n.AccountID, obj.ID, obj.Key, obj.Bucket, n.Filename, nullable(n.ContentType), obj.Size, n.SHA256,
		nullable(n.CacheKey), nullTime(n.ExpiresAt), n.UploadedVia, speed, now, n.SHA256Verified, n.ContentID,
		nullable(n.PipelineID)))
	if isForeignKeyViolation(err) {
		return server.Asset{}, server.Errorf(server.ENotFound, "account not found")
	}
	if err != nil {
		return server.Asset{}, wrap("insert asset", err)
	}
	return a, nil
}

// addUsed adds bytes to the account's used storage if they fit its quota
// and it is active: the check of Reserve, for uploads without a
// reservation.
func (s *Store) addUsed(ctx context.Context, tx *sql.Tx, accountID string, bytes int64) error {
	res, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts
SET storage_used_bytes = storage_used_bytes + ?
WHERE id = ? AND status = 'active'
  AND storage_used_bytes + storage_reserved_bytes + ? <= storage_quota_gb * 1073741824`),
		bytes, accountID, bytes)
	if err != nil {
		return wrap("create asset", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap("create asset", err)
	}
	if n == 1 {
		return s.quotaTx(ctx, tx, accountID)
	}
	_, err = s.whyNoReservation(ctx, tx, server.Reservation{AccountID: accountID, Bytes: bytes}, false)
	return err
}

// LinkAsset records a new asset for content the account already stores;
// see server.AssetStore. n.ObjectKey is ignored: the asset takes the
// object's key and bucket. A size other than the stored object's is
// EInvalid. The account's usage does not change.
func (s *Store) LinkAsset(ctx context.Context, n server.NewAsset) (server.Asset, error) {
	if _, ok := normalizeHash(n.SHA256); !ok {
		return server.Asset{}, server.Errorf(server.ENotFound, "no stored content with that hash")
	}
	if _, ok := normalizeContentID(n.ContentID); !ok && n.ContentID != "" {
		return server.Asset{}, server.Errorf(server.ENotFound, "no stored content with that content id")
	}
	if err := checkNewAsset(&n); err != nil {
		return server.Asset{}, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return server.Asset{}, wrap("link asset", err)
	}
	defer rollback(tx)
	o, found, err := s.refObject(ctx, tx, n.AccountID, n.ContentID)
	if err != nil {
		return server.Asset{}, wrap("link asset", err)
	}
	if !found {
		return server.Asset{}, server.Errorf(server.ENotFound, "no stored content with that hash")
	}
	if o.Size != n.Size {
		return server.Asset{}, sizeMismatch(n.Size, o.Size)
	}
	a, found, err := s.sameEntry(ctx, tx, n, o)
	if err != nil {
		return server.Asset{}, err
	}
	if !found {
		if a, err = s.insertAsset(ctx, tx, n, o, s.nowUTC()); err != nil {
			return server.Asset{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return server.Asset{}, wrap("link asset", err)
	}
	return a, nil
}

// sameEntry finds, after a reference to obj was taken for n, the asset of
// the same entry: obj's asset of the same account with n's file name,
// SHA-256, cache key and pipeline id (an upload of the same file again).
// When there is one, the reference is given back (the upload adds no
// asset), the asset's expiry becomes the later of its own and n's (none
// when either has none: a file someone asked to keep is never deleted
// earlier than asked), and the asset is returned with found true.
//
// It runs after the reference was taken on purpose: that UPDATE of obj's
// row (or the INSERT of it) serialises uploads of one content on
// PostgreSQL, so this read sees the asset a concurrent upload of the same
// entry committed, and SQLite has one writer. Concurrent uploads of one
// entry end with one asset.
func (s *Store) sameEntry(ctx context.Context, tx *sql.Tx, n server.NewAsset, obj object) (server.Asset, bool, error) {
	const op = "find same asset"
	a, err := scanAsset(tx.QueryRowContext(ctx, s.q(`SELECT `+assetCols+` FROM agentcache_assets
WHERE account_id = ? AND object_id = ? AND filename = ? AND content_hash = ?
  AND COALESCE(cache_key, '') = ? AND COALESCE(agentcache_pipeline_id, '') = ?
ORDER BY created_at DESC, id DESC LIMIT 1`), n.AccountID, obj.ID, n.Filename, n.SHA256, n.CacheKey, n.PipelineID))
	if errors.Is(err, sql.ErrNoRows) {
		return server.Asset{}, false, nil
	}
	if err != nil {
		return server.Asset{}, false, wrap(op, err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE stored_objects SET ref_count = ref_count - 1 WHERE id = ?`), obj.ID); err != nil {
		return server.Asset{}, false, wrap(op, err)
	}
	expires := a.ExpiresAt
	switch {
	case n.ExpiresAt.IsZero():
		expires = time.Time{}
	case !expires.IsZero() && n.ExpiresAt.After(expires):
		expires = n.ExpiresAt
	}
	if !expires.Equal(a.ExpiresAt) {
		a, err = scanAsset(tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_assets SET expires_at = ? WHERE id = ?
RETURNING `+assetCols), nullTime(expires), a.ID))
		if err != nil {
			return server.Asset{}, false, wrap(op, err)
		}
	}
	return a, true, nil
}

func assetNotFound() error { return server.Errorf(server.ENotFound, "asset not found") }

// AssetByID returns an asset of accountID, or ENotFound (also for another
// account's asset and for a malformed id).
func (s *Store) AssetByID(ctx context.Context, accountID, id string) (server.Asset, error) {
	if !validKey(accountID) || !validKey(id) {
		return server.Asset{}, assetNotFound()
	}
	a, err := scanAsset(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+assetCols+` FROM agentcache_assets WHERE id = ? AND account_id = ?`), id, accountID))
	if errors.Is(err, sql.ErrNoRows) {
		return server.Asset{}, assetNotFound()
	}
	if err != nil {
		return server.Asset{}, wrap("asset by id", err)
	}
	return a, nil
}

// AssetByContent returns the newest asset of accountID with that content
// id (a hex SHA-256 or "m1-" and 64 hex digits, either case), or
// ENotFound.
func (s *Store) AssetByContent(ctx context.Context, accountID, contentID string) (server.Asset, error) {
	id, ok := normalizeContentID(contentID)
	if !ok || !validKey(accountID) {
		return server.Asset{}, assetNotFound()
	}
	a, err := scanAsset(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+assetCols+` FROM agentcache_assets
WHERE account_id = ? AND content_id = ?
ORDER BY created_at DESC, id DESC LIMIT 1`), accountID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return server.Asset{}, assetNotFound()
	}
	if err != nil {
		return server.Asset{}, wrap("asset by content", err)
	}
	return a, nil
}

// ListAssets lists an account's assets matching f newest first
// (created_at, then id, descending), limit (1..1000, else EInvalid) per
// page. The cursor is opaque (base64url of the last asset's created_at and
// id); a malformed one is EInvalid. Keyset pagination: assets added or
// deleted between pages never make a page repeat or skip another asset.
// A filter by cache key or pipeline is served by the indexes of migration
// 0011 (account, value, created_at, id), one by name or name prefix by
// that of migration 0013 (account, filename, created_at, id).
func (s *Store) ListAssets(ctx context.Context, accountID string, f server.AssetFilter, cursor string, limit int) (server.AssetPage, error) {
	if limit < minListLimit || limit > maxListLimit {
		return server.AssetPage{}, server.Errorf(server.EInvalid, "limit must be between %d and %d, got %d", minListLimit, maxListLimit, limit)
	}
	if !validText(f.CacheKey, maxCacheKeyLen) {
		return server.AssetPage{}, server.Errorf(server.EInvalid, "cache key must be at most %d bytes of UTF-8 without NUL", maxCacheKeyLen)
	}
	if !validText(f.Name, maxFilenameLen) || !validText(f.NamePrefix, maxFilenameLen) {
		return server.AssetPage{}, server.Errorf(server.EInvalid, "file name must be at most %d bytes of UTF-8 without NUL", maxFilenameLen)
	}
	pipeline, err := server.NormalizePipelineID(f.PipelineID)
	if err != nil {
		return server.AssetPage{}, err
	}
	if !validKey(accountID) {
		return server.AssetPage{Assets: []server.Asset{}}, nil
	}
	f.PipelineID = pipeline
	cond, args := s.assetFilterSQL(accountID, f)
	query := `SELECT ` + assetCols + ` FROM agentcache_assets WHERE ` + cond
	if cursor != "" {
		at, id, err := decodeCursor(cursor)
		if err != nil {
			return server.AssetPage{}, err
		}
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, at, at, id)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1) // one more tells whether there is a next page
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return server.AssetPage{}, wrap("list assets", err)
	}
	defer rows.Close()
	page := server.AssetPage{Assets: []server.Asset{}}
	for rows.Next() {
		a, err := scanAsset(rows)
		if err != nil {
			return server.AssetPage{}, wrap("list assets", err)
		}
		page.Assets = append(page.Assets, a)
	}
	if err := rows.Err(); err != nil {
		return server.AssetPage{}, wrap("list assets", err)
	}
	if len(page.Assets) > limit {
		page.Assets = page.Assets[:limit]
		last := page.Assets[limit-1]
		page.Next = encodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}

// assetFilterSQL is the WHERE condition of a listing of accountID's
// assets matching f (its pipeline id in canonical form; each field "" for
// any) and its arguments: the leading columns of the indexes of
// migrations 0011 and 0013.
//
// A name prefix is a range of the byte order, [prefix, successor), where
// the successor is the prefix with its last character incremented: every
// string of valid UTF-8 in that range begins with the prefix, and both
// bounds are valid UTF-8. SQLite compares text byte by byte (BINARY);
// PostgreSQL's ~>=~ and ~<~ do whatever the database's collation, and
// are served by the text_pattern_ops index of migration 0013. No LIKE:
// its wildcards would need escaping, SQLite's is case-insensitive, and a
// bound pattern gives PostgreSQL's generic plans no index range.
func (s *Store) assetFilterSQL(accountID string, f server.AssetFilter) (string, []any) {
	cond, args := `account_id = ?`, []any{accountID}
	if f.CacheKey != "" {
		cond += ` AND cache_key = ?`
		args = append(args, f.CacheKey)
	}
	if f.PipelineID != "" {
		cond += ` AND agentcache_pipeline_id = ?`
		args = append(args, f.PipelineID)
	}
	if f.Name != "" {
		cond += ` AND filename = ?`
		args = append(args, f.Name)
	}
	if f.NamePrefix != "" {
		ge, lt := ">=", "<"
		if s.dialect == Postgres {
			ge, lt = "~>=~", "~<~"
		}
		cond += ` AND filename ` + ge + ` ?`
		args = append(args, f.NamePrefix)
		if next, ok := prefixSuccessor(f.NamePrefix); ok {
			cond += ` AND filename ` + lt + ` ?`
			args = append(args, next)
		}
	}
	return cond, args
}

// prefixSuccessor returns the least string of valid UTF-8 greater, in
// byte order, than every string that begins with p: p with its last
// character replaced by the next one (skipping surrogates), dropping
// trailing U+10FFFF characters. ok is false when there is none (p is
// all U+10FFFF): every string from p on begins with it.
func prefixSuccessor(p string) (string, bool) {
	for p != "" {
		r, n := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-n]
		if r == utf8.MaxRune {
			continue
		}
		r++
		if r == 0xD800 {
			r = 0xE000
		}
		return p + string(r), true
	}
	return "", false
}

// encodeCursor makes the cursor of the page after the asset (at, id).
func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + " " + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	bad := server.Errorf(server.EInvalid, "malformed cursor: pass the next cursor of the previous page unchanged")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	at, id, ok := strings.Cut(string(b), " ")
	if !ok || id == "" || !validText(id, 64) {
		return time.Time{}, "", bad
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return time.Time{}, "", bad
	}
	return ts(t), id, nil
}

// DeleteAsset removes an asset of accountID (ENotFound for another
// account's asset, a malformed id, or one already deleted). When it was
// the last reference to its object, the object is deleted, its bytes are
// freed from storage_used_bytes (never below zero) and its key is recorded
// as garbage due now and returned.
func (s *Store) DeleteAsset(ctx context.Context, accountID, id string) (string, error) {
	return s.deleteAsset(ctx, accountID, id, nil)
}

// deleteAsset is DeleteAsset; with expiredBefore set it deletes the asset
// only if it expired before that time.
func (s *Store) deleteAsset(ctx context.Context, accountID, id string, expiredBefore *time.Time) (string, error) {
	const op = "delete asset"
	if !validKey(accountID) || !validKey(id) {
		return "", assetNotFound()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", wrap(op, err)
	}
	defer rollback(tx)
	query := `DELETE FROM agentcache_assets WHERE id = ? AND account_id = ?`
	args := []any{id, accountID}
	if expiredBefore != nil {
		query += ` AND expires_at < ?`
		args = append(args, *expiredBefore)
	}
	var objectID sql.NullString
	err = tx.QueryRowContext(ctx, s.q(query+` RETURNING object_id`), args...).Scan(&objectID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", assetNotFound()
	}
	if err != nil {
		return "", wrap(op, err)
	}
	garbage := ""
	if objectID.Valid { // NULL only for rows not written by the store
		var (
			key   string
			size  int64
			refs  int64
			owner string
		)
		err := tx.QueryRowContext(ctx, s.q(`UPDATE stored_objects SET ref_count = ref_count - 1 WHERE id = ?
RETURNING object_key, size_bytes, ref_count, account_id`), objectID.String).Scan(&key, &size, &refs, &owner)
		if err != nil {
			return "", wrap(op, err)
		}
		if refs == 0 {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM stored_objects WHERE id = ?`), objectID.String); err != nil {
				return "", wrap(op, err)
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts
SET storage_used_bytes = CASE WHEN storage_used_bytes > ? THEN storage_used_bytes - ? ELSE 0 END
WHERE id = ?`), size, size, owner); err != nil {
				return "", wrap(op, err)
			}
			// Usage fell: a quota threshold may be re-armed.
			if err := s.quotaTx(ctx, tx, owner); err != nil {
				return "", err
			}
			now := s.nowUTC()
			if err := s.noteUsage(ctx, tx, owner, now, 0, 0, true); err != nil {
				return "", err
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO blob_garbage (object_key, upload_id, state, not_before, claimed_until, created_at)
VALUES (?, '', 'garbage', ?, NULL, ?)
ON CONFLICT (object_key) DO UPDATE SET state = 'garbage', not_before = excluded.not_before, claimed_until = NULL`),
				key, now, now); err != nil {
				return "", wrap(op, err)
			}
			garbage = key
		}
	}
	if err := tx.Commit(); err != nil {
		return "", wrap(op, err)
	}
	return garbage, nil
}

// DeleteExpiredAssets deletes up to limit (at least 1, else EInvalid)
// assets whose expires_at is before now, each in its own transaction by
// the path of DeleteAsset, and reports how many it deleted. An asset
// deleted concurrently by someone else is not counted.
func (s *Store) DeleteExpiredAssets(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, server.Errorf(server.EInvalid, "limit must be positive, got %d", limit)
	}
	now = ts(now)
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT id, account_id FROM agentcache_assets
WHERE expires_at < ? ORDER BY expires_at LIMIT ?`), now, limit)
	if err != nil {
		return 0, wrap("delete expired assets", err)
	}
	type ref struct{ id, account string }
	var due []ref
	for rows.Next() {
		var r ref
		if err := rows.Scan(&r.id, &r.account); err != nil {
			rows.Close()
			return 0, wrap("delete expired assets", err)
		}
		due = append(due, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, wrap("delete expired assets", err)
	}
	deleted := 0
	for _, r := range due {
		_, err := s.deleteAsset(ctx, r.account, r.id, &now)
		switch server.ErrorCode(err) {
		case "":
			deleted++
		case server.ENotFound:
		default:
			return deleted, err
		}
	}
	return deleted, nil
}

// bandwidthPeriod is the calendar month (UTC) of t, as 'YYYY-MM'.
func bandwidthPeriod(t time.Time) string { return t.UTC().Format("2006-01") }

// RecordDownload counts a download: hit_count+1 and last_accessed (never
// moved back) on the asset of accountID (ENotFound otherwise), and bytes
// added to the account's bandwidth of the month of now. The month's
// counter starts from zero when the stored one belongs to an earlier
// month; a download stamped in an earlier month than the stored one (a
// late report across a month boundary) counts no bandwidth.
func (s *Store) RecordDownload(ctx context.Context, accountID, assetID string, bytes int64, now time.Time) error {
	const op = "record download"
	if bytes < 0 {
		return server.Errorf(server.EInvalid, "downloaded bytes must not be negative, got %d", bytes)
	}
	if now.IsZero() {
		now = s.now()
	}
	if !validKey(accountID) || !validKey(assetID) {
		return assetNotFound()
	}
	now = ts(now)
	period := bandwidthPeriod(now)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap(op, err)
	}
	defer rollback(tx)
	res, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_assets SET hit_count = hit_count + 1,
  last_accessed = CASE WHEN last_accessed IS NULL OR last_accessed < ? THEN ? ELSE last_accessed END
WHERE id = ? AND account_id = ?`), now, now, assetID, accountID)
	if err != nil {
		return wrap(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap(op, err)
	} else if n == 0 {
		return assetNotFound()
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET
  bandwidth_used_bytes = CASE
    WHEN bandwidth_period = ? THEN bandwidth_used_bytes + ?
    WHEN bandwidth_period > ? THEN bandwidth_used_bytes
    ELSE ? END,
  bandwidth_period = CASE WHEN bandwidth_period > ? THEN bandwidth_period ELSE ? END
WHERE id = ?`), period, bytes, period, bytes, period, period, accountID); err != nil {
		return wrap(op, err)
	}
	if err := s.noteUsage(ctx, tx, accountID, now, 0, bytes, false); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return wrap(op, err)
	}
	return nil
}

// BandwidthUsed returns the bytes downloaded by the account in the
// calendar month (UTC) of now (zero when nothing was recorded in that
// month), or ENotFound.
func (s *Store) BandwidthUsed(ctx context.Context, accountID string, now time.Time) (int64, error) {
	var (
		used   int64
		period string
	)
	if !validKey(accountID) {
		return 0, server.Errorf(server.ENotFound, "account not found")
	}
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT bandwidth_used_bytes, bandwidth_period FROM agentcache_accounts WHERE id = ?`),
		accountID).Scan(&used, &period)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, server.Errorf(server.ENotFound, "account not found")
	}
	if err != nil {
		return 0, wrap("bandwidth used", err)
	}
	if period != bandwidthPeriod(now) {
		return 0, nil
	}
	return used, nil
}
