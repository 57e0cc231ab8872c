package sqlstore

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/jettythunder/jetty/server"
)

// Bounds on logged text. Longer values are cut (at a rune boundary).
const (
	maxLoggedMethod   = 16
	maxLoggedEndpoint = 512
	maxLoggedError    = 1024
	maxLoggedIP       = 64
	maxLoggedAgent    = 512
)

// Limits of RecentRequests.
const (
	defaultRecentLimit = 100
	maxRecentLimit     = 1000
)

// logRowsPerInsert bounds the rows of one INSERT of LogRequests (11
// parameters each, well within both dialects' limits).
const logRowsPerInsert = 500

// LogRequests inserts a batch of request log rows in one transaction. A
// zero CreatedAt is stored as now. An AccountID that names no account is
// stored as NULL rather than failing the batch. Text is made valid UTF-8
// without NUL bytes and cut to a bounded length.
//
// The rows go in multi-row INSERTs (one round trip per
// logRowsPerInsert rows), not one statement per row: under load, a
// batch of a few hundred round trips held a pooled connection for
// seconds and outlived the writer's deadline, and the whole batch was
// dropped.
func (s *Store) LogRequests(ctx context.Context, reqs []server.APIRequest) error {
	if len(reqs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("log requests", err)
	}
	defer rollback(tx)
	now := s.nowUTC()
	for len(reqs) > 0 {
		part := reqs[:min(len(reqs), logRowsPerInsert)]
		reqs = reqs[len(part):]
		var q strings.Builder
		q.WriteString(`INSERT INTO api_requests (
  id, account_id, method, endpoint, status_code, response_time_ms, bytes_transferred,
  error_message, ip_address, user_agent, created_at)
VALUES `)
		args := make([]any, 0, 11*len(part))
		for i, r := range part {
			if i > 0 {
				q.WriteString(",\n  ")
			}
			q.WriteString(`(?, (SELECT id FROM agentcache_accounts WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
			at := now
			if !r.CreatedAt.IsZero() {
				at = ts(r.CreatedAt)
			}
			args = append(args,
				uuid.NewString(), r.AccountID,
				clean(r.Method, maxLoggedMethod), clean(r.Endpoint, maxLoggedEndpoint),
				r.StatusCode, r.ResponseTimeMS, r.BytesTransferred,
				nullable(clean(r.ErrorMessage, maxLoggedError)), nullable(clean(r.IPAddress, maxLoggedIP)),
				nullable(clean(r.UserAgent, maxLoggedAgent)), at)
		}
		if _, err := tx.ExecContext(ctx, s.q(q.String()), args...); err != nil {
			return wrap("log requests", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return wrap("log requests", err)
	}
	return nil
}

// RecentRequests lists logged requests, newest first, of one account or
// (accountID empty) of all. limit <= 0 means 100; at most 1000 are
// returned. Requests logged at the same instant come in no set order.
func (s *Store) RecentRequests(ctx context.Context, accountID string, limit int) ([]server.APIRequest, error) {
	if limit <= 0 {
		limit = defaultRecentLimit
	}
	limit = min(limit, maxRecentLimit)
	query := `SELECT COALESCE(account_id, ''), method, endpoint, status_code, COALESCE(response_time_ms, 0),
  COALESCE(bytes_transferred, 0), COALESCE(error_message, ''), COALESCE(ip_address, ''), COALESCE(user_agent, ''),
  created_at
FROM api_requests`
	args := []any{}
	if accountID != "" {
		query += ` WHERE account_id = ?`
		args = append(args, accountID)
	}
	query += ` ORDER BY created_at DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, wrap("recent requests", err)
	}
	defer rows.Close()
	out := []server.APIRequest{}
	for rows.Next() {
		var r server.APIRequest
		if err := rows.Scan(&r.AccountID, &r.Method, &r.Endpoint, &r.StatusCode, &r.ResponseTimeMS,
			&r.BytesTransferred, &r.ErrorMessage, &r.IPAddress, &r.UserAgent, &r.CreatedAt); err != nil {
			return nil, wrap("recent requests", err)
		}
		r.CreatedAt = r.CreatedAt.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("recent requests", err)
	}
	return out, nil
}

// clean makes s storable in any text column: valid UTF-8, no NUL bytes,
// at most limit bytes.
func clean(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// nullable maps "" to NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
