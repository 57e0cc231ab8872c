// Package redis implements server.Limiter, server.Cache and
// server.Semaphore on Redis (github.com/redis/go-redis/v9), so every server
// instance that points at the same Redis shares one rate-limit count, one
// cache and one count of each session's chunk uploads.
//
// Every key is the prefix passed to the constructor followed by the
// caller's key, unchanged: NewCache(c, "") stores "jettythunder:lock:u1" as
// exactly that key, which keeps keys readable in redis-cli and compatible
// with other programs using the same names.
package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jettythunder/jetty/server"
)

// allowScript counts one request in a fixed window, atomically: INCR, and
// on the first request of a window PEXPIRE. A counter found without an
// expiry (written by something else, or a crash between commands in an
// older version) is given one, so a key can never lock a client out
// forever. It returns the count and the key's remaining TTL in ms.
var allowScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
`)

// Limiter is a fixed-window rate limiter shared through Redis. A key's
// window starts with its first request and lasts the window passed to that
// request; refused requests count too.
type Limiter struct {
	client goredis.UniversalClient
	prefix string
}

var _ server.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter storing its counters under prefix. client is
// usually a *goredis.Client; it is not closed by the Limiter.
func NewLimiter(client goredis.UniversalClient, prefix string) *Limiter {
	return &Limiter{client: client, prefix: prefix}
}

// AllowTimeout bounds one Allow: a Redis that has not answered by then is
// taken as down (the server fails open) rather than holding up every
// request until the client's own read timeouts and retries run out (about
// 10 s with go-redis's defaults). It bounds the socket reads only on a
// client made with ContextTimeoutEnabled, as the server's is; otherwise it
// is checked between go-redis's retries.
const AllowTimeout = time.Second

// Allow counts one request for key and reports whether it fits in limit
// requests per window. When it does not, RetryAfter is the key's PTTL.
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (server.LimitResult, error) {
	if limit <= 0 {
		return server.LimitResult{}, server.Errorf(server.EInvalid, "rate limit must be positive, got %d", limit)
	}
	if window <= 0 {
		return server.LimitResult{}, server.Errorf(server.EInvalid, "rate limit window must be positive, got %s", window)
	}
	ms := max(window.Milliseconds(), 1)
	ctx, cancel := context.WithTimeout(ctx, AllowTimeout)
	defer cancel()
	vals, err := allowScript.Run(ctx, l.client, []string{l.prefix + key}, ms).Int64Slice()
	if err != nil {
		return server.LimitResult{}, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(vals) != 2 {
		return server.LimitResult{}, fmt.Errorf("redis rate limit: script returned %d values, want 2", len(vals))
	}
	count, ttl := vals[0], vals[1]
	res := server.LimitResult{
		Allowed:   count <= int64(limit),
		Limit:     limit,
		Remaining: int(max(0, int64(limit)-count)),
	}
	if !res.Allowed {
		res.RetryAfter = time.Duration(max(ttl, 1)) * time.Millisecond
	}
	return res, nil
}

// Ping checks that Redis answers, so that the server's /readyz can report
// the limiter (requests themselves fail open when it does not).
func (l *Limiter) Ping(ctx context.Context) error {
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Cache is a key-value cache on Redis strings with per-key expiry.
type Cache struct {
	client goredis.UniversalClient
	prefix string
}

var _ server.Cache = (*Cache)(nil)

// NewCache returns a Cache storing its keys under prefix. client is usually
// a *goredis.Client; it is not closed by the Cache.
func NewCache(client goredis.UniversalClient, prefix string) *Cache {
	return &Cache{client: client, prefix: prefix}
}

// Get returns the value stored under key (GET).
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := c.client.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis cache get: %w", err)
	}
	return b, true, nil
}

// Set stores value under key for ttl (SET PX); ttl <= 0 means no expiry.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.client.Set(ctx, c.prefix+key, value, redisTTL(ttl)).Err(); err != nil {
		return fmt.Errorf("redis cache set: %w", err)
	}
	return nil
}

// SetNX stores value under key for ttl only if key is absent (SET NX PX;
// ttl <= 0 means no expiry) and reports whether it did.
func (c *Cache) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	ok, err := c.client.SetNX(ctx, c.prefix+key, value, redisTTL(ttl)).Result()
	if err != nil {
		return false, fmt.Errorf("redis cache setnx: %w", err)
	}
	return ok, nil
}

// Delete removes key (DEL); a missing key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := c.client.Del(ctx, c.prefix+key).Err(); err != nil {
		return fmt.Errorf("redis cache delete: %w", err)
	}
	return nil
}

// redisTTL maps the Cache contract (ttl <= 0: no expiry) onto go-redis,
// where 0 means no expiry and negative values mean KEEPTTL.
func redisTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	// go-redis sends whole milliseconds; round sub-millisecond TTLs up
	// rather than down to zero (which would mean "never expire").
	if ttl < time.Millisecond {
		return time.Millisecond
	}
	return ttl
}
