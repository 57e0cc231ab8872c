package engine

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/jettythunder/jetty/protocol"
)

// (This file sorts after upload_test.go on purpose: TestMemoryBound
// measures the heap, and an upload test running just before it can
// disturb that measure.)

// TestChunkConflictCompletes: a chunk refused with 409 conflict (the
// session is being completed, or is complete, by a concurrent upload of
// the same content, which shares it) does not fail the upload: the
// engine completes, and sends what the completion still lists as
// missing.
func TestChunkConflictCompletes(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 41, 20*MiB)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 1 && attempt == 1 {
			writeErr(w, http.StatusConflict, protocol.CodeConflict, "upload session is being completed; no more chunks")
			return true
		}
		return false
	}
	res, err := Upload(context.Background(), f.client(), path, hashFirstOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Asset.Hash != hexSum(data) || !bytes.Equal(f.object(hexSum(data)), data) {
		t.Fatalf("result %+v: the object differs", res)
	}
	f.mu.Lock()
	completes, attempts := f.completes, f.attempts[1]
	f.mu.Unlock()
	if completes != 2 || attempts != 2 {
		t.Errorf("%d completions, chunk 1 sent %d times; want 2 and 2 (complete, chunks missing, send, complete)", completes, attempts)
	}
}
