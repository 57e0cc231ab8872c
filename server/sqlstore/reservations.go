package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/server"
)

// maxReserveBytes bounds one reservation (1 PiB, far above any tier) so
// that used + reserved + bytes cannot overflow a BIGINT.
const maxReserveBytes = 1 << 50

// sweepBatch is how many expired reservations ReleaseExpiredReservations
// looks up at a time.
const sweepBatch = 500

// Reserve holds bytes of the account's storage quota until ttl passes.
// The conditional UPDATE is the whole admission check, so concurrent
// reservations cannot overshoot the quota. Errors: EInvalid (bytes or ttl
// not positive), EQuotaExceeded (with the numbers), ENotFound,
// EAccountSuspended, EAccountDeleted.
func (s *Store) Reserve(ctx context.Context, accountID string, bytes int64, ttl time.Duration) (server.Reservation, error) {
	if bytes <= 0 {
		return server.Reservation{}, server.Errorf(server.EInvalid, "reservation size must be positive, got %d bytes", bytes)
	}
	if ttl <= 0 {
		return server.Reservation{}, server.Errorf(server.EInvalid, "reservation ttl must be positive, got %s", ttl)
	}
	if bytes > maxReserveBytes {
		return server.Reservation{}, server.Errorf(server.EQuotaExceeded,
			"storage quota exceeded: requested %s is more than any tier allows; split the upload", units.HumanBytes(bytes))
	}
	now := s.nowUTC()
	r := server.Reservation{
		ID:        uuid.NewString(),
		AccountID: accountID,
		Bytes:     bytes,
		CreatedAt: now,
		ExpiresAt: ts(now.Add(ttl)),
	}
	// On PostgreSQL a refusal is explained by a second statement, which may
	// see a release committed after the UPDATE ran; then the UPDATE is
	// simply tried again.
	for attempt := 0; ; attempt++ {
		retry, err := s.reserveOnce(ctx, r, attempt < 2)
		if err != nil {
			return server.Reservation{}, err
		}
		if !retry {
			return r, nil
		}
	}
}

// reserveOnce tries to take the reservation r in one transaction. It
// reports retry when the UPDATE refused but the account, read afterwards,
// had room (and mayRetry is set).
func (s *Store) reserveOnce(ctx context.Context, r server.Reservation, mayRetry bool) (retry bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, wrap("reserve", err)
	}
	defer rollback(tx)
	res, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts
SET storage_reserved_bytes = storage_reserved_bytes + ?
WHERE id = ? AND status = 'active'
  AND storage_used_bytes + storage_reserved_bytes + ? <= storage_quota_gb * 1073741824`),
		r.Bytes, r.AccountID, r.Bytes)
	if err != nil {
		return false, wrap("reserve", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, wrap("reserve", err)
	}
	if n == 0 {
		return s.whyNoReservation(ctx, tx, r, mayRetry)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO quota_reservations (id, account_id, bytes, created_at, expires_at)
VALUES (?, ?, ?, ?, ?)`), r.ID, r.AccountID, r.Bytes, r.CreatedAt, r.ExpiresAt); err != nil {
		return false, wrap("reserve", err)
	}
	if err := tx.Commit(); err != nil {
		return false, wrap("reserve", err)
	}
	return false, nil
}

// whyNoReservation finds out why the reservation UPDATE matched no row.
func (s *Store) whyNoReservation(ctx context.Context, tx *sql.Tx, r server.Reservation, mayRetry bool) (bool, error) {
	var (
		status                string
		used, reserved, quota int64
	)
	err := tx.QueryRowContext(ctx, s.q(`SELECT status, storage_used_bytes, storage_reserved_bytes, storage_quota_gb
FROM agentcache_accounts WHERE id = ?`), r.AccountID).Scan(&status, &used, &reserved, &quota)
	if errors.Is(err, sql.ErrNoRows) {
		return false, server.Errorf(server.ENotFound, "account not found")
	}
	if err != nil {
		return false, wrap("reserve", err)
	}
	switch server.AccountStatus(status) {
	case server.StatusSuspended:
		return false, server.Errorf(server.EAccountSuspended, "account is suspended; uploads are not allowed until it is reactivated")
	case server.StatusDeleted:
		return false, server.Errorf(server.EAccountDeleted, "account is deleted")
	}
	quotaBytes := quota * server.GiB
	if used+reserved+r.Bytes <= quotaBytes && mayRetry {
		return true, nil
	}
	return false, quotaExceeded(r.Bytes, used, reserved, quotaBytes)
}

