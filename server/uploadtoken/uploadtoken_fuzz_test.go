package uploadtoken

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzSignVerifyRoundTrip: Verify(Sign(c)) gives back c before its
// expiry and ErrExpired (with c) from it on; claims without a session or
// account id never verify; a token from another key never verifies.
func FuzzSignVerifyRoundTrip(f *testing.F) {
	f.Add("ses_abcdefghijklmnopqrstuvwxyz", "acc_1", 16, int64(1_800_000_900), int64(1_800_000_000))
	f.Add("s", "a", 0, int64(0), int64(0))
	f.Add("", "a", 1, int64(1<<40), int64(0))
	f.Add("s\x00\"}", "a\u2028", -1, int64(-1<<63), int64(1<<62))
	f.Add("s.s", "a.a", 1<<62, int64(1<<63-1), int64(-1))
	signer, _ := NewSigner([]byte("fuzz secret"))
	other, _ := NewSigner([]byte("another secret"))
	f.Fuzz(func(t *testing.T, sid, aid string, mw int, exp, now int64) {
		if !utf8.ValidString(sid) || !utf8.ValidString(aid) {
			return // JSON would replace the bytes: ids are ASCII in practice
		}
		c := Claims{SessionID: sid, AccountID: aid, MaxWorkers: mw, Expires: exp}
		tok := signer.Sign(c)
		if strings.Count(tok, ".") != 1 || strings.ContainsAny(tok, "=+/ \r\n") {
			t.Fatalf("token %q is not payload.mac in base64url", tok)
		}
		got, err := signer.Verify(tok, time.Unix(now, 0))
		switch {
		case len(tok) > 4096 || sid == "" || aid == "":
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify(%+v) = %v, want ErrMalformed", c, err)
			}
			return
		case now >= exp:
			if !errors.Is(err, ErrExpired) || got != c {
				t.Fatalf("at %d, Verify(%+v) = %+v, %v; want ErrExpired", now, c, got, err)
			}
		case err != nil || got != c:
			t.Fatalf("at %d, Verify(%+v) = %+v, %v", now, c, got, err)
		}
		if _, err := other.Verify(tok, time.Unix(now, 0)); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("a token of another key: %v", err)
		}
	})
}

// FuzzVerifyNonMalleable: a token that verifies (or is only expired) is
// exactly the token Sign makes for its claims: starting from valid
// tokens, no edit the fuzzer finds yields another accepted spelling.
func FuzzVerifyNonMalleable(f *testing.F) {
	signer, _ := NewSigner([]byte("fuzz secret"))
	tok := signer.Sign(Claims{SessionID: "ses_1", AccountID: "acc_1", MaxWorkers: 16, Expires: 1 << 40})
	f.Add(tok)
	f.Add(tok + "\n")
	f.Add(tok[:len(tok)-4] + "\r\n" + tok[len(tok)-4:])
	f.Add(strings.Replace(tok, ".", "\n.", 1))
	f.Add(tok + ".")
	f.Add(tok + "=")
	f.Add(" " + tok)
	f.Add(signer.Sign(Claims{SessionID: "s", AccountID: "a", Expires: -1}))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := signer.Verify(s, time.Unix(0, 0))
		if err != nil && !errors.Is(err, ErrExpired) {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify(%q): unexpected error %v", s, err)
			}
			return
		}
		if c.SessionID == "" || c.AccountID == "" {
			t.Fatalf("accepted claims without ids: %+v", c)
		}
		if want := signer.Sign(c); s != want {
			t.Fatalf("accepted %q, another spelling of %q", s, want)
		}
	})
}
