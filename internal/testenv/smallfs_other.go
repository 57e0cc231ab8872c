//go:build !linux

package testenv

import (
	"errors"
	"testing"
)

// SmallFS needs Linux (mount -t tmpfs): elsewhere the test is skipped.
func SmallFS(t testing.TB, size int64) string {
	t.Helper()
	Unavailable(t, "a small filesystem (tmpfs, Linux only)", errors.ErrUnsupported)
	return ""
}

// Fill is SmallFS's companion; see smallfs_linux.go.
func Fill(t testing.TB, dir string, leave int64) func() {
	t.Helper()
	t.Skip("Linux only")
	return func() {}
}

// FreeBytes: Linux only.
func FreeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	t.Skip("Linux only")
	return 0
}

// ReflinkFS needs Linux: elsewhere the test is skipped.
func ReflinkFS(t testing.TB) string {
	t.Helper()
	Unavailable(t, "a loop-mounted XFS (Linux only)", errors.ErrUnsupported)
	return ""
}
