package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// writeFile writes a seeded file of size bytes and returns its path and
// content.
func writeFile(t *testing.T, seed byte, size int64) (string, []byte) {
	t.Helper()
	data := genBytes(seed, size)
	path := filepath.Join(t.TempDir(), "file.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Event(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) count(k EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func (r *recorder) last() Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[len(r.events)-1]
}

// noSleep records the waits asked for and returns at once.
type noSleep struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *noSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func baseOpts(t *testing.T) Options {
	return Options{JournalDir: t.TempDir(), Sleep: (&noSleep{}).sleep}
}

// hashFirstOpts is baseOpts on the manifest-first path.
func hashFirstOpts(t *testing.T) Options {
	o := baseOpts(t)
	o.HashFirst = true
	return o
}

func TestUploadParallel(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 11, 40*MiB+777)
	rec := &recorder{}
	opts := baseOpts(t)
	opts.HashFirst = true // the manifest-first path (pipeline_test.go has the pipelined one)
	opts.Workers, opts.Progress = 8, rec
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.object(hexSum(data)); !bytes.Equal(got, data) {
		t.Fatalf("server assembled %d bytes, not the file's %d", len(got), len(data))
	}
	if res.Asset.Hash != hexSum(data) || res.Asset.Size != int64(len(data)) || res.Deduplicated {
		t.Errorf("asset %+v", res.Asset)
	}
	if res.BytesSent != int64(len(data)) || res.ChunksTotal != 6 || res.ChunksSent != 6 || res.Workers != 8 {
		t.Errorf("result %+v", res)
	}
	if len(res.Edges) != 1 || res.Edges[0].URL != f.srv.URL || res.Edges[0].Chunks != 6 || res.Edges[0].Bytes != int64(len(data)) {
		t.Errorf("edges %+v", res.Edges)
	}
	if _, maxIn, _ := f.stats(); maxIn < 2 {
		t.Errorf("at most %d PUTs at once: not parallel", maxIn)
	}
	// Progress: plan, start, chunk done ×6, done; totals add up.
	if rec.count(EventPlan) == 0 || rec.count(EventStart) != 1 || rec.count(EventChunkDone) != 6 || rec.count(EventDone) != 1 {
		t.Errorf("events: plan %d start %d chunk %d done %d", rec.count(EventPlan), rec.count(EventStart), rec.count(EventChunkDone), rec.count(EventDone))
	}
	if e := rec.last(); e.Kind != EventDone || e.Done != int64(len(data)) || e.Sent != int64(len(data)) || e.ChunksDone != 6 || e.Err != nil {
		t.Errorf("last event %+v", e)
	}
	// Success deletes the journal.
	if ents, _ := os.ReadDir(opts.JournalDir); len(ents) != 0 {
		t.Errorf("journal left after success: %v", ents)
	}
	// The JSON result has the documented fields.
	b, _ := json.Marshal(res)
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"asset", "deduplicated", "bytes_sent", "chunks_total", "chunks_sent", "duration_ms", "edges"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result JSON lacks %q: %s", k, b)
		}
	}

	// The same content again: deduplicated, nothing sent.
	res2, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Deduplicated || res2.BytesSent != 0 || res2.ChunksSent != 0 || res2.Asset.Hash != hexSum(data) {
		t.Errorf("second upload %+v", res2)
	}
}

func TestUploadSmallFiles(t *testing.T) {
	for _, size := range []int64{0, 1, 5*MiB - 1, 8 * MiB, 8*MiB + 1} {
		f := newFake(t)
		path, data := writeFile(t, byte(size), size)
		res, err := Upload(context.Background(), f.client(), path, baseOpts(t))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if got := f.object(hexSum(data)); !bytes.Equal(got, data) || res.BytesSent != size {
			t.Errorf("size %d: assembled %d bytes, sent %d", size, len(got), res.BytesSent)
		}
	}
}

func TestUploadReader(t *testing.T) {
	f := newFake(t)
	data := genBytes(12, 13*MiB)
	res, err := UploadReader(context.Background(), f.client(), bytes.NewReader(data), int64(len(data)), "r.bin", Options{Sleep: (&noSleep{}).sleep})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) || res.Asset.Filename != "r.bin" {
		t.Errorf("result %+v", res)
	}
}

