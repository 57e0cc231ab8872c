package keychain

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestNoKeychainClassified(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "unix", Err: syscall.ENOENT}
	for _, tc := range []struct {
		err  error
		none bool // no keychain
	}{
		{dbus.Error{Name: dbusServiceUnknown, Body: []any{"The name org.freedesktop.secrets was not provided by any .service files"}}, true},
		{&dbus.Error{Name: dbusServiceUnknown}, true},
		{fmt.Errorf("connect: %w", dial), true},
		{dbus.Error{Name: "org.freedesktop.Secret.Error.IsLocked"}, false},
		{errors.New("prompt dismissed"), false},
	} {
		err := systemErr(tc.err)
		var nk *NoKeychainError
		if got := errors.As(err, &nk); got != tc.none || !errors.Is(err, ErrUnavailable) {
			t.Errorf("%v: no keychain %v, want %v (unavailable %v)", tc.err, got, tc.none, errors.Is(err, ErrUnavailable))
		}
		if tc.none && (strings.Contains(err.Error(), "org.freedesktop") || strings.Contains(err.Error(), "dial")) {
			t.Errorf("%v: the message is not plain words: %q", tc.err, err)
		}
	}
}

func TestSessionBusMissing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the session bus is looked for on Linux and the BSDs")
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	dir := t.TempDir()
	if e := sessionBusMissing(env(map[string]string{"XDG_RUNTIME_DIR": dir})); e == nil {
		t.Fatal("no address and no bus socket: want a *NoKeychainError")
	}
	if e := sessionBusMissing(env(map[string]string{"XDG_RUNTIME_DIR": dir, "DBUS_SESSION_BUS_ADDRESS": "autolaunch:"})); e == nil {
		t.Fatal("autolaunch: is no address")
	}
	if e := sessionBusMissing(env(map[string]string{"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"})); e != nil {
		t.Fatalf("an address: %v", e)
	}
}
