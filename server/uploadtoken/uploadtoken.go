// Package uploadtoken signs and verifies the short-lived tokens that
// authorise chunk PUTs of one upload session. A token names the session,
// the account and the session's worker ceiling, and expires; it is an
// HMAC-SHA256 over its claims with a key every server instance (and, later,
// every edge) shares, so verifying one needs no database.
package uploadtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Errors of Verify.
var (
	ErrMalformed    = errors.New("upload token is malformed")
	ErrBadSignature = errors.New("upload token signature does not match")
	ErrExpired      = errors.New("upload token has expired")
)

// Claims are what a token asserts.
type Claims struct {
	SessionID  string `json:"sid"`
	AccountID  string `json:"aid"`
	MaxWorkers int    `json:"mw"`
	Expires    int64  `json:"exp"` // unix seconds
}

// ExpiresAt is the expiry as a time.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expires, 0).UTC() }

var b64 = base64.RawURLEncoding.Strict()

// Signer signs and verifies tokens with one key.
type Signer struct {
	key []byte
}

// NewSigner derives the signing key from secret (any length, not empty).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) == 0 {
		return nil, errors.New("uploadtoken: empty secret")
	}
	m := hmac.New(sha256.New, []byte("jetty upload token v1"))
	m.Write(secret)
	return &Signer{key: m.Sum(nil)}, nil
}

// NewSignerKey makes a Signer from a key that Key returned (relays get
// it sealed from the origin, so they need no token secret of their own).
func NewSignerKey(key []byte) (*Signer, error) {
	if len(key) != sha256.Size {
		return nil, errors.New("uploadtoken: the key must be 32 bytes")
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// Key is the derived signing key (for NewSignerKey).
func (s *Signer) Key() []byte { return append([]byte(nil), s.key...) }

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Sign returns the token for c: base64url(claims JSON) "." base64url(MAC).
func (s *Signer) Sign(c Claims) string {
	b, _ := json.Marshal(c)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

// Verify checks the token's signature (in constant time) and expiry.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	// The decoder skips CR and LF even when strict: refuse them, or a
	// line break inside a valid token would be another accepted spelling.
	if len(token) > 4096 || strings.ContainsAny(token, "\r\n") {
		return Claims{}, ErrMalformed
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || payload == "" || sig == "" {
		return Claims{}, ErrMalformed
	}
	// Strict: a token has exactly one encoding, so no variant of a valid
	// token (different unused bits in the last character) is accepted.
	got, err := b64.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(got, s.mac(payload)) {
		return Claims{}, ErrBadSignature
	}
	raw, err := b64.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || c.SessionID == "" || c.AccountID == "" {
		return Claims{}, ErrMalformed
	}
	if now.Unix() >= c.Expires {
		return c, ErrExpired
	}
	return c, nil
}
