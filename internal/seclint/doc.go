// Package seclint holds repository-wide checks that run as tests: today,
// that no secret is compared with a plain == or != (which returns as soon
// as a byte differs, and so tells a patient attacker how much of a guess
// was right). Secrets are compared with crypto/subtle or hmac.Equal.
package seclint
