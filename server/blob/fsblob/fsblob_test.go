package fsblob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/blobtest"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

func newStore(t *testing.T) *fsblob.Store {
	t.Helper()
	s, err := fsblob.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func TestConformanceSized(t *testing.T) {
	blobtest.RunSized(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func tmpEntries(t *testing.T, s *fsblob.Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Failed writes leave no temporary file behind; successful ones neither.
func TestNoTempLeftovers(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, _, err := s.Put(ctx, "a/b", strings.NewReader("hello"), 5, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, "a/c", strings.NewReader("hello"), 6, ""); err == nil {
		t.Fatal("short body accepted")
	}
	if _, _, err := s.Put(ctx, "a/d", io.MultiReader(strings.NewReader("he"), errReader{}), -1, ""); err == nil {
		t.Fatal("failing reader accepted")
	}
	id, err := s.CreateUpload(ctx, "a/e", "")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("x"))
	if _, err := s.PutPart(ctx, "a/e", id, 1, strings.NewReader("y"), 1, sum[:]); !errors.Is(err, blob.ErrChecksum) {
		t.Fatalf("PutPart: %v", err)
	}
	if _, err := s.PutPart(ctx, "a/e", id, 1, strings.NewReader("x"), 1, sum[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteUpload(ctx, "a/e", id, []blob.Part{{Number: 1, Size: 1, SHA256: sum[:]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortUpload(ctx, "a/e", id); err != nil {
		t.Fatal(err)
	}
	if names := tmpEntries(t, s); len(names) != 0 {
		t.Errorf("tmp/ holds %q", names)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "objects", "a", "e")); err != nil {
		t.Errorf("completed object is not a plain file under objects/: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestCleanTemp(t *testing.T) {
	s := newStore(t)
	tmp := filepath.Join(s.Dir(), "tmp")
	old := time.Now().Add(-48 * time.Hour)
	for _, name := range []string{"put-old", "part-old"} {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("crash leftover"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(tmp, "up-old", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(tmp, "up-old"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "put-fresh"), []byte("in progress"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Leftovers are never visible as objects.
	if list, err := s.List(t.Context(), ""); err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v", list, err)
	}
	n, err := s.CleanTemp(time.Now().Add(-time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("CleanTemp = %d, %v; want 3", n, err)
	}
	if names := tmpEntries(t, s); len(names) != 1 || names[0] != "put-fresh" {
		t.Errorf("tmp/ after CleanTemp: %q", names)
	}
	// Setup cleans leftovers older than a day.
	if err := os.Chtimes(filepath.Join(tmp, "put-fresh"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := s.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if names := tmpEntries(t, s); len(names) != 0 {
		t.Errorf("tmp/ after Setup: %q", names)
	}
}

// Symbolic links planted under the root cannot reach outside it.
func TestSymlinkEscape(t *testing.T) {
	s := newStore(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "objects", "evil")); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if rc, _, err := s.Get(ctx, "evil/secret", 0, -1); err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("Get through a symlink read %q", b)
	}
	if _, err := s.Stat(ctx, "evil/secret"); err == nil {
		t.Error("Stat through a symlink succeeded")
	}
	if _, _, err := s.Put(ctx, "evil/new", strings.NewReader("x"), 1, ""); err == nil {
		t.Error("Put through a symlink succeeded")
	}
	if err := s.Delete(ctx, "evil/secret"); err == nil {
		// Delete may report success only if nothing outside was touched.
		t.Log("Delete through symlink returned nil")
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Errorf("file outside the root was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Error("file created outside the root")
	}
	list, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if strings.HasPrefix(in.Key, "evil") {
			t.Errorf("List followed the symlink: %q", in.Key)
		}
	}
	// The symlinked directory itself is not an object either.
	if _, err := s.Stat(ctx, "evil"); err == nil {
		t.Error("Stat(evil) succeeded")
	}
}

// A key cannot be both an object and a prefix of other objects.
func TestKeyConflict(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, _, err := s.Put(ctx, "x/a", strings.NewReader("1"), 1, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, "x/a/b", strings.NewReader("2"), 1, ""); err == nil {
		t.Error("Put x/a/b over object x/a succeeded")
	}
	if _, _, err := s.Put(ctx, "x", strings.NewReader("3"), 1, ""); err == nil {
		t.Error("Put x over prefix x/ succeeded")
	}
	if got, _, err := s.Get(ctx, "x/a", 0, -1); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(got)
		got.Close()
		if !bytes.Equal(b, []byte("1")) {
			t.Errorf("x/a = %q", b)
		}
	}
	if names := tmpEntries(t, s); len(names) != 0 {
		t.Errorf("tmp/ holds %q", names)
	}
}

// Parts are verified against the stored header, so a part file altered on
// disk is caught at CompleteUpload.
func TestPartsSurviveReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id, err := s.CreateUpload(ctx, "r/obj", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("part"))
	if _, err := s.PutPart(ctx, "r/obj", id, 1, strings.NewReader("part"), 4, sum[:]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	parts, err := s.ListParts(ctx, "r/obj", id)
	if err != nil || len(parts) != 1 || !bytes.Equal(parts[0].SHA256, sum[:]) || parts[0].Size != 4 {
		t.Fatalf("ListParts after reopen = %+v, %v", parts, err)
	}
	info, err := s.CompleteUpload(ctx, "r/obj", id, parts)
	if err != nil || info.Size != 4 || info.ContentType != "text/plain" {
		t.Fatalf("CompleteUpload = %+v, %v", info, err)
	}
}
