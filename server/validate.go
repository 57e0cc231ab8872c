package server

import (
	"net/mail"
	"strings"

	"github.com/jettythunder/jetty/protocol"
)

// MaxUserIDLen bounds agentcache_user_id. It becomes part of object keys
// (users/{user_id}/...), which S3 limits to 1024 bytes in all.
const MaxUserIDLen = 128

// MaxEmailLen is the longest e-mail address accepted (RFC 5321 path limit).
const MaxEmailLen = 254

// ValidateUserID checks an AgentCache user id. It ends up in an object-key
// prefix, so only [A-Za-z0-9_-] and inner dots are allowed: no slashes, no
// "..", no control characters, no spaces, at most MaxUserIDLen bytes. Seed
// ids such as "usr_test_123" and UUIDs pass.
func ValidateUserID(id string) error {
	if id == "" {
		return Errorf(EInvalidUserID, "agentcache_user_id is required")
	}
	if len(id) > MaxUserIDLen {
		return Errorf(EInvalidUserID, "agentcache_user_id is %d bytes long; the limit is %d", len(id), MaxUserIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '.':
			if i == 0 || i == len(id)-1 || id[i-1] == '.' {
				return Errorf(EInvalidUserID, "agentcache_user_id may not start or end with '.' or contain '..'")
			}
		default:
			return Errorf(EInvalidUserID, "agentcache_user_id may contain only letters, digits, '_', '-' and '.' (found %q at byte %d)", rune(c), i)
		}
	}
	return nil
}

// ValidateEmail checks an e-mail address loosely: one address, no display
// name, no control characters, a sane length.
func ValidateEmail(email string) error {
	if email == "" {
		return Errorf(EInvalid, "agentcache_email is required")
	}
	if len(email) > MaxEmailLen {
		return Errorf(EInvalid, "agentcache_email is longer than %d bytes", MaxEmailLen)
	}
	if strings.ContainsFunc(email, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Errorf(EInvalid, "agentcache_email contains control characters")
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email {
		return Errorf(EInvalid, "agentcache_email %q is not an e-mail address", email)
	}
	return nil
}

// ValidateTierName checks the shape of a tier name before it is looked up.
func ValidateTierName(tier string) error {
	if tier == "" {
		return Errorf(EInvalid, "tier is required")
	}
	if len(tier) > 20 {
		return Errorf(EUnknownTier, "unknown tier %q", tier[:20]+"...")
	}
	return nil
}

// NormalizePipelineID checks an AgentCache pipeline id
// (agentcache_pipeline_id, a UUID in seed 002's schema) and returns it in
// canonical form (protocol.NormalizePipelineID): the 36-character
// hyphenated UUID in lower case. "" (none) stays "". Other spellings a
// UUID parser would take (braces, "urn:uuid:", no hyphens) are EInvalid,
// so one pipeline has one spelling and a lookup by it finds every asset.
func NormalizePipelineID(id string) (string, error) {
	if id == "" {
		return "", nil
	}
	p, ok := protocol.NormalizePipelineID(id)
	if !ok {
		return "", Errorf(EInvalid, "pipeline id must be a UUID such as 123e4567-e89b-12d3-a456-426614174000 (36 characters: hex digits, hyphens after the 8th, 12th, 16th and 20th)")
	}
	return p, nil
}
