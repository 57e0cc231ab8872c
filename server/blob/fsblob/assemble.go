package fsblob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/jettythunder/jetty/server/blob"
)

// Assembly of a multipart upload, in place.
//
// The parts are moved into the object one after the other: the object is
// built in uploads/<id>/object, each part is appended (or cloned, on a
// filesystem with reflinks), the object file fsynced, and only then the
// part file removed. At any moment the disk holds each byte about once,
// plus the part being appended: completing needs one part of free space,
// not the whole object's size.
//
// It is crash-safe and re-runnable without a log of its progress:
//
//   - uploads/<id>/assemble.json records the parts being assembled (number,
//     size, SHA-256) before the first is touched; from then on the upload
//     is frozen (PutPart acknowledges a part equal to the recorded one and
//     refuses any other), ListParts reports the recorded parts as held,
//     and CompleteUpload must be called with the same parts.
//   - The parts already moved are exactly the recorded ones, in order,
//     whose files are gone: a part file is removed only after the object
//     holding its bytes was fsynced. Their sizes add up to the object's
//     valid length; anything beyond it (a part half appended when the
//     process died or the disk filled) is truncated away on the next run.
//   - The whole object's SHA-256 is computed in the same pass; a run that
//     resumes first hashes the prefix already assembled.
//   - Publishing is the same as Put's: the content-type sidecar, then the
//     object renamed into objects/<key>, parent directory fsynced. The
//     object is never visible half assembled. The upload is removed last;
//     a run that finds every part moved and no object file under the
//     upload finishes from the published object.
//
// A run interrupted at any point (kill -9, ENOSPC, a cancelled context)
// leaves a state from which CompleteUpload with the same parts finishes
// the job and returns the same object; AbortUpload removes it all.

const (
	asmRecordFile = "assemble.json"
	asmDataFile   = "object"
)

// asmRecord is the list of parts an assembly is made of.
type asmRecord struct {
	Parts []asmPart `json:"parts"`
}

