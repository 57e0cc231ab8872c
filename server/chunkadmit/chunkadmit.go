// Package chunkadmit decides whether a chunk PUT
// (PUT /api/jetty/sessions/{id}/chunks/{index}) is taken. It is written
// once for every receiver of chunks: the origin (server/api) and the
// relays (server/relay).
//
// Before a byte of the body is read, Admit checks, in this order: the
// upload token (present, signed, unexpired, naming the session in the
// path); the session, as the receiver looks it up (the origin in its
// store, with the account; a relay at the origin, cached); the session's
// state (open and unexpired, not completing, completed or aborted); the
// index (0..protocol.MaxChunkIndex); the X-Chunk-SHA256 header
// (protocol.IsHex64); the Content-Length; and the chunk against the
// manifest (index, size, hash), or, for a stream session, against its
// chunk size and reservation (protocol.StreamChunkRefusal). While the
// bytes stream, Body watches them for silence and, when asked, hashes
// them; Failed classifies what went wrong in the receiver's storage step:
// the body went silent, hashed otherwise or ended early, the storage is
// full, the session moved on meanwhile.
//
// Every refusal is a *server.Error, a protocol code and a message for the
// client, answered with the one status protocol.StatusFor gives the code:
// a chunk is refused with the same status and code whichever receiver it
// was sent to. What differs between receivers stays with them: how the
// session is looked up, and where the bytes go (the origin's blob store; a
// relay's S3 parts, or the origin itself).
package chunkadmit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/internal/idleread"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

// StorageFullMessage is what a client is told when the object store
// refused a write for lack of space (507 insufficient_storage), on the
// origin and on relays. Nothing the refused call would have written is
// kept; what earlier calls stored (the chunks of a session) is.
const StorageFullMessage = "the server's storage is full: nothing was stored by this request (chunks already uploaded are kept); try again later, and tell the server's operator if it lasts"

// ErrChecksum ends a Body whose bytes do not hash to the chunk's SHA-256,
// in place of its last bytes: nothing downstream sees the whole body.
var ErrChecksum = errors.New("the chunk's bytes do not hash to its X-Chunk-SHA256")

// Session is what admission reads of an upload session.
type Session struct {
	State     server.SessionState
	ExpiresAt time.Time
	// Chunks is the manifest's chunk list; nil for a stream session,
	// whose chunks are checked against ChunkSize and Reserved.
	Chunks    Chunks
	ChunkSize int64
	// Reserved is what a stream session may hold in all.
	Reserved int64
}

// Chunks is a manifest's chunk list as admission reads it: the origin
// holds parsed manifests (ManifestChunks), a relay the lists of its
// session lookups (InfoChunks).
type Chunks interface {
	Len() int
	At(i int) protocol.ChunkInfo
}

// ManifestChunks reads the chunks of a parsed manifest.
type ManifestChunks []protocol.Chunk

func (c ManifestChunks) Len() int { return len(c) }

func (c ManifestChunks) At(i int) protocol.ChunkInfo {
	return protocol.ChunkInfo{Size: c[i].Size, SHA256: c[i].SHA256}
}

// InfoChunks reads the chunks of a session lookup (protocol.SessionInfo).
type InfoChunks []protocol.ChunkInfo

func (c InfoChunks) Len() int                    { return len(c) }
func (c InfoChunks) At(i int) protocol.ChunkInfo { return c[i] }

// Lookup finds the session a verified token names, as the receiver sees
// it. Its error is answered as it is: a refusal (*server.Error: no such
// session, the account suspended, ...) or the receiver's own failure.
type Lookup func(ctx context.Context, claims uploadtoken.Claims) (Session, error)

// Chunk is an admitted chunk PUT.
type Chunk struct {
	Claims uploadtoken.Claims
	// Token is the upload token as sent (a relay forwards it).
	Token string
	Index int
	// SHA256 is the chunk's hash in lowercase hex, Digest the same bytes.
	SHA256 string
	Digest []byte
	// Size is the request's Content-Length: the chunk's size.
	Size int64
}

// Admit checks a chunk PUT before its body is read (see the package
// comment for what, in which order). tokens verifies upload tokens; now
// is the receiver's clock; lookup finds the session. Its error is a
// refusal (*server.Error), or lookup's own failure.
func Admit(r *http.Request, tokens *uploadtoken.Signer, now time.Time, lookup Lookup) (Chunk, error) {
	claims, tok, err := Token(r, tokens, now)
	if err != nil {
		return Chunk{}, err
	}
	sess, err := lookup(r.Context(), claims)
	if err != nil {
		return Chunk{}, err
	}
	if err := Open(sess, now); err != nil {
		return Chunk{}, err
	}
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || index < 0 || index > protocol.MaxChunkIndex {
		return Chunk{}, server.Errorf(server.EInvalid, "chunk index must be 0..%d", protocol.MaxChunkIndex)
	}
	sum := strings.ToLower(r.Header.Get(protocol.HeaderChunkSHA256))
	if !protocol.IsHex64(sum) {
		return Chunk{}, server.Errorf(server.EInvalid, "%s must be the chunk's SHA-256 in hex", protocol.HeaderChunkSHA256)
	}
	if r.ContentLength < 0 {
		return Chunk{}, server.Errorf(server.ELengthRequired, "Content-Length is required for chunks")
	}
	size := r.ContentLength
	if err := fits(sess, index, size, sum); err != nil {
		return Chunk{}, err
	}
	digest, _ := hex.DecodeString(sum)
	return Chunk{Claims: claims, Token: tok, Index: index, SHA256: sum, Digest: digest, Size: size}, nil
}

