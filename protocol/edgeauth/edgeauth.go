// Package edgeauth authenticates relays to the origin: calls signed with
// a key derived from the shared edge secret (AuthHeader), and the upload
// token key sealed for relays (Seal, Open). Part of the wire contract
// (package protocol); docs/edges.md.
package edgeauth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AuthHeader carries a relay's signature on its calls to the origin:
//
//	X-Jetty-Edge-Auth: v1 id=<edge id>,ts=<unix seconds>,sig=<hex HMAC-SHA256>
//
// over "v1\n" method "\n" path "\n" ts "\n" id "\n" hex(SHA-256 of the
// body), keyed by a key derived from the edge secret. The secret itself
// never travels; a signature is valid for MaxSkew either side of its
// timestamp and for that one method, path and body.
const AuthHeader = "X-Jetty-Edge-Auth"

// MaxSkew is how far a signature's timestamp may be from the verifier's
// clock.
const MaxSkew = 300 * time.Second

// MaxAuthBody is the largest body a signed call may carry.
const MaxAuthBody = 1 << 20

// Errors of Verify.
var (
	ErrNoAuth       = errors.New("missing " + AuthHeader + " header")
	ErrBadAuth      = errors.New("malformed " + AuthHeader + " header")
	ErrBadSignature = errors.New("edge signature does not match (is JETTY_EDGE_SECRET the same on the relay and the server?)")
	ErrStale        = errors.New("edge signature timestamp is too far from the server's clock")
)

// Keys are derived from the shared edge secret.
type Keys struct {
	auth []byte
	seal []byte
}

// NewKeys derives the keys from secret (not empty).
func NewKeys(secret string) (*Keys, error) {
	if secret == "" {
		return nil, errors.New("the edge secret (JETTY_EDGE_SECRET) is empty")
	}
	return &Keys{auth: derive(secret, "jetty edge auth v1"), seal: derive(secret, "jetty edge seal v1")}, nil
}

func derive(secret, label string) []byte {
	m := hmac.New(sha256.New, []byte(label))
	m.Write([]byte(secret))
	return m.Sum(nil)
}

func (k *Keys) mac(method, path, ts, id string, body []byte) []byte {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, k.auth)
	fmt.Fprintf(m, "v1\n%s\n%s\n%s\n%s\n%s", method, path, ts, id, hex.EncodeToString(sum[:]))
	return m.Sum(nil)
}

// Sign sets the AuthHeader of req (whose body, if any, is body; req.Body
// is replaced by a reader of it) as relay id at time now.
func (k *Keys) Sign(req *http.Request, id string, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := hex.EncodeToString(k.mac(req.Method, req.URL.EscapedPath(), ts, id, body))
	req.Header.Set(AuthHeader, "v1 id="+id+",ts="+ts+",sig="+sig)
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
}

// Verify checks the signature of r at time now and returns the relay id
// and the body (read, at most MaxAuthBody bytes). The comparison is in
// constant time.
func (k *Keys) Verify(r *http.Request, now time.Time) (id string, body []byte, err error) {
	h := r.Header.Get(AuthHeader)
	if h == "" {
		return "", nil, ErrNoAuth
	}
	rest, ok := strings.CutPrefix(h, "v1 ")
	if !ok {
		return "", nil, ErrBadAuth
	}
	var ts, sig string
	for _, kv := range strings.Split(rest, ",") {
		// Only spaces and tabs (HTTP's optional whitespace) are trimmed:
		// TrimSpace would also eat a \f or U+00A0 that Sign put at
		// either end of an id, and its signature would never match.
		k, v, _ := strings.Cut(strings.Trim(kv, " \t"), "=")
		switch k {
		case "id":
			id = v
		case "ts":
			ts = v
		case "sig":
			sig = v
		}
	}
	got, derr := hex.DecodeString(sig)
	t, perr := strconv.ParseInt(ts, 10, 64)
	if id == "" || len(id) > 128 || derr != nil || len(got) != sha256.Size || perr != nil {
		return "", nil, ErrBadAuth
	}
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxAuthBody+1))
		if err != nil {
			return "", nil, fmt.Errorf("read body: %w", err)
		}
		if len(body) > MaxAuthBody {
			return "", nil, ErrBadAuth
		}
	}
	if !hmac.Equal(got, k.mac(r.Method, r.URL.EscapedPath(), ts, id, body)) {
		return "", nil, ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > MaxSkew || d < -MaxSkew {
		return "", nil, ErrStale
	}
	return id, body, nil
}

// Seal encrypts plain (AES-256-GCM under a key derived from the edge
// secret) for a relay: base64url(nonce || ciphertext).
func (k *Keys) Seal(plain []byte) string {
	aead := k.aead()
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte("jetty token key")))
}

// Open decrypts what Seal made.
func (k *Keys) Open(sealed string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	aead := k.aead()
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed token key is malformed")
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, raw[:n], raw[n:], []byte("jetty token key"))
	if err != nil {
		return nil, errors.New("cannot open the sealed token key: the edge secret differs from the server's")
	}
	return plain, nil
}

func (k *Keys) aead() cipher.AEAD {
	b, _ := aes.NewCipher(k.seal)
	a, _ := cipher.NewGCM(b)
	return a
}
