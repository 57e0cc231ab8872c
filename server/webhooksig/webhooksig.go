// Package webhooksig signs and verifies partner webhook requests so a
// captured request cannot be replayed.
//
// The header is
//
//	X-Jetty-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//
// where the HMAC is keyed with the shared webhook secret and taken over
// "<t>.<METHOD> <path>.<body>". The request then carries no secret at all:
// someone who captures it learns neither the secret nor a way to sign
// another request, and the same request is refused once its timestamp is
// more than Tolerance (300 s) away from the receiver's clock. Inside that
// window a receiver refuses a signature it has already seen (Seen), so
// even a quick replay fails. Several v1= values may be sent (one per
// secret during a secret rotation); any one that verifies is enough.
//
// The scheme is the one Stripe and GitHub partners know (timestamped HMAC
// over the raw body), with the method and path folded in so a signature
// for /provision cannot be replayed against /delete with the same body.
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header is the request header that carries the signature.
const Header = "X-Jetty-Signature"

// Tolerance is how far the signed timestamp may be from the receiver's
// clock, either way.
const Tolerance = 300 * time.Second

// Errors from Verify. All of them mean "refuse the request"; they differ
// only so the error message can tell the partner what to fix.
var (
	ErrMalformed = errors.New("malformed signature header: want t=<unix seconds>,v1=<hex HMAC-SHA256>")
	ErrStale     = errors.New("signature timestamp is more than 300 s away from the server's clock (replayed request, or a clock to fix)")
	ErrMismatch  = errors.New("signature does not match the request: sign \"<t>.<METHOD> <path>.<raw body>\" with HMAC-SHA256 keyed by the webhook secret")
)

// maxHeader bounds what Parse reads: a few signatures, never megabytes.
const maxHeader = 1024

// Sign returns the header value for a request made at t.
func Sign(secret string, t time.Time, method, path string, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, method, path, body))
}

func mac(secret, ts, method, path string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write([]byte(strings.ToUpper(method)))
	m.Write([]byte{' '})
	m.Write([]byte(path))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Signature is a parsed header.
type Signature struct {
	Timestamp int64    // unix seconds
	V1        [][]byte // the HMACs offered, decoded
	ts        string   // the timestamp as sent (signed as is)
	replay    string   // set by Verify: what identifies this request
}

// Parse reads a header value. Unknown keys (future versions) are
// ignored; at least one well-formed v1 is required.
func Parse(h string) (Signature, error) {
	var s Signature
	if h == "" || len(h) > maxHeader {
		return s, ErrMalformed
	}
	seenT := false
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return s, ErrMalformed
		}
		switch k {
		case "t":
			if seenT || v == "" || len(v) > 12 || strings.TrimLeft(v, "0123456789") != "" {
				return s, ErrMalformed
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return s, ErrMalformed
			}
			s.Timestamp, s.ts, seenT = n, v, true
		case "v1":
			if len(v) != 2*sha256.Size {
				return s, ErrMalformed
			}
			b, err := hex.DecodeString(v)
			if err != nil {
				return s, ErrMalformed
			}
			s.V1 = append(s.V1, b)
		}
	}
	if !seenT || len(s.V1) == 0 || len(s.V1) > 4 {
		return s, ErrMalformed
	}
	return s, nil
}

// Verify checks header h against the request and the receiver's clock.
// Every offered v1 is compared (in constant time) against every secret,
// so the time taken does not say which one matched.
func Verify(h string, secrets []string, now time.Time, method, path string, body []byte) (Signature, error) {
	s, err := Parse(h)
	if err != nil {
		return s, err
	}
	if d := now.Sub(time.Unix(s.Timestamp, 0)); d > Tolerance || d < -Tolerance {
		return s, ErrStale
	}
	ok := false
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		want := mac(secret, s.ts, method, path, body)
		for _, got := range s.V1 {
			if hmac.Equal(got, want) {
				ok = true
			}
		}
	}
	if !ok {
		return s, ErrMismatch
	}
	// The signed message, not the signature bytes, names the request: a
	// replay with the v1 values reordered or one of them dropped is still
	// the same request.
	d := sha256.Sum256(append([]byte(s.ts+"."+strings.ToUpper(method)+" "+path+"."), body...))
	s.replay = "whsig:" + hex.EncodeToString(d[:16])
	return s, nil
}

// ReplayKey is the key under which a receiver remembers a verified
// request for twice the Tolerance, to refuse it a second time. Empty
// before Verify succeeds.
func (s Signature) ReplayKey() string { return s.replay }
