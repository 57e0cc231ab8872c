// Package fsblob is a blob.Store on the local filesystem, the embedded
// default: everything lives under one root directory.
//
// Layout under the root:
//
//	objects/<key>              the object's bytes, a plain file
//	meta/<key>                 JSON sidecar {"content_type": ...}
//	uploads/<id>/upload.json   multipart upload: key, content type, created
//	uploads/<id>/NNNNN.part    one verified part (see below)
//	uploads/<id>/NNNNN.at      a part held by an upload written in place
//	uploads/<id>/assemble.json the parts being assembled (CompleteUpload)
//	uploads/<id>/object        the object being assembled (or written in place)
//	tmp/                       temporary files; nothing here is ever visible
//
// Atomicity: every file is written under tmp/ (hashing SHA-256 while it
// streams), fsynced, then renamed into place, and the parent directory is
// fsynced. An object is visible only once complete; a failed or cancelled
// write removes its temporary file, and crash leftovers are removed by
// CleanTemp (Setup removes those older than a day). The sidecar is renamed
// into place just before the object, under a per-key lock, so concurrent
// Puts of one key cannot pair one Put's bytes with the other's content type.
//
// Part files start with a 4096-byte header, "JTPART2\n", the part's raw
// SHA-256 (verified equal to the caller's digest while the part streamed)
// and zeros, followed by the part's bytes, which thus start block-aligned
// (parts written before that have a 40-byte "JTPART1\n" header and are
// still read). A part is one file renamed into place in one step, and
// ListParts and CompleteUpload read each part's digest without rereading
// its bytes.
//
// CompleteUpload assembles in place (assemble.go): the parts are moved
// into uploads/<id>/object one by one — cloned where the filesystem has
// reflinks (FICLONERANGE: XFS, btrfs), appended otherwise — and each part
// file is removed once the object holding its bytes is fsynced, so
// completing needs room for one part, not for a second copy of the file.
// It computes the object's SHA-256 in the same pass, is crash-safe and
// re-runnable (ListParts keeps reporting the moved parts), and publishes
// the object like Put. Writes refused for lack of space (ENOSPC, EDQUOT)
// are blob.ErrNoSpace, with nothing left behind; Space reports the
// filesystem's free space for readiness.
//
// Uploads made with CreateUploadSized (the server's sessions, whose
// chunks all have one size but the last) skip all that: each part is
// written at its offset in uploads/<id>/object as it arrives, and
// completing hashes the object (mostly ahead of time) and renames it
// (inplace.go).
//
// Every path is resolved through an os.Root opened on the root directory,
// so neither a key nor a symbolic link planted under the root can reach a
// file outside it; keys are also checked with blob.ValidKey and
// filepath.IsLocal.
//
// Like S3, parts other than the last must be at least blob.MinPartSize. Unlike S3, a
// key cannot be both an object and a prefix of another object's key ("a"
// and "a/b"): such a Put fails.
package fsblob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jettythunder/jetty/server/blob"
)

const (
	objectsDir = "objects"
	metaDir    = "meta"
	uploadsDir = "uploads"
	tmpDir     = "tmp"

	uploadMetaFile = "upload.json"
	partSuffix     = ".part"
	// Part files written before reflink cloning start with partMagic1
	// and a 40-byte header; they are still read. New ones have a header
	// padded to partHeaderLen, so their bytes start block-aligned and
	// can be cloned into the object (FICLONERANGE).
	partMagic1     = "JTPART1\n"
	partHeaderLen1 = len(partMagic1) + sha256.Size
	partMagic      = "JTPART2\n"
	partHeaderLen  = 4096

	defaultContentType = "application/octet-stream"
	setupTempAge       = 24 * time.Hour
)

// Store is a filesystem blob.Store. It is safe for concurrent use within
// one process; two processes must not share a root.
type Store struct {
	dir   string
	root  *os.Root
	locks [64]sync.Mutex // per object key: publish, Delete
	// asmLocks serialise CompleteUpload and AbortUpload of one upload;
	// partLocks make PutPart's rename and the start of an assembly
	// exclusive (see assemble.go). Lock order: asm, part, key.
	asmLocks  [64]sync.Mutex
	partLocks [64]sync.Mutex
	// ups holds the in-place uploads with part writes in flight
	// (inplace.go), under upMu; upCond signals a part released.
	upMu   sync.Mutex
	upCond *sync.Cond
	ups    map[string]*upState
	hashes map[string]*prefixHash // the hashed prefix of in-place uploads
	// noClone is set once the filesystem refused a reflink clone.
	noClone atomic.Bool
	// hook, when set (tests), is called at each step of an assembly;
	// an error stops the assembly there, as a crash would.
	hook func(step string, part int) error
}

