package app

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDevCredentialsFileNoLinks: the kept dev credentials are written
// 0600 without following a link planted at their name (the link itself
// is replaced), and a link there is never read.
func TestDevCredentialsFileNoLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep me"), 0o600)
	path := filepath.Join(dir, DevCredentialsFile)
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if _, err := readOwnFile(path); err == nil {
		t.Fatal("read through a symbolic link")
	}
	if err := keepDevCredentials(dir, "jt_test_k", "jts_s"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Fatalf("the link's target was written: %q", b)
	}
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("kept file: %v %v", st, err)
	}
	if b, err := readOwnFile(path); err != nil || len(b) == 0 {
		t.Fatalf("read back: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := readOwnFile(path); err == nil {
		t.Fatal("read a file other users can read")
	}
}
