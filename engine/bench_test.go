package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/jettythunder/jetty/protocol"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
)

// planTwoReads is the design Plan did not take (kept to measure it): the
// workers read and hash their own chunks (ReadAt, 1 MiB pieces) while one
// more goroutine reads the whole file again, in order, for its hash.
func planTwoReads(ctx context.Context, r io.ReaderAt, m *protocol.Manifest, workers int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		h := sha256.New()
		buf := make([]byte, planPiece)
		for off := int64(0); off < m.Size; {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n := min(int64(planPiece), m.Size-off)
			if err := readFull(r, buf[:n], off); err != nil {
				return err
			}
			h.Write(buf[:n])
			off += n
		}
		m.SHA256 = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	var next atomic.Int64
	for range workers {
		g.Go(func() error {
			h := sha256.New()
			buf := make([]byte, planPiece)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(m.Chunks) || ctx.Err() != nil {
					return ctx.Err()
				}
				c := &m.Chunks[i]
				h.Reset()
				for off := int64(0); off < c.Size; {
					n := min(int64(planPiece), c.Size-off)
					if err := readFull(r, buf[:n], c.Offset+off); err != nil {
						return err
					}
					h.Write(buf[:n])
					off += n
				}
				c.SHA256 = hex.EncodeToString(h.Sum(nil))
			}
		})
	}
	return g.Wait()
}

// BenchmarkPlan hashes 256 MiB from memory (the page cache case) with
// both designs.
func BenchmarkPlan(b *testing.B) {
	const size = 256 << 20
	data := genBytes(7, size)
	r := bytes.NewReader(data)
	workers := runtime.GOMAXPROCS(0)
	b.Run("fanout", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := Plan(context.Background(), r, size, protocol.DefaultChunkSize, PlanOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tworeads", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			m := protocol.NewManifest("", size, protocol.DefaultChunkSize)
			if err := planTwoReads(context.Background(), r, m, workers); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) { // one core, both hashes in turn
		b.SetBytes(size)
		for b.Loop() {
			sequentialManifest("", data, protocol.DefaultChunkSize)
		}
	})
}

// BenchmarkHash compares SHA-256 (SHA-NI here) with BLAKE3 on 8 MiB
// buffers, one core.
func BenchmarkHash(b *testing.B) {
	buf := genBytes(3, 8<<20)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			sha256.Sum256(buf)
		}
	})
	b.Run("blake3", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			blake3.Sum256(buf)
		}
	})
	// The journal's change-detection fingerprint: first and last MiB.
	b.Run("fingerprint-sha256", func(b *testing.B) {
		for b.Loop() {
			h := sha256.New()
			h.Write(buf[:1<<20])
			h.Write(buf[len(buf)-1<<20:])
			h.Sum(nil)
		}
	})
	b.Run("fingerprint-blake3", func(b *testing.B) {
		for b.Loop() {
			h := blake3.New()
			h.Write(buf[:1<<20])
			h.Write(buf[len(buf)-1<<20:])
			h.Sum(nil)
		}
	})
}

// BenchmarkUpload sends 128 MiB over loopback to the in-process fake
// (which hashes and drops the bytes), planning included, and reports the
// bytes allocated per upload.
func BenchmarkUpload(b *testing.B) {
	const size = 128 << 20
	f := newFake(b)
	f.keep = false
	pr := &patternReader{block: genBytes(8, 1<<20), size: size}
	c := f.client()
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Another first byte each round: no deduplication.
		pr.block[100] = byte(i)
		if _, err := UploadReader(context.Background(), c, pr, size, "b.bin", Options{Workers: 4, ChunkSize: protocol.DefaultChunkSize}); err != nil {
			b.Fatal(err)
		}
	}
}
