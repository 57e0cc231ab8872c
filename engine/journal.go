package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/jettythunder/jetty/internal/safefile"
	"github.com/jettythunder/jetty/protocol"
)

// journalVersion is the journal file format.
const journalVersion = 1

// Journal is what the engine remembers of an unfinished upload of one
// file to one server, so that a second run neither hashes the file again
// nor sends what the server already holds.
type Journal struct {
	Version int    `json:"version"`
	Server  string `json:"server"`
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	// MTime is the file's modification time in Unix nanoseconds.
	MTime int64 `json:"mtime"`
	// Fingerprint is the hex SHA-256 of the size and the first and last
	// MiB of the file: it catches a file replaced by another of the same
	// size and mtime (cp -p, rsync -t) for about a millisecond of reading.
	Fingerprint string `json:"fingerprint"`
	// Manifest is the planned manifest of a manifest-first upload; nil
	// for a pipelined one, which has Pipe instead.
	Manifest  *protocol.Manifest `json:"manifest,omitempty"`
	Pipe      *PipeJournal       `json:"pipe,omitempty"`
	SessionID string             `json:"session_id,omitempty"`
	Created   time.Time          `json:"created"`
}

// PipeJournal is what a pipelined upload (pipeline.go) has learnt so
// far: the chunk hashes made, and the whole-file SHA-256 state after the
// first WholeChunks chunks, so that a resumed run reads only from there
// on (plus the chunks before it the server does not hold).
type PipeJournal struct {
	ChunkSize int64 `json:"chunk_size"`
	// Sized: the server echoed the session's size (it presigns parts).
	Sized bool `json:"sized,omitempty"`
	// Ref is the upload's protocol.StreamSpec.Ref, journaled before the
	// open: a journal with a ref and no session is a run killed before
	// it learnt its session, which the next run's open finds by the ref.
	Ref string `json:"ref,omitempty"`
	// Chunks are the hex SHA-256 of each chunk, "" where not hashed yet.
	Chunks []string `json:"chunks"`
	// Whole is the encoded SHA-256 state (hash.Hash's MarshalBinary)
	// after chunks 0..WholeChunks-1, whose hashes are all in Chunks.
	Whole       []byte `json:"whole,omitempty"`
	WholeChunks int    `json:"whole_chunks"`
}

// valid reports whether p can describe a file of size bytes.
func (p *PipeJournal) valid(size int64) bool {
	if protocol.CheckChunkSize(size, p.ChunkSize) != nil || int64(len(p.Chunks)) != protocol.NumChunks(size, p.ChunkSize) {
		return false
	}
	if p.Ref != "" && !protocol.ValidClientRef(p.Ref) {
		return false
	}
	if p.WholeChunks < 0 || p.WholeChunks > len(p.Chunks) || (p.WholeChunks > 0) != (len(p.Whole) > 0) {
		return false
	}
	for i, h := range p.Chunks {
		if (h != "" && !protocol.IsHex64(h)) || (h == "" && i < p.WholeChunks) {
			return false
		}
	}
	return true
}

// DefaultJournalDir is where journals live: $XDG_STATE_HOME/jetty/journal
// when XDG_STATE_HOME is set (absolute) on any OS, else the OS's own place:
// ~/.local/state/jetty/journal on Linux and other Unixes,
// ~/Library/Application Support/jetty/journal on macOS,
// %LocalAppData%\jetty\journal on Windows.
func DefaultJournalDir() (string, error) {
	return journalDir(runtime.GOOS, os.Getenv)
}

// journalDir is DefaultJournalDir for the OS goos and the environment getenv.
func journalDir(goos string, getenv func(string) string) (string, error) {
	if d := getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "jetty", "journal"), nil
	}
	if goos == "windows" {
		if d := getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "jetty", "journal"), nil
		}
		return "", errors.New("journal directory: %LocalAppData% is not set (or set XDG_STATE_HOME)")
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("journal directory: %w", err)
		}
	}
	if goos == "darwin" || goos == "ios" {
		return filepath.Join(home, "Library", "Application Support", "jetty", "journal"), nil
	}
	return filepath.Join(home, ".local", "state", "jetty", "journal"), nil
}

// JournalPath is the journal file of absPath uploaded to server, in dir:
// the hex SHA-256 of server, a newline and the path, plus ".json".
func JournalPath(dir, server, absPath string) string {
	sum := sha256.Sum256([]byte(server + "\n" + absPath))
	return filepath.Join(dir, hex.EncodeToString(sum[:])+".json")
}

// fileFingerprint hashes size and the first and last MiB of f.
func fileFingerprint(f io.ReaderAt, size int64) (string, error) {
	const span = 1 << 20
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", size)
	buf := make([]byte, min(size, span))
	if err := readFull(f, buf, 0); err != nil {
		return "", err
	}
	h.Write(buf)
	if size > span {
		if err := readFull(f, buf, size-int64(len(buf))); err != nil {
			return "", err
		}
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadJournal reads the journal at path and returns it when it still
// describes the file (same server, path, size, mtime and fingerprint, a
// valid manifest). A journal that does not is deleted; none is nil, nil.
//
// A journal is the engine's own cache: an entry at its name that is not
// a regular file of the user's with one link (a symbolic or hard link, a
// named pipe, a directory, another user's file) is never read or
// followed, but removed (the entry itself) and reported in the error,
// with nil: the file is hashed again.
func loadJournal(path string, want Journal) (*Journal, error) {
	b, err := safefile.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var ue *safefile.UnsafeError
	if errors.As(err, &ue) {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%v, not a journal jetty wrote, and it cannot be removed (%v): remove it yourself", ue, rerr)
		}
		return nil, fmt.Errorf("%v, not a journal jetty wrote: removed it, the file is hashed again", ue)
	}
	if err != nil {
		return nil, err
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err == nil && j.Version == journalVersion &&
		j.Server == want.Server && j.Path == want.Path && j.Size == want.Size &&
		j.MTime == want.MTime && j.Fingerprint == want.Fingerprint &&
		((j.Manifest != nil && j.Pipe == nil && j.Manifest.Validate() == nil && j.Manifest.Size == want.Size) ||
			(j.Manifest == nil && j.Pipe != nil && (j.SessionID != "" || j.Pipe.Ref != "") && j.Pipe.valid(want.Size))) {
		return &j, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return nil, nil
}

// save writes j to path atomically (a new temporary file, never created
// through a link, fsync, rename: safefile.WriteFile), 0600 in a 0700
// directory.
func (j *Journal) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return safefile.WriteFile(path, b, 0o600)
}

func removeJournal(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
