//go:build windows

package safefile

import (
	"io/fs"
	"os"
	"syscall"
)

func create(path string, perm fs.FileMode) (*os.File, error) {
	// O_CREATE|O_EXCL is CREATE_NEW with FILE_FLAG_OPEN_REPARSE_POINT in
	// os.OpenFile: a link at the name makes it fail, never followed.
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.FILE_FLAG_OPEN_REPARSE_POINT, perm)
}

// openNoFollow opens path as itself (FILE_FLAG_OPEN_REPARSE_POINT: a
// symbolic link or junction is opened, not what it leads to) and refuses
// a reparse point, a directory or a file with more than one link, from
// the handle's own attributes.
func openNoFollow(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return nil, err
	}
	var fi syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &fi); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "GetFileInformationByHandle", Path: path, Err: err}
	}
	reason := ""
	switch {
	case fi.FileAttributes&syscall.FILE_ATTRIBUTE_REPARSE_POINT != 0:
		reason = "is a symbolic link or another reparse point"
	case fi.FileAttributes&syscall.FILE_ATTRIBUTE_DIRECTORY != 0:
		reason = "is a directory"
	case fi.NumberOfLinks != 1:
		reason = linksReason(uint64(fi.NumberOfLinks))
	}
	if reason != "" {
		f.Close()
		return nil, &UnsafeError{Path: path, Reason: reason}
	}
	return f, nil
}

// checkSys has nothing more to check from a FileInfo on Windows: the link
// count is read from the handle in openNoFollow, and owners (SIDs) are
// not compared.
func checkSys(path string, fi fs.FileInfo) error { return nil }