var _ blob.Store = (*Store)(nil)

// New opens (creating it and its subdirectories when missing) a store
// rooted at dir.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	s := &Store{dir: dir, root: r}
	s.upCond = sync.NewCond(&s.upMu)
	s.ups = map[string]*upState{}
	s.hashes = map[string]*prefixHash{}
	if err := s.mkdirs(); err != nil {
		r.Close()
		return nil, err
	}
	return s, nil
}

// Dir returns the root directory.
func (s *Store) Dir() string { return s.dir }

// Close releases the root directory handle.
func (s *Store) Close() error { return s.root.Close() }

func (s *Store) mkdirs() error {
	for _, d := range []string{objectsDir, metaDir, uploadsDir, tmpDir} {
		if err := s.root.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("fsblob: %w", err)
		}
	}
	return nil
}

// Setup creates the directories when missing and removes temporary files
// older than a day (leftovers of a crash).
func (s *Store) Setup(ctx context.Context) error {
	if err := s.mkdirs(); err != nil {
		return err
	}
	_, err := s.CleanTemp(time.Now().Add(-setupTempAge))
	return err
}

// CleanTemp removes temporary files and directories last modified before
// olderThan and returns how many it removed. A write in progress keeps
// touching its file, so only stalled or abandoned ones are old.
func (s *Store) CleanTemp(olderThan time.Time) (int, error) {
	ents, err := fs.ReadDir(s.root.FS(), tmpDir)
	if err != nil {
		return 0, fmt.Errorf("fsblob: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if !fi.ModTime().Before(olderThan) {
			continue
		}
		if err := s.root.RemoveAll(path.Join(tmpDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// objPath maps a key to its path under the root.
func keyPath(base, key string) (string, error) {
	if !blob.ValidKey(key) {
		return "", blob.ErrInvalidKey
	}
	p := filepath.FromSlash(key)
	if !filepath.IsLocal(p) {
		return "", blob.ErrInvalidKey
	}
	return filepath.Join(base, p), nil
}

func (s *Store) lock(key string) func() { return stripe(&s.locks, key) }

// stripe locks the mutex of locks that name hashes to.
func stripe(locks *[64]sync.Mutex, name string) func() {
	h := fnv.New32a()
	h.Write([]byte(name))
	m := &locks[h.Sum32()%uint32(len(locks))]
	m.Lock()
	return m.Unlock
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// createTemp creates a new file under tmp/.
func (s *Store) createTemp(kind string) (*os.File, string, error) {
	name := path.Join(tmpDir, kind+"-"+randomHex(12))
	f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, "", fmt.Errorf("fsblob: %w", err)
	}
	return f, name, nil
}

// syncDir fsyncs a directory so that a rename into it is durable.
func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("fsblob: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("fsblob: sync %s: %w", dir, err)
	}
	return nil
}

// renameInto moves the temporary file tmp to dst, creating dst's parent
// directories, and fsyncs the parent. A concurrent Delete may prune an
// empty parent between MkdirAll and Rename; that is retried.
func (s *Store) renameInto(tmp, dst string) error {
	parent := filepath.Dir(dst)
	var err error
	for range 5 {
		if err = s.root.MkdirAll(parent, 0o750); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("fsblob: %s: a prefix of the key is an object: %w", dst, err)
			}
			return fmt.Errorf("fsblob: %w", err)
		}
		err = s.root.Rename(tmp, dst)
		if err == nil {
			return s.syncDir(parent)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if fi, serr := s.root.Lstat(dst); serr == nil && fi.IsDir() {
		return fmt.Errorf("fsblob: %s is a prefix of other objects: %w", dst, err)
	}
	return fmt.Errorf("fsblob: %w", err)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyCtx copies src to dst with a pooled buffer, stopping when ctx ends.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// Hide ReadFrom/WriteTo so the buffer (and ctx checks) are used.
	return io.CopyBuffer(struct{ io.Writer }{dst}, blob.ContextReader(ctx, src), *bp)
}

type objectMeta struct {
	ContentType string `json:"content_type"`
}

// writeMetaTemp writes a sidecar to a temporary file and returns its name.
func (s *Store) writeMetaTemp(contentType string) (string, error) {
	f, name, err := s.createTemp("meta")
	if err != nil {
		return "", err
	}
	data, _ := json.Marshal(objectMeta{ContentType: contentType})
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = s.root.Remove(name)
		return "", fmt.Errorf("fsblob: %w", err)
	}
	return name, nil
}

// publish renames the sidecar then the object into place, under the key's
// lock, and returns the object's info.
func (s *Store) publish(key, tmpObj, tmpMeta, contentType string) (blob.Info, error) {
	obj, _ := keyPath(objectsDir, key)
	meta, _ := keyPath(metaDir, key)
	unlock := s.lock(key)
	defer unlock()
	if err := s.renameInto(tmpMeta, meta); err != nil {
		return blob.Info{}, err
	}
	if err := s.renameInto(tmpObj, obj); err != nil {
		return blob.Info{}, err
	}
	fi, err := s.root.Stat(obj)
	if err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	return blob.Info{Key: key, Size: fi.Size(), ContentType: contentType, ModTime: fi.ModTime().UTC()}, nil
}

func normContentType(ct string) string {
	if ct == "" {
		return defaultContentType
	}
	return ct
}

// Put streams r into a temporary file while hashing it, then publishes it.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (info blob.Info, sum []byte, err error) {
	if !blob.ValidKey(key) {
		return blob.Info{}, nil, blob.ErrInvalidKey
	}
	defer func() { err = noSpace(err) }()
	if size < -1 {
		return blob.Info{}, nil, fmt.Errorf("fsblob: invalid size %d", size)
	}
	contentType = normContentType(contentType)
	f, tmp, err := s.createTemp("put")
	if err != nil {
		return blob.Info{}, nil, err
	}
	tmpMeta := ""
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			_ = s.root.Remove(tmp)
			if tmpMeta != "" {
				_ = s.root.Remove(tmpMeta)
			}
		}
	}()
	h := sha256.New()
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size+1)
	}
	n, err := copyCtx(ctx, io.MultiWriter(f, h), src)
	if err != nil {
		return blob.Info{}, nil, err
	}
	if size >= 0 && n != size {
		if n > size {
			return blob.Info{}, nil, fmt.Errorf("fsblob: body is longer than its size %d", size)
		}
		return blob.Info{}, nil, fmt.Errorf("fsblob: body is %d bytes, expected %d: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err = f.Sync(); err != nil {
		return blob.Info{}, nil, fmt.Errorf("fsblob: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return blob.Info{}, nil, fmt.Errorf("fsblob: %w", err)
	}
	if tmpMeta, err = s.writeMetaTemp(contentType); err != nil {
		return blob.Info{}, nil, err
	}
	if err = ctx.Err(); err != nil {
		return blob.Info{}, nil, err
	}
	info, err = s.publish(key, tmp, tmpMeta, contentType)
	if err != nil {
		return blob.Info{}, nil, err
	}
	info.SHA256 = h.Sum(nil)
	return info, info.SHA256, nil
}

func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func (s *Store) contentType(key string) string {
	meta, _ := keyPath(metaDir, key)
	data, err := s.root.ReadFile(meta)
	if err != nil {
		return defaultContentType
	}
	var m objectMeta
	if json.Unmarshal(data, &m) != nil || m.ContentType == "" {
		return defaultContentType
	}
	return m.ContentType
}

// Stat returns the object's info.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	obj, err := keyPath(objectsDir, key)
	if err != nil {
		return blob.Info{}, err
	}
	fi, err := s.root.Stat(obj)
	if err != nil {
		if notFound(err) {
			return blob.Info{}, blob.ErrNotFound
		}
		return blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return blob.Info{}, blob.ErrNotFound
	}
	return blob.Info{Key: key, Size: fi.Size(), ContentType: s.contentType(key), ModTime: fi.ModTime().UTC()}, nil
}

