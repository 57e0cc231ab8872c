package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"

	"github.com/jettythunder/jetty/protocol"
	"golang.org/x/sync/errgroup"
)

// PlanOptions tunes Plan.
type PlanOptions struct {
	// Name is the manifest's file name.
	Name string
	// Workers is how many goroutines hash chunks; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called from one goroutine with the number of
	// bytes hashed so far (whole-file order), about every 8 MiB.
	Progress func(hashed int64)
}

// planPiece is the unit Plan reads and hashes: small enough that memory
// stays a few MiB whatever the chunk size, large enough that channel
// operations cost nothing next to hashing.
const planPiece = 1 << 20

// planMaxPieces bounds the pieces in flight. The whole-file hash runs on
// one core, so more read-ahead buys nothing.
const planMaxPieces = 32

// Plan cuts the size bytes of r into chunks of chunkSize (0 means
// ChooseChunkSize(size)) and hashes every chunk and the whole file with
// SHA-256.
//
// The whole-file hash is sequential, so it bounds the speed (one core's
// SHA-256). One goroutine reads r in order (ReadAt, 1 MiB pieces from a
// bounded pool) and hands each piece both to the whole-file hasher and to
// the hasher of its chunk (opts.Workers goroutines, chunk i going to
// hasher i mod workers): every byte is read once and hashed twice on
// different cores, and memory stays under 32 MiB (2×workers+4 pieces, at
// most 32). BenchmarkPlan compares this with workers reading their own
// chunks while another goroutine reads the file again for the whole-file
// hash: reading once was about 20% faster (docs/decisions.md).
func Plan(ctx context.Context, r io.ReaderAt, size, chunkSize int64, opts PlanOptions) (*protocol.Manifest, error) {
	if chunkSize == 0 {
		chunkSize = protocol.ChooseChunkSize(size)
	}
	if err := protocol.CheckChunkSize(size, chunkSize); err != nil {
		return nil, err
	}
	m := protocol.NewManifest(opts.Name, size, chunkSize)
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(m.Chunks))
	if err := planFanout(ctx, r, m, workers, opts.Progress); err != nil {
		return nil, err
	}
	return m, nil
}

type planBuf struct {
	buf   []byte
	chunk int
	last  bool // the last piece of its chunk
	refs  atomic.Int32
}

func planFanout(ctx context.Context, r io.ReaderAt, m *protocol.Manifest, workers int, progress func(int64)) error {
	g, ctx := errgroup.WithContext(ctx)
	npieces := min(2*workers+4, planMaxPieces)
	free := make(chan *planBuf, npieces)
	for range npieces {
		free <- &planBuf{buf: make([]byte, planPiece)}
	}
	release := func(p *planBuf) {
		if p.refs.Add(-1) == 0 {
			free <- p // never blocks: free holds every piece
		}
	}
	whole := make(chan *planBuf, npieces)
	perWorker := make([]chan *planBuf, workers)
	for i := range perWorker {
		perWorker[i] = make(chan *planBuf, npieces)
	}

	// The reader: every byte once, in order.
	g.Go(func() error {
		defer func() {
			close(whole)
			for _, c := range perWorker {
				close(c)
			}
		}()
		for _, c := range m.Chunks {
			for off := int64(0); ; {
				var p *planBuf
				select {
				case p = <-free:
				case <-ctx.Done():
					return ctx.Err()
				}
				n := min(int64(planPiece), c.Size-off)
				if err := readFull(r, p.buf[:n], c.Offset+off); err != nil {
					free <- p
					return err
				}
				off += n
				p.buf, p.chunk, p.last = p.buf[:n], c.Index, off == c.Size
				p.refs.Store(2)
				whole <- p // the consumers never wait on the reader: no deadlock
				perWorker[c.Index%workers] <- p
				if p.last {
					break
				}
			}
		}
		return nil
	})

	// The whole-file hasher.
	g.Go(func() error {
		h := sha256.New()
		var done, reported int64
		for p := range whole {
			h.Write(p.buf)
			done += int64(len(p.buf))
			release(p)
			if progress != nil && (done-reported >= 8<<20 || done == m.Size) {
				progress(done)
				reported = done
			}
		}
		if done != m.Size {
			return nil // the reader stopped early and says why
		}
		m.SHA256 = hex.EncodeToString(h.Sum(nil))
		return nil
	})

	// The chunk hashers.
	for _, in := range perWorker {
		g.Go(func() error {
			h := sha256.New()
			var sum [sha256.Size]byte
			for p := range in {
				h.Write(p.buf)
				if p.last {
					m.Chunks[p.chunk].SHA256 = hex.EncodeToString(h.Sum(sum[:0]))
					h.Reset()
				}
				release(p)
			}
			return nil
		})
	}
	return g.Wait()
}

// readFull reads exactly len(p) bytes at off: ReadAt may return io.EOF
// with a full buffer at the end of the file.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w (did the file shrink?)", len(p), off, err)
}
