// Package testenv gives tests the real services they need: a fresh
// PostgreSQL schema, a Redis key prefix, a temporary SQLite file, a bucket
// name on a private MinIO (see MinIO).
//
// A test that needs a service calls the helper; when the service is not
// reachable the test is skipped with a loud message, or fails when
// JETTY_REQUIRE_SERVICES=1 is set (as .ci/run does). `make test` starts
// PostgreSQL and Redis first (scripts/services.sh) and installs the pinned
// MinIO (scripts/minio.sh).
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"
)

// DefaultPostgresURL is the machine's PostgreSQL (trust auth, database test).
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DefaultRedisURL is the machine's Redis.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Required reports whether missing services must fail tests instead of
// skipping them.
func Required() bool { return os.Getenv("JETTY_REQUIRE_SERVICES") == "1" }

// Unavailable skips t (or fails it under JETTY_REQUIRE_SERVICES=1) because
// service is not reachable.
func Unavailable(t testing.TB, service string, err error) {
	t.Helper()
	msg := fmt.Sprintf("\n*** %s is not reachable: %v\n*** run `make test` (it starts the services) or set JETTY_REQUIRE_SERVICES=1 to make this fatal\n", service, err)
	if Required() {
		t.Fatalf("%s (JETTY_REQUIRE_SERVICES=1)", msg)
	}
	t.Skip(msg)
}

// RandomName returns prefix followed by 12 random hex characters.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// PostgresURL creates a fresh schema in the test PostgreSQL and returns a
// connection URL whose search_path points at it. The schema is dropped
// when the test ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("JETTY_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		Unavailable(t, "PostgreSQL", err)
	}
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		Unavailable(t, "PostgreSQL", err)
	}
	schema := RandomName("jt_")
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Redis returns a client for the test Redis and a key prefix unique to
// this test; keys under the prefix are deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	raw := RedisURL(t)
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opt)
	prefix := RandomName("jt_test_") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c, prefix
}

// RedisURL returns the URL of the test Redis after checking it answers.
func RedisURL(t testing.TB) string {
	t.Helper()
	raw := os.Getenv("JETTY_TEST_REDIS_URL")
	if raw == "" {
		raw = DefaultRedisURL
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		Unavailable(t, "Redis", err)
	}
	return raw
}

// SQLitePath returns the path of a SQLite database file in a temporary
// directory removed when the test ends.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return strings.TrimSuffix(t.TempDir(), "/") + "/jetty.db"
}