func TestRetryTransient(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 13, 30*MiB)
	// Chunk 1 fails twice with 500, chunk 2 has its connection reset
	// twice (mid-body), chunk 3 gets a 503 once.
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		switch {
		case index == 1 && attempt <= 2:
			io.Copy(io.Discard, r.Body)
			writeErr(w, 500, "internal", "boom")
			return true
		case index == 2 && attempt <= 2:
			io.CopyN(io.Discard, r.Body, 1<<20)
			resetConn(w)
			return true
		case index == 3 && attempt == 1:
			writeErr(w, 503, "unavailable", "later")
			return true
		}
		return false
	}
	sl := &noSleep{}
	rec := &recorder{}
	opts := baseOpts(t)
	opts.Sleep, opts.Progress = sl.sleep, rec
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	attempts, _, _ := f.stats()
	if attempts[1] != 3 || attempts[2] != 3 || attempts[3] != 2 || attempts[0] != 1 {
		t.Errorf("attempts %v", attempts)
	}
	if rec.count(EventRetry) != 5 || len(sl.delays) != 5 {
		t.Errorf("%d retry events, %d sleeps", rec.count(EventRetry), len(sl.delays))
	}
	for _, d := range sl.delays {
		if d < 0 || d > DefaultMaxDelay {
			t.Errorf("delay %v", d)
		}
	}
	if res.BytesSent <= int64(len(data)) || res.ChunksSent != 4 {
		t.Errorf("bytes sent %d (retries included must exceed %d), chunks %d", res.BytesSent, len(data), res.ChunksSent)
	}
}

func TestRetryGivesUp(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 14, 12*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 1 {
			writeErr(w, 502, "bad_gateway", "down")
			return true
		}
		return false
	}
	opts := baseOpts(t)
	opts.Retry.MaxAttempts = 4
	_, err := Upload(context.Background(), f.client(), path, opts)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 502 {
		t.Fatalf("err = %v", err)
	}
	if attempts, _, _ := f.stats(); attempts[1] != 4 {
		t.Errorf("%d attempts, want exactly 4", attempts[1])
	}
	// The journal stays for the next run.
	if ents, _ := os.ReadDir(opts.JournalDir); len(ents) != 1 {
		t.Errorf("journal entries %v", ents)
	}
}

func TestNotRetried(t *testing.T) {
	for _, status := range []int{400, 403, 404, 409, 410, 413} {
		f := newFake(t)
		path, _ := writeFile(t, 15, 6*MiB)
		f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
			writeErr(w, status, "nope", "refused")
			return true
		}
		_, err := Upload(context.Background(), f.client(), path, baseOpts(t))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != status {
			t.Errorf("%d: err = %v", status, err)
		}
		if attempts, _, _ := f.stats(); attempts[0] != 1 {
			t.Errorf("%d: %d attempts", status, attempts[0])
		}
	}
}

// flipFirstByte reads a chunk body, damages it, and answers as a server
// whose hash check failed.
func flipAndRefuse(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if len(b) > 0 {
		b[0] ^= 1
	}
	if hexSum(b) != r.Header.Get("X-Chunk-SHA256") {
		writeErr(w, 400, protocol.CodeChecksumMismatch, "bytes do not hash to the header")
		return
	}
	panic("flip did not change the hash")
}

func TestChecksumMismatchOnTheWay(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 16, 20*MiB)
	// Chunk 1 arrives damaged on its first attempt only.
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 1 && attempt == 1 {
			flipAndRefuse(w, r)
			return true
		}
		return false
	}
	if _, err := Upload(context.Background(), f.client(), path, baseOpts(t)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	if attempts, _, _ := f.stats(); attempts[1] != 2 {
		t.Errorf("%d attempts", attempts[1])
	}
}

func TestChecksumMismatchPersistent(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 17, 20*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 1 {
			flipAndRefuse(w, r)
			return true
		}
		return false
	}
	_, err := Upload(context.Background(), f.client(), path, baseOpts(t))
	if !IsCode(err, protocol.CodeChecksumMismatch) {
		t.Fatalf("err = %v", err)
	}
	if attempts, _, _ := f.stats(); attempts[1] != 1+checksumRetries {
		t.Errorf("%d attempts, want %d", attempts[1], 1+checksumRetries)
	}
}

