// Package memory implements server.Limiter, server.Cache and
// server.Semaphore in process memory, for a single server instance (the
// embedded default). Several instances behind a load balancer need
// server/redis instead, or each instance counts and caches on its own.
//
// All three types are safe for concurrent use. They start no goroutine: expired
// entries are swept lazily, from the calls themselves, whenever a sweep
// interval has passed or the number of entries has doubled since the last
// sweep, so memory stays proportional to the live keys at amortized O(1)
// cost per call. Close exists so callers can treat every adapter alike; it
// only drops the entries.
package memory

import (
	"context"
	"sync"
	"time"

	"github.com/jettythunder/jetty/server"
)

// DefaultSweepInterval is how often, at most, a Limiter or Cache scans all
// of its entries for expired ones when the entry count alone does not
// trigger a sweep.
const DefaultSweepInterval = time.Minute

// minSweepLen is the entry count below which growth alone never triggers a
// sweep.
const minSweepLen = 1024

// Option configures a Limiter or a Cache.
type Option func(*options)

type options struct {
	now           func() time.Time
	sweepInterval time.Duration
}

// WithClock makes the Limiter or Cache read the time from now instead of
// time.Now. Tests use it to move time without sleeping.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithSweepInterval sets how often, at most, expired entries are swept when
// growth alone does not trigger a sweep (DefaultSweepInterval if d <= 0).
func WithSweepInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.sweepInterval = d
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now, sweepInterval: DefaultSweepInterval}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// sweeper decides when a map of expiring entries is due for a full scan.
type sweeper struct {
	interval time.Duration
	nextAt   time.Time
	nextLen  int
}

func newSweeper(interval time.Duration, now time.Time) sweeper {
	return sweeper{interval: interval, nextAt: now.Add(interval), nextLen: minSweepLen}
}

// due reports whether a sweep should run now for a map of n entries.
func (s *sweeper) due(now time.Time, n int) bool {
	return n >= s.nextLen || !now.Before(s.nextAt)
}

// done records a sweep that left n entries.
func (s *sweeper) done(now time.Time, n int) {
	s.nextAt = now.Add(s.interval)
	s.nextLen = max(minSweepLen, 2*n)
}

// Limiter is an in-process fixed-window rate limiter. A key's window starts
// with its first request and lasts the window passed to that request.
type Limiter struct {
	now func() time.Time

	mu      sync.Mutex
	windows map[string]*limitWindow
	sweep   sweeper
}

// limitWindow is the state of one key's fixed window.
type limitWindow struct {
	count   int
	expires time.Time
}

var _ server.Limiter = (*Limiter)(nil)

// NewLimiter returns an empty in-process Limiter.
func NewLimiter(opts ...Option) *Limiter {
	o := buildOptions(opts)
	return &Limiter{
		now:     o.now,
		windows: make(map[string]*limitWindow),
		sweep:   newSweeper(o.sweepInterval, o.now()),
	}
}

// Allow counts one request for key and reports whether it fits in limit
// requests per window. Refused requests count too, as in server/redis.
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (server.LimitResult, error) {
	if err := checkLimit(limit, window); err != nil {
		return server.LimitResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return server.LimitResult{}, err
	}
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sweep.due(now, len(l.windows)) {
		for k, w := range l.windows {
			if !now.Before(w.expires) {
				delete(l.windows, k)
			}
		}
		l.sweep.done(now, len(l.windows))
	}
	w, ok := l.windows[key]
	if !ok || !now.Before(w.expires) {
		w = &limitWindow{expires: now.Add(window)}
		l.windows[key] = w
	}
	w.count++
	res := server.LimitResult{
		Allowed:   w.count <= limit,
		Limit:     limit,
		Remaining: max(0, limit-w.count),
	}
	if !res.Allowed {
		res.RetryAfter = w.expires.Sub(now)
	}
	return res, nil
}

// Len reports how many keys the Limiter holds, expired or not.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.windows)
}

// Close drops every window. It never fails; the Limiter stays usable.
func (l *Limiter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.windows)
	return nil
}

func checkLimit(limit int, window time.Duration) error {
	if limit <= 0 {
		return server.Errorf(server.EInvalid, "rate limit must be positive, got %d", limit)
	}
	if window <= 0 {
		return server.Errorf(server.EInvalid, "rate limit window must be positive, got %s", window)
	}
	return nil
}

// Cache is an in-process key-value cache with per-key expiry. Values are
// copied in and out, so callers may reuse their slices.
type Cache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]entry
	sweep   sweeper
}

type entry struct {
	value   []byte
	expires time.Time // zero: never
}

func (e entry) live(now time.Time) bool {
	return e.expires.IsZero() || now.Before(e.expires)
}

var _ server.Cache = (*Cache)(nil)

// NewCache returns an empty in-process Cache.
func NewCache(opts ...Option) *Cache {
	o := buildOptions(opts)
	return &Cache{
		now:     o.now,
		entries: make(map[string]entry),
		sweep:   newSweeper(o.sweepInterval, o.now()),
	}
}

// Get returns a copy of the value stored under key, if it has not expired.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false, nil
	}
	if !e.live(now) {
		delete(c.entries, key)
		return nil, false, nil
	}
	return clone(e.value), true, nil
}

// Set stores a copy of value under key for ttl; ttl <= 0 means no expiry.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maybeSweep(now)
	c.entries[key] = entry{value: clone(value), expires: expiry(now, ttl)}
	return nil
}

// SetNX stores a copy of value under key for ttl (ttl <= 0: no expiry) only
// if key holds no live value, and reports whether it stored it.
func (c *Cache) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maybeSweep(now)
	if e, ok := c.entries[key]; ok && e.live(now) {
		return false, nil
	}
	c.entries[key] = entry{value: clone(value), expires: expiry(now, ttl)}
	return true, nil
}

// Delete removes key; a missing key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
	return nil
}

// Len reports how many keys the Cache holds, expired or not.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Close drops every entry. It never fails; the Cache stays usable.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	return nil
}

// maybeSweep drops expired entries when a sweep is due. c.mu must be held.
func (c *Cache) maybeSweep(now time.Time) {
	if !c.sweep.due(now, len(c.entries)) {
		return
	}
	for k, e := range c.entries {
		if !e.live(now) {
			delete(c.entries, k)
		}
	}
	c.sweep.done(now, len(c.entries))
}

func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