// Token reads the upload token of a chunk PUT or a presign call
// (X-Upload-Token, or Authorization: Bearer) and verifies it: signed by
// tokens, unexpired at now, naming the session in the path ({id}). It
// returns the claims and the token; from then on the connection counts as
// authenticated (internal/connguard).
func Token(r *http.Request, tokens *uploadtoken.Signer, now time.Time) (uploadtoken.Claims, string, error) {
	tok := r.Header.Get(protocol.HeaderUploadToken)
	if tok == "" {
		if h := r.Header.Get("Authorization"); len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
			tok = strings.TrimSpace(h[len("Bearer "):])
		}
	}
	if tok == "" {
		return uploadtoken.Claims{}, "", server.Errorf(server.ETokenInvalid, "missing upload token: send Authorization: Bearer <upload_token> from the session")
	}
	c, err := tokens.Verify(tok, now)
	switch {
	case errors.Is(err, uploadtoken.ErrExpired):
		return c, "", server.Errorf(server.ETokenExpired, "upload token expired: get a new one with POST /api/jetty/sessions/{id}/token")
	case err != nil:
		return c, "", server.Errorf(server.ETokenInvalid, "invalid upload token: %v", err)
	case c.SessionID != r.PathValue("id"):
		return c, "", server.Errorf(server.ETokenInvalid, "upload token belongs to another session")
	}
	connguard.Authenticated(r.Context())
	return c, tok, nil
}

// Open refuses a session that takes no chunks at now: aborted (410
// session_gone), completed (409 conflict), expired (410), being completed
// (409: by a concurrent upload of the same content, which shares it).
func Open(s Session, now time.Time) error {
	if err := Live(s.State, s.ExpiresAt, now); err != nil {
		return err
	}
	if s.State != server.SessionOpen {
		return server.Errorf(server.EConflict, "upload session is being completed; no more chunks")
	}
	return nil
}

