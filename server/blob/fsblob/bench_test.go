package fsblob_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

// BenchmarkCompleteUpload completes an upload of JETTY_BENCH_SIZE bytes
// (default 1 GiB) in 8 MiB parts on the filesystem of JETTY_BENCH_DIR
// (default the test's temporary directory) and reports the completion's
// time and its peak extra space on that filesystem (sampled every
// millisecond; meaningful on a filesystem nothing else writes to, such as
// a loop-mounted image). See docs/BENCHMARKS.md.
func BenchmarkCompleteUpload(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("JETTY_BENCH_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	dir := os.Getenv("JETTY_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	const part = 8 << 20
	buf := make([]byte, part)
	for i := range buf {
		buf[i] = byte(i*131 + i>>11)
	}
	var total time.Duration
	var peakMax int64
	b.StopTimer()
	for range b.N {
		root, err := os.MkdirTemp(dir, "bench-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := fsblob.New(filepath.Join(root, "blobs"))
		if err != nil {
			b.Fatal(err)
		}
		ctx := b.Context()
		id, err := s.CreateUpload(ctx, "bench/obj", "")
		if err != nil {
			b.Fatal(err)
		}
		var parts []blob.Part
		for n, off := 1, int64(0); off < size; n++ {
			k := min(int64(part), size-off)
			chunk := buf[:k]
			chunk[0] = byte(n) // parts differ
			sum := sha256.Sum256(chunk)
			p, err := s.PutPart(ctx, "bench/obj", id, n, bytes.NewReader(chunk), k, sum[:])
			if err != nil {
				b.Fatal(err)
			}
			parts = append(parts, p)
			off += k
		}
		before := testenv.FreeBytes(b, dir)
		var low atomic.Int64
		low.Store(before)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				if f := testenv.FreeBytes(b, dir); f < low.Load() {
					low.Store(f)
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		})
		b.StartTimer()
		t0 := time.Now()
		info, err := s.CompleteUpload(ctx, "bench/obj", id, parts)
		total += time.Since(t0)
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		if info.Size != size {
			b.Fatalf("size %d", info.Size)
		}
		peakMax = max(peakMax, before-low.Load())
		s.Close()
		os.RemoveAll(root)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/complete")
	b.ReportMetric(float64(size)/(1<<20)/(total.Seconds()/float64(b.N)), "MiB/s")
	b.ReportMetric(float64(peakMax)/(1<<20), "peak-extra-MiB")
}
