//go:build unix

package safefile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

func create(path string, perm fs.FileMode) (*os.File, error) {
	// O_EXCL alone already refuses a link at the name (POSIX); O_NOFOLLOW
	// says so once more.
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
}

// openNoFollow opens path without following a link at its last element
// and without blocking on a named pipe put there after the Lstat; the
// descriptor is back in blocking mode when it is returned.
func openNoFollow(path string, flag int) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	switch {
	case err == syscall.ELOOP || err == syscall.EMLINK: // EMLINK: the BSDs' answer for a link
		return nil, &UnsafeError{Path: path, Reason: "is a symbolic link"}
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if uint32(st.Mode)&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, &UnsafeError{Path: path, Reason: "is not a regular file"}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// checkSys refuses a file another uid owns or one with more than one link.
func checkSys(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &UnsafeError{Path: path, Reason: "has no owner to check"}
	}
	if uid := os.Getuid(); int64(st.Uid) != int64(uid) {
		return &UnsafeError{Path: path, Reason: fmt.Sprintf("is owned by uid %d, not by you (uid %d)", st.Uid, uid), OtherOwner: true}
	}
	if n := uint64(st.Nlink); n != 1 {
		return &UnsafeError{Path: path, Reason: linksReason(n)}
	}
	return nil
}
