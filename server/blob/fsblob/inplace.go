package fsblob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jettythunder/jetty/server/blob"
)

// In-place multipart uploads (CreateUploadSized, issue 18).
//
// When every part but the last has one size, the part size, part n's
// bytes belong at (n-1)*partSize in the object. Such an upload is created
// with the object file already in its directory (uploads/<id>/object) and
// PutPart writes each part's bytes there, at that offset, hashing them as
// they stream. Completing is then one read of the object for its SHA-256
// (the file's bytes in order, as they will be published), an fsync and
// the rename Put uses: no second copy of the file, no part files.
//
// A part is held when its marker uploads/<id>/NNNNN.at names its size and
// SHA-256. The marker is written (through tmp/ and a rename, not fsynced)
// only after the part's bytes were verified against the caller's digest
// and fdatasynced, so a marker that survives a crash always has its bytes
// on disk; a marker lost in a crash (or left empty by one) only makes the
// part missing, and the client sends it again (the server's "missing"
// list). Whatever is in a part's range without a marker is no part.
//
// Writers of one part are serialised in memory (two processes never share
// a root): the first writer of a part without a marker writes in place;
// a part sent again while another write of it runs, or replacing a held
// part, streams into a temporary file first and is verified there, so a
// refused replacement leaves the held part as it was; only then is the
// marker removed, the bytes copied in place and the marker written anew.
//
// Completing records the parts (assemble.json, as for assembled uploads),
// which freezes the upload: writes in flight are stopped before their next
// write (freeze) and later ones see the record. Re-running a completion
// after a crash hashes the object again; one that finds the object file
// gone finishes from the published object (finishPublished).

const (
	markerSuffix = ".at"
	markerMagic  = "JTAT1"
)

// errFrozen stops an in-place write once the upload is being completed.
var errFrozen = errors.New("upload is being completed")

// upState is what the writers of one in-place upload share.
type upState struct {
	mu      sync.RWMutex // a write in place holds it for reading; freeze for writing
	frozen  bool
	refs    int          // under Store.upMu
	writing map[int]bool // parts being written in place, under Store.upMu
}

// CreateUploadSized starts an upload whose parts are written in place:
// every part but the last is partSize bytes (see blob.SizedUploader).
func (s *Store) CreateUploadSized(ctx context.Context, key, contentType string, partSize int64) (string, error) {
	if partSize <= 0 {
		return "", fmt.Errorf("fsblob: part size must be positive, got %d", partSize)
	}
	return s.createUpload(ctx, key, contentType, partSize)
}

var _ blob.SizedUploader = (*Store)(nil)

func markerPath(id string, number int) string {
	return path.Join(uploadsDir, id, fmt.Sprintf("%05d%s", number, markerSuffix))
}

