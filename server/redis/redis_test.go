package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/kvtest"
	"github.com/jettythunder/jetty/server/redis"
)

func TestLimiterConformance(t *testing.T) {
	kvtest.RunLimiter(t, func(t *testing.T) server.Limiter {
		c, prefix := testenv.Redis(t)
		return redis.NewLimiter(c, prefix)
	})
}

func TestCacheConformance(t *testing.T) {
	kvtest.RunCache(t, func(t *testing.T) server.Cache {
		c, prefix := testenv.Redis(t)
		return redis.NewCache(c, prefix)
	})
}

// TestLimiterSharedAcrossInstances checks that two Limiters on the same
// Redis and prefix (two server instances) share one count, and that
// another prefix counts on its own.
func TestLimiterSharedAcrossInstances(t *testing.T) {
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	a := redis.NewLimiter(c, prefix)
	b := redis.NewLimiter(c, prefix)
	other := redis.NewLimiter(c, prefix+"other:")
	for i, l := range []*redis.Limiter{a, b, a} {
		res, err := l.Allow(ctx, "k", 3, time.Minute)
		if err != nil || !res.Allowed || res.Remaining != 2-i {
			t.Fatalf("request %d: %+v, %v", i+1, res, err)
		}
	}
	if res, err := b.Allow(ctx, "k", 3, time.Minute); err != nil || res.Allowed {
		t.Fatalf("4th request through the second instance: %+v, %v; want refused", res, err)
	}
	if res, err := other.Allow(ctx, "k", 3, time.Minute); err != nil || !res.Allowed || res.Remaining != 2 {
		t.Fatalf("other prefix: %+v, %v; want a fresh count", res, err)
	}
}

// TestLimiterRepairsKeyWithoutTTL checks that a counter left without an
// expiry cannot lock a key out forever.
func TestLimiterRepairsKeyWithoutTTL(t *testing.T) {
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	if err := c.Set(ctx, prefix+"stuck", 100, 0).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := redis.NewLimiter(c, prefix).Allow(ctx, "stuck", 5, time.Minute)
	if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > time.Minute {
		t.Fatalf("Allow on a stuck key: %+v, %v", res, err)
	}
	if ttl := c.PTTL(ctx, prefix+"stuck").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("stuck key PTTL %s after Allow, want in (0, 1m]", ttl)
	}
}

// TestCacheKeysAreRaw checks the key layout: prefix + key, unchanged, with
// the TTL set in Redis.
func TestCacheKeysAreRaw(t *testing.T) {
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	cache := redis.NewCache(c, prefix)
	if err := cache.Set(ctx, "jettythunder:credentials:u1", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := c.Get(ctx, prefix+"jettythunder:credentials:u1").Val(); got != "v" {
		t.Fatalf("raw GET = %q, want v", got)
	}
	if ttl := c.PTTL(ctx, prefix+"jettythunder:credentials:u1").Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("PTTL %s, want about 1h", ttl)
	}
	if ok, err := cache.SetNX(ctx, "lock", []byte("x"), 1500*time.Millisecond); err != nil || !ok {
		t.Fatalf("SetNX: %v, %v", ok, err)
	}
	if ttl := c.PTTL(ctx, prefix+"lock").Val(); ttl <= time.Second || ttl > 1500*time.Millisecond {
		t.Fatalf("lock PTTL %s, want about 1.5s", ttl)
	}
}

func TestRedisDown(t *testing.T) {
	down, prefix := deadRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := redis.NewLimiter(down, prefix).Allow(ctx, "k", 1, time.Second); err == nil {
		t.Error("Allow against a dead Redis succeeded")
	}
	if _, _, err := redis.NewCache(down, prefix).Get(ctx, "k"); err == nil {
		t.Error("Get against a dead Redis succeeded")
	}
}

func TestSemaphoreConformance(t *testing.T) {
	kvtest.RunSemaphore(t, func(t *testing.T, now func() time.Time) server.Semaphore {
		c, prefix := testenv.Redis(t)
		return redis.NewSemaphore(c, prefix, redis.WithClock(now))
	})
}

// TestSemaphoreSharedAcrossInstances checks that two Semaphores on the
// same Redis and prefix (two server instances) count one set of slots,
// that another prefix counts its own, and that the set expires in Redis
// once its holders are gone.
func TestSemaphoreSharedAcrossInstances(t *testing.T) {
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	a := redis.NewSemaphore(c, prefix)
	b := redis.NewSemaphore(c, prefix)
	other := redis.NewSemaphore(c, prefix+"other:")
	var ids []string
	for i, s := range []*redis.Semaphore{a, b, a} {
		id, ok, err := s.Acquire(ctx, "sess", 3, time.Minute)
		if err != nil || !ok {
			t.Fatalf("slot %d: %v, %v", i+1, ok, err)
		}
		ids = append(ids, id)
	}
	if _, ok, err := b.Acquire(ctx, "sess", 3, time.Minute); err != nil || ok {
		t.Fatalf("4th slot through the second instance: %v, %v; want refused", ok, err)
	}
	if _, ok, err := other.Acquire(ctx, "sess", 3, time.Minute); err != nil || !ok {
		t.Fatalf("other prefix: %v, %v; want a slot", ok, err)
	}
	// A slot taken on one instance is released through the other.
	if err := b.Release(ctx, "sess", ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Acquire(ctx, "sess", 3, time.Minute); err != nil || !ok {
		t.Fatalf("after a release on the other instance: %v, %v; want a slot", ok, err)
	}
	if n := c.ZCard(ctx, prefix+"sess").Val(); n != 3 {
		t.Fatalf("ZCARD %d, want 3", n)
	}
	if ttl := c.PTTL(ctx, prefix+"sess").Val(); ttl <= time.Minute || ttl > 2*time.Minute {
		t.Fatalf("set PTTL %s, want in (1m, 2m]: it outlives every lease, then goes", ttl)
	}
}

func TestSemaphoreRedisDown(t *testing.T) {
	down, prefix := deadRedis(t)
	s := redis.NewSemaphore(down, prefix)
	ctx := context.Background()
	if _, _, err := s.Acquire(ctx, "k", 1, time.Second); err == nil {
		t.Error("Acquire against a dead Redis succeeded")
	}
	if _, err := s.Renew(ctx, "k", "id", time.Second); err == nil {
		t.Error("Renew against a dead Redis succeeded")
	}
	if err := s.Release(ctx, "k", "id"); err == nil {
		t.Error("Release against a dead Redis succeeded")
	}
}

// deadRedis is a client of a Redis that is down (nothing listens at its
// address), and a key prefix.
func deadRedis(t *testing.T) (*goredis.Client, string) {
	c, prefix := testenv.Redis(t)
	opt := *c.Options()
	opt.Addr = "127.0.0.1:1" // nothing listens here
	opt.MaxRetries = -1
	down := goredis.NewClient(&opt)
	t.Cleanup(func() { down.Close() })
	return down, prefix
}
