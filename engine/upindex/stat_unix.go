//go:build unix

package upindex

import (
	"os"
	"syscall"
)

// StatOf is the Stat of fi: size and mtime, and from syscall.Stat_t the
// ctime, inode and device.
func StatOf(fi os.FileInfo) Stat {
	s := Stat{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.CTime = ctime(st)
		s.Inode = uint64(st.Ino)
		s.Dev = uint64(st.Dev)
	}
	return s
}
