package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// ReflinkFS mounts a fresh XFS with reflinks (cloned ranges share
// blocks, FICLONERANGE) on a loop device and returns its path; it is
// unmounted when the test ends. It needs root and mkfs.xfs (xfsprogs,
// installed by scripts/test-deps.sh): without them the test is skipped,
// or fails under JETTY_REQUIRE_SERVICES=1. The image is a sparse file of
// 320 MiB (XFS's smallest is 300 MB) in the test's temporary directory.
func ReflinkFS(t testing.TB) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		Unavailable(t, "mkfs.xfs (xfsprogs; run scripts/test-deps.sh)", err)
	}
	tmp := t.TempDir()
	img, dir := filepath.Join(tmp, "xfs.img"), filepath.Join(tmp, "xfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 320<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		Unavailable(t, "a loop-mounted XFS (mount -o loop, needs root)", fmt.Errorf("%v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}
