// Package kvtest is the conformance suite every server.Limiter,
// server.Cache and server.Semaphore implementation passes (server/memory
// and server/redis). An implementation's tests call RunLimiter, RunCache
// and RunSemaphore with a constructor; each subtest gets a fresh instance
// and uses its own keys.
//
// The Limiter and Cache suites use real time with short windows (a few
// hundred milliseconds); the Semaphore suite moves a Clock by hand. All
// run their subtests in parallel to keep the total small.
package kvtest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// shortWindow is the window or TTL used by the tests that wait for expiry.
const shortWindow = 300 * time.Millisecond

// longWindow is a window no test waits for.
const longWindow = time.Minute

// RunLimiter runs the Limiter conformance suite. newLimiter is called once
// per subtest, with the subtest's t.
func RunLimiter(t *testing.T, newLimiter func(t *testing.T) server.Limiter) {
	t.Run("ExactLimit", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		ctx := context.Background()
		const limit = 5
		for i := 1; i <= limit; i++ {
			res := allow(t, l, "exact", limit, longWindow)
			if !res.Allowed {
				t.Fatalf("request %d of %d refused: %+v", i, limit, res)
			}
			if res.Limit != limit || res.Remaining != limit-i {
				t.Fatalf("request %d: Limit=%d Remaining=%d, want %d and %d", i, res.Limit, res.Remaining, limit, limit-i)
			}
			if res.RetryAfter != 0 {
				t.Fatalf("request %d allowed with RetryAfter %s, want 0", i, res.RetryAfter)
			}
		}
		for i := 0; i < 3; i++ {
			res, err := l.Allow(ctx, "exact", limit, longWindow)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed {
				t.Fatalf("request %d over the limit allowed: %+v", limit+1+i, res)
			}
			if res.Limit != limit || res.Remaining != 0 {
				t.Fatalf("refused: Limit=%d Remaining=%d, want %d and 0", res.Limit, res.Remaining, limit)
			}
			if res.RetryAfter <= 0 || res.RetryAfter > longWindow {
				t.Fatalf("refused with RetryAfter %s, want in (0, %s]", res.RetryAfter, longWindow)
			}
		}
	})

	t.Run("LimitOfOne", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		if res := allow(t, l, "one", 1, longWindow); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("first request: %+v, want allowed with Remaining 0", res)
		}
		if res := allow(t, l, "one", 1, longWindow); res.Allowed {
			t.Fatalf("second request allowed: %+v", res)
		}
	})

	t.Run("IndependentKeys", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		for i := 0; i < 2; i++ {
			allow(t, l, "a", 2, longWindow)
		}
		if res := allow(t, l, "a", 2, longWindow); res.Allowed {
			t.Fatalf("key a over its limit allowed: %+v", res)
		}
		for _, k := range []string{"b", "a:", "A", "a "} {
			if res := allow(t, l, k, 2, longWindow); !res.Allowed || res.Remaining != 1 {
				t.Fatalf("key %q after key a was exhausted: %+v, want allowed with Remaining 1", k, res)
			}
		}
	})

	t.Run("WindowExpiry", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		allow(t, l, "expiry", 2, shortWindow)
		// The window began while the first call ran, so no later than
		// now; the third call is counted no earlier than it is sent. What
		// is left of the window then is at most shortWindow minus the time
		// between the two, however slow the calls are (a bound measured
		// from before the first call failed on a loaded machine, where
		// that call alone took 90 ms).
		firstDone := time.Now()
		allow(t, l, "expiry", 2, shortWindow)
		thirdSent := time.Now()
		res := allow(t, l, "expiry", 2, shortWindow)
		if res.Allowed {
			t.Fatalf("third request in a window of 2 allowed: %+v", res)
		}
		if res.RetryAfter <= 0 || res.RetryAfter > shortWindow {
			t.Fatalf("RetryAfter %s, want in (0, %s]", res.RetryAfter, shortWindow)
		}
		// Limiters count in whole milliseconds: allow one of rounding.
		if left := shortWindow - thirdSent.Sub(firstDone); res.RetryAfter > left+time.Millisecond {
			t.Fatalf("RetryAfter %s, but at most %s of the window can be left", res.RetryAfter, left)
		}
		time.Sleep(res.RetryAfter + 50*time.Millisecond)
		res = allow(t, l, "expiry", 2, shortWindow)
		if !res.Allowed || res.Remaining != 1 {
			t.Fatalf("first request of a new window: %+v, want allowed with Remaining 1", res)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		const limit, goroutines, each = 37, 50, 4
		var allowed, refused atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, goroutines*each)
		start := make(chan struct{})
		for g := 0; g < goroutines; g++ {
			wg.Go(func() {
				<-start
				for i := 0; i < each; i++ {
					res, err := l.Allow(context.Background(), "concurrent", limit, longWindow)
					if err != nil {
						errs <- err
						return
					}
					if res.Allowed {
						allowed.Add(1)
					} else {
						refused.Add(1)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := allowed.Load(); got != limit {
			t.Fatalf("%d of %d concurrent requests allowed, want exactly %d", got, goroutines*each, limit)
		}
		if got := refused.Load(); got != goroutines*each-limit {
			t.Fatalf("%d requests refused, want %d", got, goroutines*each-limit)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t)
		ctx := context.Background()
		for _, c := range []struct {
			limit  int
			window time.Duration
		}{{0, time.Second}, {-1, time.Second}, {1, 0}, {1, -time.Second}} {
			res, err := l.Allow(ctx, "invalid", c.limit, c.window)
			if err == nil {
				t.Errorf("Allow(limit=%d, window=%s) = %+v, want an error", c.limit, c.window, res)
			} else if code := server.ErrorCode(err); code != server.EInvalid {
				t.Errorf("Allow(limit=%d, window=%s): code %q, want %q", c.limit, c.window, code, server.EInvalid)
			}
		}
	})
}

// RunCache runs the Cache conformance suite. newCache is called once per
// subtest, with the subtest's t.
func RunCache(t *testing.T, newCache func(t *testing.T) server.Cache) {
	t.Run("GetMissing", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		if v, ok, err := c.Get(context.Background(), "missing"); err != nil || ok || len(v) != 0 {
			t.Fatalf("Get(missing) = %q, %v, %v; want nothing", v, ok, err)
		}
	})

	t.Run("SetGet", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		ctx := context.Background()
		val := []byte("v1\x00\xff binary")
		must(t, c.Set(ctx, "k", val, longWindow))
		val[0] = 'X' // the cache must have kept its own copy
		wantValue(t, c, "k", "v1\x00\xff binary")

		got, _, _ := c.Get(ctx, "k")
		got[0] = 'Y' // and hand out copies
		wantValue(t, c, "k", "v1\x00\xff binary")

		must(t, c.Set(ctx, "k", []byte("v2"), longWindow))
		wantValue(t, c, "k", "v2")

		must(t, c.Set(ctx, "empty", []byte{}, longWindow))
		wantValue(t, c, "empty", "")
	})

	t.Run("TTLExpiry", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		ctx := context.Background()
		must(t, c.Set(ctx, "short", []byte("x"), shortWindow))
		must(t, c.Set(ctx, "long", []byte("y"), longWindow))
		must(t, c.Set(ctx, "forever", []byte("z"), 0))
		wantValue(t, c, "short", "x")
		time.Sleep(shortWindow + 100*time.Millisecond)
		wantMissing(t, c, "short")
		wantValue(t, c, "long", "y")
		wantValue(t, c, "forever", "z")

		// Set replaces the TTL along with the value.
		must(t, c.Set(ctx, "long", []byte("y2"), shortWindow))
		time.Sleep(shortWindow + 100*time.Millisecond)
		wantMissing(t, c, "long")
	})

	t.Run("SetNX", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		ctx := context.Background()
		if ok, err := c.SetNX(ctx, "nx", []byte("first"), shortWindow); err != nil || !ok {
			t.Fatalf("first SetNX = %v, %v; want true", ok, err)
		}
		if ok, err := c.SetNX(ctx, "nx", []byte("second"), shortWindow); err != nil || ok {
			t.Fatalf("second SetNX = %v, %v; want false", ok, err)
		}
		wantValue(t, c, "nx", "first")
		time.Sleep(shortWindow + 100*time.Millisecond)
		if ok, err := c.SetNX(ctx, "nx", []byte("third"), longWindow); err != nil || !ok {
			t.Fatalf("SetNX after expiry = %v, %v; want true", ok, err)
		}
		wantValue(t, c, "nx", "third")

		must(t, c.Set(ctx, "set-first", []byte("a"), longWindow))
		if ok, err := c.SetNX(ctx, "set-first", []byte("b"), longWindow); err != nil || ok {
			t.Fatalf("SetNX over a Set key = %v, %v; want false", ok, err)
		}
	})

	t.Run("SetNXConcurrent", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		const goroutines = 50
		var wins atomic.Int64
		var winner atomic.Value
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		start := make(chan struct{})
		for g := 0; g < goroutines; g++ {
			wg.Go(func() {
				<-start
				v := fmt.Sprintf("caller-%d", g)
				ok, err := c.SetNX(context.Background(), "lock", []byte(v), longWindow)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					wins.Add(1)
					winner.Store(v)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("%d of %d concurrent SetNX calls won, want exactly 1", n, goroutines)
		}
		wantValue(t, c, "lock", winner.Load().(string))
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		ctx := context.Background()
		must(t, c.Set(ctx, "d", []byte("v"), longWindow))
		must(t, c.Set(ctx, "keep", []byte("k"), longWindow))
		must(t, c.Delete(ctx, "d"))
		wantMissing(t, c, "d")
		wantValue(t, c, "keep", "k")
		must(t, c.Delete(ctx, "d"))
		must(t, c.Delete(ctx, "never-set"))
		if ok, err := c.SetNX(ctx, "d", []byte("again"), longWindow); err != nil || !ok {
			t.Fatalf("SetNX after Delete = %v, %v; want true", ok, err)
		}
		wantValue(t, c, "d", "again")
	})

	t.Run("IndependentKeys", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		ctx := context.Background()
		for _, k := range []string{"x", "x:", "X", "x y", "jettythunder:credentials:u1"} {
			must(t, c.Set(ctx, k, []byte("value of "+k), longWindow))
		}
		for _, k := range []string{"x", "x:", "X", "x y", "jettythunder:credentials:u1"} {
			wantValue(t, c, k, "value of "+k)
		}
	})
}

func allow(t *testing.T, l server.Limiter, key string, limit int, window time.Duration) server.LimitResult {
	t.Helper()
	res, err := l.Allow(context.Background(), key, limit, window)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return res
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantValue(t *testing.T, c server.Cache, key, want string) {
	t.Helper()
	got, ok, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !ok {
		t.Fatalf("Get(%q): missing, want %q", key, want)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func wantMissing(t *testing.T, c server.Cache, key string) {
	t.Helper()
	got, ok, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if ok {
		t.Fatalf("Get(%q) = %q, want missing", key, got)
	}
}