// changingReader returns the original bytes until armed, then a damaged
// copy: a file modified after planning.
type changingReader struct {
	data  []byte
	armed atomic.Bool
}

func (c *changingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(c.data).ReadAt(p, off)
	if c.armed.Load() && n > 0 {
		p[0] ^= 0xff
	}
	return n, err
}

func TestFileChangedAfterPlan(t *testing.T) {
	f := newFake(t)
	data := genBytes(18, 12*MiB)
	cr := &changingReader{data: data}
	rec := &recorder{}
	opts := Options{HashFirst: true, Sleep: (&noSleep{}).sleep, Progress: ProgressFunc(func(e Event) {
		if e.Kind == EventStart {
			cr.armed.Store(true)
		}
		rec.Event(e)
	})}
	_, err := UploadReader(context.Background(), f.client(), cr, int64(len(data)), "c.bin", opts)
	if !errors.Is(err, ErrFileChanged) {
		t.Fatalf("err = %v", err)
	}
	attempts, _, _ := f.stats()
	for i, n := range attempts {
		if n != 1 {
			t.Errorf("chunk %d: %d attempts; a changed file is not retried", i, n)
		}
	}
	if rec.count(EventRetry) != 0 {
		t.Errorf("%d retries", rec.count(EventRetry))
	}
}

// shrinkingReader ends at cut once armed (the file was truncated after
// it was planned).
type shrinkingReader struct {
	data  []byte
	cut   int64
	armed atomic.Bool
}

func (c *shrinkingReader) ReadAt(p []byte, off int64) (int, error) {
	data := c.data
	if c.armed.Load() {
		data = data[:c.cut]
	}
	return bytes.NewReader(data).ReadAt(p, off)
}

func TestFileShrankAfterPlan(t *testing.T) {
	// Chunks are read from the file as they are sent: a file cut short
	// after planning fails the upload at once, saying so, without retries
	// and without blaming the route.
	f := newFake(t)
	data := genBytes(20, 12*MiB)
	cr := &shrinkingReader{data: data, cut: 6 * MiB}
	rec := &recorder{}
	opts := Options{Workers: 1, Sleep: (&noSleep{}).sleep, Progress: ProgressFunc(func(e Event) {
		if e.Kind == EventStart {
			cr.armed.Store(true)
		}
		rec.Event(e)
	})}
	_, err := UploadReader(context.Background(), f.client(), cr, int64(len(data)), "s.bin", opts)
	if err == nil || !strings.Contains(err.Error(), "did the file shrink?") {
		t.Fatalf("err = %v, want a read error that says the file shrank", err)
	}
	if rec.count(EventRetry) != 0 {
		t.Errorf("%d retries; a short file is not retried", rec.count(EventRetry))
	}
	attempts, _, _ := f.stats()
	if attempts[1] > 1 || attempts[2] != 0 {
		t.Errorf("attempts %v: chunk 1 (cut) at most once, chunk 2 never", attempts)
	}
}

func TestFileChangedDropsJournal(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 19, 12*MiB)
	opts := baseOpts(t)
	opts.HashFirst = true // the manifest-first path (pipeline_test.go has the pipelined one)
	// Fail once so a journal exists, then change the file without
	// changing its size, mtime or fingerprint span (a byte in the middle).
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 0 {
			writeErr(w, 403, "account_suspended", "suspended")
			return true
		}
		return false
	}
	opts.Workers = 1
	if _, err := Upload(context.Background(), f.client(), path, opts); err == nil {
		t.Fatal("first run succeeded")
	}
	st, _ := os.Stat(path)
	data[6*MiB] ^= 1
	os.WriteFile(path, data, 0o644)
	os.Chtimes(path, st.ModTime(), st.ModTime())
	f.setPutHook(nil)
	_, err := Upload(context.Background(), f.client(), path, opts)
	if !errors.Is(err, ErrFileChanged) {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(opts.JournalDir); len(ents) != 0 {
		t.Errorf("journal kept after the file changed: %v", ents)
	}
	// A third run plans the new content and succeeds.
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
}

