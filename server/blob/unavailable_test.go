package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestIsUnavailable: outages are what a store marks with ErrUnavailable
// and the file system's errors that pass with time; a missing file, a
// refused permission, a client's socket or any other error are not.
func TestIsUnavailable(t *testing.T) {
	for err, want := range map[error]bool{
		fmt.Errorf("s3blob: put: %w: %w", ErrUnavailable, errors.New("dial tcp: connection refused")):        true,
		fmt.Errorf("fsblob: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.EMFILE}):                  true,
		fmt.Errorf("fsblob: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENFILE}):                  true,
		&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EBUSY}:                                  true,
		&os.SyscallError{Syscall: "fsync", Err: syscall.EAGAIN}:                                              true,
		fmt.Errorf("fsblob: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}):                  false,
		fmt.Errorf("fsblob: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}):                  false,
		&net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ETIMEDOUT}}: false,
		syscall.EMFILE:                false, // not from the file system's calls
		ErrNotFound:                   false,
		errors.New("something broke"): false,
	} {
		if got := IsUnavailable(err); got != want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", err, got, want)
		}
	}
}
