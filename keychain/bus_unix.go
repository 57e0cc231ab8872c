//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package keychain

import (
	"os"
	"path/filepath"
	"strconv"
)

// sessionBusMissing returns a *NoKeychainError when no D-Bus session bus
// can be found the way the D-Bus library looks for one before it tries to
// start one: DBUS_SESSION_BUS_ADDRESS, then the bus socket under
// $XDG_RUNTIME_DIR (or /run/user/UID). Without one, go-keyring would run
// dbus-launch (autolaunch), which fails where it is not installed ("exec:
// dbus-launch: executable file not found") and where it is, starts a
// stray bus with no Secret Service on it: jetty never autolaunches.
func sessionBusMissing(getenv func(string) string) *NoKeychainError {
	if a := getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return nil
	}
	dir := getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = "/run/user/" + strconv.Itoa(os.Getuid())
	}
	for _, name := range []string{"bus", "dbus-session"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
	}
	return &NoKeychainError{Why: "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no Secret Service can be reached"}
}