// markerNumber returns the part number a marker's file name gives.
func markerNumber(name string) (int, bool) {
	numStr, ok := strings.CutSuffix(name, markerSuffix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(numStr)
	return n, err == nil && n >= 1 && n <= blob.MaxParts
}

// readMarker returns the part a marker records; nil when there is none or
// it cannot be read whole (a marker a crash left empty: the part is sent
// again).
func (s *Store) readMarker(id string, number int) (*blob.Part, error) {
	data, err := s.root.ReadFile(markerPath(id, number))
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	f := strings.Fields(string(data))
	if len(f) != 3 || f[0] != markerMagic || !strings.HasSuffix(string(data), "\n") {
		return nil, nil
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	sum, herr := hex.DecodeString(f[2])
	if err != nil || herr != nil || size < 0 || len(sum) != sha256.Size {
		return nil, nil
	}
	return &blob.Part{Number: number, Size: size, SHA256: sum, ETag: f[2]}, nil
}

// writeMarker records part p as held, unless the upload is being
// completed meanwhile.
func (s *Store) writeMarker(id string, p blob.Part) error {
	f, tmp, err := s.createTemp("at")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s %d %x\n", markerMagic, p.Size, p.SHA256)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		return fmt.Errorf("fsblob: %w", err)
	}
	unlock := stripe(&s.partLocks, id)
	defer unlock()
	rec, err := s.loadAssembly(id)
	if err == nil && rec != nil {
		err = frozenAnswer(id, rec, p)
	} else if err == nil {
		if err = s.root.Rename(tmp, markerPath(id, p.Number)); err != nil && notFound(err) {
			err = blob.ErrNotFound // aborted or completed meanwhile
		}
	}
	if err != nil {
		_ = s.root.Remove(tmp)
	}
	return err
}

// frozenAnswer is what a part sent while the upload is being completed
// gets: acknowledged when it is the recorded one, refused otherwise.
func frozenAnswer(id string, rec *asmRecord, p blob.Part) error {
	for _, ap := range rec.parts() {
		if ap.Number == p.Number && ap.Size == p.Size && bytes.Equal(ap.SHA256, p.SHA256) {
			return nil
		}
	}
	return fmt.Errorf("fsblob: upload %s is being completed; part %d can no longer change: %w", id, p.Number, blob.ErrNotFound)
}

func (s *Store) acquireUp(id string) *upState {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	st := s.ups[id]
	if st == nil {
		st = &upState{writing: map[int]bool{}}
		s.ups[id] = st
	}
	st.refs++
	return st
}

func (s *Store) releaseUp(id string, st *upState) {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if st.refs--; st.refs == 0 {
		delete(s.ups, id)
	}
}

// claimPart makes this call the one writer of part n in place; without
// wait it gives up when another holds it.
func (s *Store) claimPart(st *upState, n int, wait bool) bool {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	for st.writing[n] {
		if !wait {
			return false
		}
		s.upCond.Wait()
	}
	st.writing[n] = true
	return true
}

func (s *Store) releasePart(st *upState, n int) {
	s.upMu.Lock()
	delete(st.writing, n)
	s.upCond.Broadcast()
	s.upMu.Unlock()
}

// freeze stops the in-place writes in flight of upload id before their
// next write (and waits for a write under way). Called with the upload's
// part lock held, right after the assembly record is written.
func (s *Store) freeze(id string) {
	s.upMu.Lock()
	st := s.ups[id]
	s.upMu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.frozen = true
	st.mu.Unlock()
}

// placeWriter writes at off in the object, until the upload is frozen.
type placeWriter struct {
	st  *upState
	f   *os.File
	off int64
}

func (w *placeWriter) Write(p []byte) (int, error) {
	w.st.mu.RLock()
	defer w.st.mu.RUnlock()
	if w.st.frozen {
		return 0, errFrozen
	}
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// putPartInPlace is PutPart on an upload written in place.
func (s *Store) putPartInPlace(ctx context.Context, id string, partSize int64, number int, r io.Reader, size int64, sum []byte) (blob.Part, error) {
	if size > partSize {
		return blob.Part{}, fmt.Errorf("fsblob: part %d is %d bytes, more than the upload's part size %d", number, size, partSize)
	}
	done := blob.Part{Number: number, Size: size, SHA256: bytes.Clone(sum), ETag: hex.EncodeToString(sum)}
	unlock := stripe(&s.partLocks, id)
	rec, err := s.loadAssembly(id)
	var st *upState
	if err == nil && rec == nil {
		st = s.acquireUp(id)
	}
	unlock()
	if err != nil {
		return blob.Part{}, err
	}
	if rec != nil {
		// Being completed: verify the bytes, then answer from the record.
		if err := verifyStream(ctx, r, number, size, sum); err != nil {
			return blob.Part{}, err
		}
		return done, frozenAnswer(id, rec, done)
	}
	defer s.releaseUp(id, st)
	off := int64(number-1) * partSize
	if s.claimPart(st, number, false) {
		held, err := s.readMarker(id, number)
		if err == nil && held == nil {
			err = s.writeInPlace(ctx, st, id, done, off, io.LimitReader(r, size))
			s.releasePart(st, number)
			if err != nil {
				return blob.Part{}, err
			}
			s.goAdvanceHash(id, partSize)
			return done, nil
		}
		s.releasePart(st, number)
		if err != nil {
			return blob.Part{}, err
		}
	}
	p, err := s.replacePart(ctx, st, id, done, off, r)
	if err == nil {
		s.goAdvanceHash(id, partSize)
	}
	return p, err
}

// verifyStream reads a part's bytes only to check them.
func verifyStream(ctx context.Context, r io.Reader, number int, size int64, sum []byte) error {
	h := sha256.New()
	n, err := copyCtx(ctx, h, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("fsblob: part %d is %d bytes, expected %d: %w", number, n, size, io.ErrUnexpectedEOF)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return blob.ErrChecksum
	}
	return nil
}

// writeInPlace streams part p from src into the object at off, checks
// its size and SHA-256, fdatasyncs the object and writes the marker. The
// caller holds the part's claim and has removed its marker.
func (s *Store) writeInPlace(ctx context.Context, st *upState, id string, p blob.Part, off int64, src io.Reader) error {
	f, err := s.root.OpenFile(path.Join(uploadsDir, id, asmDataFile), os.O_WRONLY, 0)
	if err != nil {
		if notFound(err) {
			return blob.ErrNotFound // aborted or completed
		}
		return fmt.Errorf("fsblob: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyCtx(ctx, io.MultiWriter(&placeWriter{st: st, f: f, off: off}, h), src)
	if errors.Is(err, errFrozen) {
		return fmt.Errorf("fsblob: upload %s is being completed; part %d can no longer change: %w", id, p.Number, blob.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if n != p.Size {
		return fmt.Errorf("fsblob: part %d is %d bytes, expected %d: %w", p.Number, n, p.Size, io.ErrUnexpectedEOF)
	}
	if !bytes.Equal(h.Sum(nil), p.SHA256) {
		return blob.ErrChecksum
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("fsblob: %w", err)
	}
	return s.writeMarker(id, p)
}

// replacePart stores part p of an upload that holds it already (or is
// receiving it on another request): the bytes are verified in a
// temporary file first, so a refused replacement changes nothing.
func (s *Store) replacePart(ctx context.Context, st *upState, id string, p blob.Part, off int64, r io.Reader) (blob.Part, error) {
	f, tmp, err := s.createTemp("part")
	if err != nil {
		return blob.Part{}, err
	}
	defer func() {
		f.Close()
		_ = s.root.Remove(tmp)
	}()
	h := sha256.New()
	n, err := copyCtx(ctx, io.MultiWriter(f, h), io.LimitReader(r, p.Size))
	if err != nil {
		return blob.Part{}, err
	}
	if n != p.Size {
		return blob.Part{}, fmt.Errorf("fsblob: part %d is %d bytes, expected %d: %w", p.Number, n, p.Size, io.ErrUnexpectedEOF)
	}
	if !bytes.Equal(h.Sum(nil), p.SHA256) {
		return blob.Part{}, blob.ErrChecksum
	}
	s.claimPart(st, p.Number, true)
	defer s.releasePart(st, p.Number)
	unlock := stripe(&s.partLocks, id)
	rec, err := s.loadAssembly(id)
	var held *blob.Part
	if err == nil && rec == nil {
		held, err = s.readMarker(id, p.Number)
	}
	switch {
	case err != nil:
	case rec != nil:
		err = frozenAnswer(id, rec, p)
	case held != nil && held.Size == p.Size && bytes.Equal(held.SHA256, p.SHA256):
		// The same bytes are held already.
	default:
		held = nil
		if rerr := s.root.Remove(markerPath(id, p.Number)); rerr != nil && !notFound(rerr) {
			err = fmt.Errorf("fsblob: %w", rerr)
		}
	}
	unlock()
	if err != nil || held != nil {
		return p, err
	}
	s.invalidateHash(id, p.Number)
	if err := s.writeInPlace(ctx, st, id, p, off, io.NewSectionReader(f, 0, p.Size)); err != nil {
		return blob.Part{}, err
	}
	return p, nil
}

// checkLayout checks that parts can complete an upload written in place:
// numbers 1..n, every part partSize bytes but the last, at most that.
func checkLayout(parts []blob.Part, partSize int64) error {
	for i, p := range parts {
		if p.Number != i+1 {
			return fmt.Errorf("fsblob: an upload written in place completes with parts 1..n; part %d is given at position %d", p.Number, i+1)
		}
		if p.Size > partSize || (i < len(parts)-1 && p.Size != partSize) {
			return fmt.Errorf("fsblob: part %d is %d bytes; every part of this upload is %d bytes but the last, which is at most that", p.Number, p.Size, partSize)
		}
	}
	return nil
}

// completeInPlace finishes an upload written in place whose parts are
// recorded: the object is cut to the parts' length, hashed whole, synced
// and published, and the upload removed.
func (s *Store) completeInPlace(ctx context.Context, key, id, contentType string, parts []blob.Part) (blob.Info, error) {
	var total int64
	for _, p := range parts {
		total += p.Size
	}
	dataName := path.Join(uploadsDir, id, asmDataFile)
	f, err := s.root.OpenFile(dataName, os.O_RDWR, 0)
	if err != nil {
		if notFound(err) {
			// Published by an earlier run that stopped before removing
			// the upload.
			return s.finishPublished(ctx, key, id, total)
		}
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// Past total: bytes of a part after the last one given, not the object's.
	if err := cutTo(f, total, func(size int64) error {
		return fmt.Errorf("fsblob: upload %s: the object has %d bytes, its parts %d; abort the upload and send it again", id, size, total)
	}); err != nil {
		return blob.Info{}, err
	}
	h, off, unlockHash := s.hashedPrefix(id, parts)
	defer unlockHash()
	if n, err := copyCtx(ctx, h, io.NewSectionReader(f, off, total-off)); err != nil || n != total-off {
		return blob.Info{}, fmt.Errorf("fsblob: hash the object: %d of %d bytes: %v", off+n, total, err)
	}
	// Every part was fdatasynced when it was stored; this makes the
	// length (and anything a crash left unsynced) durable.
	if err := f.Sync(); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	if err := s.step("hashed", len(parts)); err != nil {
		return blob.Info{}, err
	}
	return s.publishUpload(key, id, dataName, contentType, len(parts), h.Sum(nil))
}

// The object's SHA-256 is computed while the upload is under way, as far
// as its parts are held from part 1 on without a gap: after a part is
// stored, a goroutine reads the parts that extend that prefix back from
// the object (page cache, most likely) and hashes them, so completing
// only hashes what is left (nothing, when the parts came in about in
// order). A part is hashed under its claim and only once its marker says
// it is held, so its bytes are the verified ones; replacing a part inside
// the prefix starts it over. The prefix lives in memory only: after a
// restart, completing hashes the whole object.

// prefixHash is the SHA-256 of the first parts of an upload.
type prefixHash struct {
	mu    sync.Mutex
	h     hash.Hash
	off   int64
	parts []blob.Part // hashed, numbers 1..len
	last  bool        // the last part (shorter than the part size) is in
	again atomic.Bool // an advance was asked for while one ran
}

func (ph *prefixHash) reset() {
	ph.h, ph.off, ph.parts, ph.last = sha256.New(), 0, nil, false
}

func (s *Store) prefixOf(id string, create bool) *prefixHash {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	ph := s.hashes[id]
	if ph == nil && create {
		ph = &prefixHash{h: sha256.New()}
		s.hashes[id] = ph
	}
	return ph
}

// goAdvanceHash extends upload id's hashed prefix in the background.
func (s *Store) goAdvanceHash(id string, partSize int64) {
	st := s.acquireUp(id)
	ph := s.prefixOf(id, true)
	go func() {
		defer s.releaseUp(id, st)
		s.advanceHash(st, ph, id, partSize)
		if _, err := s.root.Stat(path.Join(uploadsDir, id)); notFound(err) {
			s.forgetHash(id) // removed meanwhile
		}
	}()
}

// advanceHash hashes the held parts that follow the prefix, unless
// another call is at it: that one then goes round once more (again), so
// a part stored while it was finishing is not left out until completion.
func (s *Store) advanceHash(st *upState, ph *prefixHash, id string, partSize int64) {
	for {
		ph.again.Store(true)
		if !ph.mu.TryLock() {
			return // the holder sees again when it is done
		}
		ph.again.Store(false)
		s.advanceLocked(st, ph, id, partSize)
		ph.mu.Unlock()
		if !ph.again.Load() {
			return
		}
	}
}

// advanceLocked is advanceHash's work, with ph.mu held.
func (s *Store) advanceLocked(st *upState, ph *prefixHash, id string, partSize int64) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for !ph.last {
		n := len(ph.parts) + 1
		if !s.claimPart(st, n, false) {
			return
		}
		ok := func() bool {
			defer s.releasePart(st, n)
			p, err := s.readMarker(id, n)
			if err != nil || p == nil {
				return false
			}
			if f == nil {
				if f, err = s.root.Open(path.Join(uploadsDir, id, asmDataFile)); err != nil {
					f = nil
					return false
				}
			}
			if got, err := copyCtx(context.Background(), ph.h, io.NewSectionReader(f, ph.off, p.Size)); err != nil || got != p.Size {
				ph.reset() // the hash took part of the bytes
				return false
			}
			ph.parts = append(ph.parts, *p)
			ph.off += p.Size
			ph.last = p.Size != partSize
			return true
		}()
		if !ok {
			return
		}
	}
}

// invalidateHash starts the prefix over when it holds part number (whose
// bytes are about to change). The caller holds the part's claim.
func (s *Store) invalidateHash(id string, number int) {
	ph := s.prefixOf(id, false)
	if ph == nil {
		return
	}
	ph.mu.Lock()
	if len(ph.parts) >= number {
		ph.reset()
	}
	ph.mu.Unlock()
}

// hashedPrefix returns a hash of the object's bytes up to off, as far as
// the hashed prefix is made of the parts being completed (a copy of its
// state: a completion that fails leaves the prefix as it was), and a
// function to call when done with it.
func (s *Store) hashedPrefix(id string, parts []blob.Part) (hash.Hash, int64, func()) {
	ph := s.prefixOf(id, false)
	if ph == nil {
		return sha256.New(), 0, func() {}
	}
	ph.mu.Lock()
	if len(ph.parts) > len(parts) {
		return sha256.New(), 0, ph.mu.Unlock
	}
	for i, p := range ph.parts {
		q := parts[i]
		if p.Number != q.Number || p.Size != q.Size || !bytes.Equal(p.SHA256, q.SHA256) {
			return sha256.New(), 0, ph.mu.Unlock
		}
	}
	state, err := ph.h.(encoding.BinaryMarshaler).MarshalBinary()
	h := sha256.New()
	if err != nil || h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state) != nil {
		return sha256.New(), 0, ph.mu.Unlock
	}
	return h, ph.off, ph.mu.Unlock
}

// forgetHash drops upload id's prefix (completed or aborted).
func (s *Store) forgetHash(id string) {
	s.upMu.Lock()
	delete(s.hashes, id)
	s.upMu.Unlock()
}
