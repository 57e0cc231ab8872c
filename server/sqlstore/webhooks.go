package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jettythunder/jetty/server"
)

// The outbox of status webhooks (issue 19). Events are inserted by the
// account and reservation methods in their own transactions (emitTx,
// quotaTx), numbered per account by agentcache_accounts.webhook_seq, which
// is incremented under the row lock the change already holds: an
// account's sequence order is its commit order. Delivery claims only the
// oldest pending event of each account, so event n+1 is never sent before
// n is delivered or failed.

// inTx runs fn in a write transaction and commits it. fn's errors are
// returned as they are (sql.ErrNoRows included) for the caller to explain.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap(op, err)
	}
	defer rollback(tx)
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return wrap(op, err)
	}
	return nil
}

// forUpdate locks the rows a SELECT reads, on PostgreSQL (SQLite's write
// transactions hold the database from BEGIN IMMEDIATE).
func (s *Store) forUpdate() string {
	if s.dialect == Postgres {
		return ` FOR UPDATE`
	}
	return ""
}

// wrapOnce is wrap for an error that may come from a helper that wrapped
// it already (or is a *server.Error): it is returned as is then.
func wrapOnce(op string, err error) error {
	var se *server.Error
	if errors.As(err, &se) || strings.HasPrefix(err.Error(), "sqlstore: ") {
		return err
	}
	return wrap(op, err)
}

// validWebhookURL checks what the store itself insists on: the shape of
// the URL, whatever the server's policy on http and private addresses
// (the API applies that).
func validWebhookURL(u string) error {
	if u == "" {
		return nil
	}
	return server.ValidateWebhookURL(u, server.WebhookURLPolicy{AllowHTTP: true, AllowPrivate: true})
}

// emitTx records event typ of account a (as the change left it) in tx.
// Nothing is recorded for an account without a webhook_url.
func (s *Store) emitTx(ctx context.Context, tx *sql.Tx, a server.Account, typ string, data server.WebhookEventData) error {
	const op = "record webhook event"
	if a.WebhookURL == "" {
		return nil
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET webhook_seq = webhook_seq + 1 WHERE id = ? RETURNING webhook_seq`),
		a.ID).Scan(&seq); err != nil {
		return wrap(op, err)
	}
	now := s.nowUTC()
	body := server.WebhookEventBody{
		ID:         "evt_" + uuid.NewString(),
		Type:       typ,
		UserID:     a.UserID,
		AccountID:  a.ID,
		OccurredAt: now,
		Sequence:   seq,
		Data:       data,
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return wrap(op, err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO webhook_events (id, account_id, seq, event_type, payload, state, attempts, next_attempt_at, created_at)
VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)`), body.ID, a.ID, seq, typ, string(payload), now, now); err != nil {
		return wrap(op, err)
	}
	return nil
}

// levelScanner scans quota_alert_level before an account's columns.
type levelScanner struct {
	r     scanner
	level *int
}

func (l levelScanner) Scan(dest ...any) error {
	return l.r.Scan(append([]any{l.level}, dest...)...)
}