func quotaExceeded(requested, used, reserved, quota int64) error {
	free := max(quota-used-reserved, 0)
	return server.Errorf(server.EQuotaExceeded,
		"storage quota exceeded: requested %s, but %s is used and %s is reserved for uploads in progress of a %s quota (%s free); upgrade your tier or delete files",
		units.HumanBytes(requested), units.HumanBytes(used), units.HumanBytes(reserved), units.HumanBytes(quota), units.HumanBytes(free))
}

// CommitReservation turns a reservation into used storage: actual bytes
// become used, the rest of the reservation is released. The reservation
// row is deleted first, so a second commit (or a commit after a release or
// an expiry sweep) is ENotFound. actual must be within 0..reserved
// (EInvalid, and the reservation is left as it was).
func (s *Store) CommitReservation(ctx context.Context, reservationID string, actual int64) error {
	if actual < 0 {
		return server.Errorf(server.EInvalid, "committed size must not be negative, got %d bytes", actual)
	}
	_, err := s.settle(ctx, "commit reservation", reservationID, actual, nil)
	return err
}

// ReleaseReservation returns all of a reservation's bytes to the account.
// Releasing twice, or after a commit, is ENotFound.
func (s *Store) ReleaseReservation(ctx context.Context, reservationID string) error {
	_, err := s.settle(ctx, "release reservation", reservationID, 0, nil)
	return err
}

// ReleaseExpiredReservations releases every reservation whose expires_at
// is before now and reports how many it released. Each reservation is
// settled in its own transaction by the same delete-first path as commits,
// so a reservation committed, released or swept concurrently is counted
// by exactly one of them.
func (s *Store) ReleaseExpiredReservations(ctx context.Context, now time.Time) (int, error) {
	now = ts(now)
	released := 0
	for {
		ids, err := s.expiredReservations(ctx, now)
		if err != nil {
			return released, err
		}
		for _, id := range ids {
			ok, err := s.settle(ctx, "release expired reservation", id, 0, &now)
			if err != nil && server.ErrorCode(err) != server.ENotFound {
				return released, err
			}
			if ok {
				released++
			}
		}
		if len(ids) < sweepBatch {
			return released, nil
		}
	}
}

func (s *Store) expiredReservations(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT id FROM quota_reservations WHERE expires_at < ? ORDER BY expires_at LIMIT ?`), now, sweepBatch)
	if err != nil {
		return nil, wrap("list expired reservations", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap("list expired reservations", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list expired reservations", err)
	}
	return ids, nil
}

// settle deletes reservation id and moves its bytes: actual of them to
// used storage, all of them out of reserved. With expiredBefore set only a
// reservation that expired before that time is settled. It reports whether
// it settled the reservation; a missing one is ENotFound.
func (s *Store) settle(ctx context.Context, op, id string, actual int64, expiredBefore *time.Time) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, wrap(op, err)
	}
	defer rollback(tx)
	if err := s.settleTx(ctx, tx, op, id, "", actual, expiredBefore); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, wrap(op, err)
	}
	return true, nil
}

// settleTx is settle within tx, which the caller commits. With accountID
// set, a reservation of another account is ENotFound (and left alone once
// the caller rolls back).
func (s *Store) settleTx(ctx context.Context, tx *sql.Tx, op, id, accountID string, actual int64, expiredBefore *time.Time) error {
	var (
		owner string
		bytes int64
		err   error
	)
	if expiredBefore != nil {
		err = tx.QueryRowContext(ctx, s.q(`DELETE FROM quota_reservations WHERE id = ? AND expires_at < ? RETURNING account_id, bytes`),
			id, *expiredBefore).Scan(&owner, &bytes)
	} else {
		err = tx.QueryRowContext(ctx, s.q(`DELETE FROM quota_reservations WHERE id = ? RETURNING account_id, bytes`),
			id).Scan(&owner, &bytes)
	}
	if errors.Is(err, sql.ErrNoRows) || err == nil && accountID != "" && owner != accountID {
		return server.Errorf(server.ENotFound, "reservation not found: it was already committed, released or expired")
	}
	if err != nil {
		return wrap(op, err)
	}
	if actual > bytes {
		return server.Errorf(server.EInvalid, "committed size %d bytes is more than the %d bytes reserved", actual, bytes)
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts
SET storage_reserved_bytes = storage_reserved_bytes - ?, storage_used_bytes = storage_used_bytes + ?
WHERE id = ?`), bytes, actual, owner)
	if err != nil {
		return wrap(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap(op, err)
	} else if n != 1 {
		return wrap(op, fmt.Errorf("account %s of reservation %s: %d rows updated", owner, id, n))
	}
	if actual > 0 {
		// Usage grew: a quota threshold may have been crossed.
		return s.quotaTx(ctx, tx, owner)
	}
	return nil
}
