//go:build !unix

package upindex

import "os"

// StatOf is the Stat of fi: size and mtime only on this OS (no ctime,
// and os.FileInfo carries no file id).
func StatOf(fi os.FileInfo) Stat {
	return Stat{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
}