// quotaTx compares the account's storage use, as tx sees it, with the
// last quota threshold reported. Crossing a higher one records
// quota.warning (80, 95) or quota.exceeded (100) for the highest crossed;
// falling below lowers the level without an event, so the next crossing
// is reported again. Call it after any change of used storage or quota.
func (s *Store) quotaTx(ctx context.Context, tx *sql.Tx, accountID string) error {
	const op = "check quota thresholds"
	var stored int
	a, err := s.scanAccount(levelScanner{tx.QueryRowContext(ctx, s.q(`SELECT quota_alert_level, `+accountCols+`
FROM agentcache_accounts WHERE id = ?`), accountID), &stored})
	if err != nil {
		return wrap(op, err)
	}
	level := server.QuotaLevel(a.StorageUsedBytes, a.StorageQuotaBytes())
	if level == stored {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE agentcache_accounts SET quota_alert_level = ? WHERE id = ?`), level, accountID); err != nil {
		return wrap(op, err)
	}
	if level < stored || a.Status == server.StatusDeleted {
		return nil
	}
	typ := server.EventQuotaWarning
	if level >= 100 {
		typ = server.EventQuotaExceeded
	}
	d := server.WebhookDataFor(a)
	d.ThresholdPercent = level
	return s.emitTx(ctx, tx, a, typ, d)
}

// SetWebhookURL sets or (with "") removes the account's webhook_url; see
// server.WebhookStore. Events already recorded go to the new URL.
func (s *Store) SetWebhookURL(ctx context.Context, userID, url string) (server.Account, error) {
	if err := validWebhookURL(url); err != nil {
		return server.Account{}, err
	}
	a, err := s.scanAccount(s.db.QueryRowContext(ctx, s.q(`UPDATE agentcache_accounts SET webhook_url = ?, updated_at = ?
WHERE agentcache_user_id = ? AND status <> 'deleted'
RETURNING `+accountCols), nullable(url), s.nowUTC(), userID))
	switch {
	case err == nil:
		return a, nil
	case errors.Is(err, sql.ErrNoRows):
		return server.Account{}, s.whyNoUpdate(ctx, "set webhook url", userID)
	}
	return server.Account{}, wrap("set webhook url", err)
}

const webhookCols = `e.id, e.account_id, a.agentcache_user_id, e.seq, e.event_type, e.payload, e.state, e.attempts,
  e.next_attempt_at, e.last_attempt_at, e.last_status, e.last_error, e.created_at, e.delivered_at, e.failed_at, a.webhook_url`

func scanWebhookEvent(r scanner) (server.WebhookEvent, error) {
	var (
		e                  server.WebhookEvent
		payload, state     string
		lastAt, delAt, fAt sql.NullTime
		status             sql.NullInt64
		lastErr, url       sql.NullString
	)
	err := r.Scan(&e.ID, &e.AccountID, &e.UserID, &e.Seq, &e.Type, &payload, &state, &e.Attempts,
		&e.NextAttemptAt, &lastAt, &status, &lastErr, &e.CreatedAt, &delAt, &fAt, &url)
	if err != nil {
		return e, err
	}
	e.Payload = []byte(payload)
	e.State = server.WebhookState(state)
	e.NextAttemptAt = e.NextAttemptAt.UTC()
	e.CreatedAt = e.CreatedAt.UTC()
	if lastAt.Valid {
		e.LastAttemptAt = lastAt.Time.UTC()
	}
	if delAt.Valid {
		e.DeliveredAt = delAt.Time.UTC()
	}
	if fAt.Valid {
		e.FailedAt = fAt.Time.UTC()
	}
	e.LastStatus = int(status.Int64)
	e.LastError = lastErr.String
	e.URL = url.String
	return e, nil
}

// ClaimWebhookEvents leases the oldest pending event of each account that
// is due and not leased; see server.WebhookStore. On PostgreSQL the rows
// are locked with FOR UPDATE SKIP LOCKED, so instances sharing the
// database claim different events; the lease (lease_until) keeps an event
// from being sent twice at once, and lets another instance take it over
// when its holder died.
func (s *Store) ClaimWebhookEvents(ctx context.Context, holder string, now time.Time, lease time.Duration, limit int) ([]server.WebhookEvent, error) {
	const op = "claim webhook events"
	if holder == "" || len(holder) > 255 || lease <= 0 || limit < 1 {
		return nil, server.Errorf(server.EInvalid, "claim needs a holder (1 to 255 bytes), a positive lease and limit")
	}
	now = ts(now)
	if err := s.failOrphanedWebhooks(ctx, now); err != nil {
		return nil, err
	}
	lock := ""
	if s.dialect == Postgres {
		lock = ` FOR UPDATE SKIP LOCKED`
	}
	rows, err := s.db.QueryContext(ctx, s.q(`UPDATE webhook_events SET lease_holder = ?, lease_until = ?
WHERE id IN (
  SELECT c.id FROM webhook_events c
  WHERE c.state = 'pending' AND c.next_attempt_at <= ? AND (c.lease_until IS NULL OR c.lease_until <= ?)
    AND NOT EXISTS (SELECT 1 FROM webhook_events p WHERE p.account_id = c.account_id AND p.state = 'pending' AND p.seq < c.seq)
  ORDER BY c.next_attempt_at, c.seq
  LIMIT ?`+lock+`)
  AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
RETURNING id`), holder, ts(now.Add(lease)), now, now, limit, now)
	if err != nil {
		return nil, wrap(op, err)
	}
	var ids []any
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, wrap(op, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err = s.db.QueryContext(ctx, s.q(`SELECT `+webhookCols+`
FROM webhook_events e JOIN agentcache_accounts a ON a.id = e.account_id
WHERE e.id IN (`+inList(len(ids))+`) ORDER BY e.next_attempt_at, e.seq`), ids...)
	if err != nil {
		return nil, wrap(op, err)
	}
	evs, err := scanWebhookEvents(rows)
	if err != nil {
		return nil, wrap(op, err)
	}
	return evs, nil
}

// failOrphanedWebhooks fails the pending events of accounts whose
// webhook_url was removed: there is nowhere to send them.
func (s *Store) failOrphanedWebhooks(ctx context.Context, now time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE webhook_events SET state = 'failed', failed_at = ?, lease_holder = NULL, lease_until = NULL,
  last_error = 'webhook_url removed: not delivered'
WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
  AND account_id IN (SELECT id FROM agentcache_accounts WHERE webhook_url IS NULL)`), now, now)
	if err != nil {
		return wrap("fail webhook events without a url", err)
	}
	return nil
}

