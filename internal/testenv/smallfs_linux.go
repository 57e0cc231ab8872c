package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SmallFS mounts a tmpfs of size bytes on a new directory and returns
// its path; it is unmounted when the test ends. A real filesystem that
// fills up: writes past it fail with ENOSPC. Mounting needs root (or
// CAP_SYS_ADMIN): without it the test is skipped, or fails under
// JETTY_REQUIRE_SERVICES=1.
func SmallFS(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "smallfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		Unavailable(t, "a small filesystem (mount -t tmpfs, needs root)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// Fill allocates a file in dir so that about leave bytes stay free on
// its filesystem (never less than 0), and returns a function that
// removes the file again (also called when the test ends).
func Fill(t testing.TB, dir string, leave int64) (unfill func()) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	n := free - leave
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		t.Fatalf("testenv.Fill: %v", err)
	}
	name := f.Name()
	if n > 0 {
		err = syscall.Fallocate(int(f.Fd()), 0, 0, n)
		for errors.Is(err, syscall.ENOSPC) && n > 0 { // metadata took some
			n -= int64(st.Bsize)
			err = syscall.Fallocate(int(f.Fd()), 0, 0, n)
		}
		if err != nil {
			f.Close()
			os.Remove(name)
			t.Fatalf("testenv.Fill: fallocate %d bytes: %v", n, err)
		}
	}
	f.Close()
	done := false
	unfill = func() {
		if !done {
			done = true
			os.Remove(name)
		}
	}
	t.Cleanup(unfill)
	return unfill
}

// FreeBytes is the space an unprivileged writer may still use on dir's
// filesystem.
func FreeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
