package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// pipeOf streams data through an io.Pipe in irregular writes, as a
// process writing to stdin would: a reader of unknown length.
func pipeOf(data []byte) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for off := 0; off < len(data); {
			n := min(len(data)-off, 1+rng.IntN(300<<10))
			if _, err := pw.Write(data[off : off+n]); err != nil {
				return
			}
			off += n
		}
		pw.Close()
	}()
	return pr
}

func TestUploadStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int64
		chunkSize int64
		chunks    int
	}{
		{"empty", 0, 5 * MiB, 1},
		{"one byte", 1, 5 * MiB, 1},
		{"exact multiple", 10 * MiB, 5 * MiB, 2},
		{"20MiB+3", 20*MiB + 3, 5 * MiB, 5},
		{"default chunk", 9 * MiB, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			data := genBytes(40, tc.size)
			rec := &recorder{}
			res, err := UploadStream(context.Background(), f.client(), pipeOf(data), "build.tar",
				Options{Workers: 4, ChunkSize: tc.chunkSize, Progress: rec, Sleep: (&noSleep{}).sleep})
			if err != nil {
				t.Fatal(err)
			}
			if got := f.object(hexSum(data)); !bytes.Equal(got, data) {
				t.Fatalf("assembled %d bytes, want %d", len(got), len(data))
			}
			if res.Asset.Hash != hexSum(data) || res.Asset.Size != tc.size || res.Asset.Filename != "build.tar" {
				t.Errorf("asset %+v", res.Asset)
			}
			sent := tc.chunks
			if tc.size == 0 {
				sent = 0 // the empty chunk is never sent
			}
			if res.ChunksTotal != tc.chunks || res.ChunksSent != sent || res.BytesSent != tc.size {
				t.Errorf("result %+v", res)
			}
			if e := rec.last(); e.Kind != EventDone || e.Total != tc.size || e.Done != tc.size {
				t.Errorf("last event %+v", e)
			}
		})
	}
}

// TestUploadStreamMemory checks the read-ahead: bytes read from the
// stream never run more than workers+2 chunks ahead of the chunks stored.
func TestUploadStreamMemory(t *testing.T) {
	f := newFake(t)
	f.keep = false
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		time.Sleep(10 * time.Millisecond) // a slow receiver: the reader must wait
		return false
	}
	const workers, cs = 2, 5 * MiB
	var stored atomic.Int64
	var worst atomic.Int64
	src := &countingReader{r: pipeOf(genBytes(41, 60*MiB))}
	src.check = func(read int64) {
		ahead := read - stored.Load()*cs
		if ahead > worst.Load() {
			worst.Store(ahead)
		}
	}
	opts := Options{Workers: workers, ChunkSize: cs, Progress: ProgressFunc(func(e Event) {
		if e.Kind == EventChunkDone {
			stored.Add(1)
		}
	})}
	if _, err := UploadStream(context.Background(), f.client(), src, "s", opts); err != nil {
		t.Fatal(err)
	}
	if w := worst.Load(); w > (workers+2)*cs {
		t.Errorf("read %d MiB ahead of the stored chunks; the bound is %d MiB", w/MiB, (workers+2)*cs/MiB)
	}
}

type countingReader struct {
	r     io.Reader
	n     int64
	check func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.check(c.n)
	return n, err
}

func TestUploadStreamCancel(t *testing.T) {
	f := newFake(t)
	pr, pw := io.Pipe() // a stream that stalls after 6 MiB
	defer pw.Close()
	go pw.Write(genBytes(42, 6*MiB))
	ctx, cancel := context.WithCancel(context.Background())
	opts := Options{ChunkSize: 5 * MiB, Progress: ProgressFunc(func(e Event) {
		if e.Kind == EventChunkDone {
			cancel()
		}
	})}
	start := time.Now()
	_, err := UploadStream(ctx, f.client(), pr, "s", opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestUploadStreamErrors(t *testing.T) {
	f := newFake(t)
	if _, err := UploadStream(context.Background(), f.client(), bytes.NewReader(nil), "s", Options{ChunkSize: 1 * MiB}); err == nil {
		t.Error("chunk size under 5 MiB accepted")
	}
	// A read error fails the upload.
	r := io.MultiReader(bytes.NewReader(make([]byte, 6*MiB)), errReader{})
	if _, err := UploadStream(context.Background(), f.client(), r, "s", Options{ChunkSize: 5 * MiB}); err == nil || !errors.Is(err, errBoom) {
		t.Errorf("err = %v", err)
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }
