package edgeauth

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}

// relayID reports whether id is one a relay may have (relay.New's rule).
func relayID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/?#%, \t\r\n=")
}

// FuzzEdgeAuthRoundTrip: a call signed as relay id verifies as that id,
// with its body, within MaxSkew of its timestamp, and is ErrStale beyond
// it; Verify never returns an id other than the one signed (an id with a
// ',' or '=' cannot smuggle another id or timestamp into the header);
// another body, method or key never verifies.
func FuzzEdgeAuthRoundTrip(f *testing.F) {
	f.Add("edge_0123abcd", uint8(1), "api/jetty/edges/heartbeat", []byte(`{"id":"edge_0123abcd"}`), int64(1_800_000_000), int64(0))
	f.Add("e", uint8(0), "", []byte(nil), int64(0), int64(300))
	f.Add("a,id=b", uint8(3), "x y/../z", []byte("\x00"), int64(-1), int64(-301))
	f.Add("a,ts=1,sig=00", uint8(2), "%2e%2e", []byte("body"), int64(1<<40), int64(301))
	f.Add("id=x", uint8(1), "\xff", []byte{}, int64(-1<<62), int64(1))
	f.Add(strings.Repeat("e", 129), uint8(1), "p", []byte("b"), int64(5), int64(-300))
	keys, _ := NewKeys("fuzz edge secret")
	otherKeys, _ := NewKeys("another edge secret")
	f.Fuzz(func(t *testing.T, id string, m uint8, p string, body []byte, ts, skew int64) {
		if len(body) > MaxAuthBody || ts < -1<<62 || ts > 1<<62 {
			return
		}
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		newReq := func(method string, body []byte) *http.Request {
			req, err := http.NewRequest(method, "http://origin.test/"+url.PathEscape(p), nil)
			if err != nil {
				t.Skip(err)
			}
			keys.Sign(req, id, body, time.Unix(ts, 0))
			return req
		}
		at := time.Unix(ts, 0).Add(time.Duration(skew%1000) * time.Second)
		gotID, gotBody, err := keys.Verify(newReq(method, body), at)
		if err == nil && gotID != id {
			t.Fatalf("signed as %q, verified as %q", id, gotID)
		}
		if !relayID(id) {
			return
		}
		d := at.Sub(time.Unix(ts, 0))
		switch {
		case d > MaxSkew || d < -MaxSkew:
			if !errors.Is(err, ErrStale) {
				t.Fatalf("%v off the timestamp: %v, want ErrStale", d, err)
			}
			return
		case err != nil || !bytes.Equal(gotBody, body):
			t.Fatalf("Verify(%s %q as %q) = %q, %q, %v", method, p, id, gotID, gotBody, err)
		}
		// The same header on another body or method, or checked with
		// another key, does not verify.
		req := newReq(method, body)
		req.Body = http.NoBody
		if len(body) > 0 {
			if _, _, err := keys.Verify(req, at); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("header on an empty body: %v", err)
			}
		}
		req = newReq(method, body)
		req.Method = fuzzMethods[(int(m)+1)%len(fuzzMethods)]
		if _, _, err := keys.Verify(req, at); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("header on another method: %v", err)
		}
		if _, _, err := otherKeys.Verify(newReq(method, body), at); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("checked with another key: %v", err)
		}
	})
}

// FuzzEdgeAuthHeader: any X-Jetty-Edge-Auth value is refused with one of
// Verify's errors unless it carries the signature of this very call; an
// accepted header names a relay id of 1..128 bytes and a timestamp
// within MaxSkew, and signing the call again as that id at that
// timestamp gives the same signature (no second header verifies for
// other claims than the ones signed).
func FuzzEdgeAuthHeader(f *testing.F) {
	keys, _ := NewKeys("fuzz edge secret")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"edge_1"}`)
	seed, _ := http.NewRequest(http.MethodPost, "http://origin.test/api/jetty/edges/heartbeat", nil)
	keys.Sign(seed, "edge_1", body, now)
	valid := seed.Header.Get(AuthHeader)
	for _, h := range []string{
		valid, strings.ToUpper(valid), strings.Replace(valid, "v1 ", "v2 ", 1), valid + ",id=edge_2", "v1 " + strings.TrimPrefix(valid, "v1 ") + ",ts=0",
		strings.ReplaceAll(valid, ",", " , "), "", "v1 ", "v1 id=,ts=,sig=", "v1 id=x,ts=99999999999999999999,sig=00",
		"v1 id=x,ts=-1,sig=" + strings.Repeat("0", 64), "v1 id=\x00,ts=+1800000000,sig=" + strings.Repeat("g", 64),
	} {
		f.Add(h, body)
	}
	f.Fuzz(func(t *testing.T, h string, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, "http://origin.test/api/jetty/edges/heartbeat", bytes.NewReader(body))
		req.Header.Set(AuthHeader, h)
		id, got, err := keys.Verify(req, now)
		if err != nil {
			if !errors.Is(err, ErrNoAuth) && !errors.Is(err, ErrBadAuth) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrStale) {
				t.Fatalf("Verify(%q): unexpected error %v", h, err)
			}
			return
		}
		if id == "" || len(id) > 128 || !bytes.Equal(got, body) {
			t.Fatalf("accepted %q: id %q, body %q", h, id, got)
		}
		var ts, sig string
		for _, kv := range strings.Split(strings.TrimPrefix(h, "v1 "), ",") {
			k, v, _ := strings.Cut(strings.Trim(kv, " \t"), "=")
			switch k {
			case "ts":
				ts = v
			case "sig":
				sig = v
			}
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			t.Fatalf("accepted %q with timestamp %q", h, ts)
		}
		if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
			t.Fatalf("accepted %q, %v off", h, d)
		}
		again, _ := http.NewRequest(http.MethodPost, "http://origin.test/api/jetty/edges/heartbeat", nil)
		keys.Sign(again, id, body, time.Unix(sec, 0))
		_, wantSig, _ := strings.Cut(again.Header.Get(AuthHeader), ",sig=")
		if !strings.EqualFold(sig, wantSig) || strconv.FormatInt(sec, 10) != ts {
			t.Fatalf("accepted %q: not the signature of (%q, %s)", h, id, ts)
		}
	})
}
