package api

import (
	"fmt"
	"regexp"
	"strings"
)

// credentialLike matches what an API key, API secret or bearer token
// looks like inside free text: the key and secret prefixes, and whatever
// follows "Bearer ".
var credentialLike = regexp.MustCompile(`(?i)(jt_(?:live|test)_|jts_)[A-Za-z0-9_\-]+|(bearer\s+)\S+`)

// scrub removes credentials from text that is about to be logged but was
// not built by us (a panic value, a library's error): the webhook secrets
// this server knows, anything shaped like a key, secret or bearer token.
func (s *Server) scrub(text string) string {
	for _, sec := range []string{s.secret, s.prevSecret} {
		if len(sec) >= 8 {
			text = strings.ReplaceAll(text, sec, "[redacted]")
		}
	}
	// $1 is a key or secret prefix, $2 "Bearer ": one of them is empty.
	return credentialLike.ReplaceAllString(text, "${1}${2}[redacted]")
}

// panicText is a recovered panic value, scrubbed, for the log.
func (s *Server) panicText(p any) string {
	return s.scrub(fmt.Sprint(p))
}
