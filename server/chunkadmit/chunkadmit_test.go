package chunkadmit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

const sessionID = "ses_aaaaaaaaaaaaaaaaaaaaaaaaaa"

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// request is a chunk PUT as the mux hands it over: path values set.
func request(id, index, token, hash string, body []byte, size int64) *http.Request {
	r := httptest.NewRequest(http.MethodPut, "/api/jetty/sessions/"+id+"/chunks/"+index, bytes.NewReader(body))
	r.SetPathValue("id", id)
	r.SetPathValue("index", index)
	r.ContentLength = size
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if hash != "" {
		r.Header.Set(protocol.HeaderChunkSHA256, hash)
	}
	return r
}

// TestAdmit: every refusal Admit makes, with its code and the status the
// one map gives it, and the order in which they are checked (a request
// with two faults gets the first one's answer).
func TestAdmit(t *testing.T) {
	now := time.Now()
	signer, _ := uploadtoken.NewSigner([]byte("chunkadmit test token secret, 32+ bytes"))
	other, _ := uploadtoken.NewSigner([]byte("another token secret of 32+ bytes!!"))
	claims := uploadtoken.Claims{SessionID: sessionID, AccountID: "acc_1", MaxWorkers: 4, Expires: now.Add(time.Hour).Unix()}
	good := signer.Sign(claims)
	expired := signer.Sign(uploadtoken.Claims{SessionID: sessionID, AccountID: "acc_1", Expires: now.Add(-time.Minute).Unix()})
	foreign := signer.Sign(uploadtoken.Claims{SessionID: "ses_bbbbbbbbbbbbbbbbbbbbbbbbbb", AccountID: "acc_1", Expires: now.Add(time.Hour).Unix()})
	forged := other.Sign(claims)

	c0, c1 := bytes.Repeat([]byte("a"), 100), []byte("the last chunk")
	manifest := Session{State: server.SessionOpen, ExpiresAt: now.Add(time.Hour), ChunkSize: 100,
		Chunks: InfoChunks{{Size: 100, SHA256: sum(c0)}, {Size: int64(len(c1)), SHA256: sum(c1)}}}
	stream := Session{State: server.SessionOpen, ExpiresAt: now.Add(time.Hour), ChunkSize: 100, Reserved: 250}
	with := func(s Session, state server.SessionState, expires time.Time) Session {
		s.State, s.ExpiresAt = state, expires
		return s
	}
	suspended := server.Errorf(server.EAccountSuspended, "account suspended")

	for _, tc := range []struct {
		name    string
		sess    Session
		lookErr error
		req     *http.Request
		code    string // "" for admitted
	}{
		{"good", manifest, nil, request(sessionID, "0", good, sum(c0), c0, 100), ""},
		{"good, hash in capitals", manifest, nil, request(sessionID, "1", good, strings.ToUpper(sum(c1)), c1, int64(len(c1))), ""},
		{"stream chunk inside the reservation", stream, nil, request(sessionID, "1", good, sum(c0), c0, 100), ""},
		{"no token", manifest, nil, request(sessionID, "0", "", sum(c0), c0, 100), protocol.CodeTokenInvalid},
		{"forged token", manifest, nil, request(sessionID, "0", forged, sum(c0), c0, 100), protocol.CodeTokenInvalid},
		{"garbage token", manifest, nil, request(sessionID, "0", "abc", sum(c0), c0, 100), protocol.CodeTokenInvalid},
		{"expired token", manifest, nil, request(sessionID, "0", expired, sum(c0), c0, 100), protocol.CodeTokenExpired},
		{"token of another session", manifest, nil, request(sessionID, "0", foreign, sum(c0), c0, 100), protocol.CodeTokenInvalid},
		{"account suspended (the lookup's refusal)", manifest, suspended, request(sessionID, "0", good, sum(c0), c0, 100), protocol.CodeAccountSuspended},
		{"session aborted", with(manifest, server.SessionAborted, now.Add(time.Hour)), nil, request(sessionID, "0", good, sum(c0), c0, 100), protocol.CodeSessionGone},
		{"session completed", with(manifest, server.SessionCompleted, now.Add(time.Hour)), nil, request(sessionID, "0", good, sum(c0), c0, 100), protocol.CodeConflict},
		{"session completed and expired", with(manifest, server.SessionCompleted, now.Add(-time.Hour)), nil, request(sessionID, "0", good, sum(c0), c0, 100), protocol.CodeConflict},
		{"session expired", with(manifest, server.SessionOpen, now), nil, request(sessionID, "0", good, sum(c0), c0, 100), protocol.CodeSessionGone},
		{"session completing", with(manifest, server.SessionCompleting, now.Add(time.Hour)), nil, request(sessionID, "0", good, sum(c0), c0, 100), protocol.CodeConflict},
		{"bad index on a completed session: the state first", with(manifest, server.SessionCompleted, now.Add(time.Hour)), nil, request(sessionID, "x", good, sum(c0), c0, 100), protocol.CodeConflict},
		{"index not a number", manifest, nil, request(sessionID, "x", good, sum(c0), c0, 100), protocol.CodeInvalid},
		{"negative index", manifest, nil, request(sessionID, "-1", good, sum(c0), c0, 100), protocol.CodeInvalid},
		{"index past the protocol's", stream, nil, request(sessionID, fmt.Sprint(protocol.MaxChunkIndex+1), good, sum(c0), c0, 100), protocol.CodeInvalid},
		{"index beyond the manifest", manifest, nil, request(sessionID, "2", good, sum(c0), c0, 100), protocol.CodeInvalid},
		{"no hash header", manifest, nil, request(sessionID, "0", good, "", c0, 100), protocol.CodeInvalid},
		{"short hash header", manifest, nil, request(sessionID, "0", good, "abc", c0, 100), protocol.CodeInvalid},
		{"hash header not hex", manifest, nil, request(sessionID, "0", good, strings.Repeat("z", 64), c0, 100), protocol.CodeInvalid},
		{"no Content-Length", manifest, nil, request(sessionID, "0", good, sum(c0), c0, -1), protocol.CodeLengthRequired},
		{"size not the manifest's", manifest, nil, request(sessionID, "0", good, sum(c0), c0[:99], 99), protocol.CodeInvalid},
		{"chunk larger than the manifest's", manifest, nil, request(sessionID, "1", good, sum(c1), c0, 100), protocol.CodeInvalid},
		{"hash not the manifest's", manifest, nil, request(sessionID, "0", good, sum(c1), c0, 100), protocol.CodeChecksumMismatch},
		{"stream chunk larger than the chunk size", stream, nil, request(sessionID, "0", good, sum(c0), c0, 101), protocol.CodeInvalid},
		{"empty stream chunk", stream, nil, request(sessionID, "0", good, sum(nil), nil, 0), protocol.CodeInvalid},
		{"stream chunk past the reservation", stream, nil, request(sessionID, "2", good, sum(c0), c0, 100), protocol.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			looked := false
			c, err := Admit(tc.req, signer, now, func(ctx context.Context, cl uploadtoken.Claims) (Session, error) {
				looked = true
				if cl.SessionID != sessionID {
					t.Errorf("looked up %s", cl.SessionID)
				}
				return tc.sess, tc.lookErr
			})
			if got := server.ErrorCode(err); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
			if tc.code == "" {
				if c.Token != good || c.Claims != claims || c.SHA256 != strings.ToLower(tc.req.Header.Get(protocol.HeaderChunkSHA256)) ||
					hex.EncodeToString(c.Digest) != c.SHA256 || c.Size != tc.req.ContentLength {
					t.Errorf("admitted %+v", c)
				}
				return
			}
			var se *server.Error
			if !errors.As(err, &se) || se.Message == "" {
				t.Errorf("refusal %v is not a *server.Error with a message", err)
			}
			if strings.HasPrefix(tc.code, "token_") && looked {
				t.Error("a session was looked up for a refused token")
			}
		})
	}
}