func TestTokenRefreshSingleFlight(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 20, 40*MiB)
	var expired atomic.Bool
	var gate sync.WaitGroup
	gate.Add(8)
	// The first PUT of each of 8 chunks waits until all 8 are in flight;
	// then every token expires at once.
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if attempt == 1 {
			gate.Done()
			gate.Wait()
			if expired.CompareAndSwap(false, true) {
				f.expireTokens()
			}
		}
		return false
	}
	opts := baseOpts(t)
	opts.Workers, opts.ChunkSize = 8, 5*MiB
	rec := &recorder{}
	opts.Progress = rec
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	attempts, _, refreshes := f.stats()
	if refreshes != 1 || rec.count(EventTokenRefresh) != 1 {
		t.Errorf("%d refreshes (%d events), want 1 shared by all workers", refreshes, rec.count(EventTokenRefresh))
	}
	for i, n := range attempts {
		if n > 2 {
			t.Errorf("chunk %d: %d attempts", i, n)
		}
	}
	if rec.count(EventRetry) != 0 {
		t.Errorf("token refresh counted as %d retries", rec.count(EventRetry))
	}
	_ = res
}

func TestRetryAfterHonoured(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 21, 12*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 1 && attempt == 1 {
			w.Header().Set("Retry-After", "7")
			writeErr(w, 429, protocol.CodeRateLimited, "slow down")
			return true
		}
		return false
	}
	sl := &noSleep{}
	opts := baseOpts(t)
	opts.Sleep = sl.sleep
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	if len(sl.delays) != 1 || sl.delays[0] < 7*time.Second || sl.delays[0] > 7*time.Second+DefaultBaseDelay {
		t.Errorf("delays %v, want one of 7s (+ jitter)", sl.delays)
	}
}

func TestWorkerCeiling(t *testing.T) {
	f := newFake(t)
	f.strategy = protocol.Strategy{Workers: 16, MaxWorkers: 4}
	path, data := writeFile(t, 22, 40*MiB)
	// Slow PUTs down so that they overlap.
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		time.Sleep(20 * time.Millisecond)
		return false
	}
	opts := baseOpts(t)
	opts.Workers, opts.ChunkSize = 64, 5*MiB
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	_, maxIn, _ := f.stats()
	if res.Workers != 4 || maxIn > 4 || f.tooMany != 0 {
		t.Errorf("workers %d, %d PUTs at once, %d refused; ceiling is 4", res.Workers, maxIn, f.tooMany)
	}
	// Workers 0 takes the server's suggestion, capped by the ceiling.
	f2 := newFake(t)
	f2.strategy = protocol.Strategy{Workers: 3, MaxWorkers: 32}
	path2, _ := writeFile(t, 23, 40*MiB)
	res, err = Upload(context.Background(), f2.client(), path2, baseOpts(t))
	if err != nil || res.Workers != 3 {
		t.Errorf("suggested workers: %d, %v", res.Workers, err)
	}
}

func TestCancelMidUpload(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 24, 40*MiB)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	// Chunks after the first two hang until the client goes away.
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index < 2 {
			return false
		}
		once.Do(cancel)
		io.Copy(io.Discard, r.Body) // then the server notices the client leaving
		<-r.Context().Done()
		return true
	}
	opts := baseOpts(t)
	opts.HashFirst = true // the manifest-first path (pipeline_test.go has the pipelined one)
	opts.Workers = 1
	opts.JournalDir = filepath.Join(t.TempDir(), "state", "journal") // created by the engine
	start := time.Now()
	_, err := Upload(ctx, f.client(), path, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to stop", d)
	}
	ents, _ := os.ReadDir(opts.JournalDir)
	if len(ents) != 1 {
		t.Fatalf("journal entries %v", ents)
	}
	b, _ := os.ReadFile(filepath.Join(opts.JournalDir, ents[0].Name()))
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil || j.SessionID == "" || j.Manifest == nil {
		t.Errorf("journal %s: %v", b, err)
	}
	if st, _ := os.Stat(filepath.Join(opts.JournalDir, ents[0].Name())); st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v", st.Mode())
	}
	if st, _ := os.Stat(opts.JournalDir); st.Mode().Perm() != 0o700 {
		t.Errorf("journal dir mode %v", st.Mode())
	}
}

