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
	size := benchSize(b, 1<<30)
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

// BenchmarkMultipart stores JETTY_BENCH_SIZE bytes (default 256 MiB) in
// 8 MiB parts sent by 16 goroutines, as a session's chunks are, then
// completes the upload: parts assembled when completing (CreateUpload)
// against parts written in place (CreateUploadSized, issue 18). Run with
// -count N, the two alternate. Reports the whole (parts and completion)
// and the completion alone.
func BenchmarkMultipart(b *testing.B) {
	size := benchSize(b, 256<<20)
	const part, workers = 8 << 20, 16
	nparts := int((size + part - 1) / part)
	chunks := make([][]byte, nparts)
	sums := make([][]byte, nparts)
	for i := range chunks {
		chunks[i] = randBytes(uint64(i), min(part, size-int64(i)*part))
		s := sha256.Sum256(chunks[i])
		sums[i] = s[:]
	}
	for _, inPlace := range []bool{false, true} {
		name := "assembled"
		if inPlace {
			name = "in-place"
		}
		b.Run(name, func(b *testing.B) {
			var completing time.Duration
			for range b.N {
				b.StopTimer()
				s, err := fsblob.New(filepath.Join(b.TempDir(), "blobs"))
				if err != nil {
					b.Fatal(err)
				}
				ctx := b.Context()
				b.StartTimer()
				var id string
				if inPlace {
					id, err = s.CreateUploadSized(ctx, "bench/obj", "", part)
				} else {
					id, err = s.CreateUpload(ctx, "bench/obj", "")
				}
				if err != nil {
					b.Fatal(err)
				}
				parts := make([]blob.Part, nparts)
				next := atomic.Int64{}
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for i := int(next.Add(1) - 1); i < nparts; i = int(next.Add(1) - 1) {
							p, err := s.PutPart(ctx, "bench/obj", id, i+1, bytes.NewReader(chunks[i]), int64(len(chunks[i])), sums[i])
							if err != nil {
								b.Error(err)
								return
							}
							parts[i] = p
						}
					})
				}
				wg.Wait()
				t0 := time.Now()
				if _, err := s.CompleteUpload(ctx, "bench/obj", id, parts); err != nil {
					b.Fatal(err)
				}
				completing += time.Since(t0)
				b.StopTimer()
				s.Close()
			}
			b.SetBytes(size)
			b.ReportMetric(float64(completing.Milliseconds())/float64(b.N), "ms/complete")
		})
	}
}

// benchSize is JETTY_BENCH_SIZE, else def.
func benchSize(b *testing.B, def int64) int64 {
	v := os.Getenv("JETTY_BENCH_SIZE")
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
