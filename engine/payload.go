package engine

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// payload is the bytes of one chunk as sendChunk sends them: a section of
// the file, read again from the file for every attempt (file uploads),
// or a buffer in memory (streams, which cannot be read twice).
//
// Sending a file's chunk straight from the file, rather than reading it
// into a buffer first, means a worker's first bytes leave as soon as it
// has a chunk (no chunk-sized read, no fresh chunk-sized buffer to fault
// in: on one round of 32 × 8 MiB chunks that cost the last worker
// ~150 ms before its first byte), and an upload's memory no longer grows
// with workers × chunk size.
type payload struct {
	mem []byte      // the bytes, when in memory
	ra  io.ReaderAt // else the file
	off int64
	n   int64
}

// memPayload is a chunk held in memory.
func memPayload(b []byte) payload { return payload{mem: b, n: int64(len(b))} }

// filePayload is the n bytes of ra at off.
func filePayload(ra io.ReaderAt, off, n int64) payload { return payload{ra: ra, off: off, n: n} }

// size is the chunk's length.
func (p payload) size() int64 { return p.n }

// fileReadSize is the most a file's chunk is read by at a time. The
// transport asks for 32–64 KiB per read; reads that small, from as many
// places in one file as there are workers, defeat the kernel's readahead
// (it follows one sequential reader per open file) when the file is not
// in the page cache.
const fileReadSize = 1 << 20

// reader is a fresh reader of the chunk, for one attempt.
func (p payload) reader() io.Reader {
	if p.ra == nil {
		return bytes.NewReader(p.mem)
	}
	sr := &sectionReader{r: io.NewSectionReader(p.ra, p.off, p.n), off: p.off, n: p.n}
	return bufio.NewReaderSize(sr, int(min(p.n, fileReadSize)))
}

// sum hashes the chunk as it is now (in memory, or in the file).
func (p payload) sum() (string, error) {
	h := sha256.New()
	if p.ra == nil {
		h.Write(p.mem)
	} else if _, err := io.Copy(h, p.reader()); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileReadError is a chunk that could not be read from its file (it
// shrank, or the disk failed): the upload fails at once, whatever route
// the request was on; no receiver is to blame.
type fileReadError struct{ err error }

func (e *fileReadError) Error() string { return e.err.Error() }
func (e *fileReadError) Unwrap() error { return e.err }

// sectionReader reads a file section and turns a short one into a
// fileReadError (io.SectionReader alone ends early with io.EOF, which a
// transport reports as a body shorter than its Content-Length).
type sectionReader struct {
	r    *io.SectionReader
	off  int64
	n    int64
	read int64
}

func (s *sectionReader) Read(p []byte) (int, error) {
	k, err := s.r.Read(p)
	s.read += int64(k)
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, io.EOF) && s.read == s.n:
		return k, io.EOF
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
	}
	return k, &fileReadError{fmt.Errorf("read %d bytes at offset %d: %w (did the file shrink?)", s.n, s.off, err)}
}
