package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
)

// maxPurgeItems bounds the items of one PurgeBatch or ForgetPurged (one
// placeholder each in an IN list, well within both dialects' limits).
const maxPurgeItems = 1000

// maxDeleteRequests bounds the limit of DeleteRequests, so that one
// transaction never holds too many row locks (PostgreSQL); on SQLite a
// statement deletes at most sqliteDeleteBatch rows, because every other
// write (request logs, upload commits) waits for SQLite's one writer
// meanwhile: 1000 rows took 10-100 ms on the shared test machine, 5000
// 100-800 ms (docs/RELIABILITY.md, section 16).
const (
	maxDeleteRequests = 100_000
	sqliteDeleteBatch = 1000
)

// DeleteRequests deletes up to limit api_requests rows created before
// `before`, oldest first, in one statement (on SQLite at most
// sqliteDeleteBatch); see server.RetentionStore.
// The rows are found through the created_at index (for anonFailed, the
// partial index on failed requests without an account: its predicate is
// repeated word for word, and SQLite is told to use it) and deleted by
// their physical address (ctid on PostgreSQL, rowid on SQLite), so a
// batch costs its own rows, whatever the size of the table.
func (s *Store) DeleteRequests(ctx context.Context, before time.Time, anonFailed bool, limit int) (int, error) {
	if limit < 1 || limit > maxDeleteRequests {
		return 0, server.Errorf(server.EInvalid, "limit must be between 1 and %d, got %d", maxDeleteRequests, limit)
	}
	if s.dialect == SQLite {
		limit = min(limit, sqliteDeleteBatch)
	}
	res, err := s.db.ExecContext(ctx, s.q(s.deleteRequestsSQL(anonFailed)), ts(before), limit)
	if err != nil {
		return 0, wrap("delete requests", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("delete requests", err)
	}
	return int(n), nil
}

// deleteRequestsSQL is the statement of DeleteRequests (parameters: the
// cut-off and the limit).
func (s *Store) deleteRequestsSQL(anonFailed bool) string {
	cond, indexed := `created_at < ?`, ``
	if anonFailed {
		cond += ` AND account_id IS NULL AND status_code >= 400`
		// SQLite's planner (without ANALYZE statistics) prefers the
		// (account_id, created_at) index, which would walk every request
		// without an account, successful ones (heartbeats, partner calls)
		// included, on every pass.
		indexed = ` INDEXED BY idx_api_requests_anon_failed`
	}
	if s.dialect == Postgres {
		return `DELETE FROM api_requests WHERE ctid = ANY (ARRAY(
  SELECT ctid FROM api_requests WHERE ` + cond + ` ORDER BY created_at LIMIT ?))`
	}
	return `DELETE FROM api_requests WHERE rowid IN (
  SELECT rowid FROM api_requests` + indexed + ` WHERE ` + cond + ` ORDER BY created_at LIMIT ?)`
}

// AccountsToPurge lists deleted, unpurged accounts deleted before
// deletedBefore, longest ago first; see server.RetentionStore.
func (s *Store) AccountsToPurge(ctx context.Context, deletedBefore time.Time, limit int) ([]server.Account, error) {
	if limit < 1 {
		return nil, server.Errorf(server.EInvalid, "limit must be positive, got %d", limit)
	}
	return s.queryAccounts(ctx, "accounts to purge", `SELECT `+accountCols+` FROM agentcache_accounts
WHERE status = 'deleted' AND purged_at IS NULL AND deleted_at < ?
ORDER BY deleted_at, id LIMIT ?`, ts(deletedBefore), limit)
}

// queryAccounts runs a query of accountCols (with '?' placeholders) on
// the read pool and scans every row; never nil.
func (s *Store) queryAccounts(ctx context.Context, op, query string, args ...any) ([]server.Account, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	out := []server.Account{}
	for rows.Next() {
		a, err := s.scanAccount(rows)
		if err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// purgeable checks that the account exists and is deleted: nothing of a
// live account is ever purged. It returns the account's user id and
// whether it is purged already. Deleted is a final state, so the answer
// cannot change once given.
func (s *Store) purgeable(ctx context.Context, q queryRower, accountID string) (string, bool, error) {
	if !validKey(accountID) {
		return "", false, server.Errorf(server.ENotFound, "account not found")
	}
	var (
		status, userID string
		purged         sql.NullTime
	)
	err := q.QueryRowContext(ctx, s.q(`SELECT status, agentcache_user_id, purged_at FROM agentcache_accounts WHERE id = ?`),
		accountID).Scan(&status, &userID, &purged)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, server.Errorf(server.ENotFound, "account not found")
	}
	if err != nil {
		return "", false, wrap("purge account", err)
	}
	if server.AccountStatus(status) != server.StatusDeleted {
		return "", false, server.Errorf(server.EConflict, "account is %s, not deleted: its data is not purged", status)
	}
	return userID, purged.Valid, nil
}

// PurgeBatch returns up to limit items the deleted account still holds:
// stored objects first, then upload sessions; see server.RetentionStore.
func (s *Store) PurgeBatch(ctx context.Context, accountID string, limit int) ([]server.PurgeItem, error) {
	if limit < 1 || limit > maxPurgeItems {
		return nil, server.Errorf(server.EInvalid, "limit must be between 1 and %d, got %d", maxPurgeItems, limit)
	}
	if _, _, err := s.purgeable(ctx, s.rdb, accountID); err != nil {
		return nil, err
	}
	out := []server.PurgeItem{}
	// No ORDER BY: any batch will do (its rows go before the next one
	// is asked for), and this way each query stops after limit entries
	// of the account_id index instead of sorting the account's rows.
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT id, object_key, size_bytes FROM stored_objects WHERE account_id = ? LIMIT ?`),
		accountID, limit)
	if err != nil {
		return nil, wrap("purge batch", err)
	}
	for rows.Next() {
		var it server.PurgeItem
		if err := rows.Scan(&it.ObjectID, &it.ObjectKey, &it.Size); err != nil {
			rows.Close()
			return nil, wrap("purge batch", err)
		}
		out = append(out, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap("purge batch", err)
	}
	if len(out) == limit {
		return out, nil
	}
	rows, err = s.rdb.QueryContext(ctx, s.q(`SELECT id, object_key,
  CASE WHEN state IN ('open', 'completing') THEN upload_id ELSE '' END
FROM upload_sessions WHERE account_id = ? LIMIT ?`), accountID, limit-len(out))
	if err != nil {
		return nil, wrap("purge batch", err)
	}
	defer rows.Close()
	for rows.Next() {
		var it server.PurgeItem
		if err := rows.Scan(&it.SessionID, &it.ObjectKey, &it.UploadID); err != nil {
			return nil, wrap("purge batch", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("purge batch", err)
	}
	return out, nil
}

// inList returns "?, ?, ..." for n values.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// ForgetPurged drops the rows of purged items; see server.RetentionStore.
func (s *Store) ForgetPurged(ctx context.Context, accountID string, items []server.PurgeItem) error {
	const op = "forget purged"
	if len(items) > maxPurgeItems {
		return server.Errorf(server.EInvalid, "at most %d items at a time, got %d", maxPurgeItems, len(items))
	}
	var objects, sessions []any
	for _, it := range items {
		switch {
		case it.ObjectID != "" && validKey(it.ObjectID):
			objects = append(objects, it.ObjectID)
		case it.SessionID != "" && validKey(it.SessionID):
			sessions = append(sessions, it.SessionID)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap(op, err)
	}
	defer rollback(tx)
	if _, _, err := s.purgeable(ctx, tx, accountID); err != nil {
		return err
	}
	if len(objects) > 0 {
		args := append([]any{accountID}, objects...)
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM agentcache_assets WHERE account_id = ? AND object_id IN (`+inList(len(objects))+`)`),
			args...); err != nil {
			return wrap(op, err)
		}
		rows, err := tx.QueryContext(ctx, s.q(`DELETE FROM stored_objects WHERE account_id = ? AND id IN (`+inList(len(objects))+`)
RETURNING size_bytes`), args...)
		if err != nil {
			return wrap(op, err)
		}
		var freed int64
		for rows.Next() {
			var n int64
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return wrap(op, err)
			}
			freed += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return wrap(op, err)
		}
		if freed > 0 {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts
SET storage_used_bytes = CASE WHEN storage_used_bytes > ? THEN storage_used_bytes - ? ELSE 0 END
WHERE id = ?`), freed, freed, accountID); err != nil {
				return wrap(op, err)
			}
		}
	}
	if len(sessions) > 0 {
		args := append([]any{accountID}, sessions...)
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM upload_sessions WHERE account_id = ? AND id IN (`+inList(len(sessions))+`)`),
			args...); err != nil {
			return wrap(op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return wrap(op, err)
	}
	return nil
}

