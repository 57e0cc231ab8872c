package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jettythunder/jetty/server"
)

// A Semaphore's slots under one key are the members of one sorted set,
// each scored by the end of its lease in Unix milliseconds of the
// instances' clocks. Lapsed members (score <= now) count no more and are
// removed by the next Acquire; the set itself expires twice the longest
// lease after its last write, so a key whose holders all died leaves
// nothing behind. Every step is one script: atomic across instances.

// acquireScript: KEYS[1] the set; ARGV now (ms), lease (ms), limit, the
// new slot's id, the set's TTL (ms). Returns 1 when the slot was taken.
var acquireScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[4])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
`)

// renewScript: KEYS[1] the set; ARGV now (ms), lease (ms), the slot's
// id, the set's TTL (ms). Returns 1 when the slot was live and renewed;
// a lapsed slot is removed instead.
var renewScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
local ends = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not ends then
  return 0
end
if tonumber(ends) <= now then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
`)

// Semaphore is a server.Semaphore shared through Redis: every instance on
// the same Redis and prefix counts the same slots.
//
// Leases are measured on the instances' clocks (the time each call is
// sent with), not Redis's, so that tests can move time; instances whose
// clocks disagree by d see a slot lapse up to d early or late, which
// matters nothing next to leases of tens of seconds under NTP.
type Semaphore struct {
	client goredis.UniversalClient
	prefix string
	now    func() time.Time
}

var _ server.Semaphore = (*Semaphore)(nil)

// SemaphoreOption configures a Semaphore.
type SemaphoreOption func(*Semaphore)

// WithClock makes the Semaphore read the time from now instead of
// time.Now (tests move it by hand).
func WithClock(now func() time.Time) SemaphoreOption {
	return func(s *Semaphore) {
		if now != nil {
			s.now = now
		}
	}
}

// NewSemaphore returns a Semaphore keeping each key's slots under prefix
// + key. client is not closed by the Semaphore.
func NewSemaphore(client goredis.UniversalClient, prefix string, opts ...SemaphoreOption) *Semaphore {
	s := &Semaphore{client: client, prefix: prefix, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// SlotTimeout bounds one call of a Semaphore, as AllowTimeout bounds the
// Limiter's: a Redis that has not answered by then is taken as down.
const SlotTimeout = time.Second

func leaseMS(lease time.Duration) int64 { return max(lease.Milliseconds(), 1) }

// Acquire takes one of limit slots under key for lease.
func (s *Semaphore) Acquire(ctx context.Context, key string, limit int, lease time.Duration) (string, bool, error) {
	if err := server.CheckSlot(limit, lease); err != nil {
		return "", false, err
	}
	ctx, cancel := context.WithTimeout(ctx, SlotTimeout)
	defer cancel()
	id := rand.Text()
	ms := leaseMS(lease)
	n, err := acquireScript.Run(ctx, s.client, []string{s.prefix + key}, s.now().UnixMilli(), ms, limit, id, 2*ms).Int64()
	if err != nil {
		return "", false, fmt.Errorf("redis semaphore acquire: %w", err)
	}
	if n != 1 {
		return "", false, nil
	}
	return id, true, nil
}

// Renew extends a live slot's lease to lease from now.
func (s *Semaphore) Renew(ctx context.Context, key, id string, lease time.Duration) (bool, error) {
	if err := server.CheckSlot(1, lease); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, SlotTimeout)
	defer cancel()
	ms := leaseMS(lease)
	n, err := renewScript.Run(ctx, s.client, []string{s.prefix + key}, s.now().UnixMilli(), ms, id, 2*ms).Int64()
	if err != nil {
		return false, fmt.Errorf("redis semaphore renew: %w", err)
	}
	return n == 1, nil
}

// Release gives the slot back (ZREM).
func (s *Semaphore) Release(ctx context.Context, key, id string) error {
	ctx, cancel := context.WithTimeout(ctx, SlotTimeout)
	defer cancel()
	if err := s.client.ZRem(ctx, s.prefix+key, id).Err(); err != nil {
		return fmt.Errorf("redis semaphore release: %w", err)
	}
	return nil
}
