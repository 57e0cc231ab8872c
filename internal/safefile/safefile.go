// Package safefile creates, opens and replaces the files the command line
// writes without ever following a symbolic link, and refuses an existing
// file that is not a regular file of the user's own.
//
// The threat: a directory someone else can write to (/tmp, a shared
// download folder) holds, at the name jetty is about to use, a symbolic
// link to one of the user's files, a hard link to it, a named pipe that
// hangs whoever opens it, or a file that person owns and can change.
// Writing through such an entry overwrites the file it leads to; reading
// from it trusts what someone else wrote.
//
//   - Create makes a new file and fails when anything, a dangling link
//     included, is at the name (O_CREAT|O_EXCL|O_NOFOLLOW).
//   - Open opens an existing file only when it is a regular file, owned
//     by the current user, with one name (no other hard link): Lstat first
//     (a named pipe or device is never opened), then open without
//     following a link (O_NOFOLLOW, non-blocking), then the opened file's
//     own Fstat must show the same file and pass the same checks.
//   - WriteFile replaces a file through a new temporary file made by
//     Create, then a rename: rename replaces the entry at the name, a link
//     itself and never what it points to.
//
// Windows has no O_NOFOLLOW: Create uses CREATE_NEW with
// FILE_FLAG_OPEN_REPARSE_POINT (as os.OpenFile does for O_EXCL), and Open
// opens with FILE_FLAG_OPEN_REPARSE_POINT, so a symbolic link or junction
// is opened as itself and then refused by the handle's attributes; the
// link count comes from the handle. Ownership is not checked on Windows
// (owners are SIDs, and the profile directories jetty keeps state in are
// private by their ACLs).
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrUnsafe is wrapped by every *UnsafeError.
var ErrUnsafe = errors.New("not a regular file of the current user")

// UnsafeError says why the entry at Path is not used: Reason completes the
// sentence "Path ..." ("is a symbolic link", "is owned by uid 65534, not
// by you (uid 1000)", ...).
type UnsafeError struct {
	Path   string
	Reason string
	// OtherOwner is set when the only trouble is the owner: a file of the
	// user's own meets this when jetty now runs as someone else (sudo).
	OtherOwner bool
}

func (e *UnsafeError) Error() string { return e.Path + " " + e.Reason }

// Hint is what to add to an error about e for a user who may have made
// the file themselves as another user: "" unless OtherOwner.
func (e *UnsafeError) Hint() string {
	if !e.OtherOwner {
		return ""
	}
	return " (if it is yours from a run as another user, with sudo for example, run jetty as that user instead)"
}

func (e *UnsafeError) Unwrap() error { return ErrUnsafe }

// Create creates path, which must not exist, for reading and writing
// with perm (before the umask). Anything at the name, a symbolic link
// included (dangling or not), makes it fail with an error wrapping
// fs.ErrExist; a link is never followed.
func Create(path string, perm fs.FileMode) (*os.File, error) {
	return create(path, perm)
}

// Open opens the existing file at path with flag (os.O_RDONLY or
// os.O_RDWR; no O_CREATE) when it is a regular file, owned by the current
// user (by uid, so root too is refused another user's file), with one
// link. Anything else is an *UnsafeError; a missing file is an error
// wrapping fs.ErrNotExist.
func Open(path string, flag int) (*os.File, error) {
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := check(path, lst); err != nil {
		return nil, err
	}
	f, err := openNoFollow(path, flag&^(os.O_CREATE|os.O_EXCL|os.O_TRUNC))
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !os.SameFile(lst, st) {
		err = &UnsafeError{Path: path, Reason: "was replaced by another file while it was opened"}
	}
	if err == nil {
		err = check(path, st)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenOrCreate opens path for reading and writing as Open does, or
// creates it as Create does when nothing is there; created says which.
func OpenOrCreate(path string, perm fs.FileMode) (f *os.File, created bool, err error) {
	for range 3 { // an entry removed between the two calls: try again
		f, err = Create(path, perm)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, err
		}
		f, err = Open(path, os.O_RDWR)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, false, err
		}
	}
	return nil, false, err
}

// ReadFile reads the file at path after Open's checks.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Check reports, without opening anything, whether the entry at path is
// one Open would refuse (an *UnsafeError), or missing (fs.ErrNotExist).
func Check(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return check(path, st)
}

// RemoveUnsafe removes the entry at path when Open would refuse it (the
// entry itself: a link is removed, never what it points to; a directory
// only when empty) and returns why it was removed. A missing or a safe
// file is left alone (nil, nil).
func RemoveUnsafe(path string) (*UnsafeError, error) {
	var ue *UnsafeError
	switch err := Check(path); {
	case err == nil || errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case !errors.As(err, &ue):
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ue, fmt.Errorf("%v, and it cannot be removed: %w", ue, err)
	}
	return ue, nil
}

// WriteFile replaces the file at path with data, atomically: a new
// temporary file next to it (".NAME.tmp-" and a random number, made by
// Create), written, synced, given perm exactly (whatever the umask) and
// renamed over path. Whatever entry is at path is replaced, a link
// itself, never what it points to; a directory there is an error.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	prefix := filepath.Base(path)
	if !strings.HasPrefix(prefix, ".") {
		prefix = "." + prefix
	}
	tmp, err := CreateTemp(filepath.Dir(path), prefix+".tmp-", perm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil { // perm exactly, whatever the umask
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		if st, serr := os.Lstat(path); serr == nil && st.IsDir() {
			return fmt.Errorf("cannot replace %s: it is a directory (remove it)", path)
		}
		return fmt.Errorf("cannot replace %s: %w", path, err)
	}
	return nil
}

// CreateTemp creates a new file in dir named prefix followed by a random
// number, as Create does (so never through a link someone put there),
// with perm.
func CreateTemp(dir, prefix string, perm fs.FileMode) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64()%1e12, 10))
		f, err := Create(name, perm)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("cannot create a temporary file %s* in %s: every name tried exists", prefix, dir)
}

// check refuses what is not a regular file of the current user's with
// one link.
func check(path string, st fs.FileInfo) error {
	if reason := kind(st.Mode()); reason != "" {
		return &UnsafeError{Path: path, Reason: reason}
	}
	return checkSys(path, st)
}

func kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return ""
	case t&fs.ModeSymlink != 0:
		return "is a symbolic link"
	case t&fs.ModeDir != 0:
		return "is a directory"
	case t&fs.ModeNamedPipe != 0:
		return "is a named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "is a socket"
	case t&fs.ModeDevice != 0:
		return "is a device"
	default:
		return "is not a regular file (" + strings.TrimLeft(t.String(), "-") + ")"
	}
}

func linksReason(n uint64) string {
	return fmt.Sprintf("has %d hard links (other names lead to the same file)", n)
}
