package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// uniqueKey names one UNIQUE constraint in both dialects: PostgreSQL
// reports the constraint name, SQLite the "table.column" it covers.
type uniqueKey struct {
	pgConstraint string
	sqliteColumn string
}

var (
	uniqueUserID     = uniqueKey{"agentcache_accounts_user_id_key", "agentcache_accounts.agentcache_user_id"}
	uniqueAPIKey     = uniqueKey{"agentcache_accounts_api_key_key", "agentcache_accounts.api_key"}
	uniquePrevAPIKey = uniqueKey{"agentcache_accounts_prev_api_key_key", "agentcache_accounts.prev_api_key"}
)

// isUniqueViolation reports whether err is a violation of key.
func isUniqueViolation(err error, key uniqueKey) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" && pe.ConstraintName == key.pgConstraint
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code()
		return (code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) &&
			strings.Contains(se.Error(), key.sqliteColumn)
	}
	return false
}

// isForeignKeyViolation reports whether err is a foreign key violation.
func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// unavailable reports whether err means the database cannot answer for
// the moment (down, restarting, unreachable, out of connections, locked)
// rather than that the call itself was wrong: a caller may send the same
// call again in a few seconds. A caller that gave up (context.Canceled)
// is not an outage.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin or crash shutdown, starting up
			return true
		case pe.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var se *sqlite.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return true // no answer in time: a stopped server, or every pooled connection busy
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, pgconn.ErrConnClosed):
		return true
	case errors.As(err, &ce), errors.As(err, &ne):
		return true // refused, reset, unreachable
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true // the connection ended mid-answer (the store reads no other stream)
	case errors.As(err, &se):
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true // another process held the file past the busy timeout
		}
	}
	return false
}
