package fsblob

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// cloneRange makes n bytes of dst at dstOff share src's blocks from
// srcOff (FICLONERANGE: btrfs, XFS, bcachefs…). cloned reports success;
// unsupported that this filesystem cannot clone at all; other failures
// (alignment: EINVAL) leave both false and nil, to copy instead.
func cloneRange(dst, src *os.File, srcOff, n, dstOff int64) (cloned, unsupported bool, err error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return false, false, nil
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return false, false, nil
	}
	var cerr error
	ctlErr := rc.Control(func(sfd uintptr) {
		ctlErr := wc.Control(func(dfd uintptr) {
			cerr = unix.IoctlFileCloneRange(int(dfd), &unix.FileCloneRange{
				Src_fd:      int64(sfd),
				Src_offset:  uint64(srcOff),
				Src_length:  uint64(n),
				Dest_offset: uint64(dstOff),
			})
		})
		if cerr == nil {
			cerr = ctlErr
		}
	})
	if cerr == nil {
		cerr = ctlErr
	}
	switch {
	case cerr == nil:
		return true, false, nil
	case errors.Is(cerr, unix.EOPNOTSUPP), errors.Is(cerr, unix.ENOTTY), errors.Is(cerr, unix.EXDEV),
		errors.Is(cerr, unix.ENOSYS), errors.Is(cerr, unix.EPERM), errors.Is(cerr, unix.EBADF):
		return false, true, nil
	case errors.Is(cerr, unix.ENOSPC), errors.Is(cerr, unix.EDQUOT), errors.Is(cerr, unix.EIO):
		return false, false, cerr
	}
	return false, false, nil // EINVAL (alignment) and the like: copy this one
}
