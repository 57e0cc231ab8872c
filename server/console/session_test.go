package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/console"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// consoleOn serves a console alone (no API) on a fresh SQLite store with
// clk's time.
func consoleOn(t *testing.T, clk *clock) (*srv, *sqlstore.Store) {
	t.Helper()
	st, err := sqlstore.OpenSQLite(context.Background(), testenv.SQLitePath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lim := memory.NewLimiter()
	t.Cleanup(func() { lim.Close() })
	c, err := console.New(console.Config{Token: consoleToken}, console.Deps{Store: st, Limiter: lim, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(c.Handler())
	t.Cleanup(hs.Close)
	return &srv{url: hs.URL}, st
}

// TestConsoleSessionExpires: a session ends after DefaultSessionIdle
// without use, and after DefaultSessionMax however busy.
func TestConsoleSessionExpires(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s, _ := consoleOn(t, clk)
	c := signedIn(t, s)
	ok := func() bool {
		res, _ := s.get(t, c, "/console/audit")
		return res.StatusCode == http.StatusOK
	}
	clk.add(console.DefaultSessionIdle - time.Minute)
	if !ok() {
		t.Fatal("a session used within the idle limit ended")
	}
	clk.add(console.DefaultSessionIdle + time.Second)
	if ok() {
		t.Fatal("a session idle past the limit still works")
	}

	c = signedIn(t, s)
	for d := time.Duration(0); d < console.DefaultSessionMax-time.Hour; d += time.Hour {
		clk.add(time.Hour)
		if !ok() {
			t.Fatalf("a busy session ended after %s", d+time.Hour)
		}
	}
	clk.add(time.Hour)
	if ok() {
		t.Fatal("a session works past its absolute limit")
	}
}

// TestConsoleAuditPages lists the audit log newest first, 50 a page.
func TestConsoleAuditPages(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s, st := consoleOn(t, clk)
	ctx := context.Background()
	for i := 1; i <= 120; i++ {
		if err := st.AddAuditEntry(ctx, server.AuditEntry{At: clk.now(), Actor: "operator", Action: "suspend", Target: "usr_" + strconv.Itoa(i), Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	c := signedIn(t, s) // entry 121: the sign-in
	path, pages := "/console/audit", 0
	var seen []string
	for path != "" {
		_, body := s.get(t, c, path)
		pages++
		for _, row := range strings.Split(body, "<tr>")[2:] {
			if i := strings.Index(row, "usr_"); i >= 0 {
				seen = append(seen, row[i:i+strings.IndexByte(row[i:], '<')])
			}
		}
		path = ""
		if i := strings.Index(body, `href="/console/audit?before=`); i >= 0 {
			rest := body[i+len(`href="`):]
			path = rest[:strings.IndexByte(rest, '"')]
		}
	}
	if pages != 3 || len(seen) != 120 || seen[0] != "usr_120" || seen[119] != "usr_1" {
		t.Fatalf("%d pages, %d entries, first %v", pages, len(seen), seen[:3])
	}
}
