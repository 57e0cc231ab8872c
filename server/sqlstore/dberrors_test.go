package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
)

// TestUnavailableClassification: connection failures, shutdowns and
// overload are outages; refusals of the statement itself (bugs, broken
// constraints) and a caller that gave up are not.
func TestUnavailableClassification(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Code: code} }
	for err, want := range map[error]bool{
		pg("08006"): true, // connection failure
		pg("57P01"): true, // admin shutdown (a restart)
		pg("57P03"): true, // cannot connect now (starting up)
		pg("53300"): true, // too many connections
		&net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "refused"}}: true,
		fmt.Errorf("x: %w", syscall.ECONNREFUSED):                                 true,
		driver.ErrBadConn:             true,
		pgconn.ErrConnClosed:          true,
		context.DeadlineExceeded:      true,
		pg("42601"):                   false, // syntax error: a bug
		pg("23505"):                   false, // unique violation
		pg("40001"):                   false, // serialization failure
		context.Canceled:              false,
		errors.New("a bug"):           false,
		fmt.Errorf("%w", pg("XX000")): false,
	} {
		if got := unavailable(err); got != want {
			t.Errorf("unavailable(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestOutageWrapsErrUnavailable: with PostgreSQL cut off (a toxiproxy
// proxy disabled), store calls fail with errors that wrap
// server.ErrUnavailable, stay internal (ErrorCode EInternal, so retried
// steps keep retrying) and keep the "sqlstore:" prefix; when the link is
// back the same calls succeed.
func TestOutageWrapsErrUnavailable(t *testing.T) {
	u, err := url.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.Toxiproxy(t).Proxy(t, u.Host)
	u.Host = p.Addr()
	s := openT(t, u.String())
	defer s.Close()
	ctx := testCtx(t)
	if _, err := s.Tiers(ctx); err != nil {
		t.Fatal(err)
	}
	p.Disable(t)
	calls := map[string]func() error{
		"ping":  func() error { return s.Ping(ctx) },
		"tiers": func() error { _, err := s.Tiers(ctx); return err },
		"account": func() error {
			_, err := s.AccountByUserID(ctx, "usr_x")
			return err
		},
		"reserve": func() error {
			_, err := s.Reserve(ctx, "00000000-0000-0000-0000-000000000000", 1, time.Hour)
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, server.ErrUnavailable) || server.ErrorCode(err) != server.EInternal || !strings.HasPrefix(fmt.Sprint(err), "sqlstore: ") {
			t.Errorf("%s with the database cut off: %v (ErrUnavailable %v)", name, err, errors.Is(err, server.ErrUnavailable))
		}
	}
	p.Enable(t)
	if _, err := s.Tiers(ctx); err != nil {
		t.Fatalf("tiers with the database back: %v", err)
	}
}
