package apikey

import (
	"strings"
	"testing"

	"github.com/jettythunder/jetty/protocol"
)

func TestNewKeyRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		for _, live := range []bool{true, false} {
			k, err := NewKey(live)
			if err != nil {
				t.Fatal(err)
			}
			if len(k) != protocol.KeyLen {
				t.Fatalf("len(%q) = %d, want %d", k, len(k), protocol.KeyLen)
			}
			if strings.HasPrefix(k, protocol.LiveKeyPrefix) != live {
				t.Fatalf("IsLive(%q) = %v", k, !live)
			}
			if err := protocol.CheckAPIKey(k); err != nil {
				t.Fatalf("protocol.CheckAPIKey(%q): %v", k, err)
			}
			if seen[k] {
				t.Fatalf("duplicate key %q", k)
			}
			seen[k] = true
		}
	}
}

func TestCheckKeyRejectsEverySingleCharTypo(t *testing.T) {
	k, _ := NewKey(true)
	for i := len(protocol.LiveKeyPrefix); i < len(k); i++ {
		for _, c := range []byte{'0', 'a', 'Z'} {
			if k[i] == c {
				continue
			}
			bad := k[:i] + string(c) + k[i+1:]
			if protocol.CheckAPIKey(bad) == nil {
				t.Fatalf("typo at %d accepted: %q", i, bad)
			}
		}
	}
}

func TestCheckKeyErrors(t *testing.T) {
	k, _ := NewKey(false)
	s, _ := NewSecret()
	cases := map[string]string{
		"":                              "start with",
		"sk_live_abc":                   "start with",
		k[:len(k)-1]:                    "characters long",
		k + "x":                         "characters long",
		k[:10] + "-" + k[11:]:           "invalid character",
		s:                               "API secret",
		strings.Replace(k, "t", "T", 1): "start with",
	}
	for in, want := range cases {
		err := protocol.CheckAPIKey(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("protocol.CheckAPIKey(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestSecret(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.CheckAPISecret(s); err != nil {
		t.Fatalf("protocol.CheckAPISecret(%q): %v", s, err)
	}
	h := HashSecret(s)
	if strings.Contains(h, s[len(protocol.SecretPrefix):]) || len(h) != 64 {
		t.Fatalf("hash %q looks wrong", h)
	}
	if !SecretMatches(s, h) {
		t.Fatal("secret does not match its own hash")
	}
	s2, _ := NewSecret()
	if SecretMatches(s2, h) {
		t.Fatal("other secret matches")
	}
	if SecretMatches(s, "nothex") {
		t.Fatal("garbage hash matches")
	}
	k, _ := NewKey(true)
	if protocol.CheckAPISecret(k) == nil || protocol.CheckAPISecret("jts_short") == nil || protocol.CheckAPISecret("") == nil {
		t.Fatal("bad secrets accepted")
	}
}

func TestEqualConstantTime(t *testing.T) {
	if !EqualConstantTime("abc", "abc") {
		t.Fatal("equal strings differ")
	}
	if EqualConstantTime("abc", "abd") || EqualConstantTime("", "abc") || EqualConstantTime("", "") || EqualConstantTime("abcd", "abc") {
		t.Fatal("unequal strings match")
	}
}

func TestRedact(t *testing.T) {
	k, _ := NewKey(true)
	r := Redact(k)
	if r != k[:12]+"…" {
		t.Fatalf("Redact = %q", r)
	}
	if Redact("hunter2") != "[redacted]" {
		t.Fatal("unknown string not redacted")
	}
}

func FuzzCheckKey(f *testing.F) {
	k, _ := NewKey(true)
	f.Add(k)
	f.Add("jt_test_")
	f.Fuzz(func(t *testing.T, s string) {
		if protocol.CheckAPIKey(s) == nil && len(s) != protocol.KeyLen {
			t.Fatalf("accepted key of length %d", len(s))
		}
	})
}
