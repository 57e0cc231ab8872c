package engine

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
)

// TestUploadSmallOneRequest: a file up to SmallFileMax goes in one
// request carrying its SHA-256; no session is opened.
func TestUploadSmallOneRequest(t *testing.T) {
	for _, size := range []int64{0, 1, 1000, DefaultSmallFileMax} {
		f := newFake(t)
		path, data := writeFile(t, byte(size), size)
		opts := baseOpts(t)
		opts.CacheKey, opts.ContentType = "ck", "text/plain"
		res, err := Upload(context.Background(), f.client(), path, opts)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(f.object(hexSum(data)), data) || res.BytesSent != size || res.ChunksSent != 1 || res.ChunksTotal != 1 {
			t.Errorf("size %d: result %+v", size, res)
		}
		if f.singles != 1 || len(f.sessions) != 0 {
			t.Errorf("size %d: %d single uploads, %d sessions; want 1 and 0", size, f.singles, len(f.sessions))
		}
		if res.Asset.Hash != hexSum(data) || res.Asset.CacheKey != "ck" || res.Asset.ContentType != "text/plain" {
			t.Errorf("size %d: asset %+v", size, res.Asset)
		}
		if len(res.Edges) != 1 || res.Edges[0].ID != RouteOrigin || res.Edges[0].Chunks != 1 {
			t.Errorf("size %d: edges %+v", size, res.Edges)
		}
	}
	// Just above the threshold: a session.
	f := newFake(t)
	path, _ := writeFile(t, 3, DefaultSmallFileMax+1)
	if _, err := Upload(context.Background(), f.client(), path, baseOpts(t)); err != nil {
		t.Fatal(err)
	}
	if f.singles != 0 || len(f.sessions) != 1 {
		t.Errorf("above the threshold: %d single uploads, %d sessions", f.singles, len(f.sessions))
	}
	// SmallFileMax -1: always a session.
	f = newFake(t)
	path, _ = writeFile(t, 4, 10)
	opts := baseOpts(t)
	opts.SmallFileMax = -1
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	if f.singles != 0 || len(f.sessions) != 1 {
		t.Errorf("SmallFileMax -1: %d single uploads, %d sessions", f.singles, len(f.sessions))
	}
}

// TestUploadSmallRetries: 5xx and damaged bodies are sent again; a
// refusal that retrying cannot fix ends the upload.
func TestUploadSmallRetries(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 5, 4096)
	n := 0
	f.singleHook = func(w http.ResponseWriter, r *http.Request) bool {
		n++
		if n <= 2 {
			io.Copy(io.Discard, r.Body)
		}
		switch n {
		case 1:
			writeErr(w, 503, "unavailable", "busy")
			return true
		case 2:
			writeErr(w, 400, "checksum_mismatch", "damaged on the way")
			return true
		}
		return false
	}
	res, err := Upload(context.Background(), f.client(), path, baseOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || !bytes.Equal(f.object(hexSum(data)), data) || res.BytesSent != 3*4096 {
		t.Errorf("%d attempts, sent %d", n, res.BytesSent)
	}

	f = newFake(t)
	f.singleHook = func(w http.ResponseWriter, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		writeErr(w, 413, "quota_exceeded", "over quota")
		return true
	}
	_, err = Upload(context.Background(), f.client(), path, baseOpts(t))
	if !IsCode(err, "quota_exceeded") {
		t.Fatalf("err %v, want quota_exceeded", err)
	}
}