func TestResumeSendsOnlyMissing(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 25, 50*MiB+3) // 7 chunks
	// First run: one worker, chunk 4 refused for good: 0..3 are held.
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 4 {
			writeErr(w, 403, "account_suspended", "suspended for a moment")
			return true
		}
		return false
	}
	opts := baseOpts(t)
	opts.HashFirst = true // the manifest-first path (pipeline_test.go has the pipelined one)
	opts.Workers = 1
	res1, err := Upload(context.Background(), f.client(), path, opts)
	if err == nil {
		t.Fatal("first run succeeded")
	}
	if res1.ChunksSent != 4 {
		t.Errorf("first run stored %d chunks", res1.ChunksSent)
	}
	f.setPutHook(nil)
	rec := &recorder{}
	opts.Workers, opts.Progress = 8, rec
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	f.mu.Lock()
	second := f.opens[len(f.opens)-1]
	f.mu.Unlock()
	if second.Session == nil || len(second.Session.Missing) != 3 {
		t.Fatalf("second open %+v", second)
	}
	var want int64
	m := sequentialManifest("", data, 8*MiB)
	for _, i := range second.Session.Missing {
		want += m.Chunks[i].Size
	}
	if res.BytesSent != want || res.ChunksSent != 3 || !res.Resumed {
		t.Errorf("second run sent %d bytes in %d chunks (resumed %v), want %d in 3", res.BytesSent, res.ChunksSent, res.Resumed, want)
	}
	if rec.count(EventPlan) != 0 {
		t.Error("the second run hashed the file again")
	}
	var start Event
	for _, e := range rec.events {
		if e.Kind == EventStart {
			start = e
		}
	}
	if start.Done != int64(len(data))-want || start.ChunksDone != 4 || start.Chunks != 7 {
		t.Errorf("start event %+v", start)
	}
}

func TestJournalInvalidated(t *testing.T) {
	for _, change := range []string{"mtime", "size", "chunk-size", "server"} {
		t.Run(change, func(t *testing.T) {
			f := newFake(t)
			path, data := writeFile(t, 26, 20*MiB)
			f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
				writeErr(w, 403, "account_suspended", "no")
				return true
			}
			opts := baseOpts(t)
			opts.HashFirst = true // the manifest-first journal (pipeline_test.go has the pipelined one)
			if _, err := Upload(context.Background(), f.client(), path, opts); err == nil {
				t.Fatal("first run succeeded")
			}
			f.setPutHook(nil)
			c := f.client()
			switch change {
			case "mtime":
				later := time.Now().Add(time.Hour)
				os.Chtimes(path, later, later)
			case "size":
				data = append(data, 1, 2, 3)
				os.WriteFile(path, data, 0o644)
			case "chunk-size":
				opts.ChunkSize = 5 * MiB
			case "server":
				c = newFake(t).client()
			}
			rec := &recorder{}
			opts.Progress = rec
			res, err := Upload(context.Background(), c, path, opts)
			if err != nil {
				t.Fatal(err)
			}
			if rec.count(EventPlan) == 0 || res.Resumed {
				t.Errorf("journal reused after a %s change", change)
			}
		})
	}
}

