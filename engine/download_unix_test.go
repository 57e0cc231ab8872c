//go:build unix

package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/safefile"
)

// TestDownloadPlantedPart: a symbolic or hard link to a file outside,
// at the part file's or its record's name, is never written through or
// resumed from: Download refuses it (a *safefile.UnsafeError naming it,
// inside a *DownloadFileError) and leaves it; with Force it removes the
// entry itself, warns, and downloads afresh. The file outside keeps its
// bytes either way.
func TestDownloadPlantedPart(t *testing.T) {
	content := []byte(strings.Repeat("download bytes\n", 1000))
	s := newAssetServer(t, content)
	precious := []byte("precious, not to be overwritten\n")
	for _, at := range []string{"part", "record"} {
		for _, kind := range []string{"symlink", "hardlink"} {
			t.Run(at+"/"+kind, func(t *testing.T) {
				victim := filepath.Join(t.TempDir(), "victim")
				if err := os.WriteFile(victim, precious, 0o644); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				target := filepath.Join(dir, "file.bin")
				planted := PartPath(target)
				if at == "record" {
					planted += ".json"
				}
				link := os.Symlink
				if kind == "hardlink" {
					link = os.Link
				}
				if err := link(victim, planted); err != nil {
					t.Fatal(err)
				}
				checkVictim := func() {
					t.Helper()
					if b, _ := os.ReadFile(victim); string(b) != string(precious) {
						t.Fatalf("the victim was written through %s: %q", planted, b)
					}
				}

				_, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{})
				var fe *DownloadFileError
				var ue *safefile.UnsafeError
				if !errors.As(err, &fe) || !errors.As(err, &ue) || ue.Path != planted {
					t.Fatalf("want a refusal naming %s, got %v", planted, err)
				}
				checkVictim()
				if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a refused download wrote %s: %v", target, err)
				}
				if _, err := os.Lstat(planted); err != nil {
					t.Fatalf("the planted entry was removed without Force: %v", err)
				}

				var warnings []string
				res, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{Force: true, Warn: func(m string) { warnings = append(warnings, m) }})
				if err != nil || res.Resumed || !res.Verified {
					t.Fatalf("Force: %+v %v", res, err)
				}
				checkVictim()
				if len(warnings) != 1 || !strings.Contains(warnings[0], "--force: removed "+planted+", which ") {
					t.Fatalf("warnings %q", warnings)
				}
				if b, _ := os.ReadFile(target); string(b) != string(content) {
					t.Fatal("the download differs")
				}
				if names := dirEntries(t, dir); strings.Join(names, " ") != "file.bin" {
					t.Fatalf("left in the directory: %v", names)
				}
			})
		}
	}
}
