package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server"
)

// rangeSyntax is what a single byte range may look like (RFC 9110
// 14.1.2, with optional whitespace around the numbers): digits only, no
// signs.
var rangeSyntax = regexp.MustCompile(`^bytes=[ \t]*([0-9]+[ \t]*-[ \t]*[0-9]*|-[ \t]*[0-9]+)[ \t]*$`)

// FuzzParseRange: for any Range header and object size, parseRange
// either ignores the header (absent, or several ranges), refuses it with
// EInvalidRange, or returns a range of 1+ bytes inside the object
// (0 <= start, start+length <= size, no overflow) from a header of RFC
// syntax; formatting that range as bytes=start-end parses back to it;
// and on headers of strict syntax it agrees with a reference computed
// in uint64 without clamping tricks.
func FuzzParseRange(f *testing.F) {
	for _, c := range []struct {
		h    string
		size int64
	}{
		{"bytes=0-99", 1000}, {"bytes=500-", 1000}, {"bytes=-10", 1000}, {"bytes=990-5000", 1000},
		{"bytes=0-0,5-6", 1000}, {"bytes=1000-", 1000}, {"bytes=5-2", 1000}, {"items=0-1", 1000},
		{"bytes=abc", 1000}, {"bytes=-0", 1000}, {"bytes=0-", 0}, {"bytes=-5", 0}, {"bytes=--5", 10},
		{"bytes=-9223372036854775808", 10}, {"bytes=9223372036854775807-", 1 << 62},
		{"bytes=0-9223372036854775807", 1<<63 - 1}, {"bytes=0-18446744073709551616", 10},
		{"bytes=+5-", 10}, {"bytes=-+5", 10}, {"bytes=5-+6", 10}, {"bytes= 1 - 2 ", 10}, {"bytes=\x00", 10},
		{"bytes=1-2, 3-4", 10}, {"bytes=,", 10}, {"bytes=-", 10}, {"bytes=0x10-", 100}, {"bytes=1_0-", 100},
		{"BYTES=0-1", 10}, {"bytes=" + strings.Repeat("9", 400) + "-", 10}, {"bytes=0-1", -1},
	} {
		f.Add(c.h, c.size)
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -(size + 1) // object sizes are never negative
		}
		br, ok, err := parseRange(h, size)
		if err != nil {
			if ok || server.ErrorCode(err) != server.EInvalidRange {
				t.Fatalf("parseRange(%q, %d) = %v, %v", h, size, ok, err)
			}
		} else if !ok {
			if h != "" && !(strings.HasPrefix(h, "bytes=") && strings.Contains(h, ",")) {
				t.Fatalf("parseRange(%q, %d) ignored the header", h, size)
			}
		} else {
			if br.start < 0 || br.length < 1 || br.start > size-br.length {
				t.Fatalf("parseRange(%q, %d) = %+v, outside the object", h, size, br)
			}
			if !rangeSyntax.MatchString(h) {
				t.Fatalf("parseRange(%q, %d) accepted a header that is not RFC syntax: %+v", h, size, br)
			}
			back, ok2, err2 := parseRange(fmt.Sprintf("bytes=%d-%d", br.start, br.start+br.length-1), size)
			if err2 != nil || !ok2 || back != br {
				t.Fatalf("%+v formatted and parsed again: %+v, %v, %v", br, back, ok2, err2)
			}
		}
		if want, wok := referenceRange(h, size); wok != (ok && err == nil) || (wok && want != br) {
			if rangeStrict.MatchString(h) {
				t.Fatalf("parseRange(%q, %d) = %+v, %v, %v; the reference says %+v, %v", h, size, br, ok, err, want, wok)
			}
		}
	})
}

// rangeStrict is one range without whitespace.
var rangeStrict = regexp.MustCompile(`^bytes=([0-9]*)-([0-9]*)$`)

// referenceRange resolves a strict single range the RFC way, with
// numbers of any length: first-last (last clipped to size-1), first-
// (to the end), -n (the last n bytes); ok is false when unsatisfiable.
func referenceRange(h string, size int64) (byteRange, bool) {
	m := rangeStrict.FindStringSubmatch(h)
	if m == nil || (m[1] == "" && m[2] == "") {
		return byteRange{}, false
	}
	num := func(s string) (uint64, bool) {
		s = strings.TrimLeft(s, "0")
		if s == "" {
			return 0, true
		}
		if len(s) > 19 {
			return 0, false // beyond int64: too big for any object
		}
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
	sz := uint64(size)
	if m[1] == "" {
		n, fits := num(m[2])
		if !fits {
			n = sz // an enormous suffix: the whole object
		}
		n = min(n, sz)
		if n == 0 {
			return byteRange{}, false
		}
		return byteRange{start: int64(sz - n), length: int64(n)}, true
	}
	first, fits := num(m[1])
	if !fits || first >= sz {
		return byteRange{}, false
	}
	last := sz - 1
	if m[2] != "" {
		l, fits := num(m[2])
		if fits && l < first {
			return byteRange{}, false
		}
		if fits {
			last = min(l, sz-1)
		}
	}
	return byteRange{start: int64(first), length: int64(last - first + 1)}, true
}