// maxWebhookError bounds last_error.
const maxWebhookError = 500

// RecordWebhookAttempt records an attempt by holder; see
// server.WebhookStore.
func (s *Store) RecordWebhookAttempt(ctx context.Context, eventID, holder string, a server.WebhookAttempt) error {
	const op = "record webhook attempt"
	if !validKey(eventID) {
		return server.Errorf(server.ENotFound, "webhook event not found")
	}
	msg := a.Error
	if len(msg) > maxWebhookError {
		msg = strings.ToValidUTF8(msg[:maxWebhookError], "") + "…"
	}
	at := ts(a.At)
	state := server.WebhookPending
	var delivered, failed, next any = nil, nil, ts(a.NextAttemptAt)
	switch {
	case a.Delivered:
		state, delivered, next, msg = server.WebhookDelivered, at, at, ""
	case a.GiveUp:
		state, failed, next = server.WebhookFailed, at, at
	case a.NextAttemptAt.IsZero():
		next = at
	}
	var status any
	if a.Status != 0 {
		status = a.Status
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE webhook_events SET attempts = attempts + 1, last_attempt_at = ?, last_status = ?, last_error = ?,
  state = ?, delivered_at = ?, failed_at = ?, next_attempt_at = ?, lease_holder = NULL, lease_until = NULL
WHERE id = ? AND lease_holder = ? AND state = 'pending'`),
		at, status, nullable(msg), string(state), delivered, failed, next, eventID, holder)
	if err != nil {
		return wrap(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap(op, err)
	} else if n == 0 {
		return server.Errorf(server.ENotFound, "webhook event %s is not leased by %s (lease lost, or no longer pending)", eventID, holder)
	}
	return nil
}

// WebhookEvents lists an account's newest events, newest first.
func (s *Store) WebhookEvents(ctx context.Context, accountID string, limit int) ([]server.WebhookEvent, error) {
	const op = "list webhook events"
	if limit < 1 || limit > 1000 {
		return nil, server.Errorf(server.EInvalid, "limit must be 1 to 1000")
	}
	if !validKey(accountID) {
		return nil, nil
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT `+webhookCols+`
FROM webhook_events e JOIN agentcache_accounts a ON a.id = e.account_id
WHERE e.account_id = ? ORDER BY e.seq DESC LIMIT ?`), accountID, limit)
	if err != nil {
		return nil, wrap(op, err)
	}
	evs, err := scanWebhookEvents(rows)
	if err != nil {
		return nil, wrap(op, err)
	}
	return evs, nil
}

// CountWebhookEvents counts the events in each state.
func (s *Store) CountWebhookEvents(ctx context.Context) (map[server.WebhookState]int64, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state, COUNT(*) FROM webhook_events GROUP BY state`)
	if err != nil {
		return nil, wrap("count webhook events", err)
	}
	defer rows.Close()
	m := map[server.WebhookState]int64{server.WebhookPending: 0, server.WebhookDelivered: 0, server.WebhookFailed: 0}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, wrap("count webhook events", err)
		}
		m[server.WebhookState(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("count webhook events", err)
	}
	return m, nil
}

// PruneWebhookEvents deletes up to limit delivered or failed events created
// before before.
func (s *Store) PruneWebhookEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, server.Errorf(server.EInvalid, "limit must be positive")
	}
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM webhook_events WHERE id IN (
  SELECT id FROM webhook_events WHERE state IN ('delivered', 'failed') AND created_at < ? ORDER BY created_at LIMIT ?)`), ts(before), limit)
	if err != nil {
		return 0, wrap("prune webhook events", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("prune webhook events", err)
	}
	return int(n), nil
}

// scanWebhookEvents reads every row of rows (selected with webhookCols)
// and closes them.
func scanWebhookEvents(rows *sql.Rows) ([]server.WebhookEvent, error) {
	defer rows.Close()
	var evs []server.WebhookEvent
	for rows.Next() {
		e, err := scanWebhookEvent(rows)
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, rows.Err()
}
