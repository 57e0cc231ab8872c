package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
)

var _ server.ConsoleStore = (*Store)(nil)

// CreateConsoleSession records a signed-in operator's session.
func (s *Store) CreateConsoleSession(ctx context.Context, cs server.ConsoleSession) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO console_sessions (id_hash, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?)`),
		cs.IDHash, ts(cs.CreatedAt), ts(cs.LastSeen), ts(cs.ExpiresAt))
	if err != nil {
		return wrap("create console session", err)
	}
	return nil
}

// TouchConsoleSession records a use of a live session and returns it, or
// ENotFound when there is none, it was idle longer than idle, or it is
// past its absolute expiry. One conditional UPDATE: an expired session is
// never revived.
func (s *Store) TouchConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (server.ConsoleSession, error) {
	now = ts(now)
	var cs server.ConsoleSession
	err := s.db.QueryRowContext(ctx, s.q(`UPDATE console_sessions SET last_seen_at = ?
WHERE id_hash = ? AND last_seen_at > ? AND expires_at > ?
RETURNING id_hash, created_at, last_seen_at, expires_at`), now, idHash, ts(now.Add(-idle)), now).
		Scan(&cs.IDHash, &cs.CreatedAt, &cs.LastSeen, &cs.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return cs, server.Errorf(server.ENotFound, "no such console session")
	}
	if err != nil {
		return cs, wrap("touch console session", err)
	}
	cs.CreatedAt, cs.LastSeen, cs.ExpiresAt = cs.CreatedAt.UTC(), cs.LastSeen.UTC(), cs.ExpiresAt.UTC()
	return cs, nil
}

// DeleteConsoleSession ends a session and removes expired ones.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) error {
	now = ts(now)
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM console_sessions WHERE id_hash = ? OR last_seen_at <= ? OR expires_at <= ?`),
		idHash, ts(now.Add(-idle)), now)
	if err != nil {
		return wrap("delete console session", err)
	}
	return nil
}

// AddAuditEntry appends to the console's audit log.
func (s *Store) AddAuditEntry(ctx context.Context, e server.AuditEntry) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO console_audit (at, actor, action, target, result, ip, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		ts(e.At), e.Actor, e.Action, e.Target, e.Result, e.IP, e.Detail)
	if err != nil {
		return wrap("add audit entry", err)
	}
	return nil
}

// AuditEntries lists the audit log newest first, before beforeID (0:
// from the newest).
func (s *Store) AuditEntries(ctx context.Context, beforeID int64, limit int) ([]server.AuditEntry, error) {
	query, args := `SELECT id, at, actor, action, target, result, ip, detail FROM console_audit`, []any{}
	if beforeID > 0 {
		query += ` WHERE id < ?`
		args = append(args, beforeID)
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, wrap("audit entries", err)
	}
	defer rows.Close()
	var out []server.AuditEntry
	for rows.Next() {
		var e server.AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &e.Result, &e.IP, &e.Detail); err != nil {
			return nil, wrap("audit entries", err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("audit entries", err)
	}
	return out, nil
}

// asciiLower lowers ASCII letters only, as SQLite's lower() does.
func asciiLower(v string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, v)
}

// SearchAccounts finds accounts whose user id, or lower-cased email,
// equals q or begins with it: ranges of the byte order, [q, successor),
// served by the user id's index and the lower(email) index of migration
// 0014. Exact matches come first, then by user id. Without q, the newest
// accounts.
func (s *Store) SearchAccounts(ctx context.Context, q string, limit int) ([]server.Account, error) {
	var (
		query string
		args  []any
	)
	if q == "" {
		query = `SELECT ` + accountCols + ` FROM agentcache_accounts ORDER BY created_at DESC, id DESC LIMIT ?`
		args = []any{limit}
	} else {
		ge, lt := ">=", "<"
		if s.dialect == Postgres {
			ge, lt = "~>=~", "~<~"
		}
		ql := asciiLower(q)
		uid := `agentcache_user_id ` + ge + ` ?`
		mail := `lower(agentcache_email) ` + ge + ` ?`
		uargs, margs := []any{q}, []any{ql}
		if next, ok := prefixSuccessor(q); ok {
			uid += ` AND agentcache_user_id ` + lt + ` ?`
			uargs = append(uargs, next)
		}
		if next, ok := prefixSuccessor(ql); ok {
			mail += ` AND lower(agentcache_email) ` + lt + ` ?`
			margs = append(margs, next)
		}
		// Two index ranges joined, each limited, then ordered.
		query = `SELECT ` + accountCols + ` FROM agentcache_accounts WHERE id IN (
  SELECT id FROM (SELECT id FROM agentcache_accounts WHERE ` + uid + ` ORDER BY agentcache_user_id LIMIT ?) u
  UNION
  SELECT id FROM (SELECT id FROM agentcache_accounts WHERE ` + mail + ` ORDER BY lower(agentcache_email) LIMIT ?) m)
ORDER BY CASE WHEN agentcache_user_id = ? OR lower(agentcache_email) = ? THEN 0 ELSE 1 END, agentcache_user_id LIMIT ?`
		args = append(append(append(append(uargs, limit), margs...), limit), q, ql, limit)
	}
	return s.queryAccounts(ctx, "search accounts", query, args...)
}
