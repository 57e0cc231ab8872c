package memory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/kvtest"
)

func TestLimiterConformance(t *testing.T) {
	kvtest.RunLimiter(t, func(t *testing.T) server.Limiter { return NewLimiter() })
}

func TestCacheConformance(t *testing.T) {
	kvtest.RunCache(t, func(t *testing.T) server.Cache { return NewCache() })
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 25, 11, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestLimiterClock(t *testing.T) {
	clk := newFakeClock()
	l := NewLimiter(WithClock(clk.Now))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if res, _ := l.Allow(ctx, "k", 3, time.Minute); !res.Allowed {
			t.Fatalf("request %d refused", i+1)
		}
	}
	clk.Advance(20 * time.Second)
	res, err := l.Allow(ctx, "k", 3, time.Minute)
	if err != nil || res.Allowed || res.RetryAfter != 40*time.Second {
		t.Fatalf("over the limit: %+v, %v; want refused with RetryAfter 40s", res, err)
	}
	clk.Advance(40*time.Second - time.Nanosecond)
	if res, _ := l.Allow(ctx, "k", 3, time.Minute); res.Allowed || res.RetryAfter != time.Nanosecond {
		t.Fatalf("1ns before the window ends: %+v", res)
	}
	clk.Advance(time.Nanosecond)
	if res, _ := l.Allow(ctx, "k", 3, time.Minute); !res.Allowed || res.Remaining != 2 {
		t.Fatalf("new window: %+v, want allowed with Remaining 2", res)
	}
}

func TestCacheClock(t *testing.T) {
	clk := newFakeClock()
	c := NewCache(WithClock(clk.Now))
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.SetNX(ctx, "lock", []byte("a"), time.Minute); !ok {
		t.Fatal("SetNX on an empty cache failed")
	}
	clk.Advance(time.Minute)
	if ok, _ := c.SetNX(ctx, "lock", []byte("b"), time.Minute); !ok {
		t.Fatal("SetNX after the lock expired failed")
	}
	clk.Advance(time.Hour - time.Minute - time.Nanosecond)
	if _, ok, _ := c.Get(ctx, "k"); !ok {
		t.Fatal("value gone 1ns before its TTL")
	}
	clk.Advance(time.Nanosecond)
	if _, ok, _ := c.Get(ctx, "k"); ok {
		t.Fatal("value still there at its TTL")
	}
}

// TestSweepBoundsMemory checks that expired entries do not pile up: keys
// written once and never read again are dropped by later calls.
func TestSweepBoundsMemory(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	c := NewCache(WithClock(clk.Now), WithSweepInterval(time.Minute))
	l := NewLimiter(WithClock(clk.Now), WithSweepInterval(time.Minute))

	// Growth triggers sweeps: 100 rounds of 1000 short-lived keys never
	// leave more than a couple of rounds behind.
	for round := 0; round < 100; round++ {
		for i := 0; i < 1000; i++ {
			key := fmt.Sprintf("r%d-%d", round, i)
			if err := c.Set(ctx, key, []byte("v"), time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Allow(ctx, key, 1, time.Second); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(2 * time.Second)
	}
	if n := c.Len(); n > 3*minSweepLen {
		t.Fatalf("cache holds %d entries after 100k expired writes", n)
	}
	if n := l.Len(); n > 3*minSweepLen {
		t.Fatalf("limiter holds %d entries after 100k expired windows", n)
	}

	// Time triggers sweeps too, for a small map.
	c2 := NewCache(WithClock(clk.Now), WithSweepInterval(time.Minute))
	l2 := NewLimiter(WithClock(clk.Now), WithSweepInterval(time.Minute))
	for i := 0; i < 10; i++ {
		c2.Set(ctx, fmt.Sprint(i), []byte("v"), time.Second)
		l2.Allow(ctx, fmt.Sprint(i), 1, time.Second)
	}
	c2.Set(ctx, "live", []byte("v"), time.Hour)
	clk.Advance(2 * time.Minute)
	c2.Set(ctx, "trigger", []byte("v"), time.Hour)
	l2.Allow(ctx, "trigger", 1, time.Hour)
	if n := c2.Len(); n != 2 {
		t.Fatalf("cache holds %d entries after a timed sweep, want 2 (live, trigger)", n)
	}
	if n := l2.Len(); n != 1 {
		t.Fatalf("limiter holds %d entries after a timed sweep, want 1", n)
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewLimiter().Allow(ctx, "k", 1, time.Second); err == nil {
		t.Error("Allow with a canceled context succeeded")
	}
	if _, _, err := NewCache().Get(ctx, "k"); err == nil {
		t.Error("Get with a canceled context succeeded")
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	l, c := NewLimiter(), NewCache()
	l.Allow(ctx, "k", 1, time.Minute)
	c.Set(ctx, "k", []byte("v"), time.Minute)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 0 || c.Len() != 0 {
		t.Fatalf("after Close: %d windows, %d entries", l.Len(), c.Len())
	}
	l.Close()
	c.Close()
}

func TestSemaphoreConformance(t *testing.T) {
	kvtest.RunSemaphore(t, func(t *testing.T, now func() time.Time) server.Semaphore { return NewSemaphore(WithClock(now)) })
}

// TestSemaphoreSweep checks that slots never released (their holders
// gone) on keys never asked again do not pile up.
func TestSemaphoreSweep(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := NewSemaphore(WithClock(clk.Now), WithSweepInterval(time.Minute))
	for i := 0; i < 10; i++ {
		if _, ok, err := s.Acquire(ctx, fmt.Sprint(i), 1, time.Second); err != nil || !ok {
			t.Fatalf("Acquire %d: %v, %v", i, ok, err)
		}
	}
	live, _, _ := s.Acquire(ctx, "live", 1, time.Hour)
	clk.Advance(2 * time.Minute)
	if _, ok, _ := s.Acquire(ctx, "trigger", 1, time.Hour); !ok {
		t.Fatal("Acquire on a fresh key refused")
	}
	if n := s.Len(); n != 2 {
		t.Fatalf("%d keys after a timed sweep, want 2 (live, trigger)", n)
	}
	if s.Held("live") != 1 {
		t.Fatal("the live slot was swept")
	}
	s.Release(ctx, "live", live)
	if n := s.Len(); n != 1 {
		t.Fatalf("%d keys after the live slot's release, want 1", n)
	}
}
