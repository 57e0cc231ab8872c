package server

import (
	"context"
	"time"
)

// ConsoleSession is a signed-in operator's session of the console
// (server/console). The cookie's value is never stored: IDHash is its
// SHA-256 in hex, so a copy of the database signs nobody in.
type ConsoleSession struct {
	IDHash    string
	CreatedAt time.Time
	LastSeen  time.Time
	// ExpiresAt is the absolute cap: the session ends then however busy.
	ExpiresAt time.Time
}

// AuditEntry is one line of the console's audit log: a sign-in (ok or
// failed), a sign-out, or an operator action on an account. It never
// holds a secret.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Actor  string // the session's short id, or "anonymous" before sign-in
	Action string // signin, signout, upgrade, suspend, reactivate, rotate, revoke
	Target string // the account's AgentCache user id, "" for sign-in and out
	Result string // "ok", or what went wrong
	IP     string
	Detail string // e.g. the new tier
}

// ConsoleStore is what the operator console keeps in the database:
// sessions (shared by every instance behind a load balancer), the audit
// log, and the account search. Implemented by server/sqlstore.
type ConsoleStore interface {
	CreateConsoleSession(ctx context.Context, s ConsoleSession) error
	// TouchConsoleSession finds the session by the hash of its cookie and
	// records a use at now. ENotFound when there is none, or it expired:
	// unused for longer than idle, or past its ExpiresAt.
	TouchConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (ConsoleSession, error)
	// DeleteConsoleSession ends a session (sign-out); a missing one is no
	// error. Expired sessions of others are removed along the way.
	DeleteConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) error

	AddAuditEntry(ctx context.Context, e AuditEntry) error
	// AuditEntries lists the audit log newest first, entries older than
	// beforeID (0: from the newest), at most limit.
	AuditEntries(ctx context.Context, beforeID int64, limit int) ([]AuditEntry, error)

	// SearchAccounts finds accounts whose AgentCache user id, or email
	// (case-insensitive), is q or begins with q; exact matches first,
	// then by user id; at most limit.
	SearchAccounts(ctx context.Context, q string, limit int) ([]Account, error)
}
