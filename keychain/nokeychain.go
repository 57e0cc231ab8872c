package keychain

import (
	"errors"
	"net"
	"syscall"

	"github.com/godbus/dbus/v5"
)

// NoKeychainError means there is no OS keychain to use at all (rather
// than one that failed): on Linux and the BSDs, no D-Bus session bus
// (DBUS_SESSION_BUS_ADDRESS unset and no $XDG_RUNTIME_DIR/bus), a bus
// that does not answer, or no Secret Service on it. It wraps
// ErrUnavailable, so callers fall back to the plain file; its message is
// plain words, never the D-Bus library's.
type NoKeychainError struct {
	// Why is the reason in plain words ("no D-Bus session bus").
	Why string
	// Err is the underlying error, if any (not shown).
	Err error
}

func (e *NoKeychainError) Error() string {
	return "no OS keychain is available: " + e.Why
}

// Is makes a *NoKeychainError match ErrUnavailable.
func (e *NoKeychainError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap is the underlying error.
func (e *NoKeychainError) Unwrap() error { return e.Err }

// dbusServiceUnknown is the D-Bus error of a name nobody owns and no
// .service file can start: no Secret Service is installed.
const dbusServiceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown"

// noKeychain recognises, among go-keyring's errors, those that mean no
// keychain exists here (the bus cannot be reached, or no Secret Service
// is on it), and returns them as a *NoKeychainError; other errors are
// returned as nil.
func noKeychain(err error) *NoKeychainError {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &de) && de.Name == dbusServiceUnknown,
		errors.As(err, &dep) && dep.Name == dbusServiceUnknown:
		return &NoKeychainError{Why: "no Secret Service (such as gnome-keyring or KeePassXC) runs on the D-Bus session bus", Err: err}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return &NoKeychainError{Why: "the D-Bus session bus (DBUS_SESSION_BUS_ADDRESS) does not answer, so no Secret Service can be reached", Err: err}
	}
	return nil
}
