package fsblob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

const mib = 1 << 20

// upload is a multipart upload whose parts are all stored.
type upload struct {
	Key   string      `json:"key"`
	ID    string      `json:"id"`
	Parts []blob.Part `json:"parts"`
	data  []byte      // the object the parts make
}

func randBytes(seed uint64, n int64) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.NewChaCha8(key), b)
	return b
}

// makeUpload creates an upload of key and stores parts of the sizes given.
func makeUpload(t *testing.T, s *fsblob.Store, key string, seed uint64, sizes ...int64) upload {
	t.Helper()
	return makeUploadSized(t, s, key, seed, 0, sizes...)
}

// makeUploadSized is makeUpload of an upload written in place
// (CreateUploadSized) when partSize > 0.
func makeUploadSized(t *testing.T, s *fsblob.Store, key string, seed uint64, partSize int64, sizes ...int64) upload {
	t.Helper()
	ctx := t.Context()
	var id string
	var err error
	if partSize > 0 {
		id, err = s.CreateUploadSized(ctx, key, "video/mp4", partSize)
	} else {
		id, err = s.CreateUpload(ctx, key, "video/mp4")
	}
	if err != nil {
		t.Fatal(err)
	}
	u := upload{Key: key, ID: id}
	for i, n := range sizes {
		b := randBytes(seed+uint64(i), n)
		sum := sha256.Sum256(b)
		p, err := s.PutPart(ctx, key, id, i+1, bytes.NewReader(b), n, sum[:])
		if err != nil {
			t.Fatalf("PutPart %d: %v", i+1, err)
		}
		u.Parts = append(u.Parts, p)
		u.data = append(u.data, b...)
	}
	return u
}

// checkCompleted checks the completed object and its info, and that the
// upload is gone without leftovers.
func checkCompleted(t *testing.T, s *fsblob.Store, u upload, info blob.Info) {
	t.Helper()
	ctx := t.Context()
	want := sha256.Sum256(u.data)
	if info.Size != int64(len(u.data)) || !bytes.Equal(info.SHA256, want[:]) {
		t.Errorf("CompleteUpload info: size %d sha %x; want %d, %x", info.Size, info.SHA256, len(u.data), want)
	}
	rc, ginfo, err := s.Get(ctx, u.Key, 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, u.data) {
		t.Errorf("object: %d bytes (%v), not the %d bytes of the parts", len(got), err, len(u.data))
	}
	if ginfo.ContentType != "video/mp4" {
		t.Errorf("content type %q", ginfo.ContentType)
	}
	if _, err := s.CompleteUpload(ctx, u.Key, u.ID, u.Parts); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("CompleteUpload after success: %v, want ErrNotFound", err)
	}
	if _, err := s.ListParts(ctx, u.Key, u.ID); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ListParts after success: %v, want ErrNotFound", err)
	}
	if names := tmpNames(t, s); len(names) != 0 {
		t.Errorf("tmp/ holds %q after completing", names)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "uploads", u.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("uploads/%s is still there after completing (%v)", u.ID, err)
	}
}

// checkHeld checks that ListParts reports every part of u.
func checkHeld(t *testing.T, s *fsblob.Store, u upload) {
	t.Helper()
	parts, err := s.ListParts(t.Context(), u.Key, u.ID)
	if err != nil {
		t.Fatalf("ListParts: %v", err)
	}
	if len(parts) != len(u.Parts) {
		t.Fatalf("ListParts shows %d parts, want %d", len(parts), len(u.Parts))
	}
	for i, p := range parts {
		w := u.Parts[i]
		if p.Number != w.Number || p.Size != w.Size || !bytes.Equal(p.SHA256, w.SHA256) {
			t.Errorf("ListParts part %d = %d/%d/%x, want %d/%d/%x", i, p.Number, p.Size, p.SHA256, w.Number, w.Size, w.SHA256)
		}
	}
}

func tmpNames(t *testing.T, s *fsblob.Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
