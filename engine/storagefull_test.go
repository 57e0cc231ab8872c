package engine

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jettythunder/jetty/protocol"
)

const fullMsg = "the server's storage is full: nothing was stored by this request (chunks already uploaded are kept); try again later, and tell the server's operator if it lasts"

func writeFull(w http.ResponseWriter) {
	writeErr(w, http.StatusInsufficientStorage, protocol.CodeInsufficientStorage, fullMsg)
}

// checkFull checks that err says the storage is full, wrapped in
// ErrStorageFull.
func checkFull(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrStorageFull) || !IsStorageFull(err) || !strings.Contains(err.Error(), "storage is full") {
		t.Fatalf("upload error %v; want ErrStorageFull with the server's message", err)
	}
}

// 507 is final: one attempt of the chunk (no retry, no failover), the
// upload stops with ErrStorageFull; run again once space is freed, it
// resumes and sends only the missing chunks.
func TestStorageFullChunkIsFinal(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 51, 20*MiB)
	full := true
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index >= 1 && full {
			writeFull(w)
			return true
		}
		return false
	}
	opts := baseOpts(t)
	opts.HashFirst = true // the manifest-first path (pipeline_test.go has the pipelined one)
	opts.Workers, opts.ChunkSize = 1, 5*MiB
	ns := &noSleep{}
	opts.Sleep = ns.sleep
	_, err := Upload(context.Background(), f.client(), path, opts)
	checkFull(t, err)
	attempts, _, _ := f.stats()
	if attempts[1] != 1 || attempts[2] != 0 || attempts[3] != 0 || len(ns.delays) != 0 {
		t.Fatalf("attempts %v, %d backoffs; want chunk 1 sent once, nothing after it, no wait", attempts, len(ns.delays))
	}
	f.mu.Lock()
	full = false
	completes := f.completes
	f.mu.Unlock()
	if completes != 0 {
		t.Fatalf("%d completions after a chunk was refused", completes)
	}
	res, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatalf("upload once space is back: %v", err)
	}
	if res.Asset.Hash != hexSum(data) || res.ChunksSent != 3 || !res.Resumed {
		t.Fatalf("resumed upload: %+v; want the file's hash, 3 chunks sent (chunk 0 was held)", res)
	}
}

// The same for a completion, an open and a small file's single request.
func TestStorageFullControlCallsAreFinal(t *testing.T) {
	t.Run("complete", func(t *testing.T) {
		f := newFake(t)
		path, _ := writeFile(t, 52, 11*MiB)
		f.completeHook = func(w http.ResponseWriter, s *fakeSession, n int) bool { writeFull(w); return true }
		_, err := Upload(context.Background(), f.client(), path, baseOpts(t))
		checkFull(t, err)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.completes != 1 {
			t.Fatalf("%d completions; want 1", f.completes)
		}
	})
	t.Run("open", func(t *testing.T) {
		f := newFake(t)
		path, _ := writeFile(t, 53, 11*MiB)
		f.openHook = func(w http.ResponseWriter, n int) bool { writeFull(w); return true }
		_, err := Upload(context.Background(), f.client(), path, baseOpts(t))
		checkFull(t, err)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.opens) != 1 {
			t.Fatalf("%d opens; want 1", len(f.opens))
		}
	})
	t.Run("small", func(t *testing.T) {
		f := newFake(t)
		path, _ := writeFile(t, 54, 1000)
		var n atomic.Int32
		f.singleHook = func(w http.ResponseWriter, r *http.Request) bool { n.Add(1); writeFull(w); return true }
		_, err := Upload(context.Background(), f.client(), path, baseOpts(t))
		checkFull(t, err)
		if n.Load() != 1 {
			t.Fatalf("%d single requests; want 1", n.Load())
		}
	})
}

// What counts as the storage being full, and that it is neither retried
// nor a route's failure (every route writes to the same storage).
func TestStorageFullClassification(t *testing.T) {
	for _, c := range []struct {
		err  error
		full bool
	}{
		{&APIError{Status: 507, Code: protocol.CodeInsufficientStorage}, true},
		{&APIError{Status: 507, Code: S3CodeStorageFull}, true}, // MinIO on the direct route
		{&APIError{Status: 507}, true},
		{&APIError{Status: 500, Code: "internal"}, false},
		{&APIError{Status: 503, Code: "unavailable"}, false},
		{&APIError{Status: 413, Code: "quota_exceeded"}, false},
	} {
		if got := IsStorageFull(c.err); got != c.full {
			t.Errorf("IsStorageFull(%v) = %v", c.err, got)
		}
		if c.full {
			if Retryable(c.err) {
				t.Errorf("Retryable(%v) = true", c.err)
			}
			if failed, _ := routeFailure(c.err); failed {
				t.Errorf("routeFailure(%v) = true", c.err)
			}
		}
	}
}
