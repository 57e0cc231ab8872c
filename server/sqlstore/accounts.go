package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
)

const tierCols = `tier, storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, rate_limit_per_minute, max_file_size_mb`

// Tiers lists tier_configs, smallest storage quota first.
func (s *Store) Tiers(ctx context.Context) ([]server.Tier, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+tierCols+` FROM tier_configs ORDER BY storage_quota_gb, tier`)
	if err != nil {
		return nil, wrap("list tiers", err)
	}
	defer rows.Close()
	var ts []server.Tier
	for rows.Next() {
		t, err := scanTier(rows)
		if err != nil {
			return nil, wrap("list tiers", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list tiers", err)
	}
	return ts, nil
}

// Tier returns one tier; an unknown name is EUnknownTier.
func (s *Store) Tier(ctx context.Context, name string) (server.Tier, error) {
	t, err := scanTier(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+tierCols+` FROM tier_configs WHERE tier = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return server.Tier{}, unknownTier(name)
	}
	if err != nil {
		return server.Tier{}, wrap("get tier", err)
	}
	return t, nil
}

func unknownTier(name string) error {
	if len(name) > 20 {
		name = name[:20] + "..."
	}
	return server.Errorf(server.EUnknownTier, "unknown tier %q (tiers: free, starter, pro, business, enterprise)", name)
}

type scanner interface{ Scan(dest ...any) error }

func scanTier(r scanner) (server.Tier, error) {
	var t server.Tier
	err := r.Scan(&t.Name, &t.StorageQuotaGB, &t.BandwidthQuotaGB, &t.JettySpeedEnabled, &t.RateLimitPerMinute, &t.MaxFileSizeMB)
	return t, err
}

const accountCols = `id, agentcache_user_id, agentcache_email, agentcache_tier, api_key, api_secret_hash,
  storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, s3_bucket_name, s3_prefix, status,
  storage_used_bytes, storage_reserved_bytes, bandwidth_used_bytes, created_at, updated_at, last_accessed,
  bandwidth_period, prev_api_key, prev_api_secret_hash, prev_key_expires_at, deleted_at, purged_at, webhook_url`

// scanAccount scans a row of accountCols. BandwidthUsedBytes is the
// current month's (by the store's clock): 0 when the counter belongs to an
// earlier month.
func (s *Store) scanAccount(r scanner) (server.Account, error) {
	var (
		a      server.Account
		status string
		last   sql.NullTime
		period string
		prevK  sql.NullString
		prevH  sql.NullString
		prevE  sql.NullTime
		delAt  sql.NullTime
		purAt  sql.NullTime
		hook   sql.NullString
	)
	err := r.Scan(&a.ID, &a.UserID, &a.Email, &a.Tier, &a.APIKey, &a.SecretHash,
		&a.StorageQuotaGB, &a.BandwidthQuotaGB, &a.JettySpeedEnabled, &a.S3Bucket, &a.S3Prefix, &status,
		&a.StorageUsedBytes, &a.StorageReservedBytes, &a.BandwidthUsedBytes, &a.CreatedAt, &a.UpdatedAt, &last,
		&period, &prevK, &prevH, &prevE, &delAt, &purAt, &hook)
	if err != nil {
		return server.Account{}, err
	}
	if period != bandwidthPeriod(s.now()) {
		a.BandwidthUsedBytes = 0
	}
	a.Status = server.AccountStatus(status)
	a.WebhookURL = hook.String
	a.CreatedAt = a.CreatedAt.UTC()
	a.UpdatedAt = a.UpdatedAt.UTC()
	if last.Valid {
		a.LastAccessed = last.Time.UTC()
	}
	if delAt.Valid {
		a.DeletedAt = delAt.Time.UTC()
	}
	if purAt.Valid {
		a.PurgedAt = purAt.Time.UTC()
	}
	if prevK.Valid && prevH.Valid && prevE.Valid {
		a.PrevAPIKey, a.PrevSecretHash, a.PrevKeyExpiresAt = prevK.String, prevH.String, prevE.Time.UTC()
	}
	return a, nil
}

// validSecretHash reports whether h looks like a hex SHA-256.
func validSecretHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func validateCredentials(apiKey, secretHash string) error {
	if apiKey == "" || len(apiKey) > 255 {
		return server.Errorf(server.EInvalid, "api key must be 1 to 255 bytes long")
	}
	if !validSecretHash(secretHash) {
		return server.Errorf(server.EInvalid, "secret hash must be a hex SHA-256 (64 hex digits)")
	}
	return nil
}

// CreateAccount provisions an account. Quotas and the JettySpeed flag are
// copied from tier_configs by the INSERT itself. Errors: EInvalidUserID,
// EInvalid (e-mail, key, secret hash, bucket or prefix), EUnknownTier,
// EAccountExists (the user id is taken). A taken API key is an internal
// error: keys are random and a collision means a bug.
func (s *Store) CreateAccount(ctx context.Context, n server.NewAccount) (server.Account, error) {
	if err := server.ValidateUserID(n.UserID); err != nil {
		return server.Account{}, err
	}
	if err := server.ValidateEmail(n.Email); err != nil {
		return server.Account{}, err
	}
	if err := server.ValidateTierName(n.Tier); err != nil {
		return server.Account{}, err
	}
	if err := validateCredentials(n.APIKey, n.SecretHash); err != nil {
		return server.Account{}, err
	}
	if len(n.S3Bucket) > 255 || len(n.S3Prefix) > 1024 {
		return server.Account{}, server.Errorf(server.EInvalid, "S3 bucket or prefix too long")
	}
	if err := validWebhookURL(n.WebhookURL); err != nil {
		return server.Account{}, err
	}
	now := s.nowUTC()
	var a server.Account
	err := s.inTx(ctx, "create account", func(tx *sql.Tx) error {
		var err error
		a, err = s.scanAccount(tx.QueryRowContext(ctx, s.q(`INSERT INTO agentcache_accounts (
  id, agentcache_user_id, agentcache_email, agentcache_tier, api_key, api_secret_hash,
  storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, s3_bucket_name, s3_prefix, status,
  storage_used_bytes, storage_reserved_bytes, bandwidth_used_bytes, created_at, updated_at, webhook_url)
SELECT ?, ?, ?, t.tier, ?, ?,
  t.storage_quota_gb, t.bandwidth_quota_gb, t.jetty_speed_enabled, ?, ?, 'active',
  0, 0, 0, ?, ?, ?
FROM tier_configs t WHERE t.tier = ?
RETURNING `+accountCols),
			uuid.NewString(), n.UserID, n.Email, n.APIKey, n.SecretHash,
			n.S3Bucket, n.S3Prefix, now, now, nullable(n.WebhookURL), n.Tier))
		if err != nil {
			return err
		}
		return s.emitTx(ctx, tx, a, server.EventAccountProvisioned, server.WebhookDataFor(a))
	})
	switch {
	case err == nil:
		return a, nil
	case errors.Is(err, sql.ErrNoRows):
		return server.Account{}, unknownTier(n.Tier)
	case isUniqueViolation(err, uniqueUserID):
		return server.Account{}, server.Errorf(server.EAccountExists, "an account for agentcache_user_id %q already exists", n.UserID)
	case isUniqueViolation(err, uniqueAPIKey):
		return server.Account{}, wrap("create account", errors.New("api key already in use"))
	}
	return server.Account{}, wrapOnce("create account", err)
}

func (s *Store) accountBy(ctx context.Context, op, col, val string) (server.Account, error) {
	if !validKey(val) {
		return server.Account{}, server.Errorf(server.ENotFound, "account not found")
	}
	a, err := s.scanAccount(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+accountCols+` FROM agentcache_accounts WHERE `+col+` = ?`), val))
	if errors.Is(err, sql.ErrNoRows) {
		return server.Account{}, server.Errorf(server.ENotFound, "account not found")
	}
	if err != nil {
		return server.Account{}, wrap(op, err)
	}
	return a, nil
}

// AccountByID returns the account with id, or ENotFound.
func (s *Store) AccountByID(ctx context.Context, id string) (server.Account, error) {
	return s.accountBy(ctx, "account by id", "id", id)
}

// AccountByUserID returns the account of an AgentCache user, or ENotFound.
func (s *Store) AccountByUserID(ctx context.Context, userID string) (server.Account, error) {
	return s.accountBy(ctx, "account by user id", "agentcache_user_id", userID)
}

// AccountByAPIKey returns the account whose current or previous key is
// apiKey, or ENotFound. A previous key is returned whatever its expiry:
// the caller compares PrevKeyExpiresAt with its own clock.
func (s *Store) AccountByAPIKey(ctx context.Context, apiKey string) (server.Account, error) {
	a, err := s.accountBy(ctx, "account by api key", "api_key", apiKey)
	if server.ErrorCode(err) != server.ENotFound || !validKey(apiKey) {
		return a, err
	}
	return s.accountBy(ctx, "account by previous api key", "prev_api_key", apiKey)
}

// whyNoUpdate explains an UPDATE of the account of userID that matched no
// row because of its status guard: ENotFound or EAccountDeleted.
func (s *Store) whyNoUpdate(ctx context.Context, op, userID string) error {
	a, err := s.AccountByUserID(ctx, userID)
	if err != nil {
		return err
	}
	if a.Status == server.StatusDeleted {
		return server.Errorf(server.EAccountDeleted, "account of agentcache_user_id %q is deleted", userID)
	}
	// The row exists and is not deleted, yet the update matched nothing: it
	// was un-deleted in between, which cannot happen.
	return wrap(op, errors.New("update matched no row"))
}

// ChangeTier moves the account of userID to tier, copying the tier's
// quotas and JettySpeed flag in the same statement. Errors: EUnknownTier,
// ENotFound, EAccountDeleted (a deleted account keeps its last tier).
func (s *Store) ChangeTier(ctx context.Context, userID, tier string) (server.Account, error) {
	if err := server.ValidateTierName(tier); err != nil {
		return server.Account{}, err
	}
	var a server.Account
	err := s.inTx(ctx, "change tier", func(tx *sql.Tx) error {
		var prev string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT agentcache_tier FROM agentcache_accounts
WHERE agentcache_user_id = ? AND status <> 'deleted'`+s.forUpdate()), userID).Scan(&prev); err != nil {
			return err
		}
		var err error
		a, err = s.scanAccount(tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET
  agentcache_tier = ?,
  storage_quota_gb = (SELECT storage_quota_gb FROM tier_configs WHERE tier = ?),
  bandwidth_quota_gb = (SELECT bandwidth_quota_gb FROM tier_configs WHERE tier = ?),
  jetty_speed_enabled = (SELECT jetty_speed_enabled FROM tier_configs WHERE tier = ?),
  updated_at = ?
WHERE agentcache_user_id = ? AND status <> 'deleted'
  AND EXISTS (SELECT 1 FROM tier_configs WHERE tier = ?)
RETURNING `+accountCols),
			tier, tier, tier, tier, s.nowUTC(), userID, tier))
		if err != nil {
			return err
		}
		if prev != a.Tier {
			d := server.WebhookDataFor(a)
			d.PreviousTier = prev
			if err := s.emitTx(ctx, tx, a, server.EventAccountTierChanged, d); err != nil {
				return err
			}
		}
		// A new quota may put the usage over a threshold, or below one.
		return s.quotaTx(ctx, tx, a.ID)
	})
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return server.Account{}, wrapOnce("change tier", err)
	}
	if _, err := s.Tier(ctx, tier); err != nil {
		return server.Account{}, err
	}
	return server.Account{}, s.whyNoUpdate(ctx, "change tier", userID)
}

// SetStatus changes the status of the account of userID. Every transition
// is allowed except leaving 'deleted' (EAccountDeleted); deleted to
// deleted is a no-op. Deleting records deleted_at, which deleting again
// never moves (the purge's grace period runs from the first deletion).
// Errors: EInvalid (unknown status), ENotFound, EAccountDeleted.
func (s *Store) SetStatus(ctx context.Context, userID string, status server.AccountStatus) (server.Account, error) {
	switch status {
	case server.StatusActive, server.StatusSuspended, server.StatusDeleted:
	default:
		return server.Account{}, server.Errorf(server.EInvalid, "status must be active, suspended or deleted")
	}
	now := s.nowUTC()
	var a server.Account
	err := s.inTx(ctx, "set status", func(tx *sql.Tx) error {
		var prev string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT status FROM agentcache_accounts
WHERE agentcache_user_id = ? AND (status <> 'deleted' OR status = ?)`+s.forUpdate()), userID, string(status)).Scan(&prev); err != nil {
			return err
		}
		var err error
		a, err = s.scanAccount(tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET status = ?, updated_at = ?,
  deleted_at = CASE WHEN ? = 'deleted' AND deleted_at IS NULL THEN ? ELSE deleted_at END
WHERE agentcache_user_id = ? AND (status <> 'deleted' OR status = ?)
RETURNING `+accountCols),
			string(status), now, string(status), now, userID, string(status)))
		if err != nil || server.AccountStatus(prev) == status {
			return err
		}
		typ := map[server.AccountStatus]string{
			server.StatusSuspended: server.EventAccountSuspended,
			server.StatusActive:    server.EventAccountReactivated,
			server.StatusDeleted:   server.EventAccountDeleted,
		}[status]
		d := server.WebhookDataFor(a)
		d.PreviousStatus = prev
		return s.emitTx(ctx, tx, a, typ, d)
	})
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return server.Account{}, wrapOnce("set status", err)
	}
	return server.Account{}, s.whyNoUpdate(ctx, "set status", userID)
}

// RotateCredentials replaces the API key and secret hash of the account of
// userID. With a non-zero prevUntil the outgoing pair stays valid until
// then (as PrevAPIKey/PrevSecretHash, replacing any earlier previous
// pair); with the zero time it stops working at once. The caller's clock
// sets prevUntil, as it is the caller that compares it. Errors: EInvalid,
// ENotFound, EAccountDeleted. A taken API key is an internal error (see
// CreateAccount).
func (s *Store) RotateCredentials(ctx context.Context, userID, apiKey, secretHash string, prevUntil time.Time) (server.Account, error) {
	if err := validateCredentials(apiKey, secretHash); err != nil {
		return server.Account{}, err
	}
	now := s.nowUTC()
	keep := !prevUntil.IsZero()
	until := prevUntil
	var a server.Account
	err := s.inTx(ctx, "rotate credentials", func(tx *sql.Tx) error {
		var old string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT api_key FROM agentcache_accounts
WHERE agentcache_user_id = ? AND status <> 'deleted'`+s.forUpdate()), userID).Scan(&old); err != nil {
			return err
		}
		var err error
		a, err = s.scanAccount(tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET
  prev_api_key = CASE WHEN ? THEN api_key ELSE NULL END,
  prev_api_secret_hash = CASE WHEN ? THEN api_secret_hash ELSE NULL END,
  prev_key_expires_at = ?,
  api_key = ?, api_secret_hash = ?, updated_at = ?
WHERE agentcache_user_id = ? AND status <> 'deleted'
  AND NOT EXISTS (SELECT 1 FROM agentcache_accounts o WHERE o.prev_api_key = ?)
RETURNING `+accountCols),
			keep, keep, nullTime(until), apiKey, secretHash, now, userID, apiKey))
		if err != nil {
			return err
		}
		d := server.WebhookDataFor(a)
		d.APIKeyPrefix, d.PreviousKeyPrefix = apikey.Redact(a.APIKey), apikey.Redact(old)
		if !a.PrevKeyExpiresAt.IsZero() {
			t := a.PrevKeyExpiresAt
			d.PreviousKeyExpiresAt = &t
		}
		return s.emitTx(ctx, tx, a, server.EventCredentialsRotated, d)
	})
	switch {
	case err == nil:
		return a, nil
	case errors.Is(err, sql.ErrNoRows):
		if _, err := s.accountBy(ctx, "rotate credentials", "prev_api_key", apiKey); err == nil {
			// Keys are random: a collision with a previous key is a bug.
			return server.Account{}, wrap("rotate credentials", errors.New("api key already in use as a previous key"))
		}
		return server.Account{}, s.whyNoUpdate(ctx, "rotate credentials", userID)
	case isUniqueViolation(err, uniqueAPIKey), isUniqueViolation(err, uniquePrevAPIKey):
		return server.Account{}, wrap("rotate credentials", errors.New("api key already in use"))
	}
	return server.Account{}, wrapOnce("rotate credentials", err)
}

// RevokePreviousCredentials ends a rotation's overlap at once: the
// previous key and secret of the account of userID stop working. Revoking
// when there is none is a no-op. Errors: ENotFound, EAccountDeleted.
func (s *Store) RevokePreviousCredentials(ctx context.Context, userID string) (server.Account, error) {
	var a server.Account
	err := s.inTx(ctx, "revoke previous credentials", func(tx *sql.Tx) error {
		var prev sql.NullString
		if err := tx.QueryRowContext(ctx, s.q(`SELECT prev_api_key FROM agentcache_accounts
WHERE agentcache_user_id = ? AND status <> 'deleted'`+s.forUpdate()), userID).Scan(&prev); err != nil {
			return err
		}
		var err error
		a, err = s.scanAccount(tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET
  prev_api_key = NULL, prev_api_secret_hash = NULL, prev_key_expires_at = NULL, updated_at = ?
WHERE agentcache_user_id = ? AND status <> 'deleted'
RETURNING `+accountCols), s.nowUTC(), userID))
		if err != nil || !prev.Valid {
			return err // nothing was revoked: no event
		}
		d := server.WebhookDataFor(a)
		d.APIKeyPrefix, d.PreviousKeyPrefix = apikey.Redact(a.APIKey), apikey.Redact(prev.String)
		return s.emitTx(ctx, tx, a, server.EventCredentialsRevoked, d)
	})
	switch {
	case err == nil:
		return a, nil
	case errors.Is(err, sql.ErrNoRows):
		return server.Account{}, s.whyNoUpdate(ctx, "revoke previous credentials", userID)
	}
	return server.Account{}, wrapOnce("revoke previous credentials", err)
}

// TouchAccount sets last_accessed to at (now when zero), unless it is
// already later. Errors: ENotFound.
func (s *Store) TouchAccount(ctx context.Context, accountID string, at time.Time) error {
	if at.IsZero() {
		at = s.now()
	}
	at = ts(at)
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET last_accessed = ?
WHERE id = ? AND (last_accessed IS NULL OR last_accessed < ?)`), at, accountID, at)
	if err != nil {
		return wrap("touch account", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("touch account", err)
	} else if n > 0 {
		return nil
	}
	_, err = s.AccountByID(ctx, accountID)
	return err
}
