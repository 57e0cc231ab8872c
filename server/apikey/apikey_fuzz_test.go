package apikey

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/protocol"
)

// keyFrom builds a well-formed key deterministically from fuzz input: the
// body's bytes mapped into the key alphabet, then the checksum.
func keyFrom(live bool, body []byte) string {
	prefix := protocol.TestKeyPrefix
	if live {
		prefix = protocol.LiveKeyPrefix
	}
	b := make([]byte, keyRandomLen)
	for i := range b {
		var c byte
		if i < len(body) {
			c = body[i]
		}
		b[i] = protocol.KeyAlphabet[int(c)%len(protocol.KeyAlphabet)]
	}
	s := prefix + string(b)
	return s + protocol.KeyChecksum(s)
}

// FuzzKeyFormat: a key made the way NewKey makes it validates (and says
// whether it is live); any one character after the prefix changed to
// another character of the key alphabet is refused (the CRC-32 catches every single
// substitution); an accepted key has the documented shape, re-validates,
// and Redact shows no more than its prefix and four characters.
func FuzzKeyFormat(f *testing.F) {
	f.Add(true, []byte("0123456789abcdefghijABCDEFGHIJ"), uint(0), byte(1))
	f.Add(false, []byte{}, uint(35), byte(61))
	f.Add(false, []byte{0xff, 0xfe, 0x00}, uint(29), byte(0))
	f.Fuzz(func(t *testing.T, live bool, body []byte, pos uint, delta byte) {
		key := keyFrom(live, body)
		if err := protocol.CheckAPIKey(key); err != nil {
			t.Fatalf("protocol.CheckAPIKey(%q) = %v", key, err)
		}
		if strings.HasPrefix(key, protocol.LiveKeyPrefix) != live || len(key) != protocol.KeyLen {
			t.Fatalf("key %q: live %v, length %d", key, strings.HasPrefix(key, protocol.LiveKeyPrefix), len(key))
		}
		if r := Redact(key); r != key[:len(protocol.LiveKeyPrefix)+4]+"…" {
			t.Fatalf("Redact(%q) = %q", key, r)
		}
		i := len(protocol.LiveKeyPrefix) + int(pos%uint(protocol.KeyLen-len(protocol.LiveKeyPrefix)))
		j := strings.IndexByte(protocol.KeyAlphabet, key[i])
		d := 1 + int(delta)%(len(protocol.KeyAlphabet)-1)
		mutated := key[:i] + string(protocol.KeyAlphabet[(j+d)%len(protocol.KeyAlphabet)]) + key[i+1:]
		if protocol.CheckAPIKey(mutated) == nil {
			t.Fatalf("key %q with character %d changed (%q) still validates", key, i, mutated)
		}
	})
}

// FuzzCheckKeyAccepted: whatever CheckKey accepts is a key NewKey could
// have made: a known prefix, protocol.KeyLen characters of the key alphabet, a
// matching checksum; checking it twice gives the same answer; an error
// never echoes the input.
func FuzzCheckKeyAccepted(f *testing.F) {
	f.Add(keyFrom(true, []byte("seed")))
	f.Add(keyFrom(false, nil))
	f.Add("jt_live_" + strings.Repeat("0", 36))
	f.Add("jts_" + strings.Repeat("A", 43))
	f.Add("jt_test_\x00\xff" + strings.Repeat("a", 34))
	f.Fuzz(func(t *testing.T, s string) {
		err := protocol.CheckAPIKey(s)
		if (err == nil) != (protocol.CheckAPIKey(s) == nil) {
			t.Fatal("CheckKey is not deterministic")
		}
		if err != nil {
			if len(s) >= 12 && strings.Contains(err.Error(), s) {
				t.Fatalf("error echoes the key: %v", err)
			}
			return
		}
		if !strings.HasPrefix(s, protocol.LiveKeyPrefix) && !strings.HasPrefix(s, protocol.TestKeyPrefix) || len(s) != protocol.KeyLen {
			t.Fatalf("accepted %q", s)
		}
		for i := len(protocol.LiveKeyPrefix); i < len(s); i++ {
			if strings.IndexByte(protocol.KeyAlphabet, s[i]) < 0 {
				t.Fatalf("accepted %q with %q at %d", s, s[i], i)
			}
		}
		if protocol.KeyChecksum(s[:protocol.KeyLen-protocol.KeyChecksumLen]) != s[protocol.KeyLen-protocol.KeyChecksumLen:] {
			t.Fatalf("accepted %q with a wrong checksum", s)
		}
	})
}

// FuzzCheckSecret: an accepted secret is jts_ and 43 base64url
// characters encoding 32 bytes (no line breaks, which the decoder would
// skip), matches its own hash and nothing else's, and Redact hides it.
func FuzzCheckSecret(f *testing.F) {
	f.Add("jts_" + base64.RawURLEncoding.EncodeToString(make([]byte, 32)))
	f.Add("jts_" + strings.Repeat("_", 43))
	f.Add("jts_" + strings.Repeat("A", 42) + "B") // low bits set
	f.Add("jts_" + strings.Repeat("A", 41) + "\nA")
	f.Add("jts_" + strings.Repeat("A", 40) + "\r\nA")
	f.Add("jt_live_" + strings.Repeat("A", 39))
	f.Add("jts_" + strings.Repeat("+", 43))
	f.Fuzz(func(t *testing.T, s string) {
		if protocol.CheckAPISecret(s) != nil {
			return
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, protocol.SecretPrefix))
		if !strings.HasPrefix(s, protocol.SecretPrefix) || len(s) != protocol.SecretLen || err != nil || len(raw) != secretRandomBytes {
			t.Fatalf("accepted secret %q (%d bytes decoded, %v)", s, len(raw), err)
		}
		// Every character is one of base64url's; only the two unused low
		// bits of the last may differ from the canonical spelling (such a
		// secret is well-formed but matches no stored hash: "wrong", not
		// "malformed").
		if canon := protocol.SecretPrefix + base64.RawURLEncoding.EncodeToString(raw); canon[:protocol.SecretLen-1] != s[:protocol.SecretLen-1] {
			t.Fatalf("accepted secret %q spells other bytes than %q", s, canon)
		}
		if strings.ContainsFunc(s[len(protocol.SecretPrefix):], func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			t.Fatalf("accepted secret %q with a character outside base64url", s)
		}
		h := HashSecret(s)
		if len(h) != 64 || !SecretMatches(s, h) || SecretMatches(s+"x", h) || SecretMatches(s, h[:63]) {
			t.Fatalf("hash of %q does not match exactly", s)
		}
		if r := Redact(s); strings.Contains(r, s[len(protocol.SecretPrefix)+4:]) {
			t.Fatalf("Redact(%q) = %q", s, r)
		}
	})
}
