//go:build linux || darwin

package fsblob

import (
	"errors"
	"syscall"
)

// isNoSpace reports a write refused because the filesystem is full or a
// disk quota is reached.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// statSpace returns the bytes an unprivileged writer may still use on
// dir's filesystem and the filesystem's size.
func statSpace(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bs := int64(st.Bsize)
	return int64(st.Bavail) * bs, int64(st.Blocks) * bs, nil
}
