// Package sqlstore implements server.Store on SQL databases: SQLite through
// the pure-Go driver modernc.org/sqlite (no cgo), for single-machine
// installs and tests, and PostgreSQL through pgx's database/sql driver, for
// deployments with several server instances.
//
// Both dialects share one set of queries, written with '?' placeholders and
// rebound to $1, $2, ... for PostgreSQL, and one schema, kept as versioned
// migration files per dialect (migrations/{sqlite,postgres}/NNNN_name.sql)
// that Open applies, each in its own transaction, recording them in
// schema_migrations. Applying them again is a no-op, and on PostgreSQL an
// advisory lock makes concurrent Opens of one database (and schema) safe.
//
// Quota reservations never overshoot: a reservation is a single
// conditional UPDATE (used + reserved + bytes <= quota) in the same
// transaction as the insert of its row, and committing or releasing starts
// by deleting that row, so each reservation is settled exactly once even
// when the expiry sweeper runs concurrently.
//
// Assets are deduplicated per account: stored_objects holds one row per
// distinct content (SHA-256) of an account, with a reference count, and
// every asset points at its object (object_id, a foreign key without
// cascade). CreateAsset finds or creates the object with INSERT ... ON
// CONFLICT DO NOTHING followed by a reference-counting UPDATE, so
// concurrent uploads of one content end with one object. Objects that are
// being written or must be deleted are rows of blob_garbage ('pending'
// until CreateAsset records them or their deadline passes, then
// 'garbage'); collectors claim them with a lease (FOR UPDATE SKIP LOCKED
// on PostgreSQL). Lock order in every transaction is asset, object,
// account, so concurrent deletes, uploads and downloads cannot deadlock.
//
// Times are written from Go, in UTC, truncated to microseconds (the
// precision of PostgreSQL's TIMESTAMPTZ), and never taken from the
// database clock. On SQLite they are stored as text in one fixed layout
// ("2006-01-02 15:04:05.999999999+00:00"), which sorts like the times it
// encodes.
//
// SQLite runs in WAL mode with foreign keys on and a 10 s busy timeout.
// Writes go through a pool of one connection (SQLite has a single writer
// anyway, and this avoids lock waits inside the process); write
// transactions start with BEGIN IMMEDIATE so they can never fail with
// SQLITE_BUSY when upgrading a read lock. Reads use a separate read-only
// pool. A SQLite path must name a file; ":memory:" databases are not
// supported.
//
// Errors are *server.Error for every condition a caller can act on; any
// other error is internal, wraps the driver error for logs and starts with
// "sqlstore:".
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/jettythunder/jetty/server"
)

// Dialect names the SQL database behind a Store.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// SQLiteBusyTimeout is how long a SQLite connection waits for a lock held
// by another connection (another process, in practice) before failing.
const SQLiteBusyTimeout = 10 * time.Second

// Pool sizes.
const (
	postgresMaxConns  = 20
	postgresIdleConns = 10
	sqliteMaxReaders  = 16
)

// Store is a server.Store on SQLite or PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	dialect Dialect
	db      *sql.DB // writes; on PostgreSQL also reads
	rdb     *sql.DB // reads; on SQLite a separate read-only pool
	now     func() time.Time
}

var _ server.Store = (*Store)(nil)

// Open opens the database named by dsn and applies the migrations. A dsn
// starting with postgres:// or postgresql:// is a PostgreSQL URL (see
// OpenPostgres); anything else is the path of a SQLite database file (see
// OpenSQLite).
func Open(ctx context.Context, dsn string) (*Store, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return OpenPostgres(ctx, dsn)
	}
	return OpenSQLite(ctx, dsn)
}

// OpenSQLite opens (creating it and its parent directory when missing) the
// SQLite database file at path and applies the migrations. The path may
// not contain '?' or '#', and may not be ":memory:".
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	switch {
	case path == "":
		return nil, errors.New("sqlstore: empty SQLite path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return nil, fmt.Errorf("sqlstore: SQLite path %q: give a plain file path", path)
	case strings.ContainsAny(path, "?#"):
		return nil, fmt.Errorf("sqlstore: SQLite path %q may not contain '?' or '#'", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlstore: create database directory: %w", err)
		}
	}
	busy := strconv.FormatInt(SQLiteBusyTimeout.Milliseconds(), 10)
	common := "_pragma=busy_timeout(" + busy + ")&_pragma=foreign_keys(1)&_time_format=sqlite"

	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open SQLite: %w", err)
	}
	// One writer connection: SQLite serializes writers anyway.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{dialect: SQLite, db: w, rdb: w, now: time.Now}
	if err := s.init(ctx); err != nil {
		w.Close()
		return nil, err
	}

	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open SQLite: %w", err)
	}
	n := min(max(4, runtime.NumCPU()), sqliteMaxReaders)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(5 * time.Minute)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlstore: open SQLite: %w", err)
	}
	s.rdb = r
	return s, nil
}

// OpenPostgres connects to the PostgreSQL database at url (a postgres://
// URL; parameters pgx does not know, such as search_path, are sent as
// run-time parameters) and applies the migrations.
func OpenPostgres(ctx context.Context, url string) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		// pgx's parse errors may echo the URL, password included.
		return nil, errors.New("sqlstore: invalid PostgreSQL URL")
	}
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresIdleConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute)
	s := &Store{dialect: Postgres, db: db, rdb: db, now: time.Now}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	// Opening a fresh SQLite file while another process switches it to
	// WAL can fail with SQLITE_BUSY without waiting on the busy timeout
	// (the journal-mode change is not covered by the busy handler): retry.
	deadline := time.Now().Add(SQLiteBusyTimeout)
	for {
		err := s.db.PingContext(ctx)
		if err == nil {
			break
		}
		if s.dialect != SQLite || !isBusy(err) || time.Now().After(deadline) {
			return fmt.Errorf("sqlstore: connect to %s: %w", s.dialect, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqlstore: connect to %s: %w", s.dialect, ctx.Err())
		case <-time.After(time.Duration(10+rand.IntN(40)) * time.Millisecond):
		}
	}
	return s.migrate(ctx)
}

// Dialect reports which database the store uses.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return wrap("ping", err)
	}
	if s.rdb != s.db {
		if err := s.rdb.PingContext(ctx); err != nil {
			return wrap("ping", err)
		}
	}
	return nil
}

// Close closes the connection pools.
func (s *Store) Close() error {
	var err error
	if s.rdb != s.db {
		err = s.rdb.Close()
	}
	return errors.Join(s.db.Close(), err)
}

// q returns query with its '?' placeholders in the store's dialect.
func (s *Store) q(query string) string {
	if s.dialect == Postgres {
		return rebind(query)
	}
	return query
}

// rebind turns '?' placeholders into $1, $2, ..., leaving quoted strings,
// quoted identifiers and comments alone.
func rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(query) && query[j] != c {
				j++
			}
			if j >= len(query) {
				j = len(query) - 1
			}
			b.WriteString(query[i : j+1])
			i = j
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i - 1
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ts normalizes a time for storage: UTC, microsecond precision.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nowUTC is the current time as stored.
func (s *Store) nowUTC() time.Time { return ts(s.now()) }

// wrap makes an internal error for logs; it never reaches clients. An
// outage of the database (see unavailable) also wraps
// server.ErrUnavailable, which the API answers 503 with Retry-After.
func wrap(op string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("sqlstore: %s: %w: %w", op, server.ErrUnavailable, err)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}

// rollback ends tx when it was not committed; its error is of no interest
// then (the original error is returned).
func rollback(tx *sql.Tx) { _ = tx.Rollback() }
