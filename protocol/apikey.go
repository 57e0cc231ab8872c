package protocol

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"strings"
)

// The format of account credentials. An API key looks like
// jt_live_<30 base62 chars><6 base62 chars>: a prefix naming the
// environment (jt_live_ in production, jt_test_ in dev), 178 random bits,
// and a CRC-32 checksum of everything before it, so that clients and the
// server refuse a mistyped key before any lookup. An API secret looks like
// jts_<43 base64url chars> (256 random bits).
const (
	LiveKeyPrefix = "jt_live_"
	TestKeyPrefix = "jt_test_"
	SecretPrefix  = "jts_"

	// KeyAlphabet is the alphabet of a key's random part and checksum.
	KeyAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// KeyChecksumLen is the length of a key's checksum.
	KeyChecksumLen = 6
	// KeyLen is the length of every API key.
	KeyLen = len(LiveKeyPrefix) + 30 + KeyChecksumLen
	// SecretLen is the length of every API secret.
	SecretLen = len(SecretPrefix) + 43
)

// KeyChecksum encodes CRC-32 (IEEE) of s as KeyChecksumLen base62 digits:
// the end of a key whose beginning is s.
func KeyChecksum(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	out := make([]byte, KeyChecksumLen)
	for i := KeyChecksumLen - 1; i >= 0; i-- {
		out[i] = KeyAlphabet[v%62]
		v /= 62
	}
	return string(out)
}

// CheckAPIKey reports whether key is a well-formed API key with a valid
// checksum. The error says what is wrong, without echoing the key.
func CheckAPIKey(key string) error {
	if !strings.HasPrefix(key, LiveKeyPrefix) && !strings.HasPrefix(key, TestKeyPrefix) {
		if strings.HasPrefix(key, SecretPrefix) {
			return fmt.Errorf("this is an API secret (jts_...), not an API key (jt_live_... or jt_test_...)")
		}
		return fmt.Errorf("API keys start with %q or %q", LiveKeyPrefix, TestKeyPrefix)
	}
	if len(key) != KeyLen {
		return fmt.Errorf("API keys are %d characters long, this one is %d", KeyLen, len(key))
	}
	for i := len(LiveKeyPrefix); i < len(key); i++ {
		if strings.IndexByte(KeyAlphabet, key[i]) < 0 {
			return fmt.Errorf("API key contains an invalid character at position %d", i+1)
		}
	}
	body, sum := key[:KeyLen-KeyChecksumLen], key[KeyLen-KeyChecksumLen:]
	if subtle.ConstantTimeCompare([]byte(KeyChecksum(body)), []byte(sum)) != 1 {
		return fmt.Errorf("API key checksum does not match: the key was mistyped or truncated")
	}
	return nil
}

// CheckAPISecret reports whether secret has the shape of an API secret.
func CheckAPISecret(secret string) error {
	if !strings.HasPrefix(secret, SecretPrefix) {
		if strings.HasPrefix(secret, LiveKeyPrefix) || strings.HasPrefix(secret, TestKeyPrefix) {
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
