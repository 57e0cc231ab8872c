// Package blob defines where object bytes live: the Store interface, its
// errors, and object-key rules. Implementations are server/blob/fsblob
// (files under the data directory, the embedded default) and
// server/blob/s3blob (any S3-compatible store); both pass
// server/blob/blobtest.
//
// Every write is atomic: an object is visible under its key only once it is
// complete. Single writes (Put) stream with bounded memory whatever their
// size; multipart uploads (CreateUpload, PutPart, CompleteUpload) verify
// each part's SHA-256 before it counts.
package blob

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// Errors returned by every Store.
var (
	// ErrNotFound: no object (or upload) under that key.
	ErrNotFound = errors.New("blob: not found")
	// ErrChecksum: the bytes did not hash to the SHA-256 the caller gave.
	ErrChecksum = errors.New("blob: checksum mismatch")
	// ErrInvalidKey: the key is not a clean relative object key.
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrInvalidRange: the requested range lies outside the object.
	ErrInvalidRange = errors.New("blob: invalid range")
	// ErrNoSpace: the backend is out of space (a full filesystem or disk
	// quota, an S3 backend answering that its storage is full). Nothing
	// was stored by the call that returned it; the same call may succeed
	// once space is freed.
	ErrNoSpace = errors.New("blob: storage is full")
	// ErrUnavailable: the store cannot take the call for the moment
	// (unreachable, 5xx, SlowDown); the same call may succeed in a few
	// seconds. See IsUnavailable.
	ErrUnavailable = errors.New("blob: storage unavailable")
)

// IsUnavailable reports whether err is an outage of the object store
// rather than a fault of the call: ErrUnavailable (s3blob marks its
// errors), or an error of the local file system that passes with time
// (out of descriptors, busy, would block, timed out), as fsblob returns
// them unwrapped from the os package.
func IsUnavailable(err error) bool {
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	var oe *net.OpError
	if errors.As(err, &oe) || (!errors.As(err, &pe) && !errors.As(err, &le) && !errors.As(err, &se)) {
		return false // only the file system's own errors, never a socket's (a client's)
	}
	for _, errno := range transientErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// transientErrnos are file-system errors that pass with time.
var transientErrnos = []error{syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN, syscall.EBUSY, syscall.EINTR, syscall.ETIMEDOUT, syscall.ENOLCK}

// Info describes a stored object.
type Info struct {
	Key         string
	Size        int64
	ContentType string
	ModTime     time.Time
	// SHA256 is the whole object's SHA-256 (raw 32 bytes) when the store
	// computed it while writing (Put, and CompleteUpload on the file store);
	// nil when it did not (CompleteUpload on S3).
	SHA256 []byte
}

// Part is one uploaded part of a multipart upload.
type Part struct {
	Number int    // 1..10000
	Size   int64  // bytes
	SHA256 []byte // raw 32-byte digest, as verified when the part was stored
	ETag   string // backend's part identifier (S3 ETag); may be empty
}

// Upload is a multipart upload in progress.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// Store is an object store. Keys are relative slash-separated paths made
// of validated parts (see ValidKey); a Store refuses any other key with
// ErrInvalidKey.
type Store interface {
	// Setup prepares the backend: creates the bucket or directory when
	// missing and, where supported, a lifecycle rule that aborts
	// incomplete multipart uploads. Safe to call at every start.
	Setup(ctx context.Context) error

	// Put stores the bytes of r under key and returns the object's info
	// and the SHA-256 of what was stored. size is the exact length or -1
	// when unknown; a reader that yields a different number of bytes than a
	// known size fails the Put. Memory stays bounded whatever the size. If
	// r fails (for example a limit reader cutting a too-long body), Put
	// returns that error and leaves nothing visible.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Info, []byte, error)

	// Get opens the object for reading from offset; length -1 reads to the
	// end. ErrInvalidRange when offset is beyond the end.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error)
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)

	// CreateUpload starts a multipart upload of key.
	CreateUpload(ctx context.Context, key, contentType string) (uploadID string, err error)
	// PutPart stores part number of an upload. size is exact; sha256 is
	// the raw digest the bytes must have: the part is verified while it
	// streams and refused with ErrChecksum (nothing kept) on mismatch.
	// Putting the same part number again replaces it.
	PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64, sha256 []byte) (Part, error)
	// ListParts lists the parts stored so far, by number, with the
	// backend's own record of each part's size and SHA-256.
	ListParts(ctx context.Context, key, uploadID string) ([]Part, error)
	// CompleteUpload assembles the parts, in order, into the object,
	// atomically. The parts must all have been stored (checked against the
	// backend's record).
	CompleteUpload(ctx context.Context, key, uploadID string, parts []Part) (Info, error)
	// AbortUpload discards an upload and its parts. Aborting an unknown or
	// already finished upload is not an error.
	AbortUpload(ctx context.Context, key, uploadID string) error
	// ListUploads lists multipart uploads under prefix started before
	// the given time (zero: all of them).
	ListUploads(ctx context.Context, prefix string, before time.Time) ([]Upload, error)
}

// SizedUploader is implemented by stores that can place each part of a
// multipart upload at its final offset as it arrives when every part but
// the last has one size (the file store: completing is then one read of
// the object for its SHA-256 and a rename, not a second copy of it).
// Such an upload follows Store's rules, and more: part number n holds the
// bytes at (n-1)*partSize, a part longer than partSize is refused, and
// CompleteUpload takes parts 1..n, all partSize bytes but the last.
type SizedUploader interface {
	CreateUploadSized(ctx context.Context, key, contentType string, partSize int64) (uploadID string, err error)
}

// SpaceReporter is implemented by stores that can tell how much room
// their backend has left (the file store: its filesystem). Readiness
// reports a store whose free space is below a threshold as full.
type SpaceReporter interface {
	Space(ctx context.Context) (Space, error)
}

// Space is the room of a backend, in bytes.
type Space struct {
	Free  int64 // what the server may still write
	Total int64 // the backend's size
}

// Presigner is implemented by stores whose multipart parts can be sent
// straight to the backend by a client holding a presigned request.
type Presigner interface {
	// PresignPart returns a request that stores part number of an upload
	// when sent with exactly size bytes that hash to sha256 (raw digest),
	// valid for ttl. The backend refuses other bytes.
	PresignPart(ctx context.Context, key, uploadID string, number int, size int64, sha256 []byte, ttl time.Duration) (PresignedRequest, error)
}

// PresignedRequest is a request a client sends as is.
type PresignedRequest struct {
	Method  string
	URL     string
	Headers map[string]string // to send exactly (the checksum among them)
	Expires time.Time
}

// MaxKeyLen is the longest key accepted (S3's limit).
const MaxKeyLen = 1024

// ValidKey reports whether key is a clean relative object key: non-empty,
// at most MaxKeyLen bytes, slash-separated segments each non-empty and not
// "." or "..", no leading slash, no backslash, no control characters.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen || key[0] == '/' {
		return false
	}
	seg := 0
	for i := 0; i <= len(key); i++ {
		if i == len(key) || key[i] == '/' {
			s := key[seg:i]
			if s == "" || s == "." || s == ".." {
				return false
			}
			seg = i + 1
			continue
		}
		c := key[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// ContextReader returns a reader of r whose reads fail with ctx's error
// once ctx is done, so a copy into a store stops when its request ends.
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	return ctxReader{ctx, r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
