// Package apikey makes jetty's account credentials and checks them
// against what is stored: generation, hashing, constant-time comparison,
// redaction. Their format, which clients check too, is the protocol's
// (protocol.CheckAPIKey, protocol.CheckAPISecret).
//
// An API key looks like jt_live_<30 base62 chars><6 base62 chars>: a
// prefix naming the environment (jt_live_ in production, jt_test_ in dev),
// 178 random bits, and a CRC-32 checksum of everything before it. The
// checksum lets clients and the server refuse a mistyped key before any
// database lookup. The key is an identifier, like an access key id.
//
// An API secret looks like jts_<43 base64url chars> (256 random bits). Only
// its SHA-256 is stored; comparisons are constant-time.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/jettythunder/jetty/protocol"
)

// keyRandomLen is how many random base62 characters a key holds (178
// bits); secretRandomBytes the entropy of a secret.
const (
	keyRandomLen      = protocol.KeyLen - len(protocol.LiveKeyPrefix) - protocol.KeyChecksumLen
	secretRandomBytes = 32
)

// NewKey returns a fresh API key; live selects jt_live_ over jt_test_.
func NewKey(live bool) (string, error) {
	prefix := protocol.TestKeyPrefix
	if live {
		prefix = protocol.LiveKeyPrefix
	}
	body := make([]byte, keyRandomLen)
	// Rejection sampling keeps every character uniform: 62*4 = 248.
	buf := make([]byte, 64)
	n := 0
	for n < keyRandomLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("apikey: random: %w", err)
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			body[n] = protocol.KeyAlphabet[b%62]
			n++
			if n == keyRandomLen {
				break
			}
		}
	}
	s := prefix + string(body)
	return s + protocol.KeyChecksum(s), nil
}

// NewSecret returns a fresh API secret.
func NewSecret() (string, error) {
	b := make([]byte, secretRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("apikey: random: %w", err)
	}
	return protocol.SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret returns the hex SHA-256 of secret, the only form stored.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// SecretMatches compares secret with a stored hash in constant time.
func SecretMatches(secret, storedHash string) bool {
	got := sha256.Sum256([]byte(secret))
	want, err := hex.DecodeString(storedHash)
	if err != nil || len(want) != len(got) {
		return false
	}
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// EqualConstantTime compares two shared secrets (such as webhook secrets)
// in time independent of their content and length: it compares digests.
// An empty expected secret never matches.
func EqualConstantTime(given, expected string) bool {
	if expected == "" {
		return false
	}
	a := sha256.Sum256([]byte(given))
	b := sha256.Sum256([]byte(expected))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Redact returns a form of a key or secret safe for logs: its prefix and
// the first four characters after it.
func Redact(s string) string {
	for _, p := range []string{protocol.LiveKeyPrefix, protocol.TestKeyPrefix, protocol.SecretPrefix} {
		if strings.HasPrefix(s, p) && len(s) > len(p)+4 {
			return s[:len(p)+4] + "…"
		}
	}
	return "[redacted]"
}