// TestTokenHeader: X-Upload-Token is read as well as a Bearer token.
func TestTokenHeader(t *testing.T) {
	signer, _ := uploadtoken.NewSigner([]byte("chunkadmit test token secret, 32+ bytes"))
	tok := signer.Sign(uploadtoken.Claims{SessionID: sessionID, AccountID: "acc_1", Expires: time.Now().Add(time.Hour).Unix()})
	r := request(sessionID, "0", "", "", nil, 0)
	r.Header.Set(protocol.HeaderUploadToken, tok)
	if c, got, err := Token(r, signer, time.Now()); err != nil || got != tok || c.AccountID != "acc_1" {
		t.Fatalf("X-Upload-Token: %+v %q %v", c, got, err)
	}
	r = request(sessionID, "0", "", "", nil, 0)
	r.Header.Set("Authorization", "bearer   "+tok)
	if _, got, err := Token(r, signer, time.Now()); err != nil || got != tok {
		t.Fatalf("lower-case bearer: %q %v", got, err)
	}
}

func admitted(t *testing.T, data []byte) (Chunk, *http.Request) {
	t.Helper()
	r := request(sessionID, "3", "", sum(data), data, int64(len(data)))
	d, _ := hex.DecodeString(sum(data))
	return Chunk{Index: 3, SHA256: sum(data), Digest: d, Size: int64(len(data))}, r
}

