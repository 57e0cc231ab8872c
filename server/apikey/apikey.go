// Package apikey makes and checks jetty's account credentials.
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
	"hash/crc32"
	"strings"
)

// Key prefixes.
const (
	LivePrefix   = "jt_live_"
	TestPrefix   = "jt_test_"
	SecretPrefix = "jts_"
)

const (
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	randomLen   = 30
	checksumLen = 6
	// KeyLen is the length of every API key.
	KeyLen = len(LivePrefix) + randomLen + checksumLen
	// secretRandomBytes is the entropy of a secret.
	secretRandomBytes = 32
	// SecretLen is the length of every API secret.
	SecretLen = len(SecretPrefix) + 43
)

// NewKey returns a fresh API key; live selects jt_live_ over jt_test_.
func NewKey(live bool) (string, error) {
	prefix := TestPrefix
	if live {
		prefix = LivePrefix
	}
	body := make([]byte, randomLen)
	// Rejection sampling keeps every character uniform: 62*4 = 248.
	buf := make([]byte, 64)
	n := 0
	for n < randomLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("apikey: random: %w", err)
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			body[n] = alphabet[b%62]
			n++
			if n == randomLen {
				break
			}
		}
	}
	s := prefix + string(body)
	return s + checksum(s), nil
}

// NewSecret returns a fresh API secret.
func NewSecret() (string, error) {
	b := make([]byte, secretRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("apikey: random: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// checksum encodes CRC-32 (IEEE) of s as 6 base62 digits.
func checksum(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	out := make([]byte, checksumLen)
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return string(out)
}

// CheckKey reports whether key is a well-formed API key with a valid
// checksum. The error says what is wrong, without echoing the key.
func CheckKey(key string) error {
	if !strings.HasPrefix(key, LivePrefix) && !strings.HasPrefix(key, TestPrefix) {
		if strings.HasPrefix(key, SecretPrefix) {
			return fmt.Errorf("this is an API secret (jts_...), not an API key (jt_live_... or jt_test_...)")
		}
		return fmt.Errorf("API keys start with %q or %q", LivePrefix, TestPrefix)
	}
	if len(key) != KeyLen {
		return fmt.Errorf("API keys are %d characters long, this one is %d", KeyLen, len(key))
	}
	for i := len(LivePrefix); i < len(key); i++ {
		if strings.IndexByte(alphabet, key[i]) < 0 {
			return fmt.Errorf("API key contains an invalid character at position %d", i+1)
		}
	}
	body, sum := key[:KeyLen-checksumLen], key[KeyLen-checksumLen:]
	if subtle.ConstantTimeCompare([]byte(checksum(body)), []byte(sum)) != 1 {
		return fmt.Errorf("API key checksum does not match: the key was mistyped or truncated")
	}
	return nil
}

// IsLive reports whether key is a production key.
func IsLive(key string) bool { return strings.HasPrefix(key, LivePrefix) }

// CheckSecret reports whether secret has the shape of an API secret.
func CheckSecret(secret string) error {
	if !strings.HasPrefix(secret, SecretPrefix) {
		if strings.HasPrefix(secret, LivePrefix) || strings.HasPrefix(secret, TestPrefix) {
			return fmt.Errorf("this is an API key, not an API secret (jts_...)")
		}
		return fmt.Errorf("API secrets start with %q", SecretPrefix)
	}
	if len(secret) != SecretLen {
		return fmt.Errorf("API secrets are %d characters long, this one is %d", SecretLen, len(secret))
	}
	// The decoder skips CR and LF: refuse them, or 42 characters and a
	// line break would pass for a secret.
	body := secret[len(SecretPrefix):]
	if _, err := base64.RawURLEncoding.DecodeString(body); err != nil || strings.ContainsAny(body, "\r\n") {
		return fmt.Errorf("API secret contains invalid characters")
	}
	return nil
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
	for _, p := range []string{LivePrefix, TestPrefix, SecretPrefix} {
		if strings.HasPrefix(s, p) && len(s) > len(p)+4 {
			return s[:len(p)+4] + "…"
		}
	}
	return "[redacted]"
}