// Live refuses a session that is over at now: aborted (410 session_gone),
// completed (409 conflict) or expired (410). A session being completed is
// live (its token may be refreshed); Open refuses it chunks.
func Live(state server.SessionState, expiresAt, now time.Time) error {
	switch {
	case state == server.SessionAborted:
		return server.Errorf(server.EGone, "upload session was aborted; start the upload again")
	case state == server.SessionCompleted:
		return server.Errorf(server.EConflict, "upload session is already complete")
	case !now.Before(expiresAt):
		return server.Errorf(server.EGone, "upload session expired at %s; start the upload again", expiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// fits checks chunk index of size bytes, declared to hash to sum, against
// the session's manifest, or a stream session's chunk size and
// reservation.
func fits(s Session, index int, size int64, sum string) error {
	if s.Chunks == nil {
		// Every byte a stream session holds lies inside its reservation.
		if code, msg := protocol.StreamChunkRefusal(index, size, s.ChunkSize, s.Reserved); code != "" {
			return server.Errorf(code, "%s", msg)
		}
		return nil
	}
	if n := s.Chunks.Len(); index >= n {
		return server.Errorf(server.EInvalid, "chunk %d is beyond the manifest's %d chunks", index, n)
	}
	c := s.Chunks.At(index)
	if size != c.Size {
		return server.Errorf(server.EInvalid, "chunk %d is %d bytes in the manifest, the request carries %d", index, c.Size, size)
	}
	if sum != c.SHA256 {
		return server.Errorf(server.EChecksumMismatch, "chunk %d: %s differs from the manifest", index, protocol.HeaderChunkSHA256)
	}
	return nil
}

// Body is an admitted chunk's request body as the storage step reads it:
// exactly the chunk's size; failing when the sender goes silent for the
// idle time (internal/idleread); when verifying, hashed while it streams,
// its end turned into ErrChecksum when the bytes do not hash to the
// chunk's SHA-256 (the last bytes withheld, so nothing downstream sees a
// whole body with the wrong bytes).
type Body struct {
	c        Chunk
	in       io.Reader
	idle     time.Duration
	h        hash.Hash // nil: the storage step verifies the hash itself
	left     int64
	mismatch bool
	short    bool
}

// Body wraps the request's body for the storage step. idle is the
// longest silence allowed (0: idleread.DefaultIdle). verify hashes the
// bytes here; a receiver whose store checks the hash itself (the origin's
// blob stores) leaves it false.
func (c Chunk) Body(w http.ResponseWriter, r *http.Request, idle time.Duration, verify bool) *Body {
	if idle <= 0 {
		idle = idleread.DefaultIdle
	}
	b := &Body{c: c, in: idleread.Body(w, r, idle), idle: idle, left: c.Size}
	if verify {
		b.h = sha256.New()
	}
	return b
}

func (b *Body) Read(p []byte) (int, error) {
	if b.mismatch {
		return 0, ErrChecksum
	}
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.in.Read(p)
	if b.h != nil {
		b.h.Write(p[:n])
	}
	b.left -= int64(n)
	if b.left == 0 {
		if b.h != nil && !bytes.Equal(b.h.Sum(nil), b.c.Digest) {
			b.mismatch = true
			return 0, ErrChecksum // withhold the last bytes too
		}
		return n, io.EOF
	}
	if err == io.EOF {
		b.short = true
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// Discard reads what is left of the body and drops it, unhashed, within
// the body's deadlines; a body that stalled or ended early is left alone.
// A receiver refusing an admitted chunk before reading all of it (the
// storage full: the store refuses before it reads) calls it before
// answering. An answer sent with body bytes unread closes the connection
// under the client's write, which may then see a reset, and retry,
// instead of the refusal. The bytes read are at most the chunk's size,
// which the client was admitted to send.
func (b *Body) Discard() {
	if b.left <= 0 || b.short || idleread.Stalled(b.in) {
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(b.in, b.left))
	b.left -= n
	if err == nil && b.left > 0 {
		b.short = true
	}
}

// Mismatch reports whether the body (verifying) hashed otherwise.
func (b *Body) Mismatch() bool { return b.mismatch }

// Refusal is what the body itself says about a storage step that failed:
// it went silent (408 request_timeout), its bytes do not hash to the
// chunk's SHA-256 (400 checksum_mismatch), it ended early or its request
// was cancelled (400 invalid_request); nil when it says nothing. A relay
// forwarding to the origin asks it when the forward fails: the
// transport's own error says nothing about the client's body.
func (b *Body) Refusal(ctx context.Context) error {
	switch {
	case idleread.Stalled(b.in):
		return b.stalled()
	case b.mismatch:
		return b.checksum()
	case ctx.Err() != nil || b.short:
		return b.endedEarly()
	}
	return nil
}

// Failed is the refusal of a storage step that failed with err while it
// read b, or nil when the failure is the receiver's own (the origin
// answers it 503 or 500, a relay 502). In order: what the body says
// (Refusal); a hash the store refused (blob.ErrChecksum, ErrChecksum:
// 400 checksum_mismatch); a body the store found short
// (io.ErrUnexpectedEOF: 400 invalid_request); the storage full
// (blob.ErrNoSpace: 507 insufficient_storage, still matching
// blob.ErrNoSpace for errors.Is); and, when recheck is given, the session
// as it is now: a concurrent upload of the same content shares the
// session and may have completed or aborted it while this chunk streamed,
// so the store refused the part: the answer is the one a chunk arriving
// after that change gets (Open's), or recheck's own refusal when it is a
// 4xx (no such session, the account suspended).
func (b *Body) Failed(ctx context.Context, err error, now time.Time, recheck Lookup) error {
	if ref := b.Refusal(ctx); ref != nil {
		return ref
	}
	switch {
	case errors.Is(err, blob.ErrChecksum) || errors.Is(err, ErrChecksum):
		return b.checksum()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return b.endedEarly()
	case errors.Is(err, blob.ErrNoSpace):
		// Every route writes to the same storage: not this route's
		// failure, and not worth sending elsewhere.
		return &causeError{err: server.Errorf(server.EInsufficientStorage, "%s", StorageFullMessage), cause: err}
	}
	if recheck != nil {
		s, serr := recheck(context.WithoutCancel(ctx), b.c.Claims)
		if serr == nil {
			return Open(s, now)
		}
		if code := server.ErrorCode(serr); protocol.StatusFor(code) < http.StatusInternalServerError {
			return serr
		}
	}
	return nil
}

func (b *Body) stalled() error {
	return server.Errorf(server.ETimeout, "chunk %d: nothing received for %s; nothing was stored, send it again", b.c.Index, b.idle)
}

func (b *Body) checksum() error {
	return server.Errorf(server.EChecksumMismatch, "chunk %d: the bytes received do not hash to %s; nothing was stored, send it again", b.c.Index, b.c.SHA256)
}

func (b *Body) endedEarly() error {
	return server.Errorf(server.EInvalid, "chunk %d: the body ended early", b.c.Index)
}

// causeError is a refusal with the failure behind it: server.ErrorCode
// and ErrorMessage read the refusal, errors.Is also finds the cause.
type causeError struct {
	err   *server.Error
	cause error
}

func (e *causeError) Error() string   { return e.err.Error() + " (" + e.cause.Error() + ")" }
func (e *causeError) Unwrap() []error { return []error{e.err, e.cause} }
