// Package connguard keeps clients that never authenticate from holding
// the connections of the server and the relays. Two mechanisms:
//
//   - Bodies gives every request body a deadline (see body.go), so a
//     request that declares a body and goes silent is cut, on every route,
//     including the ones that never read their body and Go's discard of an
//     unread body after the handler.
//   - A Guard caps connections. Each connection starts unauthenticated; a
//     handler that authenticates a request (API key, upload token, webhook
//     or edge signature) marks its connection with Authenticated. At most
//     Limits.MaxUnauth connections may be unauthenticated and at most
//     Limits.MaxConns open in all. A new connection that arrives at a cap
//     evicts the connection that has been silent longest among those
//     waiting for their client (not yet a full request, idle between
//     requests, or a body still owed); a connection whose complete request
//     is being answered is never evicted. When there is none to evict the
//     new connection is closed at once.
//
// The caps follow the file-descriptor limit (LimitsFor), so silent
// connections cannot exhaust descriptors and starve /healthz, /readyz and
// real users. They do not look at client addresses: behind a load
// balancer every connection comes from one.
package connguard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits are a Guard's caps.
type Limits struct {
	// MaxConns bounds the open connections.
	MaxConns int
	// MaxUnauth bounds the connections on which no request has
	// authenticated yet.
	MaxUnauth int
}

// LimitsFor derives the caps from a file-descriptor limit: a quarter of
// the descriptors (at least 64) is left for the process itself (database
// and Redis pools, object-store connections, files, a relay's forwards),
// the rest may be connections, half of them unauthenticated.
func LimitsFor(nofile uint64) Limits {
	reserve := max(64, nofile/4)
	conns := 16
	if nofile > reserve+16 {
		conns = int(min(nofile-reserve, 1<<30))
	}
	return Limits{MaxConns: conns, MaxUnauth: max(conns/2, 8)}
}

// DefaultLimits are LimitsFor this process's file-descriptor limit
// (RLIMIT_NOFILE, which Go raises to the hard limit at start), and the
// limit itself (0 where the system has none to read).
func DefaultLimits() (Limits, uint64) {
	n := nofile()
	if n == 0 {
		return LimitsFor(4096), 0
	}
	return LimitsFor(n), n
}

// Guard tracks the connections of one listener. Install it on a server.
type Guard struct {
	limits Limits
	log    *slog.Logger

	mu     sync.Mutex
	conns  map[*conn]struct{}
	unauth int

	evicted  atomic.Int64
	refused  atomic.Int64
	lastWarn atomic.Int64 // unix nanos of the last eviction warning
}

// New makes a Guard with the given caps (zero fields: DefaultLimits).
// log receives a warning, at most once a minute, while connections are
// evicted or refused; nil discards.
func New(l Limits, log *slog.Logger) *Guard {
	d, _ := DefaultLimits()
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxUnauth <= 0 {
		l.MaxUnauth = min(d.MaxUnauth, l.MaxConns)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{limits: l, log: log, conns: map[*conn]struct{}{}}
}

// Limits are the caps in force.
func (g *Guard) Limits() Limits { return g.limits }

// Install wires the guard into srv and returns ln wrapped: srv's
// handler gets body deadlines of bodyTimeout (Bodies), and its
// connections are tracked through ConnContext and ConnState. Serve srv
// on the returned listener.
func (g *Guard) Install(srv *http.Server, ln net.Listener, bodyTimeout time.Duration) net.Listener {
	srv.Handler = Bodies(srv.Handler, bodyTimeout)
	prevCtx := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		if gc, ok := c.(*conn); ok {
			ctx = context.WithValue(ctx, connKey{}, gc)
		}
		return ctx
	}
	prevState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if gc, ok := c.(*conn); ok {
			g.setState(gc, st)
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	return &listener{Listener: ln, g: g}
}

// Stats are a guard's counters.
type Stats struct {
	Open    int   // connections open
	Unauth  int   // of which no request authenticated
	Evicted int64 // closed to make room for a new one
	Refused int64 // closed on arrival: nothing could be evicted
}

// Stats reports the connections now and the evictions so far.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Open: len(g.conns), Unauth: g.unauth, Evicted: g.evicted.Load(), Refused: g.refused.Load()}
}

type connKey struct{}

// Authenticated marks the connection of the request whose context is ctx
// as belonging to an authenticated client: it no longer counts against
// MaxUnauth and is evicted only when idle at the total cap. Call it once
// a request's credentials check out. Without a guard it does nothing.
func Authenticated(ctx context.Context) {
	c, _ := ctx.Value(connKey{}).(*conn)
	if c == nil || c.auth.Load() {
		return
	}
	c.g.mu.Lock()
	if !c.auth.Load() && !c.gone {
		c.auth.Store(true)
		c.g.unauth--
	}
	c.g.mu.Unlock()
}

