package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/jettythunder/jetty/protocol"
)

// StreamRangeSize is the size of one ranged request of DownloadStream.
// Ranges are held in memory until their turn to be written: at most
// Workers+1 of them at a time.
const StreamRangeSize = 4 << 20

// DownloadStream writes asset a to w (a pipe, stdout) in order, while
// up to opts.Workers ranges (StreamRangeSize each) are fetched in
// parallel ahead of the one being written; each range is retried as in
// Download. Nothing is written to disk and nothing resumes: a stream
// that stops must be fetched again from the start.
//
// The bytes are hashed as they are written. The last range is held back
// until the whole asset's SHA-256 matches a.Hash: on a mismatch it is
// never written, so the output is short (not merely wrong) and the
// error, a *DownloadFileError, says so. opts.Progress gets the bytes
// fetched; opts.Force and BeforeRename do not apply.
func DownloadStream(ctx context.Context, c *Client, a protocol.Asset, w io.Writer, opts DownloadOptions) (DownloadResult, error) {
	opts = opts.withDefaults()
	progress, workers := opts.Progress, opts.Workers
	n := int((a.Size + StreamRangeSize - 1) / StreamRangeSize)
	rangeOf := func(i int) (off, size int64) {
		off = int64(i) * StreamRangeSize
		return off, min(StreamRangeSize, a.Size-off)
	}
	progress(0)
	var fetched atomic.Int64
	report := func(d int64) { progress(fetched.Add(d)) }

	window := workers + 1
	slots := make(chan struct{}, window) // ranges fetched or being fetched, not yet written
	free := make(chan []byte, window)    // buffers of written ranges, for reuse
	ready := make([]chan []byte, n)      // range i's bytes, once fetched
	for i := range ready {
		ready[i] = make(chan []byte, 1)
	}
	queue := make(chan int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // hand out ranges in order, at most window ahead of the writer
		defer close(queue)
		for i := range n {
			select {
			case slots <- struct{}{}:
			case <-gctx.Done():
				return nil
			}
			select {
			case queue <- i:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for range min(workers, max(n, 1)) {
		g.Go(func() error {
			scratch := make([]byte, 256<<10)
			for i := range queue {
				var buf []byte
				select {
				case buf = <-free:
				default:
					buf = make([]byte, StreamRangeSize)
				}
				off, size := rangeOf(i)
				buf = buf[:size]
				err := retryRange(gctx, func() (int64, error) {
					return copyRange(gctx, c, a.ID, off, size, scratch, report, func(b []byte, at int64) error {
						copy(buf[at-off:], b)
						return nil
					})
				}, report)
				if err != nil {
					return err
				}
				ready[i] <- buf
			}
			return nil
		})
	}
	var written int64
	h := sha256.New()
	g.Go(func() error { // write in order; verify before the last range
		for i := range n {
			var buf []byte
			select {
			case buf = <-ready[i]:
			case <-gctx.Done():
				return nil
			}
			h.Write(buf)
			if i == n-1 {
				if err := verifyStream(a, h.Sum(nil), len(buf)); err != nil {
					return err
				}
			}
			if _, err := w.Write(buf); err != nil {
				return &DownloadFileError{Err: fmt.Errorf("writing the output: %w", err)}
			}
			written += int64(len(buf))
			<-slots
			select {
			case free <- buf[:cap(buf)]:
			default:
			}
		}
		if n == 0 {
			return verifyStream(a, h.Sum(nil), 0)
		}
		return nil
	})
	err := g.Wait()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	res := DownloadResult{Fetched: written}
	if err != nil {
		return res, err
	}
	res.Verified = a.Hash != ""
	return res, nil
}

// verifyStream compares a stream's SHA-256 with the asset's; held is how
// many bytes at the end were held back (not written) because of it.
func verifyStream(a protocol.Asset, sum []byte, held int) error {
	if a.Hash == "" {
		return nil
	}
	if got := hex.EncodeToString(sum); !strings.EqualFold(got, a.Hash) {
		return &DownloadFileError{Err: fmt.Errorf("the downloaded bytes hash to %s, not the stored SHA-256 %s: the output is incomplete (its last %d bytes were held back) and must not be used; run the command again", got, a.Hash, held)}
	}
	return nil
}
