package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFiles embed.FS

// migration is one versioned schema change.
type migration struct {
	Version int
	Name    string // file name, e.g. 0001_init.sql
	SQL     string
}

// migrateUpTo, when above 0, stops the migrations after that version: the
// tests build a database as an older release left it.
var migrateUpTo = 0

// migrations returns the migrations of a dialect, in version order.
func migrations(d Dialect) ([]migration, error) {
	dir := path.Join("migrations", string(d))
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read migrations: %w", err)
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlstore: migration %s/%s: name must be NNNN_description.sql", dir, name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("sqlstore: migrations %s and %s have the same version", other, name)
		}
		seen[v] = name
		b, err := fs.ReadFile(migrationFiles, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: read migration %s: %w", name, err)
		}
		ms = append(ms, migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// migrationLockKey is the first half of the PostgreSQL advisory lock key
// taken while migrating; the second half is a hash of the current schema,
// so that databases in different schemas migrate independently.
const migrationLockKey = 0x6a657474 // "jett"

// migrate applies the migrations not yet recorded in schema_migrations,
// each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations(s.dialect)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if migrateUpTo > 0 && m.Version > migrateUpTo {
			break
		}
		if err := s.applyMigration(ctx, m); err != nil {
			return fmt.Errorf("sqlstore: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, m migration) error {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE on SQLite: one migrator at a time
	if err != nil {
		return err
	}
	defer rollback(tx)
	timeType := "DATETIME"
	if s.dialect == Postgres {
		// Held until the transaction ends; serializes migrators of this
		// database and schema across processes.
		lock := fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext(coalesce(current_schema(), '')))", migrationLockKey)
		if _, err := tx.ExecContext(ctx, lock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		timeType = "TIMESTAMPTZ"
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at `+timeType+` NOT NULL
)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM schema_migrations WHERE version = ?`), m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil // already applied
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), m.Version, s.nowUTC()); err != nil {
		return err
	}
	return tx.Commit()
}
