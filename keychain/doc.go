// Package keychain will store client credentials: the OS keychain through
// go-keyring with timeouts, environment overrides, and an explicit 0600
// plain-file fallback. Nothing is implemented here yet (see issue 5).
package keychain
