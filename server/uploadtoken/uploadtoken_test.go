package uploadtoken

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	s, err := NewSigner([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	c := Claims{SessionID: "ses_1", AccountID: "acc", MaxWorkers: 16, Expires: now.Add(15 * time.Minute).Unix()}
	tok := s.Sign(c)
	got, err := s.Verify(tok, now)
	if err != nil || got != c {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	if _, err := s.Verify(tok, now.Add(15*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	other, _ := NewSigner([]byte("other secret"))
	if _, err := other.Verify(tok, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("token from another key: %v", err)
	}
	// Tampering with the claims breaks the signature.
	payload, sig, _ := strings.Cut(tok, ".")
	forged := strings.Replace(payload, "A", "B", 1) + "." + sig
	if forged != tok {
		if _, err := s.Verify(forged, now); err == nil {
			t.Fatal("tampered token accepted")
		}
	}
	// The same MAC with a different unused bit in its last character (a
	// 32-byte MAC leaves the two low bits of the 43rd character unused).
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	variant := tok[:len(tok)-1] + string(alphabet[last^1])
	if _, err := s.Verify(variant, now); err == nil {
		t.Fatal("a non-canonical variant of a valid token was accepted")
	}
	for _, bad := range []string{"", ".", "abc", "abc.", ".abc", "!!!.!!!", strings.Repeat("a", 5000)} {
		if _, err := s.Verify(bad, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := NewSigner(nil); err == nil {
		t.Fatal("empty secret accepted")
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := NewSigner([]byte("k"))
	f.Add(s.Sign(Claims{SessionID: "s", AccountID: "a", Expires: 1 << 40}))
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok, time.Unix(0, 0))
		if err == nil && (c.SessionID == "" || c.AccountID == "") {
			t.Fatalf("accepted claims without ids: %+v", c)
		}
	})
}
