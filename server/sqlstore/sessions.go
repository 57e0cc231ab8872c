package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// Bounds of upload sessions.
const (
	// maxManifestLen bounds a stored manifest: 10,000 chunks take about
	// 1.5 MB of compact JSON, so this leaves room for any formatting.
	maxManifestLen = 8 << 20
	// maxChunkCount is the protocol's limit on chunks per file.
	maxChunkCount = 10000
	// maxTTLSeconds bounds the asset TTL a session carries (100 years).
	maxTTLSeconds = 100 * 365 * 24 * 3600
	// transitionAttempts bounds how often a transition retries when the
	// session changed state between its UPDATE and the read that explains
	// why the UPDATE matched nothing (a FailCompletion in between).
	transitionAttempts = 8
)

const sessionCols = `id, account_id, object_key, upload_id, manifest, content_hash, size_bytes, chunk_size, chunk_count,
  stream, reservation_id, reserved_bytes, state, asset_id, deduplicated, filename, content_type, cache_key,
  ttl_seconds, expires_at, created_at, updated_at, lease_until, client_ref, pipeline_id`

// deadCompletion is the SQL condition of a completing session whose lease
// ran out before the parameter (a NULL lease predates leases: dead too).
const deadCompletion = `(state = 'completing' AND (lease_until IS NULL OR lease_until <= ?))`

func scanSession(r scanner) (server.UploadSession, error) {
	var (
		u        server.UploadSession
		manifest sql.NullString
		state    string
		lease    sql.NullTime
	)
	err := r.Scan(&u.ID, &u.AccountID, &u.ObjectKey, &u.UploadID, &manifest, &u.SHA256, &u.Size, &u.ChunkSize, &u.ChunkCount,
		&u.Stream, &u.ReservationID, &u.Reserved, &state, &u.AssetID, &u.Deduplicated, &u.Filename, &u.ContentType, &u.CacheKey,
		&u.TTLSeconds, &u.ExpiresAt, &u.CreatedAt, &u.UpdatedAt, &lease, &u.ClientRef, &u.PipelineID)
	if err != nil {
		return server.UploadSession{}, err
	}
	if manifest.Valid {
		u.Manifest = []byte(manifest.String)
	}
	u.State = server.SessionState(state)
	u.ExpiresAt = u.ExpiresAt.UTC()
	u.CreatedAt = u.CreatedAt.UTC()
	u.UpdatedAt = u.UpdatedAt.UTC()
	if lease.Valid && u.State == server.SessionCompleting {
		u.LeaseUntil = lease.Time.UTC()
	}
	return u, nil
}

func sessionNotFound() error { return server.Errorf(server.ENotFound, "upload session not found") }

// checkManifest validates what a completed manifest records: the JSON (at
// most maxManifestLen bytes of valid UTF-8, so that it fits a TEXT
// column), the whole-file hash (returned in lower case), the size and the
// chunk count.
func checkManifest(manifest []byte, sha256 string, size int64, chunkCount int) (string, error) {
	switch {
	case len(manifest) == 0:
		return "", server.Errorf(server.EInvalid, "a session with a size needs its manifest")
	case len(manifest) > maxManifestLen:
		return "", server.Errorf(server.EInvalid, "manifest must be at most %d bytes", maxManifestLen)
	case !utf8.Valid(manifest) || !json.Valid(manifest):
		return "", server.Errorf(server.EInvalid, "manifest must be valid JSON in UTF-8")
	}
	h, ok := normalizeHash(sha256)
	if !ok {
		return "", server.Errorf(server.EInvalid, "content hash must be a hex SHA-256 (64 hex digits)")
	}
	if size < 0 || size > maxReserveBytes {
		return "", server.Errorf(server.EInvalid, "size must be between 0 and %d bytes, got %d", int64(maxReserveBytes), size)
	}
	if chunkCount < 1 || chunkCount > maxChunkCount {
		return "", server.Errorf(server.EInvalid, "chunk count must be between 1 and %d, got %d", maxChunkCount, chunkCount)
	}
	return h, nil
}

