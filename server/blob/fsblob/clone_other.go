//go:build !linux

package fsblob

import "os"

// cloneRange: reflink clones are only tried on Linux.
func cloneRange(dst, src *os.File, srcOff, n, dstOff int64) (cloned, unsupported bool, err error) {
	return false, true, nil
}