func TestJournalUnit(t *testing.T) {
	dir := t.TempDir()
	p := JournalPath(dir, "https://a", "/x/y")
	if p == JournalPath(dir, "https://b", "/x/y") || p == JournalPath(dir, "https://a", "/x/z") || filepath.Dir(p) != dir {
		t.Error("journal paths collide")
	}
	m := validManifest()
	j := Journal{Version: journalVersion, Server: "https://a", Path: "/x/y", Size: m.Size, MTime: 42, Fingerprint: "f", Manifest: m, Created: time.Now().UTC()}
	if err := j.save(p); err != nil {
		t.Fatal(err)
	}
	got, err := loadJournal(p, j)
	if err != nil || got == nil || got.Manifest.SHA256 != m.SHA256 {
		t.Fatalf("load: %v %v", got, err)
	}
	bad := j
	bad.MTime++
	if got, err := loadJournal(p, bad); got != nil || err != nil {
		t.Errorf("stale journal loaded: %v %v", got, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("stale journal not deleted")
	}
	// Garbage is dropped, not an error.
	os.WriteFile(p, []byte("{nope"), 0o600)
	if got, err := loadJournal(p, j); got != nil || err != nil {
		t.Errorf("garbage: %v %v", got, err)
	}
	// No temporary files are left behind.
	j.save(p)
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %v", ents)
	}

	t.Setenv("XDG_STATE_HOME", "/state")
	if d, _ := DefaultJournalDir(); d != "/state/jetty/journal" {
		t.Errorf("XDG: %s", d)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, _ := DefaultJournalDir(); d != "/home/u/.local/state/jetty/journal" {
		t.Errorf("home: %s", d)
	}
}

func TestChunksMissingAtComplete(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 27, 30*MiB)
	// The first completion claims chunk 2 was lost.
	f.completeHook = func(w http.ResponseWriter, s *fakeSession, n int) bool {
		if n == 1 {
			delete(s.hashes, 2)
			delete(s.chunks, 2)
			writeJSON(w, 409, map[string]any{"error": "missing", "code": protocol.CodeChunksMissing, "missing": []int{2}})
			return true
		}
		return false
	}
	res, err := Upload(context.Background(), f.client(), path, baseOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	if res.ChunksSent != 5 || res.BytesSent != int64(len(data))+8*MiB {
		t.Errorf("sent %d chunks, %d bytes", res.ChunksSent, res.BytesSent)
	}
}

func TestControlRetries(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 28, 6*MiB)
	f.openHook = func(w http.ResponseWriter, n int) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			writeErr(w, 429, protocol.CodeRateLimited, "wait")
			return true
		}
		return false
	}
	sl := &noSleep{}
	opts := baseOpts(t)
	opts.Sleep = sl.sleep
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	if len(sl.delays) != 1 || sl.delays[0] < 2*time.Second {
		t.Errorf("delays %v", sl.delays)
	}
	// A refused open is not retried.
	f2 := newFake(t)
	f2.openHook = func(w http.ResponseWriter, n int) bool {
		writeErr(w, 413, "quota_exceeded", "over quota: upgrade")
		return true
	}
	_, err := Upload(context.Background(), f2.client(), path, baseOpts(t))
	if !IsCode(err, "quota_exceeded") || len(f2.opens) != 1 {
		t.Errorf("err %v after %d opens", err, len(f2.opens))
	}
	// Bad credentials.
	c := f.client()
	c.APISecret = "wrong"
	if _, err := Upload(context.Background(), c, path, baseOpts(t)); !IsCode(err, "wrong_api_secret") {
		t.Errorf("err %v", err)
	}
}

// TestAdoptServerChunking: the server holds an open session for the same
// content cut into 5 MiB chunks; an upload planned with 8 MiB chunks
// switches to the session's chunking and sends only what is missing.
func TestAdoptServerChunking(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 29, 20*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 2 {
			writeErr(w, 403, "account_suspended", "no")
			return true
		}
		return false
	}
	opts := baseOpts(t)
	opts.HashFirst = true // the manifest-first path (pipeline_test.go has the pipelined one)
	opts.ChunkSize, opts.Workers = 5*MiB, 1
	if _, err := Upload(context.Background(), f.client(), path, opts); err == nil {
		t.Fatal("first run succeeded")
	}
	f.setPutHook(nil)
	opts.ChunkSize, opts.JournalDir = 0, "-" // no journal: plans 8 MiB chunks
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatal("assembled bytes differ")
	}
	if res.BytesSent != 10*MiB || res.ChunksTotal != 4 {
		t.Errorf("sent %d bytes of %d chunks", res.BytesSent, res.ChunksTotal)
	}
}

func TestBandwidthLimit(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 30, 4*MiB)
	opts := baseOpts(t)
	opts.BandwidthLimit = 8 * MiB
	start := time.Now()
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("4 MiB at 8 MiB/s took %v", d)
	}
	// Shared by the workers: 4 chunks of 5 MiB at 40 MiB/s take at least
	// 0.4 s with 4 workers (not 0.1 s as four separate limits would).
	f2 := newFake(t)
	path2, _ := writeFile(t, 31, 20*MiB)
	opts2 := baseOpts(t)
	opts2.BandwidthLimit, opts2.ChunkSize, opts2.Workers = 40*MiB, 5*MiB, 4
	start = time.Now()
	if _, err := Upload(context.Background(), f2.client(), path2, opts2); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("20 MiB at 40 MiB/s over 4 workers took %v", d)
	}
}

