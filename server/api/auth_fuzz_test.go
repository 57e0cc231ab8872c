package api

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// fuzzKey and fuzzSecret are well-formed credentials (made by
// apikey.NewKey and NewSecret, never issued).
const (
	fuzzKey    = "jt_test_4aKV4Wd4Q7iWNraE6OEKya6WoFLQcy0VmRg1"
	fuzzSecret = "jts_R5pct983dSrjcsFHjHyBz8UPLWjHwepB4KnboZuyxa8"
)

// FuzzCredentials: for any Authorization and X-API-Secret header values,
// credentials either refuses with one of the four auth codes, with a
// message that echoes neither value, or returns a key and secret that
// pass apikey's checks again, carry no surrounding space, and come from
// the headers sent (Basic user:password, else Bearer and X-API-Secret).
func FuzzCredentials(f *testing.F) {
	key, secret := fuzzKey, fuzzSecret
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range [][2]string{
		{"Bearer " + key, secret}, {"bearer  " + key + " ", " " + secret}, {basic(key + ":" + secret), ""},
		{basic(key + ":" + secret + "\n"), ""}, {basic(key + ":" + secret[:len(secret)-1] + "\nA"), ""},
		{"Bearer " + key, secret[:len(secret)-2] + "\r\n"}, {"Bearer " + secret, key}, {"Bearer", secret},
		{"Bearer ", ""}, {"Basic !!!", ""}, {basic(":"), ""}, {basic(key), ""}, {"Bearer " + key + "\x00", secret},
		{"Bearer " + strings.Repeat("k", 10<<10), secret}, {"Token " + key, secret}, {basic(key + ":" + secret + ":x"), ""},
	} {
		f.Add(c[0], c[1])
	}
	codes := map[string]bool{server.EMissingAuth: true, server.EMalformedAPIKey: true, server.EMissingAPISecret: true, server.EWrongAPISecret: true}
	f.Fuzz(func(t *testing.T, authz, secretHdr string) {
		r := httptest.NewRequest(http.MethodGet, "/api/agentcache/quota", nil)
		r.Header.Set("Authorization", authz)
		r.Header.Set("X-API-Secret", secretHdr)
		k, s, err := credentials(r)
		if err != nil {
			if !codes[server.ErrorCode(err)] {
				t.Fatalf("credentials(%q, %q): code %q", authz, secretHdr, server.ErrorCode(err))
			}
			msg := server.ErrorMessage(err)
			for _, v := range []string{strings.TrimSpace(secretHdr), strings.TrimSpace(strings.TrimPrefix(authz, "Bearer "))} {
				if len(v) >= 8 && strings.Contains(msg, v) {
					t.Fatalf("error %q echoes a credential", msg)
				}
			}
			return
		}
		if protocol.CheckAPIKey(k) != nil || protocol.CheckAPISecret(s) != nil || strings.TrimSpace(k) != k || strings.TrimSpace(s) != s {
			t.Fatalf("credentials(%q, %q) accepted %q, %q", authz, secretHdr, k, s)
		}
		if u, p, ok := r.BasicAuth(); ok {
			if strings.TrimSpace(u) != k || strings.TrimSpace(p) != s {
				t.Fatalf("Basic %q:%q gave %q, %q", u, p, k, s)
			}
		} else if tok, _ := bearer(r); tok != k || strings.TrimSpace(secretHdr) != s {
			t.Fatalf("Bearer %q + %q gave %q, %q", tok, secretHdr, k, s)
		}
	})
}

// FuzzCredentialsRoundTrip: a valid key and secret, sent in any of the
// accepted forms (Bearer in any case with X-API-Secret, or Basic), with
// spaces or tabs around them, come back exactly.
func FuzzCredentialsRoundTrip(f *testing.F) {
	f.Add(uint8(0), "", "")
	f.Add(uint8(1), " ", "\t")
	f.Add(uint8(2), "  \t", " ")
	f.Add(uint8(0x7f), "\t\t", "  ")
	key, secret := fuzzKey, fuzzSecret
	if protocol.CheckAPIKey(key) != nil || protocol.CheckAPISecret(secret) != nil {
		f.Fatal("fuzzKey or fuzzSecret is malformed")
	}
	f.Fuzz(func(t *testing.T, form uint8, pre, post string) {
		if strings.Trim(pre, " \t") != "" || strings.Trim(post, " \t") != "" {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if form&1 == 1 {
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(pre+key+post+":"+pre+secret+post)))
		} else {
			scheme := []byte("Bearer ")
			for i := range 6 {
				if form>>(i+1)&1 == 1 {
					scheme[i] ^= 0x20 // another case
				}
			}
			r.Header.Set("Authorization", string(scheme)+pre+key+post)
			r.Header.Set("X-API-Secret", pre+secret+post)
		}
		k, s, err := credentials(r)
		if err != nil || k != key || s != secret {
			t.Fatalf("form %d: %q, %q, %v", form, k, s, err)
		}
	})
}
