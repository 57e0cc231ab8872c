package engine

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// newBandwidthLimiter is a token bucket of bytesPerSec shared by all the
// workers of an upload (nil: no limit). The bucket holds 1/16 s of
// traffic, between 4 KiB and 256 KiB, so a burst never runs far ahead of
// the limit; it starts empty.
func newBandwidthLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := int(min(max(bytesPerSec/16, 4<<10), 256<<10))
	l := rate.NewLimiter(rate.Limit(bytesPerSec), burst)
	l.AllowN(time.Now(), burst) // start empty
	return l
}

// sentFlush is how many bytes a body accumulates before it reports them.
const sentFlush = 1 << 20

// bodyReader is the body of a chunk PUT: it waits for the bandwidth
// limiter before each read, counts the bytes read (what was handed to the
// connection) and reports them to the hub about every MiB.
//
// A transport may read and close a request body after RoundTrip returned
// (see http.RoundTripper), so the sender waits for closed before it
// reuses the buffer behind r.
type bodyReader struct {
	ctx     context.Context
	r       io.Reader
	lim     *rate.Limiter
	hub     *hub
	n       atomic.Int64 // bytes read so far
	pending atomic.Int64 // not yet reported
	once    sync.Once
	closed  chan struct{}
}

func newBodyReader(ctx context.Context, r io.Reader, lim *rate.Limiter, h *hub) *bodyReader {
	return &bodyReader{ctx: ctx, r: r, lim: lim, hub: h, closed: make(chan struct{})}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.lim != nil {
		if len(p) > b.lim.Burst() {
			p = p[:b.lim.Burst()]
		}
		if err := b.lim.WaitN(b.ctx, len(p)); err != nil {
			if b.ctx.Err() != nil {
				return 0, b.ctx.Err()
			}
			return 0, err
		}
	}
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	if b.pending.Add(int64(n)) >= sentFlush {
		b.flush()
	}
	return n, err
}

// Close marks the body released by the transport and reports the bytes
// read since the last report.
func (b *bodyReader) Close() error {
	b.once.Do(func() {
		b.flush()
		close(b.closed)
	})
	return nil
}

// flush reports the bytes not reported yet.
func (b *bodyReader) flush() {
	if n := b.pending.Swap(0); n > 0 && b.hub != nil {
		b.hub.addSent(n)
	}
}