// patternReader is a large file that costs no memory: 1 MiB of random
// bytes repeated, each MiB stamped with its number.
type patternReader struct {
	block []byte
	size  int64
}

func (p *patternReader) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) && off < p.size {
		blk, in := off/MiB, off%MiB
		end := min(MiB, in+int64(len(b)-n), in+p.size-off)
		k := copy(b[n:], p.block[in:end])
		var stamp [8]byte
		binary.LittleEndian.PutUint64(stamp[:], uint64(blk))
		for i := in; i < min(8, end); i++ {
			b[n+int(i-in)] = stamp[i]
		}
		n += k
		off += int64(k)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// TestMemoryBound uploads 256 MiB with 4 workers × 8 MiB and checks the
// heap: the buffers are workers × chunk size, never the file.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB upload")
	}
	f := newFake(t)
	f.keep = false
	const size = 256 * MiB
	pr := &patternReader{block: genBytes(32, MiB), size: size}
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // sample the heap in use
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// As the CLI does (LimitMemory): the collector runs before garbage
	// lets the heap grow past the buffers.
	budget := MemoryBudget(4, 8*MiB)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(before.HeapInuse) + budget))
	res, err := UploadReader(context.Background(), f.client(), pr, size, "big.bin", Options{Workers: 4, ChunkSize: 8 * MiB})
	runtime.ReadMemStats(&after)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("256 MiB upload, 4 workers × 8 MiB: TotalAlloc %.1f MiB, peak HeapInuse %.1f MiB (was %.1f before)",
		float64(alloc)/MiB, float64(peak.Load())/MiB, float64(before.HeapInuse)/MiB)
	if res.BytesSent != size {
		t.Errorf("sent %d", res.BytesSent)
	}
	// Buffers: (4 + 2) × 8 MiB = 48 MiB (the pipeline reads two chunks
	// ahead), plus HTTP overhead on both sides (the fake runs in this
	// process): the budget. Anything near the file size means a leak.
	if alloc > uint64(budget) {
		t.Errorf("TotalAlloc %d MiB for a 256 MiB upload (budget %d MiB)", alloc/MiB, budget/MiB)
	}
	if peak.Load() > before.HeapInuse+uint64(budget)+16*MiB {
		t.Errorf("peak HeapInuse %d MiB (budget %d MiB)", peak.Load()/MiB, budget/MiB)
	}
}

// TestTokenInvalidRefreshed: a server restarted with a new token secret
// refuses the old token as invalid; one refresh fixes it.
func TestTokenInvalidRefreshed(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 33, 6*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if attempt == 1 {
			writeErr(w, 401, protocol.CodeTokenInvalid, "invalid upload token: bad signature")
			return true
		}
		return false
	}
	if _, err := Upload(context.Background(), f.client(), path, baseOpts(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, refreshes := f.stats(); refreshes != 1 || !bytes.Equal(f.object(hexSum(data)), data) {
		t.Errorf("%d refreshes", refreshes)
	}
	// A token the server keeps refusing ends the upload after a few
	// refreshes, not in a loop.
	f2 := newFake(t)
	f2.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		writeErr(w, 401, protocol.CodeTokenExpired, "expired")
		return true
	}
	_, err := Upload(context.Background(), f2.client(), path, baseOpts(t))
	if !IsCode(err, protocol.CodeTokenExpired) {
		t.Fatalf("err = %v", err)
	}
	if _, _, refreshes := f2.stats(); refreshes != tokenRefreshes {
		t.Errorf("%d refreshes, want %d", refreshes, tokenRefreshes)
	}
}

// TestTooManyStreamsWaits: 429 too_many_streams is waited out (Retry-After)
// without using up the attempts.
func TestTooManyStreamsWaits(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 34, 6*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if attempt <= 3 {
			w.Header().Set("Retry-After", "1")
			writeErr(w, 429, protocol.CodeTooManyStreams, "more than 1 chunk upload at once")
			return true
		}
		return false
	}
	sl := &noSleep{}
	opts := baseOpts(t)
	opts.Sleep, opts.Retry.MaxAttempts = sl.sleep, 2
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	if len(sl.delays) != 3 || sl.delays[0] < time.Second {
		t.Errorf("delays %v", sl.delays)
	}
}