type asmPart struct {
	Number int    `json:"number"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// parts returns the recorded parts (none for a nil record).
func (a *asmRecord) parts() []blob.Part {
	if a == nil {
		return nil
	}
	out := make([]blob.Part, len(a.Parts))
	for i, p := range a.Parts {
		sum, _ := hex.DecodeString(p.SHA256)
		out[i] = blob.Part{Number: p.Number, Size: p.Size, SHA256: sum, ETag: p.SHA256}
	}
	return out
}

// loadAssembly reads the upload's assembly record: nil when no assembly
// has started.
func (s *Store) loadAssembly(id string) (*asmRecord, error) {
	data, err := s.root.ReadFile(path.Join(uploadsDir, id, asmRecordFile))
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	var rec asmRecord
	if err := json.Unmarshal(data, &rec); err != nil || len(rec.Parts) == 0 {
		return nil, fmt.Errorf("fsblob: upload %s: unreadable assembly record %s; abort the upload", id, asmRecordFile)
	}
	return &rec, nil
}

// step calls the test hook.
func (s *Store) step(name string, part int) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(name, part)
}

// CompleteUpload checks the parts against those stored, then moves them,
// in order, into the object (see the comment at the top of assemble.go),
// publishes it and removes the upload. Info.SHA256 is the object's
// SHA-256, computed while assembling.
func (s *Store) CompleteUpload(ctx context.Context, key, uploadID string, parts []blob.Part) (info blob.Info, err error) {
	if _, err := s.loadUpload(key, uploadID); err != nil {
		return blob.Info{}, err
	}
	unlock := stripe(&s.asmLocks, uploadID)
	defer unlock()
	// Completed (or aborted) while this call waited for the lock?
	meta, err := s.loadUpload(key, uploadID)
	if err != nil {
		return blob.Info{}, err
	}
	defer func() { err = noSpace(err) }()
	if meta.PartSize > 0 {
		if err := checkLayout(parts, meta.PartSize); err != nil {
			return blob.Info{}, err
		}
	}
	rec, err := s.startAssembly(ctx, key, uploadID, parts)
	if err != nil {
		return blob.Info{}, err
	}
	if meta.PartSize > 0 {
		return s.completeInPlace(ctx, key, uploadID, meta.ContentType, rec.parts())
	}
	return s.assemble(ctx, key, uploadID, meta.ContentType, rec.parts())
}

// startAssembly returns the upload's assembly record, writing it when no
// assembly has started: then the given parts are checked against the
// stored ones. A started assembly must be resumed with the same parts.
// It holds the upload's part lock, so no PutPart renames a part in
// between.
func (s *Store) startAssembly(ctx context.Context, key, id string, given []blob.Part) (*asmRecord, error) {
	unlock := stripe(&s.partLocks, id)
	defer unlock()
	rec, err := s.loadAssembly(id)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		recorded := rec.parts()
		if err := blob.CheckParts(given, recorded); err != nil || len(given) != len(recorded) {
			if err == nil {
				err = fmt.Errorf("%d parts given, %d being assembled", len(given), len(recorded))
			}
			return nil, fmt.Errorf("fsblob: upload %s is being assembled from other parts (%w); complete it with the same parts, or abort it", id, err)
		}
		s.freeze(id)
		return rec, nil
	}
	stored, err := s.ListParts(ctx, key, id)
	if err != nil {
		return nil, err
	}
	if err := blob.CheckParts(given, stored); err != nil {
		return nil, err
	}
	byNum := make(map[int]blob.Part, len(stored))
	for _, p := range stored {
		byNum[p.Number] = p
	}
	rec = &asmRecord{Parts: make([]asmPart, len(given))}
	for i, g := range given {
		st := byNum[g.Number]
		rec.Parts[i] = asmPart{Number: st.Number, Size: st.Size, SHA256: hex.EncodeToString(st.SHA256)}
	}
	data, _ := json.Marshal(rec)
	f, tmp, err := s.createTemp("asm")
	if err != nil {
		return nil, err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, path.Join(uploadsDir, id, asmRecordFile))
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		if notFound(err) {
			return nil, blob.ErrNotFound
		}
		return nil, fmt.Errorf("fsblob: record assembly: %w", err)
	}
	if err := s.syncDir(path.Join(uploadsDir, id)); err != nil {
		return nil, err
	}
	s.freeze(id) // stops in-place writes in flight (inplace.go)
	return rec, s.step("recorded", 0)
}

// assemble moves the parts not yet moved into the object, publishes it
// and removes the upload.
func (s *Store) assemble(ctx context.Context, key, id, contentType string, parts []blob.Part) (blob.Info, error) {
	dir := path.Join(uploadsDir, id)
	dataName := path.Join(dir, asmDataFile)
	var total int64
	for _, p := range parts {
		total += p.Size
	}
	// The parts already moved: the recorded ones whose files are gone.
	k, off := 0, int64(0)
	for ; k < len(parts); k++ {
		if _, err := s.root.Lstat(partName(id, parts[k].Number)); err == nil {
			break
		} else if !notFound(err) {
			return blob.Info{}, fmt.Errorf("fsblob: %w", err)
		}
		off += parts[k].Size
	}
	for _, p := range parts[k:] {
		if _, err := s.root.Lstat(partName(id, p.Number)); err != nil {
			return blob.Info{}, fmt.Errorf("fsblob: upload %s: part %d is gone while part %d was not assembled yet (%v); abort the upload and send it again", id, p.Number, parts[k].Number, err)
		}
	}
	f, err := s.root.OpenFile(dataName, os.O_RDWR, 0)
	switch {
	case err == nil:
	case !notFound(err):
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	case k == len(parts):
		// Every part moved and the object file gone: it was published.
		return s.finishPublished(ctx, key, id, total)
	case k > 0:
		return blob.Info{}, fmt.Errorf("fsblob: upload %s: the object being assembled is gone though %d parts were moved into it; abort the upload and send it again", id, k)
	default:
		if f, err = s.root.OpenFile(dataName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640); err != nil {
			return blob.Info{}, fmt.Errorf("fsblob: %w", err)
		}
		if err := s.syncDir(dir); err != nil {
			f.Close()
			return blob.Info{}, err
		}
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// Past off: a part that was being appended when the last run stopped.
	if err := cutTo(f, off, func(size int64) error {
		return fmt.Errorf("fsblob: upload %s: the object being assembled has %d bytes, its %d moved parts %d; abort the upload and send it again", id, size, k, off)
	}); err != nil {
		return blob.Info{}, err
	}
	h := sha256.New()
	if off > 0 {
		if n, err := copyCtx(ctx, h, io.NewSectionReader(f, 0, off)); err != nil || n != off {
			return blob.Info{}, fmt.Errorf("fsblob: rehash the assembled prefix: %d of %d bytes: %v", n, off, err)
		}
	}
	for i := k; i < len(parts); i++ {
		if err := ctx.Err(); err != nil {
			return blob.Info{}, err
		}
		err := s.appendPart(ctx, f, h, id, parts[i], off)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			_ = f.Truncate(off) // give back what the part took
			return blob.Info{}, err
		}
		off += parts[i].Size
		if err := s.step("appended", i+1); err != nil {
			return blob.Info{}, err
		}
		if err := s.root.Remove(partName(id, parts[i].Number)); err != nil && !notFound(err) {
			return blob.Info{}, fmt.Errorf("fsblob: %w", err)
		}
		if err := s.step("released", i+1); err != nil {
			return blob.Info{}, err
		}
	}
	if off != total {
		return blob.Info{}, fmt.Errorf("fsblob: upload %s: assembled %d bytes, want %d", id, off, total)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	return s.publishUpload(key, id, dataName, contentType, len(parts), h.Sum(nil))
}

// publishUpload publishes the object of upload id (closed), whose
// SHA-256 is sum, then removes the upload.
func (s *Store) publishUpload(key, id, dataName, contentType string, nparts int, sum []byte) (blob.Info, error) {
	info, err := s.publishAssembled(key, dataName, contentType)
	if err != nil {
		return blob.Info{}, err
	}
	if err := s.step("published", nparts); err != nil {
		return blob.Info{}, err
	}
	s.removeUpload(id)
	info.SHA256 = sum
	return info, nil
}

// cutTo truncates f to n bytes when it is longer; when it is shorter,
// the error is short's.
func cutTo(f *os.File, n int64, short func(size int64) error) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fsblob: %w", err)
	}
	if fi.Size() < n {
		return short(fi.Size())
	}
	if fi.Size() > n {
		if err := f.Truncate(n); err != nil {
			return fmt.Errorf("fsblob: %w", err)
		}
	}
	return nil
}

// appendPart writes part p's bytes at off in f (a reflink clone where the
// filesystem can, a copy otherwise) and adds them to h, after checking
// that the part file still holds the recorded part.
func (s *Store) appendPart(ctx context.Context, f *os.File, h io.Writer, id string, p blob.Part, off int64) error {
	pf, err := s.root.Open(partName(id, p.Number))
	if err != nil {
		return fmt.Errorf("fsblob: part %d: %w", p.Number, err)
	}
	defer pf.Close()
	got, dataOff, err := readPartHeader(pf)
	if err != nil {
		return err
	}
	if got.Size != p.Size || !bytes.Equal(got.SHA256, p.SHA256) {
		return fmt.Errorf("fsblob: part %d changed while completing", p.Number)
	}
	src := io.NewSectionReader(pf, dataOff, p.Size)
	if p.Size > 0 && !s.noClone.Load() {
		switch cloned, unsupported, err := cloneRange(f, pf, dataOff, p.Size, off); {
		case cloned:
			// Shared blocks, nothing written: read them for the hash.
			if n, err := copyCtx(ctx, h, src); err != nil || n != p.Size {
				return fmt.Errorf("fsblob: part %d: hashed %d of %d bytes: %v", p.Number, n, p.Size, err)
			}
			return nil
		case unsupported:
			s.noClone.Store(true)
		case err != nil:
			return fmt.Errorf("fsblob: clone part %d: %w", p.Number, err)
		}
		// Otherwise the range could not be cloned (alignment): copy it.
	}
	n, err := copyCtx(ctx, io.MultiWriter(io.NewOffsetWriter(f, off), h), src)
	if err != nil {
		return fmt.Errorf("fsblob: part %d: %w", p.Number, err)
	}
	if n != p.Size {
		return fmt.Errorf("fsblob: part %d: short read (%d of %d bytes)", p.Number, n, p.Size)
	}
	return nil
}

// publishAssembled renames the sidecar, then the assembled object into
// place, under the key's lock.
func (s *Store) publishAssembled(key, dataName, contentType string) (blob.Info, error) {
	tmpMeta, err := s.writeMetaTemp(contentType)
	if err != nil {
		return blob.Info{}, err
	}
	obj, _ := keyPath(objectsDir, key)
	meta, _ := keyPath(metaDir, key)
	unlock := s.lock(key)
	defer unlock()
	if err := s.renameInto(tmpMeta, meta); err != nil {
		_ = s.root.Remove(tmpMeta)
		return blob.Info{}, err
	}
	if err := s.step("meta", 0); err != nil {
		return blob.Info{}, err
	}
	if err := s.renameInto(dataName, obj); err != nil {
		return blob.Info{}, err
	}
	fi, err := s.root.Stat(obj)
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	return blob.Info{Key: key, Size: fi.Size(), ContentType: contentType, ModTime: fi.ModTime().UTC()}, nil
}

// finishPublished ends an assembly that published its object before it
// could remove the upload: the object is read back for its SHA-256.
func (s *Store) finishPublished(ctx context.Context, key, id string, total int64) (blob.Info, error) {
	rc, info, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return blob.Info{}, fmt.Errorf("fsblob: upload %s: every part was moved but neither the assembled object nor %s exists; abort the upload and send it again", id, key)
		}
		return blob.Info{}, err
	}
	defer rc.Close()
	if info.Size != total {
		return blob.Info{}, fmt.Errorf("fsblob: upload %s: %s has %d bytes, the parts %d", id, key, info.Size, total)
	}
	h := sha256.New()
	if n, err := copyCtx(ctx, h, rc); err != nil || n != total {
		return blob.Info{}, fmt.Errorf("fsblob: rehash %s: %d of %d bytes: %v", key, n, total, err)
	}
	s.removeUpload(id)
	info.SHA256 = h.Sum(nil)
	return info, nil
}