// FinishPurge completes the purge of a deleted account; see
// server.RetentionStore. It refuses (EConflict) while PurgeBatch still
// has items, so that no row whose bytes were not removed one by one is
// ever dropped; what it drops itself (assets without an object, the
// reservations, the pending and garbage records under the account's
// prefix) holds no bytes the caller's sweep of the prefix did not remove.
func (s *Store) FinishPurge(ctx context.Context, accountID string, now time.Time) (server.Account, error) {
	const op = "finish purge"
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return server.Account{}, wrap(op, err)
	}
	defer rollback(tx)
	userID, purged, err := s.purgeable(ctx, tx, accountID)
	if err != nil {
		return server.Account{}, err
	}
	if purged {
		if err := tx.Commit(); err != nil {
			return server.Account{}, wrap(op, err)
		}
		return s.AccountByID(ctx, accountID)
	}
	var left int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT (SELECT count(*) FROM stored_objects WHERE account_id = ?)
  + (SELECT count(*) FROM upload_sessions WHERE account_id = ?)`), accountID, accountID).Scan(&left); err != nil {
		return server.Account{}, wrap(op, err)
	}
	if left > 0 {
		return server.Account{}, server.Errorf(server.EConflict, "account still holds %d objects or sessions: purge them first", left)
	}
	for _, q := range []string{
		`DELETE FROM agentcache_assets WHERE account_id = ?`,
		`DELETE FROM quota_reservations WHERE account_id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, s.q(q), accountID); err != nil {
			return server.Account{}, wrap(op, err)
		}
	}
	// The prefix is only trusted for a user id that is valid now: its
	// prefix then names this account's objects and no other's.
	if server.ValidateUserID(userID) == nil {
		prefix := server.AccountPrefix(userID)
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM blob_garbage WHERE substr(object_key, 1, ?) = ?`),
			len(prefix), prefix); err != nil {
			return server.Account{}, wrap(op, err)
		}
	}
	at := ts(now)
	if now.IsZero() {
		at = s.nowUTC()
	}
	a, err := s.scanAccount(tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET
  storage_used_bytes = 0, storage_reserved_bytes = 0, agentcache_email = '', purged_at = ?, updated_at = ?
WHERE id = ?
RETURNING `+accountCols), at, at, accountID))
	if err != nil {
		return server.Account{}, wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return server.Account{}, wrap(op, err)
	}
	return a, nil
}
