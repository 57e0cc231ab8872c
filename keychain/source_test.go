package keychain

import (
	"path/filepath"
	"testing"
)

// TestSourceString: what the command line prints for each source, and
// the names `jetty whoami --json` uses; the file's path is a field, never
// parsed out of a string.
func TestSourceString(t *testing.T) {
	path := filepath.Join("/home/u/.config/jetty (old)", CredentialsFile) // parentheses in the path
	for _, c := range []struct {
		src         Source
		words, kind string
	}{
		{Source{Kind: SourceKeychain}, "the OS keychain", "keychain"},
		{Source{Kind: SourceFile, Path: path}, "the plain file " + path, "file"},
		{Source{Kind: SourceEnv}, "the environment (JETTY_API_KEY, JETTY_API_SECRET)", "environment"},
		{Source{}, "", ""},
	} {
		if got := c.src.String(); got != c.words {
			t.Errorf("%#v.String() = %q, want %q", c.src, got, c.words)
		}
		if got := c.src.Kind.String(); got != c.kind {
			t.Errorf("%#v.Kind.String() = %q, want %q", c.src, got, c.kind)
		}
	}
}

// TestSourcesCarryThePath: Save, Load and Delete on the plain file all
// name the same file in Source.Path; on the keychain, no path.
func TestSourcesCarryThePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a (b)")
	s := &Store{Keyring: brokenKeyring{}, Dir: dir}
	want := Source{Kind: SourceFile, Path: filepath.Join(dir, CredentialsFile)}
	if src, err := s.Save(srv, key, secret, false); err != nil || src != want {
		t.Fatalf("Save: %#v %v", src, err)
	}
	if _, src, err := s.Load(""); err != nil || src != want {
		t.Fatalf("Load: %#v %v", src, err)
	}
	if removed, err := s.Delete(""); err != nil || len(removed) != 1 || removed[0] != want {
		t.Fatalf("Delete: %#v %v", removed, err)
	}

	s = &Store{Keyring: NewMemory(), Dir: dir}
	if src, err := s.Save(srv, key, secret, false); err != nil || src != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Save to the keychain: %#v %v", src, err)
	}
	if _, src, err := s.Load(norm); err != nil || src != (Source{Kind: SourceKeychain}) {
		t.Fatalf("Load from the keychain: %#v %v", src, err)
	}
}
