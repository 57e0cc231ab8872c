// Package upindex is the client's local index of what this machine has
// uploaded: for one file (Key: server, account, absolute path) it keeps
// the file's Stat when it was hashed (size, mtime, ctime, inode, device)
// and the hashes of its manifest (whole-file and per-chunk SHA-256), so
// that uploading an unchanged file again asks the server with the known
// manifest without reading a byte of it (issue 18, "Dedup without
// reading").
//
// The index is a directory (0700) of small files (0600), one per Key,
// named by the hex SHA-256 of the Key: a lookup is one open and one read
// of one file, never a directory scan. An entry is replaced atomically (a
// new temporary file made without following a link, then a rename over
// the name), so concurrent jetty processes need no lock: a reader sees
// the old entry or the new one. An entry that does not decode (torn,
// garbage, another format version, another Key) and anything at an
// entry's name that is not a regular file of the user's with one link (a
// symbolic link, a hard link) is a miss and is removed, the entry itself,
// never what a link leads to.
//
// An entry is used only when the file's Stat equals the recorded one
// exactly. Even then the file may have changed: a write within the
// timestamps' granularity after the Stat was taken leaves the same size
// and mtime. As in git's racy-git rule, Lookup reports such an entry as
// doubtful when the file's mtime is not safely before the entry was
// recorded (mtime >= Recorded - RacyWindow); the caller then hashes the
// file and calls Confirm (it matched) or Remove.
//
// Entries are a versioned binary format with the chunk hashes packed (32
// bytes each): a 10 GiB file in 8 MiB chunks is about 41 KB. Prune bounds
// the index by age and by count and drops entries whose file is gone or
// changed. docs/decisions.md, "The local upload index (issue 18)", says
// why.
package upindex

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/safefile"
	"github.com/jettythunder/jetty/protocol"
)

// RacyWindow is how far before Recorded a file's mtime must be for a
// matching entry to be trusted without reading the file: 2 s covers
// timestamps of one-second (ext3, HFS+) and two-second (FAT) granularity.
const RacyWindow = 2 * time.Second

// ErrInvalid is wrapped by the error Put (and Confirm) return for an
// entry that breaks a rule, and Lookup and Remove for a bad Key.
var ErrInvalid = errors.New("upindex: invalid entry")

// Key names one local file as uploaded to one account on one server.
type Key struct{ Server, Account, Path string } // Path absolute

// Stat is what identifies an unchanged file without reading it.
type Stat struct {
	Size  int64
	MTime int64  // ns
	CTime int64  // ns (0 where unknown)
	Inode uint64 // file id (0 where unknown)
	Dev   uint64
}

// Entry is what the index knows of one file uploaded once.
type Entry struct {
	Key
	Stat
	SHA256    string    // whole-file SHA-256, hex
	ChunkSize int64     // the manifest's chunk size
	Chunks    []string  // per-chunk SHA-256, hex, in order (sizes follow from Size and ChunkSize)
	Recorded  time.Time // when the file was stat'ed before it was read (Put: now when zero)
}

// Index is a directory of entries. Its methods are safe for concurrent
// use, by goroutines and by processes sharing the directory.
type Index struct{ dir string }

// entrySuffix ends the name of every entry file: the Key's hash and it.
const entrySuffix = ".ent"

// tmpMarker is in the name of safefile.WriteFile's temporary files
// (".NAME.tmp-RANDOM"); Prune removes the ones a killed process left.
const tmpMarker = ".tmp-"

// staleTmp is the age after which Prune removes a temporary file.
const staleTmp = time.Hour

// DefaultDir is where the index lives: $JETTY_INDEX_DIR when set, else
// jetty/index in the user's cache directory (os.UserCacheDir:
// ~/.cache/jetty/index on Linux, ~/Library/Caches/jetty/index on macOS,
// %LocalAppData%\jetty\index on Windows).
func DefaultDir() (string, error) {
	if d := os.Getenv("JETTY_INDEX_DIR"); d != "" {
		return filepath.Abs(d)
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("upload index directory: %w (or set JETTY_INDEX_DIR)", err)
	}
	return filepath.Join(c, "jetty", "index"), nil
}

// Open opens the index in dir, creating the directory (0700, and its
// parents) when it is missing.
func Open(dir string) (*Index, error) {
	if dir == "" {
		return nil, errors.New("upindex: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload index: %w", err)
	}
	return &Index{dir: dir}, nil
}

// Dir is the index's directory.
func (ix *Index) Dir() string { return ix.dir }