// listener admits connections under the caps.
type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Descriptors ran out below the caps (the process's own
				// files took more than the reserve): free one for the
				// server's next attempt.
				l.g.evictFor(true)
			}
			return nil, err
		}
		c := &conn{Conn: nc, g: l.g}
		c.lastRead.Store(time.Now().UnixNano())
		if l.g.admit(c) {
			return c, nil
		}
		nc.Close()
	}
}

// conn is a tracked connection.
type conn struct {
	net.Conn
	g        *Guard
	lastRead atomic.Int64 // unix nanos of the last byte read (or the accept)
	auth     atomic.Bool

	// Under g.mu:
	state     http.ConnState
	inHandler bool // a handler runs for a request of this connection
	bodyOwed  bool // ... and its body has not been read to its end
	gone      bool // removed from the guard
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *conn) Close() error {
	c.g.remove(c)
	return c.Conn.Close()
}

// CloseWrite lets the server half-close before it closes, as it does on
// a bare TCP connection, so a client still sending a refused body reads
// the answer instead of a reset.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the TCP connection's sendfile and splice for answers
// copied from files.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// waiting reports whether the connection waits for its client rather
// than for the server (g.mu held): only those may be evicted.
func (c *conn) waiting() bool {
	return !c.inHandler || c.bodyOwed
}

// begin, bodyRead and end report a request's progress (from Bodies).
func (c *conn) begin(body bool) {
	if c == nil {
		return
	}
	c.g.mu.Lock()
	c.inHandler, c.bodyOwed = true, body
	c.g.mu.Unlock()
}

func (c *conn) bodyRead() {
	if c == nil {
		return
	}
	c.g.mu.Lock()
	c.bodyOwed = false
	c.g.mu.Unlock()
}

func (c *conn) end() {
	if c == nil {
		return
	}
	c.g.mu.Lock()
	c.inHandler, c.bodyOwed = false, false
	c.g.mu.Unlock()
}

func (g *Guard) setState(c *conn, st http.ConnState) {
	switch st {
	case http.StateHijacked, http.StateClosed:
		g.remove(c)
		return
	}
	g.mu.Lock()
	c.state = st
	g.mu.Unlock()
}

func (g *Guard) remove(c *conn) {
	g.mu.Lock()
	g.removeLocked(c)
	g.mu.Unlock()
}

func (g *Guard) removeLocked(c *conn) {
	if c.gone {
		return
	}
	c.gone = true
	delete(g.conns, c)
	if !c.auth.Load() {
		g.unauth--
	}
}

// admit counts c in, evicting another connection when a cap is reached;
// false when there is no room.
func (g *Guard) admit(c *conn) bool {
	g.mu.Lock()
	var victim *conn
	if len(g.conns) >= g.limits.MaxConns || g.unauth >= g.limits.MaxUnauth {
		victim = g.victimLocked(len(g.conns) >= g.limits.MaxConns && g.unauth < g.limits.MaxUnauth)
		if victim == nil {
			g.mu.Unlock()
			g.refused.Add(1)
			g.warn()
			return false
		}
		g.removeLocked(victim)
	}
	g.conns[c] = struct{}{}
	g.unauth++
	g.mu.Unlock()
	if victim != nil {
		g.evicted.Add(1)
		g.warn()
		victim.Conn.Close()
	}
	return true
}

// evictFor closes the connection admit would evict; it reports whether
// there was one.
func (g *Guard) evictFor(anyIdle bool) bool {
	g.mu.Lock()
	victim := g.victimLocked(anyIdle)
	if victim != nil {
		g.removeLocked(victim)
	}
	g.mu.Unlock()
	if victim == nil {
		return false
	}
	g.evicted.Add(1)
	g.warn()
	victim.Conn.Close()
	return true
}

// victimLocked picks the unauthenticated connection silent longest among
// those waiting for their client; with orIdle, failing that, the
// authenticated connection idle longest between requests. The scan is
// linear, and only runs at a cap.
func (g *Guard) victimLocked(orIdle bool) *conn {
	var best, bestIdle *conn
	for c := range g.conns {
		if !c.auth.Load() {
			if c.waiting() && (best == nil || c.lastRead.Load() < best.lastRead.Load()) {
				best = c
			}
		} else if orIdle && c.state == http.StateIdle && !c.inHandler &&
			(bestIdle == nil || c.lastRead.Load() < bestIdle.lastRead.Load()) {
			bestIdle = c
		}
	}
	if best != nil {
		return best
	}
	return bestIdle
}

func (g *Guard) warn() {
	now := time.Now().UnixNano()
	last := g.lastWarn.Load()
	if now-last < int64(time.Minute) || !g.lastWarn.CompareAndSwap(last, now) {
		return
	}
	g.log.Warn("connection cap reached: silent unauthenticated connections are closed to make room",
		"max_conns", g.limits.MaxConns, "max_unauthenticated", g.limits.MaxUnauth,
		"evicted", g.evicted.Load(), "refused", g.refused.Load())
}
