package kvtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// Clock is a clock the Semaphore suite moves by hand, so that leases
// lapse without a test sleeping. It starts on a whole second.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at a fixed instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)}
}

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lease is the lease the Semaphore suite gives its slots: long in real
// time (nothing lapses unless the suite moves its clock), in whole
// milliseconds (the resolution of server/redis's).
const lease = time.Minute

// RunSemaphore runs the Semaphore conformance suite. newSemaphore is
// called once per subtest, with the subtest's t and the clock the
// Semaphore must read; two calls with the same t share nothing.
func RunSemaphore(t *testing.T, newSemaphore func(t *testing.T, now func() time.Time) server.Semaphore) {
	ctx := context.Background()

	t.Run("ExactLimit", func(t *testing.T) {
		t.Parallel()
		s := newSemaphore(t, NewClock().Now)
		const limit = 3
		ids := map[string]bool{}
		for i := 0; i < limit; i++ {
			ids[acquire(t, s, "k", limit, lease)] = true
		}
		if len(ids) != limit {
			t.Fatalf("%d slots taken, %d distinct ids", limit, len(ids))
		}
		refused(t, s, "k", limit, lease)
		// A larger limit on the same key admits more: the limit is the
		// caller's, not the key's.
		acquire(t, s, "k", limit+1, lease)
		refused(t, s, "k", limit+1, lease)
	})

	t.Run("ReleaseFreesOneSlot", func(t *testing.T) {
		t.Parallel()
		s := newSemaphore(t, NewClock().Now)
		a := acquire(t, s, "k", 2, lease)
		acquire(t, s, "k", 2, lease)
		refused(t, s, "k", 2, lease)
		must(t, s.Release(ctx, "k", a))
		c := acquire(t, s, "k", 2, lease)
		refused(t, s, "k", 2, lease)
		// Releasing a slot twice, an unknown slot, or under another key
		// frees nothing more.
		must(t, s.Release(ctx, "k", a))
		must(t, s.Release(ctx, "k", "no-such-slot"))
		must(t, s.Release(ctx, "other", c))
		must(t, s.Release(ctx, "never-used", "x"))
		refused(t, s, "k", 2, lease)
		if ok, err := s.Renew(ctx, "k", a, lease); err != nil || ok {
			t.Fatalf("Renew of a released slot = %v, %v; want false", ok, err)
		}
	})

	t.Run("IndependentKeys", func(t *testing.T) {
		t.Parallel()
		s := newSemaphore(t, NewClock().Now)
		acquire(t, s, "a", 1, lease)
		refused(t, s, "a", 1, lease)
		for _, k := range []string{"b", "a:", "A", "a "} {
			acquire(t, s, k, 1, lease)
		}
	})

	// A holder that never releases (its process was killed mid-chunk)
	// holds its slot until the lease ends, not a moment longer.
	t.Run("CrashedHolderLapses", func(t *testing.T) {
		t.Parallel()
		clk := NewClock()
		s := newSemaphore(t, clk.Now)
		dead := acquire(t, s, "k", 2, lease)
		clk.Advance(lease / 2)
		acquire(t, s, "k", 2, lease) // a live holder, taken later
		refused(t, s, "k", 2, lease)
		clk.Advance(lease/2 - time.Millisecond)
		refused(t, s, "k", 2, lease)
		clk.Advance(time.Millisecond) // the dead holder's lease ends
		acquire(t, s, "k", 2, lease)
		refused(t, s, "k", 2, lease)
		if ok, err := s.Renew(ctx, "k", dead, lease); err != nil || ok {
			t.Fatalf("Renew of a lapsed slot = %v, %v; want false", ok, err)
		}
		refused(t, s, "k", 2, lease)
	})

	t.Run("RenewExtendsTheLease", func(t *testing.T) {
		t.Parallel()
		clk := NewClock()
		s := newSemaphore(t, clk.Now)
		id := acquire(t, s, "k", 1, lease)
		for i := 0; i < 5; i++ {
			clk.Advance(lease - time.Millisecond)
			if ok, err := s.Renew(ctx, "k", id, lease); err != nil || !ok {
				t.Fatalf("renewal %d = %v, %v; want true", i+1, ok, err)
			}
			refused(t, s, "k", 1, lease)
		}
		clk.Advance(lease)
		if ok, err := s.Renew(ctx, "k", id, lease); err != nil || ok {
			t.Fatalf("Renew at the lease's end = %v, %v; want false", ok, err)
		}
		acquire(t, s, "k", 1, lease)
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		s := newSemaphore(t, NewClock().Now)
		const limit, goroutines = 7, 50
		var taken atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		start := make(chan struct{})
		for g := 0; g < goroutines; g++ {
			wg.Go(func() {
				<-start
				_, ok, err := s.Acquire(context.Background(), "concurrent", limit, lease)
				if err != nil {
					errs <- err
				} else if ok {
					taken.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := taken.Load(); n != limit {
			t.Fatalf("%d of %d concurrent Acquires took a slot, want exactly %d", n, goroutines, limit)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		t.Parallel()
		s := newSemaphore(t, NewClock().Now)
		for _, c := range []struct {
			limit int
			lease time.Duration
		}{{0, lease}, {-1, lease}, {1, 0}, {1, -time.Second}} {
			if _, ok, err := s.Acquire(ctx, "k", c.limit, c.lease); server.ErrorCode(err) != server.EInvalid {
				t.Errorf("Acquire(limit=%d, lease=%s) = %v, %v; want %s", c.limit, c.lease, ok, err, server.EInvalid)
			}
		}
		id := acquire(t, s, "k", 1, lease)
		if _, err := s.Renew(ctx, "k", id, 0); server.ErrorCode(err) != server.EInvalid {
			t.Errorf("Renew with lease 0: %v, want %s", err, server.EInvalid)
		}
	})
}

func acquire(t *testing.T, s server.Semaphore, key string, limit int, lease time.Duration) string {
	t.Helper()
	id, ok, err := s.Acquire(context.Background(), key, limit, lease)
	if err != nil {
		t.Fatalf("Acquire(%q, %d): %v", key, limit, err)
	}
	if !ok || id == "" {
		t.Fatalf("Acquire(%q, %d) refused (id %q), want a slot", key, limit, id)
	}
	return id
}

func refused(t *testing.T, s server.Semaphore, key string, limit int, lease time.Duration) {
	t.Helper()
	id, ok, err := s.Acquire(context.Background(), key, limit, lease)
	if err != nil {
		t.Fatalf("Acquire(%q, %d): %v", key, limit, err)
	}
	if ok {
		t.Fatalf("Acquire(%q, %d) took slot %q, want refused: the limit is held", key, limit, id)
	}
}