// checkNewSession validates u and normalizes it in place for CreateSession.
func checkNewSession(u *server.UploadSession) error {
	if u.AccountID == "" || !validKey(u.AccountID) {
		return server.Errorf(server.ENotFound, "account not found")
	}
	if err := validObjectKey(u.ObjectKey); err != nil {
		return err
	}
	if u.Size == -1 {
		if u.Manifest != nil || u.SHA256 != "" || u.ChunkCount != 0 {
			return server.Errorf(server.EInvalid, "a stream session (size -1) has no manifest, hash or chunk count until it completes")
		}
		u.Stream = true
	} else {
		h, err := checkManifest(u.Manifest, u.SHA256, u.Size, u.ChunkCount)
		if err != nil {
			return err
		}
		u.SHA256 = h
		u.Stream = false
	}
	switch {
	case u.ChunkSize < 0 || u.ChunkSize > maxReserveBytes:
		return server.Errorf(server.EInvalid, "chunk size must be between 0 and %d bytes, got %d", int64(maxReserveBytes), u.ChunkSize)
	case u.Reserved < 0 || u.Reserved > maxReserveBytes:
		return server.Errorf(server.EInvalid, "reserved bytes must be between 0 and %d, got %d", int64(maxReserveBytes), u.Reserved)
	case u.TTLSeconds < 0 || u.TTLSeconds > maxTTLSeconds:
		return server.Errorf(server.EInvalid, "ttl must be between 0 and %d seconds, got %d", int64(maxTTLSeconds), u.TTLSeconds)
	case !validText(u.UploadID, maxUploadIDLen):
		return server.Errorf(server.EInvalid, "upload id must be at most %d bytes of UTF-8", maxUploadIDLen)
	case u.ClientRef != "" && (!u.Stream || !protocol.ValidClientRef(u.ClientRef)):
		return server.Errorf(server.EInvalid, "a client ref names a stream session and is 16..64 of [A-Za-z0-9_-]")
	case !validText(u.ReservationID, 64):
		return server.Errorf(server.EInvalid, "reservation id must be at most 64 bytes")
	case !validText(u.Filename, maxFilenameLen):
		return server.Errorf(server.EInvalid, "file name must be at most %d bytes of UTF-8 without NUL", maxFilenameLen)
	case !validText(u.ContentType, maxContentTypeLen):
		return server.Errorf(server.EInvalid, "content type must be at most %d bytes of UTF-8", maxContentTypeLen)
	case !validText(u.CacheKey, maxCacheKeyLen):
		return server.Errorf(server.EInvalid, "cache key must be at most %d bytes of UTF-8 without NUL", maxCacheKeyLen)
	case u.ExpiresAt.IsZero():
		return server.Errorf(server.EInvalid, "upload session needs an expiry")
	}
	p, err := server.NormalizePipelineID(u.PipelineID)
	if err != nil {
		return err
	}
	u.PipelineID = p
	return nil
}

// manifestParam is the manifest as a TEXT parameter: NULL when absent.
func manifestParam(m []byte) any {
	if m == nil {
		return nil
	}
	return string(m)
}

// CreateSession records a new open session; see server.SessionStore.
func (s *Store) CreateSession(ctx context.Context, u server.UploadSession) (server.UploadSession, error) {
	if err := checkNewSession(&u); err != nil {
		return server.UploadSession{}, err
	}
	now := s.nowUTC()
	u.ID = server.NewSessionID()
	u.State = server.SessionOpen
	u.AssetID = ""
	u.Deduplicated = false
	u.ExpiresAt = ts(u.ExpiresAt)
	u.CreatedAt, u.UpdatedAt = now, now
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO upload_sessions (`+sessionCols+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)`),
		u.ID, u.AccountID, u.ObjectKey, u.UploadID, manifestParam(u.Manifest), u.SHA256, u.Size, u.ChunkSize, u.ChunkCount,
		u.Stream, u.ReservationID, u.Reserved, string(u.State), u.AssetID, u.Deduplicated, u.Filename, u.ContentType, u.CacheKey,
		u.TTLSeconds, u.ExpiresAt, u.CreatedAt, u.UpdatedAt, u.ClientRef, u.PipelineID)
	if isForeignKeyViolation(err) {
		return server.UploadSession{}, server.Errorf(server.ENotFound, "account not found")
	}
	if err != nil {
		return server.UploadSession{}, wrap("create session", err)
	}
	return u, nil
}

// SessionByID returns a session of accountID, or ENotFound.
func (s *Store) SessionByID(ctx context.Context, accountID, id string) (server.UploadSession, error) {
	if accountID == "" {
		return server.UploadSession{}, sessionNotFound()
	}
	return s.sessionByID(ctx, s.rdb, accountID, id)
}

