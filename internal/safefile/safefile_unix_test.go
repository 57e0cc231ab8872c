//go:build unix

package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// plant puts kind at path: "symlink" and "hardlink" lead to victim,
// "fifo", "dir", "foreign" (a regular file owned by uid 65534).
func plant(t *testing.T, kind, path, victim string) {
	t.Helper()
	var err error
	switch kind {
	case "symlink":
		err = os.Symlink(victim, path)
	case "dangling":
		err = os.Symlink(victim+".missing", path)
	case "hardlink":
		err = os.Link(victim, path)
	case "fifo":
		err = syscall.Mkfifo(path, 0o600)
	case "dir":
		err = os.Mkdir(path, 0o700)
	case "foreign":
		if os.Getuid() != 0 {
			t.Skip("only root can give a file to another uid")
		}
		if err = os.WriteFile(path, []byte(`{"planted":true}`), 0o644); err == nil {
			err = os.Chown(path, 65534, 65534)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

var hostileKinds = []string{"symlink", "dangling", "hardlink", "fifo", "dir", "foreign"}

// within runs f and fails the test when it has not returned after 10 s.
// Opening a named pipe blocks until its other end is opened: the test
// then opens and closes it to let f go on.
func within(t *testing.T, path string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return
	case <-time.After(10 * time.Second):
	}
	if p, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
		p.Close()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	t.Fatalf("blocked on %s for 10 s", path)
}

func TestOpenRefusesWhatIsNotTheUsersFile(t *testing.T) {
	for _, kind := range hostileKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			os.WriteFile(victim, []byte("precious"), 0o600)
			p := filepath.Join(dir, "state.json")
			plant(t, kind, p, victim)
			for _, flag := range []int{os.O_RDONLY, os.O_RDWR} {
				within(t, p, func() {
					f, err := Open(p, flag)
					if err == nil {
						f.Close()
					}
					var ue *UnsafeError
					if !errors.As(err, &ue) || !errors.Is(err, ErrUnsafe) || ue.Path != p || !strings.HasPrefix(err.Error(), p+" ") {
						t.Errorf("Open(%s, %d): %v, want an *UnsafeError naming it", kind, flag, err)
					}
				})
			}
			within(t, p, func() {
				if _, err := ReadFile(p); !errors.Is(err, ErrUnsafe) {
					t.Errorf("ReadFile: %v", err)
				}
			})
			within(t, p, func() {
				if f, created, err := OpenOrCreate(p, 0o600); !errors.Is(err, ErrUnsafe) || created {
					if f != nil {
						f.Close()
					}
					t.Errorf("OpenOrCreate: %v (created %v)", err, created)
				}
			})
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatalf("victim changed: %q", b)
			}
		})
	}
}

func TestCreateNeverFollows(t *testing.T) {
	for _, kind := range hostileKinds {
		t.Run(kind, func(t *testing.T) {
			victim := filepath.Join(t.TempDir(), "victim")
			os.WriteFile(victim, []byte("precious"), 0o600)
			p := filepath.Join(t.TempDir(), "part")
			plant(t, kind, p, victim)
			within(t, p, func() {
				if f, err := Create(p, 0o600); !errors.Is(err, fs.ErrExist) {
					if f != nil {
						f.Close()
					}
					t.Errorf("Create over a %s: %v", kind, err)
				}
			})
			if _, err := os.Stat(victim + ".missing"); err == nil {
				t.Error("Create made the dangling link's target")
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatalf("victim changed: %q", b)
			}
		})
	}
}

// TestWriteFileReplacesTheEntry: WriteFile puts a new file at the name,
// whatever entry was there (a directory excepted); the victim behind a
// link is untouched and no temporary file is left.
func TestWriteFileReplacesTheEntry(t *testing.T) {
	for _, kind := range hostileKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			os.WriteFile(victim, []byte("precious"), 0o644)
			p := filepath.Join(dir, "out.json")
			plant(t, kind, p, victim)
			var err error
			within(t, p, func() { err = WriteFile(p, []byte("new"), 0o600) })
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatalf("victim changed: %q", b)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("temporary files left: %v", ents)
			}
			if kind == "dir" {
				if err == nil || !strings.Contains(err.Error(), "is a directory (remove it)") {
					t.Fatalf("over a directory: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(p); err != nil {
				t.Fatalf("after WriteFile: %v", err)
			}
			if st, _ := os.Lstat(p); st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode())
			}
			if b, _ := ReadFile(p); string(b) != "new" {
				t.Errorf("content %q", b)
			}
		})
	}
}

func TestOwnFileOpensAndRemoveUnsafe(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mine")
	f, created, err := OpenOrCreate(p, 0o600)
	if err != nil || !created {
		t.Fatal(err, created)
	}
	f.WriteString("kept")
	f.Close()
	f, created, err = OpenOrCreate(p, 0o600)
	if err != nil || created {
		t.Fatalf("reopen: %v %v", err, created)
	}
	f.Close()
	if ue, err := RemoveUnsafe(p); ue != nil || err != nil {
		t.Fatalf("RemoveUnsafe on the user's own file: %v %v", ue, err)
	}
	if b, _ := ReadFile(p); string(b) != "kept" {
		t.Fatal("own file changed")
	}
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	for _, kind := range hostileKinds {
		if kind == "foreign" && os.Getuid() != 0 {
			continue
		}
		q := filepath.Join(dir, kind)
		plant(t, kind, q, victim)
		if ue, err := RemoveUnsafe(q); ue == nil || err != nil {
			t.Errorf("%s: %v %v", kind, ue, err)
		}
		if _, err := os.Lstat(q); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there", kind)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("victim changed: %q", b)
	}
}
