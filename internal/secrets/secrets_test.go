package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestWeakSecretsRefused(t *testing.T) {
	for _, tc := range []struct{ name, value, why string }{
		{"one space", " ", "blank"},
		{"spaces and tabs", " \t  \n ", "blank"},
		{"one character", "x", "too short (1 byte)"},
		{"31 bytes", strings.Repeat("0123456789abcdef", 2)[:31], "too short (31 bytes)"},
		{"padded", " " + hex.EncodeToString(make([]byte, 20)) + "9f", "whitespace"},
		{"trailing newline", "3f7c1a9e4b2d8f6a0c5e7b9d1f3a5c7e\n", "whitespace"},
		{"40 × a", strings.Repeat("a", 40), "repeated"},
		{"abab…", strings.Repeat("ab", 20), "repeated"},
		{"hex run twice", strings.Repeat("0123456789abcdef", 2), "repeated"},
		{"password × 4", strings.Repeat("password", 4), "repeated"},
		{"nearly all a", strings.Repeat("a", 38) + "bc", "too repetitive"},
		{"two letters mixed", "aabbabababbbaabbaababbbbaaabbaba", "too repetitive"},
	} {
		err := Check("JETTY_EDGE_SECRET", tc.value)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		msg := err.Error()
		for _, want := range []string{"JETTY_EDGE_SECRET", tc.why, "at least 32", "openssl rand -hex 32"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q does not say %q", tc.name, msg, want)
			}
		}
		if len(strings.TrimSpace(tc.value)) >= 8 && strings.Contains(msg, strings.TrimSpace(tc.value)) {
			t.Errorf("%s: the message quotes the secret: %q", tc.name, msg)
		}
	}
}

func TestStrongSecretsAccepted(t *testing.T) {
	if err := Check("X", ""); err != nil {
		t.Fatalf("unset (optional) refused: %v", err)
	}
	for _, v := range []string{
		"whsec_test_0123456789abcdef_ABCDEFGH",
		"my-super-secret-webhook-key-2024",
		"550e8400-e29b-41d4-a716-446655440000",
	} {
		if err := Check("X", v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	// What the advice makes always passes, as do shorter random values.
	for range 20000 {
		b := make([]byte, 32)
		rand.Read(b)
		for _, v := range []string{hex.EncodeToString(b), hex.EncodeToString(b[:16]), base64.StdEncoding.EncodeToString(b[:24])} {
			if err := Check("X", v); err != nil {
				t.Fatalf("random %q refused: %v", v, err)
			}
		}
	}
}