type sectionReadCloser struct {
	*io.SectionReader
	f *os.File
}

func (r sectionReadCloser) Close() error { return r.f.Close() }

// Get opens the object from offset for length bytes (-1: to the end).
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, blob.Info, error) {
	obj, err := keyPath(objectsDir, key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	if offset < 0 || length < -1 {
		return nil, blob.Info{}, blob.ErrInvalidRange
	}
	f, err := s.root.Open(obj)
	if err != nil {
		if notFound(err) {
			return nil, blob.Info{}, blob.ErrNotFound
		}
		return nil, blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, blob.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, blob.Info{}, blob.ErrNotFound
	}
	size := fi.Size()
	if offset > size {
		f.Close()
		return nil, blob.Info{}, blob.ErrInvalidRange
	}
	n := size - offset
	if length >= 0 && length < n {
		n = length
	}
	info := blob.Info{Key: key, Size: size, ContentType: s.contentType(key), ModTime: fi.ModTime().UTC()}
	return sectionReadCloser{io.NewSectionReader(f, offset, n), f}, info, nil
}

// Delete removes the object and its sidecar, then prunes empty parent
// directories. A missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	obj, err := keyPath(objectsDir, key)
	if err != nil {
		return err
	}
	meta, _ := keyPath(metaDir, key)
	unlock := s.lock(key)
	defer unlock()
	if fi, err := s.root.Lstat(obj); err == nil && fi.IsDir() {
		return nil // a prefix, not an object
	}
	if err := s.root.Remove(obj); err != nil && !notFound(err) {
		return fmt.Errorf("fsblob: %w", err)
	}
	if err := s.root.Remove(meta); err != nil && !notFound(err) {
		return fmt.Errorf("fsblob: %w", err)
	}
	s.prune(objectsDir, filepath.Dir(obj))
	s.prune(metaDir, filepath.Dir(meta))
	return nil
}

