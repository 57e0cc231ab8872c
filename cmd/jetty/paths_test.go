package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// TestDirUploadName: a file found in a directory is named by its path
// from the directory's parent, the directory's own name included however
// it was spelt, with / between the elements.
func TestDirUploadName(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	q := filepath.Join("photos", "sub", "q.jpg")
	for _, c := range []struct{ root, path, want string }{
		{"photos", q, "photos/sub/q.jpg"},
		{"photos/", q, "photos/sub/q.jpg"},
		{"./photos", q, "photos/sub/q.jpg"},
		{filepath.Join(base, "photos"), filepath.Join(base, q), "photos/sub/q.jpg"},
		{filepath.Join("photos", "sub"), q, "sub/q.jpg"},
		{".", q, filepath.Base(base) + "/photos/sub/q.jpg"},
		{"photos/sub/..", filepath.Join("photos", "sub", "..", "a.txt"), "photos/a.txt"},
		{"/", "/etc/x", "etc/x"},
	} {
		if got := dirUploadName(c.root, c.path); got != c.want {
			t.Errorf("dirUploadName(%q, %q) = %q, want %q", c.root, c.path, got, c.want)
		}
	}
}

// TestMarkVersionsAndSummary: among assets listed newest first, a row of
// an entry (name, cache key, pipeline) listed before with other content
// is an older version; the summary counts each content once.
func TestMarkVersionsAndSummary(t *testing.T) {
	at := time.Now()
	as := []protocol.Asset{
		{ID: "4", Filename: "a.txt", Hash: "h2", ContentID: "h2", Size: 300, CreatedAt: at},
		{ID: "3", Filename: "copy.bin", Hash: "h1", ContentID: "h1", Size: 100, CreatedAt: at},
		{ID: "2", Filename: "a.txt", Hash: "h1", ContentID: "h1", Size: 100, CreatedAt: at},
		{ID: "1", Filename: "a.txt", Hash: "h1", ContentID: "h1", CacheKey: "k", Size: 100, CreatedAt: at},
	}
	got := markVersions(as)
	for i, want := range []bool{false, false, true, false} {
		if got[i].OlderVersion != want {
			t.Errorf("asset %s: older_version %v, want %v", as[i].ID, got[i].OlderVersion, want)
		}
	}
	if n := storedBytes(as); n != 400 {
		t.Errorf("stored %d, want 400", n)
	}
	for _, c := range []struct {
		files, older  int
		total, stored int64
		want          string
	}{
		{1, 0, 1 << 20, 1 << 20, "1 file, 1.0 MiB"},
		{3, 0, 900 << 20, 600 << 20, "3 files, 900.0 MiB (600.0 MiB stored after deduplication)"},
		{4, 1, 600, 400, "4 files (1 older version), 600 B (400 B stored after deduplication)"},
		{5, 2, 10, 10, "5 files (2 older versions), 10 B"},
	} {
		if got := lsSummary(c.files, c.older, c.total, c.stored); got != c.want {
			t.Errorf("lsSummary = %q, want %q", got, c.want)
		}
	}
}