// Name is the file name of key's entry: the hex SHA-256 of server, NUL,
// account, NUL, path, and ".ent".
func (k Key) Name() string {
	sum := sha256.Sum256([]byte(k.Server + "\x00" + k.Account + "\x00" + k.Path))
	return hex.EncodeToString(sum[:]) + entrySuffix
}

func (ix *Index) path(k Key) string { return filepath.Join(ix.dir, k.Name()) }

// check refuses a Key that cannot name a file: no server, a path that is
// not absolute, a NUL (the separator of Name's hash) or a field too long
// for an entry.
func (k Key) check() error {
	switch {
	case k.Server == "":
		return fmt.Errorf("%w: no server", ErrInvalid)
	case !filepath.IsAbs(k.Path):
		return fmt.Errorf("%w: path %q is not absolute", ErrInvalid, k.Path)
	}
	for _, f := range []string{k.Server, k.Account, k.Path} {
		if strings.IndexByte(f, 0) >= 0 {
			return fmt.Errorf("%w: a NUL byte in the key", ErrInvalid)
		}
		if len(f) > maxField {
			return fmt.Errorf("%w: a key field of %d bytes (at most %d)", ErrInvalid, len(f), maxField)
		}
	}
	return nil
}

// Lookup returns the entry for key when st matches its Stat exactly.
// It is a miss (nil, false) when there is none or it is stale (a stale
// entry is removed), and when the file at the entry's name is not one the
// index wrote (it is removed too). doubt is true when the entry is
// "racily clean": the file's mtime is not safely before Recorded (mtime
// >= Recorded - RacyWindow), so a change within the same second with the
// same size could hide; the caller must then hash the file and call
// Confirm or Remove.
func (ix *Index) Lookup(key Key, st Stat) (e *Entry, doubt bool, err error) {
	if err := key.check(); err != nil {
		return nil, false, err
	}
	p := ix.path(key)
	e, fi, _, err := read(p)
	if e == nil || err != nil {
		return nil, false, err
	}
	if e.Key != key || e.Stat != st {
		_, err := removeIfSame(p, fi)
		return nil, false, err
	}
	return e, e.racy(), nil
}

// racy is Lookup's doubt: mtime >= Recorded - RacyWindow.
func (e *Entry) racy() bool {
	return e.MTime >= e.Recorded.Add(-RacyWindow).UnixNano()
}

// Put writes e (Recorded = now when zero) as the entry of e.Key,
// replacing any, atomically. It refuses (ErrInvalid) an entry whose
// hashes are not 64 lowercase hex characters, whose chunk count is not
// ceil(Size/ChunkSize) (one chunk for an empty file), or that is not a
// valid manifest (protocol.Manifest.Validate), so that every entry
// Lookup returns has one. The index is a cache: a failed Put costs the
// next upload one hashing, so callers may warn and go on.
func (ix *Index) Put(e Entry) error {
	if e.Recorded.IsZero() {
		e.Recorded = time.Now()
	}
	if err := e.check(); err != nil {
		return err
	}
	return safefile.WriteFile(ix.path(e.Key), encode(&e), 0o600)
}

// Confirm writes e again with Recorded = at: the caller began hashing a
// doubtful file again at that moment and it matched e. (The start, not
// the end: a slow hash must not push Recorded past the doubt window of
// a change made just before it.)
func (ix *Index) Confirm(e Entry, at time.Time) error {
	e.Recorded = at
	if at.IsZero() {
		e.Recorded = time.Now()
	}
	return ix.Put(e)
}

// Remove removes key's entry (the entry itself, whatever it is); none is
// not an error.
func (ix *Index) Remove(key Key) error {
	if err := key.check(); err != nil {
		return err
	}
	return removeEntry(ix.path(key))
}