// prune removes empty directories from dir up to (not including) base.
func (s *Store) prune(base, dir string) {
	for dir != base && dir != "." && strings.HasPrefix(dir, base+string(filepath.Separator)) {
		if s.root.Remove(dir) != nil {
			return // not empty (or gone)
		}
		dir = filepath.Dir(dir)
	}
}

// List walks objects/ under prefix and returns the objects sorted by key.
// Like S3's listing, it leaves ContentType empty (use Stat).
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	start := objectsDir
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir := prefix[:i]
		if !blob.ValidKey(dir) {
			return nil, nil // no valid key can start with it
		}
		start = path.Join(objectsDir, dir)
	}
	var out []blob.Info
	err := fs.WalkDir(s.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && notFound(err) {
				return fs.SkipAll
			}
			if notFound(err) {
				return nil // removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		key := strings.TrimPrefix(p, objectsDir+"/")
		if d.IsDir() {
			// Skip directories that cannot hold keys with the prefix.
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fsblob: list: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// --- multipart uploads ---

type uploadMeta struct {
	Key         string    `json:"key"`
	ContentType string    `json:"content_type"`
	Created     time.Time `json:"created"`
	// PartSize is set on uploads made with CreateUploadSized: their parts
	// are written in place (inplace.go).
	PartSize int64 `json:"part_size,omitempty"`
}

func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// CreateUpload creates uploads/<id>/ with its upload.json, built under
// tmp/ and renamed into place whole.
func (s *Store) CreateUpload(ctx context.Context, key, contentType string) (_ string, err error) {
	return s.createUpload(ctx, key, contentType, 0)
}

func (s *Store) createUpload(ctx context.Context, key, contentType string, partSize int64) (_ string, err error) {
	if !blob.ValidKey(key) {
		return "", blob.ErrInvalidKey
	}
	defer func() { err = noSpace(err) }()
	id := randomHex(16)
	tmp := path.Join(tmpDir, "up-"+id)
	if err := s.root.Mkdir(tmp, 0o750); err != nil {
		return "", fmt.Errorf("fsblob: %w", err)
	}
	data, _ := json.Marshal(uploadMeta{Key: key, ContentType: normContentType(contentType), Created: time.Now().UTC(), PartSize: partSize})
	err = func() error {
		if partSize > 0 {
			// The object the parts are written into, in place.
			f, err := s.root.OpenFile(path.Join(tmp, asmDataFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
			if err != nil {
				return err
			}
			f.Close()
		}
		f, err := s.root.OpenFile(path.Join(tmp, uploadMetaFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := s.root.Rename(tmp, path.Join(uploadsDir, id)); err != nil {
			return err
		}
		return s.syncDir(uploadsDir)
	}()
	if err != nil {
		_ = s.root.RemoveAll(tmp)
		return "", fmt.Errorf("fsblob: create upload: %w", err)
	}
	return id, nil
}

// loadUpload reads an upload's record; ErrNotFound when it does not exist
// or belongs to another key.
func (s *Store) loadUpload(key, id string) (uploadMeta, error) {
	if !blob.ValidKey(key) {
		return uploadMeta{}, blob.ErrInvalidKey
	}
	if !validUploadID(id) {
		return uploadMeta{}, blob.ErrNotFound
	}
	data, err := s.root.ReadFile(path.Join(uploadsDir, id, uploadMetaFile))
	if err != nil {
		if notFound(err) {
			return uploadMeta{}, blob.ErrNotFound
		}
		return uploadMeta{}, fmt.Errorf("fsblob: %w", err)
	}
	var m uploadMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return uploadMeta{}, fmt.Errorf("fsblob: upload %s: %w", id, err)
	}
	if m.Key != key {
		return uploadMeta{}, blob.ErrNotFound
	}
	return m, nil
}

func partName(id string, number int) string {
	return path.Join(uploadsDir, id, fmt.Sprintf("%05d%s", number, partSuffix))
}

// PutPart writes the header and the part's bytes to a temporary file,
// verifying the SHA-256 as they stream, and renames it into the upload's
// directory only when the digest matches. Once an assembly has started
// (see assemble.go) the parts are frozen: a part equal to the one being
// assembled is acknowledged without being stored again, any other is
// refused.
func (s *Store) PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64, sum []byte) (p blob.Part, err error) {
	meta, err := s.loadUpload(key, uploadID)
	if err != nil {
		return blob.Part{}, err
	}
	if number < 1 || number > blob.MaxParts {
		return blob.Part{}, fmt.Errorf("fsblob: part number %d outside 1..%d", number, blob.MaxParts)
	}
	if len(sum) != sha256.Size {
		return blob.Part{}, fmt.Errorf("fsblob: part digest must be %d bytes, got %d", sha256.Size, len(sum))
	}
	if size < 0 {
		return blob.Part{}, fmt.Errorf("fsblob: part size must be known, got %d", size)
	}
	defer func() { err = noSpace(err) }()
	if meta.PartSize > 0 {
		return s.putPartInPlace(ctx, uploadID, meta.PartSize, number, r, size, sum)
	}
	f, tmp, err := s.createTemp("part")
	if err != nil {
		return blob.Part{}, err
	}
	renamed := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if !renamed {
			_ = s.root.Remove(tmp)
		}
	}()
	hdr := make([]byte, partHeaderLen)
	copy(hdr, partMagic)
	copy(hdr[len(partMagic):], sum)
	if _, err = f.Write(hdr); err != nil {
		return blob.Part{}, fmt.Errorf("fsblob: %w", err)
	}
	h := sha256.New()
	n, err := copyCtx(ctx, io.MultiWriter(f, h), io.LimitReader(r, size))
	if err != nil {
		return blob.Part{}, err
	}
	if n != size {
		return blob.Part{}, fmt.Errorf("fsblob: part %d is %d bytes, expected %d: %w", number, n, size, io.ErrUnexpectedEOF)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return blob.Part{}, blob.ErrChecksum
	}
	if err = f.Sync(); err != nil {
		return blob.Part{}, fmt.Errorf("fsblob: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return blob.Part{}, fmt.Errorf("fsblob: %w", err)
	}
	done := blob.Part{Number: number, Size: size, SHA256: bytes.Clone(sum), ETag: hex.EncodeToString(sum)}
	dst := partName(uploadID, number)
	unlock := stripe(&s.partLocks, uploadID)
	plan, err := s.loadAssembly(uploadID)
	if err == nil && plan != nil {
		unlock()
		// Being assembled: the parts are frozen.
		for _, ap := range plan.parts() {
			if ap.Number == number && ap.Size == size && bytes.Equal(ap.SHA256, sum) {
				return done, nil // held already (perhaps consumed)
			}
		}
		return blob.Part{}, fmt.Errorf("fsblob: upload %s is being completed; part %d can no longer change: %w", uploadID, number, blob.ErrNotFound)
	}
	if err == nil {
		err = s.root.Rename(tmp, dst)
	}
	unlock()
	if err != nil {
		if notFound(err) {
			return blob.Part{}, blob.ErrNotFound // aborted or completed meanwhile
		}
		return blob.Part{}, fmt.Errorf("fsblob: %w", err)
	}
	renamed = true
	if err = s.syncDir(path.Dir(dst)); err != nil {
		return blob.Part{}, err
	}
	return done, nil
}

// readPartHeader reads a part file's header from f and returns the part
// (without its number) and where its bytes start.
func readPartHeader(f *os.File) (blob.Part, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return blob.Part{}, 0, err
	}
	hdr := make([]byte, partHeaderLen1)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return blob.Part{}, 0, fmt.Errorf("fsblob: %s: bad part header", f.Name())
	}
	var off int64
	switch string(hdr[:len(partMagic)]) {
	case partMagic:
		off = partHeaderLen
	case partMagic1:
		off = int64(partHeaderLen1)
	default:
		return blob.Part{}, 0, fmt.Errorf("fsblob: %s: bad part header", f.Name())
	}
	if fi.Size() < off {
		return blob.Part{}, 0, fmt.Errorf("fsblob: %s: truncated part header", f.Name())
	}
	sum := hdr[len(partMagic):partHeaderLen1]
	return blob.Part{Size: fi.Size() - off, SHA256: sum, ETag: hex.EncodeToString(sum)}, off, nil
}

// ListParts reads each part's header (not its bytes). The parts of an
// upload being assembled are listed from the assembly's record, those
// already moved into the object included, so an interrupted completion
// shows every part still held.
func (s *Store) ListParts(ctx context.Context, key, uploadID string) ([]blob.Part, error) {
	if _, err := s.loadUpload(key, uploadID); err != nil {
		return nil, err
	}
	// The directory is read before the assembly record: a part consumed
	// after the listing was taken is in the record, which exists before
	// any part is consumed.
	ents, err := fs.ReadDir(s.root.FS(), path.Join(uploadsDir, uploadID))
	if err != nil {
		if notFound(err) {
			return nil, blob.ErrNotFound
		}
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	byNum := map[int]blob.Part{}
	for _, e := range ents {
		if num, ok := markerNumber(e.Name()); ok && e.Type().IsRegular() {
			p, err := s.readMarker(uploadID, num)
			if err != nil {
				return nil, err
			}
			if p != nil {
				byNum[num] = *p
			}
			continue
		}
		numStr, ok := strings.CutSuffix(e.Name(), partSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		num, err := strconv.Atoi(numStr)
		if err != nil {
			continue
		}
		f, err := s.root.Open(path.Join(uploadsDir, uploadID, e.Name()))
		if err != nil {
			if notFound(err) {
				continue
			}
			return nil, fmt.Errorf("fsblob: %w", err)
		}
		p, _, err := readPartHeader(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		p.Number = num
		byNum[num] = p
	}
	plan, err := s.loadAssembly(uploadID)
	if err != nil {
		return nil, err
	}
	if plan == nil {
		// Completed (the directory moved away) while it was read?
		if _, err := s.root.Stat(path.Join(uploadsDir, uploadID, uploadMetaFile)); notFound(err) {
			return nil, blob.ErrNotFound
		}
	}
	for _, p := range plan.parts() {
		byNum[p.Number] = p
	}
	parts := make([]blob.Part, 0, len(byNum))
	for _, p := range byNum {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

// removeUpload moves the upload's directory under tmp/ (so no PutPart can
// land in it any more) and deletes it. Leftovers are CleanTemp's job.
func (s *Store) removeUpload(id string) {
	gone := path.Join(tmpDir, "gone-"+id+"-"+randomHex(4))
	err := s.root.Rename(path.Join(uploadsDir, id), gone)
	s.forgetHash(id)
	if err != nil {
		return
	}
	_ = s.root.RemoveAll(gone)
}

// AbortUpload discards the upload; an unknown upload is not an error. It
// waits for an assembly of the upload in progress in this process.
func (s *Store) AbortUpload(ctx context.Context, key, uploadID string) error {
	if _, err := s.loadUpload(key, uploadID); err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil
		}
		return err
	}
	unlock := stripe(&s.asmLocks, uploadID)
	defer unlock()
	s.removeUpload(uploadID)
	return nil
}

// ListUploads returns uploads whose key starts with prefix, started before
// before (zero: all), sorted by key then start time.
func (s *Store) ListUploads(ctx context.Context, prefix string, before time.Time) ([]blob.Upload, error) {
	ents, err := fs.ReadDir(s.root.FS(), uploadsDir)
	if err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	var out []blob.Upload
	for _, e := range ents {
		if !e.IsDir() || !validUploadID(e.Name()) {
			continue
		}
		data, err := s.root.ReadFile(path.Join(uploadsDir, e.Name(), uploadMetaFile))
		if err != nil {
			continue // removed meanwhile
		}
		var m uploadMeta
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		if !strings.HasPrefix(m.Key, prefix) || (!before.IsZero() && !m.Created.Before(before)) {
			continue
		}
		out = append(out, blob.Upload{Key: m.Key, UploadID: e.Name(), Initiated: m.Created})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		if !out[i].Initiated.Equal(out[j].Initiated) {
			return out[i].Initiated.Before(out[j].Initiated)
		}
		return out[i].UploadID < out[j].UploadID
	})
	return out, nil
}
