package memory

import (
	"context"
	"crypto/rand"
	"sync"
	"time"

	"github.com/jettythunder/jetty/server"
)

// Semaphore is an in-process server.Semaphore: the slots under each key
// with their lease's end. It caps holders in this process only; several
// instances behind a load balancer need server/redis's, or each instance
// allows the limit on its own.
type Semaphore struct {
	now func() time.Time

	mu    sync.Mutex
	slots map[string]map[string]time.Time // key → slot id → lease end
	sweep sweeper
}

var _ server.Semaphore = (*Semaphore)(nil)

// NewSemaphore returns an in-process Semaphore holding no slots.
func NewSemaphore(opts ...Option) *Semaphore {
	o := buildOptions(opts)
	return &Semaphore{now: o.now, slots: make(map[string]map[string]time.Time), sweep: newSweeper(o.sweepInterval, o.now())}
}

// Acquire takes one of limit slots under key for lease; lapsed slots
// count no more.
func (s *Semaphore) Acquire(ctx context.Context, key string, limit int, lease time.Duration) (string, bool, error) {
	if err := server.CheckSlot(limit, lease); err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(now)
	held := s.slots[key]
	for id, end := range held {
		if !now.Before(end) {
			delete(held, id)
		}
	}
	if len(held) >= limit {
		return "", false, nil
	}
	if held == nil {
		held = make(map[string]time.Time)
		s.slots[key] = held
	}
	id := rand.Text()
	held[id] = now.Add(lease)
	return id, true, nil
}

// Renew extends a live slot's lease to lease from now.
func (s *Semaphore) Renew(ctx context.Context, key, id string, lease time.Duration) (bool, error) {
	if err := server.CheckSlot(1, lease); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.slots[key]
	end, ok := held[id]
	if !ok {
		return false, nil
	}
	if !now.Before(end) {
		s.drop(key, id)
		return false, nil
	}
	held[id] = now.Add(lease)
	return true, nil
}

// Release gives the slot back.
func (s *Semaphore) Release(ctx context.Context, key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(key, id)
	return nil
}

// Held reports how many live slots key holds.
func (s *Semaphore) Held(key string) int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, end := range s.slots[key] {
		if now.Before(end) {
			n++
		}
	}
	return n
}

// Len reports how many keys hold slots, lapsed or not.
func (s *Semaphore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.slots)
}

// drop removes one slot, and its key once empty. s.mu must be held.
func (s *Semaphore) drop(key, id string) {
	held := s.slots[key]
	delete(held, id)
	if len(held) == 0 {
		delete(s.slots, key)
	}
}

// maybeSweep drops lapsed slots of every key when a sweep is due, so the
// slots of holders that never came back (and keys never asked again) do
// not pile up. s.mu must be held.
func (s *Semaphore) maybeSweep(now time.Time) {
	if !s.sweep.due(now, len(s.slots)) {
		return
	}
	for key, held := range s.slots {
		for id, end := range held {
			if !now.Before(end) {
				delete(held, id)
			}
		}
		if len(held) == 0 {
			delete(s.slots, key)
		}
	}
	s.sweep.done(now, len(s.slots))
}