// TestBodyVerifies: a verifying body that hashes otherwise ends in
// ErrChecksum in place of its last bytes; a right one reads whole.
func TestBodyVerifies(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 5000)
	c, r := admitted(t, data)
	b := c.Body(httptest.NewRecorder(), r, 0, true)
	if got, err := io.ReadAll(b); err != nil || !bytes.Equal(got, data) || b.Mismatch() {
		t.Fatalf("right bytes: %d read, %v, mismatch %v", len(got), err, b.Mismatch())
	}
	wrong := bytes.Clone(data)
	wrong[len(wrong)-1] ^= 1
	r = request(sessionID, "3", "", c.SHA256, wrong, int64(len(wrong)))
	b = c.Body(httptest.NewRecorder(), r, 0, true)
	got, err := io.ReadAll(b)
	if !errors.Is(err, ErrChecksum) || !b.Mismatch() || len(got) >= len(data) {
		t.Fatalf("wrong bytes: %d of %d read, %v, mismatch %v", len(got), len(data), err, b.Mismatch())
	}
	if ref := b.Refusal(context.Background()); server.ErrorCode(ref) != server.EChecksumMismatch {
		t.Errorf("refusal %v", ref)
	}
	// Not verifying (the store checks): the bytes pass as they are.
	r = request(sessionID, "3", "", c.SHA256, wrong, int64(len(wrong)))
	b = c.Body(httptest.NewRecorder(), r, 0, false)
	if got, err := io.ReadAll(b); err != nil || !bytes.Equal(got, wrong) {
		t.Fatalf("not verifying: %d read, %v", len(got), err)
	}
}

// TestBodyShort: a body that ends before its size is io.ErrUnexpectedEOF,
// refused 400 invalid_request.
func TestBodyShort(t *testing.T) {
	data := []byte("twelve bytes")
	c, _ := admitted(t, data)
	r := request(sessionID, "3", "", c.SHA256, data[:5], int64(len(data)))
	b := c.Body(httptest.NewRecorder(), r, 0, true)
	if _, err := io.ReadAll(b); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v", err)
	}
	if ref := b.Refusal(context.Background()); server.ErrorCode(ref) != server.EInvalid {
		t.Errorf("refusal %v", ref)
	}
}

