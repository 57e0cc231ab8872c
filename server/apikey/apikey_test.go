package apikey

import (
	"strings"
	"testing"
)

func TestNewKeyRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		for _, live := range []bool{true, false} {
			k, err := NewKey(live)
			if err != nil {
				t.Fatal(err)
			}
			if len(k) != KeyLen {
				t.Fatalf("len(%q) = %d, want %d", k, len(k), KeyLen)
			}
			if IsLive(k) != live {
				t.Fatalf("IsLive(%q) = %v", k, !live)
			}
			if err := CheckKey(k); err != nil {
				t.Fatalf("CheckKey(%q): %v", k, err)
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
	for i := len(LivePrefix); i < len(k); i++ {
		for _, c := range []byte{'0', 'a', 'Z'} {
			if k[i] == c {
				continue
			}
			bad := k[:i] + string(c) + k[i+1:]
			if CheckKey(bad) == nil {
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
		err := CheckKey(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckKey(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestSecret(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSecret(s); err != nil {
		t.Fatalf("CheckSecret(%q): %v", s, err)
	}
	h := HashSecret(s)
	if strings.Contains(h, s[len(SecretPrefix):]) || len(h) != 64 {
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
	if CheckSecret(k) == nil || CheckSecret("jts_short") == nil || CheckSecret("") == nil {
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
		if CheckKey(s) == nil && len(s) != KeyLen {
			t.Fatalf("accepted key of length %d", len(s))
		}
	})
}
