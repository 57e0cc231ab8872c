//go:build !((dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd)

package keychain

// sessionBusMissing: the keychain of this OS needs no D-Bus.
func sessionBusMissing(func(string) string) *NoKeychainError { return nil }
