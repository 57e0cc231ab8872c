package sqlstore

import (
	"errors"
	"strings"

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