// Prune removes entries recorded more than maxAge ago (maxAge <= 0: no
// age limit), entries whose file no longer exists or no longer matches
// their Stat (os.Stat of the path, links followed, through StatOf), files at entries' names that do not decode, and then the
// oldest entries beyond maxEntries (maxEntries <= 0: no count limit). It
// returns how many entries it removed. Temporary files older than an
// hour (left by a killed process) go too, uncounted; other files in the
// directory are left alone. An entry another process replaces while
// Prune looks at it is left alone (removeIfSame).
func (ix *Index) Prune(maxAge time.Duration, maxEntries int) (int, error) {
	names, err := ix.names()
	if err != nil {
		return 0, err
	}
	now := time.Now()
	type kept struct {
		path     string
		fi       fs.FileInfo
		recorded time.Time
	}
	var keep []kept
	removed := 0
	drop := func(p string, fi fs.FileInfo) error {
		gone, err := removeIfSame(p, fi)
		if gone {
			removed++
		}
		return err
	}
	for _, n := range names {
		p := filepath.Join(ix.dir, n)
		if !isEntryName(n) {
			if strings.Contains(n, tmpMarker) {
				removeOldTmp(p, now)
			}
			continue
		}
		e, fi, gone, err := read(p)
		if gone {
			removed++
		}
		switch {
		case err != nil:
			return removed, err
		case e == nil:
			continue
		case maxAge > 0 && now.Sub(e.Recorded) > maxAge, !e.fileMatches():
			if err := drop(p, fi); err != nil {
				return removed, err
			}
			continue
		}
		keep = append(keep, kept{p, fi, e.Recorded})
	}
	if maxEntries > 0 && len(keep) > maxEntries {
		sort.Slice(keep, func(i, j int) bool { return keep[i].recorded.Before(keep[j].recorded) })
		for _, k := range keep[:len(keep)-maxEntries] {
			if err := drop(k.path, k.fi); err != nil {
				return removed, err
			}
		}
	}
	return removed, nil
}

// fileMatches reports whether e's file exists and has e's Stat.
func (e *Entry) fileMatches() bool {
	fi, err := os.Stat(e.Path)
	return err == nil && StatOf(fi) == e.Stat
}

// Len is the number of entry files in the index (not decoded).
func (ix *Index) Len() (int, error) {
	names, err := ix.names()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		if isEntryName(name) {
			n++
		}
	}
	return n, nil
}

// names lists the directory's file names.
func (ix *Index) names() ([]string, error) {
	d, err := os.Open(ix.dir)
	if err != nil {
		return nil, fmt.Errorf("upload index: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("upload index: %w", err)
	}
	return names, nil
}

// isEntryName reports whether name is 64 lowercase hex characters and
// entrySuffix.
func isEntryName(name string) bool {
	h, ok := strings.CutSuffix(name, entrySuffix)
	return ok && protocol.IsHex64(h)
}

// removeOldTmp removes the temporary file at p when it is older than
// staleTmp: a live Put finishes in far less.
func removeOldTmp(p string, now time.Time) {
	if fi, err := os.Lstat(p); err == nil && now.Sub(fi.ModTime()) > staleTmp {
		os.Remove(p)
	}
}

// read reads and decodes the entry file at p; fi is the file read (for
// removeIfSame). A missing file is a miss (nil entry, no error). A file
// that is not a regular file of the user's with one link, or that does
// not decode as the entry of the Key its name is the hash of, is a miss
// too and is removed (removed says so).
func read(p string) (e *Entry, fi fs.FileInfo, removed bool, err error) {
	for range 3 {
		f, err := safefile.Open(p, os.O_RDONLY)
		var ue *safefile.UnsafeError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, nil, false, nil
		case errors.As(err, &ue):
			// Unsafe, or replaced by a Put between Open's Lstat and its
			// open: remove only what is unsafe now, else read again.
			gone, rerr := safefile.RemoveUnsafe(p)
			if rerr != nil {
				return nil, nil, false, fmt.Errorf("upload index: %w", rerr)
			}
			if gone != nil {
				return nil, nil, true, nil
			}
			continue
		case err != nil:
			return nil, nil, false, fmt.Errorf("upload index: %w", err)
		}
		b, fi, err := readAll(f)
		if err != nil {
			return nil, nil, false, fmt.Errorf("upload index: %w", err)
		}
		if e, derr := decode(b); derr == nil && e.Key.Name() == filepath.Base(p) {
			return e, fi, false, nil
		}
		removed, err := removeIfSame(p, fi)
		return nil, fi, removed, err
	}
	return nil, nil, false, nil // replaced under us three times: a miss
}

// readAll reads f, at most maxFile+1 bytes (more does not decode), with
// its FileInfo, and closes it.
func readAll(f *os.File) ([]byte, fs.FileInfo, error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	return b, fi, err
}

// removeIfSame removes the entry at p when it is still the file fi was
// taken of: an entry another process wrote since (a new file, renamed
// into place) is left alone. removed says whether it removed it.
func removeIfSame(p string, fi fs.FileInfo) (removed bool, err error) {
	cur, err := os.Lstat(p)
	if err != nil || !os.SameFile(cur, fi) {
		return false, nil
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("upload index: %w", err)
	}
	return true, nil
}

// removeEntry removes the entry at p, whatever it is; none is not an
// error.
func removeEntry(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload index: %w", err)
	}
	return nil
}