// TestFailed: the classes of a failed storage step, and the recheck of
// the session.
func TestFailed(t *testing.T) {
	now := time.Now()
	data := []byte("some chunk")
	c, r := admitted(t, data)
	open := Session{State: server.SessionOpen, ExpiresAt: now.Add(time.Hour)}
	look := func(s Session, err error) Lookup {
		return func(context.Context, uploadtoken.Claims) (Session, error) { return s, err }
	}
	boom := errors.New("the store fell over")
	for _, tc := range []struct {
		name    string
		err     error
		recheck Lookup
		code    string // "" for the receiver's own failure (nil)
	}{
		{"store refused the hash", fmt.Errorf("s3: %w", blob.ErrChecksum), nil, server.EChecksumMismatch},
		{"downstream refused the hash", ErrChecksum, nil, server.EChecksumMismatch},
		{"store found the body short", fmt.Errorf("part: %w", io.ErrUnexpectedEOF), nil, server.EInvalid},
		{"storage full", fmt.Errorf("fs: %w", blob.ErrNoSpace), look(open, nil), server.EInsufficientStorage},
		{"session completed meanwhile", boom, look(Session{State: server.SessionCompleted, ExpiresAt: now.Add(time.Hour)}, nil), server.EConflict},
		{"session being completed", boom, look(Session{State: server.SessionCompleting, ExpiresAt: now.Add(time.Hour)}, nil), server.EConflict},
		{"session aborted meanwhile", boom, look(Session{State: server.SessionAborted, ExpiresAt: now.Add(time.Hour)}, nil), server.EGone},
		{"session gone from the lookup", boom, look(Session{}, server.Errorf(server.ENotFound, "no such upload session")), server.ENotFound},
		{"lookup failed itself", boom, look(Session{}, server.Errorf(protocol.CodeBadGateway, "origin down")), ""},
		{"lookup failed, internal", boom, look(Session{}, errors.New("db down")), ""},
		{"session still open", boom, look(open, nil), ""},
		{"no recheck", boom, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := c.Body(httptest.NewRecorder(), r, 0, false)
			ref := b.Failed(context.Background(), tc.err, now, tc.recheck)
			if got := server.ErrorCode(ref); ref == nil && tc.code != "" || ref != nil && got != tc.code {
				t.Fatalf("%v (code %q), want %q", ref, got, tc.code)
			}
			if tc.code == server.EInsufficientStorage {
				if !errors.Is(ref, blob.ErrNoSpace) || server.ErrorMessage(ref) != StorageFullMessage {
					t.Errorf("storage full: %v, message %q", ref, server.ErrorMessage(ref))
				}
			}
		})
	}
	// A cancelled request: the body ended early, whatever the store said.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := c.Body(httptest.NewRecorder(), r, 0, false)
	if ref := b.Failed(ctx, boom, now, nil); server.ErrorCode(ref) != server.EInvalid {
		t.Errorf("cancelled: %v", ref)
	}
}

// TestOpen: the states that take no chunks.
func TestOpen(t *testing.T) {
	now := time.Now()
	later := now.Add(time.Minute)
	for _, tc := range []struct {
		s    Session
		code string
	}{
		{Session{State: server.SessionOpen, ExpiresAt: later}, ""},
		{Session{State: server.SessionOpen, ExpiresAt: now}, server.EGone},
		{Session{State: server.SessionAborted, ExpiresAt: later}, server.EGone},
		{Session{State: server.SessionCompleted, ExpiresAt: later}, server.EConflict},
		{Session{State: server.SessionCompleting, ExpiresAt: later}, server.EConflict},
		{Session{State: "something new", ExpiresAt: later}, server.EConflict},
	} {
		if got := server.ErrorCode(Open(tc.s, now)); got != tc.code {
			t.Errorf("%s expiring %v: %q, want %q", tc.s.State, tc.s.ExpiresAt.Sub(now), got, tc.code)
		}
	}
}