// queryer is what sessionByID reads through: a pool or a transaction.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sessionByID reads a session through q; with an empty accountID the
// session of any account.
func (s *Store) sessionByID(ctx context.Context, q queryer, accountID, id string) (server.UploadSession, error) {
	if !server.ValidSessionID(id) || !validKey(accountID) {
		return server.UploadSession{}, sessionNotFound()
	}
	query := `SELECT ` + sessionCols + ` FROM upload_sessions WHERE id = ?`
	args := []any{id}
	if accountID != "" {
		query += ` AND account_id = ?`
		args = append(args, accountID)
	}
	u, err := scanSession(q.QueryRowContext(ctx, s.q(query), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return server.UploadSession{}, sessionNotFound()
	}
	if err != nil {
		return server.UploadSession{}, wrap("session by id", err)
	}
	return u, nil
}

// OpenSessionFor returns the newest unexpired session of accountID for
// that content that is open or completing; see server.SessionStore.
func (s *Store) OpenSessionFor(ctx context.Context, accountID, sha256 string, size int64, now time.Time) (server.UploadSession, error) {
	h, ok := normalizeHash(sha256)
	if !ok || !validKey(accountID) || size < 0 {
		return server.UploadSession{}, sessionNotFound()
	}
	if now.IsZero() {
		now = s.now()
	}
	u, err := scanSession(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+sessionCols+` FROM upload_sessions
WHERE account_id = ? AND content_hash = ? AND state IN ('open', 'completing') AND size_bytes = ? AND expires_at > ?
ORDER BY created_at DESC, id DESC LIMIT 1`), accountID, h, size, ts(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return server.UploadSession{}, sessionNotFound()
	}
	if err != nil {
		return server.UploadSession{}, wrap("open session for", err)
	}
	return u, nil
}

// OpenSessionByRef returns the newest open or completing, unexpired
// session of accountID opened with client ref; see server.SessionStore.
func (s *Store) OpenSessionByRef(ctx context.Context, accountID, ref string, now time.Time) (server.UploadSession, error) {
	if !protocol.ValidClientRef(ref) || !validKey(accountID) {
		return server.UploadSession{}, sessionNotFound()
	}
	if now.IsZero() {
		now = s.now()
	}
	u, err := scanSession(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+sessionCols+` FROM upload_sessions
WHERE account_id = ? AND client_ref = ? AND state IN ('open', 'completing') AND expires_at > ?
ORDER BY created_at DESC, id DESC LIMIT 1`), accountID, ref, ts(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return server.UploadSession{}, sessionNotFound()
	}
	if err != nil {
		return server.UploadSession{}, wrap("open session by ref", err)
	}
	return u, nil
}

// BeginCompletion claims the completion of a session, or takes over a
// dead one; see server.SessionStore. The claim is one UPDATE conditional
// on state 'open' or a dead completion: on PostgreSQL a concurrent claim
// waits for the first to commit and then finds a live lease, on SQLite
// writers are serialized, so exactly one caller's UPDATE matches.
func (s *Store) BeginCompletion(ctx context.Context, accountID, id string, now time.Time, lease time.Duration) (server.UploadSession, bool, error) {
	const op = "begin completion"
	if !server.ValidSessionID(id) || accountID == "" || !validKey(accountID) {
		return server.UploadSession{}, false, sessionNotFound()
	}
	if now.IsZero() {
		now = s.now()
	}
	if lease <= 0 {
		return server.UploadSession{}, false, server.Errorf(server.EInvalid, "a completion needs a lease")
	}
	now = ts(now)
	for range transitionAttempts {
		u, err := scanSession(s.db.QueryRowContext(ctx, s.q(`UPDATE upload_sessions SET state = 'completing', updated_at = ?, lease_until = ?
WHERE id = ? AND account_id = ? AND (state = 'open' OR `+deadCompletion+`) AND expires_at > ?
RETURNING `+sessionCols), s.nowUTC(), ts(now.Add(lease)), id, accountID, now, now))
		if err == nil {
			return u, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return server.UploadSession{}, false, wrap(op, err)
		}
		u, err = s.sessionByID(ctx, s.db, accountID, id)
		if err != nil {
			return server.UploadSession{}, false, err
		}
		claimable := u.State == server.SessionOpen || u.CompletionDead(now)
		if !claimable {
			return u, false, nil
		}
		if !u.ExpiresAt.After(now) {
			return server.UploadSession{}, false, server.Errorf(server.EGone, "upload session expired at %s; open a new one", u.ExpiresAt.Format(time.RFC3339))
		}
		// Back to open (FailCompletion), or its lease ran out, since the
		// UPDATE ran: claim again.
	}
	return server.UploadSession{}, false, wrap(op, errors.New("session keeps changing state"))
}

// transition moves session id from state from to state to, setting the
// extra columns (a SQL fragment "col = ?, ..." and its arguments), and
// explains a refusal: ENotFound, or EConflict naming the state the session
// is in. extraCond narrows the UPDATE further (" AND ..."), with
// conflictMsg explaining a refusal when the state was right.
func (s *Store) transition(ctx context.Context, op, id string, from, to server.SessionState, set string, setArgs []any, extraCond, conflictMsg string) error {
	if !server.ValidSessionID(id) {
		return sessionNotFound()
	}
	query := `UPDATE upload_sessions SET state = ?, updated_at = ?`
	args := []any{string(to), s.nowUTC()}
	if set != "" {
		query += `, ` + set
		args = append(args, setArgs...)
	}
	query += ` WHERE id = ? AND state = ?` + extraCond
	args = append(args, id, string(from))
	res, err := s.db.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return wrap(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap(op, err)
	}
	if n == 1 {
		return nil
	}
	u, err := s.sessionByID(ctx, s.db, "", id)
	if err != nil {
		return err
	}
	if u.State == from && conflictMsg != "" {
		return server.Errorf(server.EConflict, "%s", conflictMsg)
	}
	return server.Errorf(server.EConflict, "upload session is %s, not %s", u.State, from)
}

// RenewCompletion extends the lease of a completing session; see
// server.SessionStore.
func (s *Store) RenewCompletion(ctx context.Context, id string, until time.Time) error {
	if until.IsZero() {
		return server.Errorf(server.EInvalid, "a lease needs an end")
	}
	return s.transition(ctx, "renew completion", id, server.SessionCompleting, server.SessionCompleting,
		`lease_until = ?`, []any{ts(until)}, "", "")
}

// FinishCompletion moves a completing session to completed; see
// server.SessionStore. An empty assetID is EInvalid. A session already
// completed with that asset (by CreateAsset with its SessionID) is left
// as it is, without error.
func (s *Store) FinishCompletion(ctx context.Context, id, assetID string, deduplicated bool) error {
	if assetID == "" || !validText(assetID, 64) {
		return server.Errorf(server.EInvalid, "asset id must be 1 to 64 bytes")
	}
	err := s.transition(ctx, "finish completion", id, server.SessionCompleting, server.SessionCompleted,
		`asset_id = ?, deduplicated = ?, lease_until = NULL`, []any{assetID, deduplicated}, "", "")
	if server.ErrorCode(err) == server.EConflict {
		if u, gerr := s.sessionByID(ctx, s.db, "", id); gerr == nil && u.State == server.SessionCompleted && u.AssetID == assetID {
			return nil
		}
	}
	return err
}

// FailCompletion moves a completing session back to open; see
// server.SessionStore.
func (s *Store) FailCompletion(ctx context.Context, id string) error {
	return s.transition(ctx, "fail completion", id, server.SessionCompleting, server.SessionOpen, `lease_until = NULL`, nil, "", "")
}

// SetSessionManifest records a stream session's manifest during its
// completion; see server.SessionStore.
func (s *Store) SetSessionManifest(ctx context.Context, id string, manifest []byte, sha256 string, size int64, chunkCount int) error {
	h, err := checkManifest(manifest, sha256, size, chunkCount)
	if err != nil {
		return err
	}
	return s.transition(ctx, "set session manifest", id, server.SessionCompleting, server.SessionCompleting,
		`manifest = ?, content_hash = ?, size_bytes = ?, chunk_count = ?`, []any{string(manifest), h, size, chunkCount},
		` AND stream = true`, "upload session was opened with a manifest; only a stream session takes one at completion")
}

// AbortSession moves an open session, or one whose completion is dead, to
// aborted; see server.SessionStore.
func (s *Store) AbortSession(ctx context.Context, accountID, id string) (server.UploadSession, error) {
	const op = "abort session"
	if !server.ValidSessionID(id) || accountID == "" || !validKey(accountID) {
		return server.UploadSession{}, sessionNotFound()
	}
	for range transitionAttempts {
		now := s.nowUTC()
		u, err := scanSession(s.db.QueryRowContext(ctx, s.q(`UPDATE upload_sessions SET state = 'aborted', updated_at = ?, lease_until = NULL
WHERE id = ? AND account_id = ? AND (state = 'open' OR `+deadCompletion+`)
RETURNING `+sessionCols), now, id, accountID, now))
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return server.UploadSession{}, wrap(op, err)
		}
		u, err = s.sessionByID(ctx, s.db, accountID, id)
		if err != nil {
			return server.UploadSession{}, err
		}
		switch u.State {
		case server.SessionAborted:
			return u, nil
		case server.SessionCompleting:
			if u.CompletionDead(now) {
				continue // its lease ran out since the UPDATE ran: try again
			}
			return server.UploadSession{}, server.Errorf(server.EConflict, "upload session is being completed; it can no longer be aborted")
		case server.SessionCompleted:
			return server.UploadSession{}, server.Errorf(server.EConflict, "upload session is completed; delete the asset instead")
		case server.SessionOpen:
			// Back to open (FailCompletion) since the UPDATE ran: try again.
		default:
			return server.UploadSession{}, wrap(op, fmt.Errorf("session %s in unknown state %q", id, u.State))
		}
	}
	return server.UploadSession{}, wrap(op, errors.New("session keeps changing state"))
}
