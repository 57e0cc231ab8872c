package keychain

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	gokeyring "github.com/zalando/go-keyring"
)

// ErrNotFound means nothing is stored under the service and user asked
// for (or, from Store.Load, no credentials at all for the server).
var ErrNotFound = errors.New("not found")

// ErrUnavailable means the OS keychain could not be used: no Secret
// Service on the session bus, no session bus, a locked keychain whose
// prompt was dismissed, or no answer within the timeout. Errors that wrap
// it also wrap the cause.
var ErrUnavailable = errors.New("OS keychain unavailable")

// errTimeout is the cause of ErrUnavailable when the keychain did not
// answer in time.
var errTimeout = errors.New("no answer")

// DefaultTimeout bounds every call to the OS keychain. go-keyring talks
// D-Bus to the Secret Service on Linux; on a headless machine with a
// session bus but no keyring daemon, a call can wait for service
// activation for a long time (or forever).
const DefaultTimeout = 3 * time.Second

// Keyring stores one secret per service and user.
type Keyring interface {
	// Get returns the secret, or an error wrapping ErrNotFound or
	// ErrUnavailable.
	Get(service, user string) (string, error)
	// Set stores (or replaces) the secret.
	Set(service, user, secret string) error
	// Delete removes the secret; ErrNotFound when there was none.
	Delete(service, user string) error
}

// System returns the OS keychain (Secret Service on Linux and the BSDs,
// Keychain on macOS, Credential Manager on Windows) through go-keyring,
// with every call bounded by DefaultTimeout.
func System() Keyring { return WithTimeout(systemKeyring{}, DefaultTimeout) }

// systemKeyring adapts go-keyring: its not-found error becomes
// ErrNotFound, every other error ErrUnavailable (wrapping it).
type systemKeyring struct{}

func (systemKeyring) Get(service, user string) (string, error) {
	if e := sessionBusMissing(os.Getenv); e != nil {
		return "", e
	}
	s, err := gokeyring.Get(service, user)
	return s, systemErr(err)
}

func (systemKeyring) Set(service, user, secret string) error {
	if e := sessionBusMissing(os.Getenv); e != nil {
		return e
	}
	return systemErr(gokeyring.Set(service, user, secret))
}

func (systemKeyring) Delete(service, user string) error {
	if e := sessionBusMissing(os.Getenv); e != nil {
		return e
	}
	return systemErr(gokeyring.Delete(service, user))
}

// systemErr maps go-keyring's errors: not found is ErrNotFound; no
// keychain at all (no bus, no Secret Service) a *NoKeychainError; any
// other failure ErrUnavailable wrapping the cause.
func systemErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gokeyring.ErrNotFound):
		return ErrNotFound
	}
	if nk := noKeychain(err); nk != nil {
		return nk
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// WithTimeout bounds every call to k by d. A call that does not return
// in time fails with an error wrapping ErrUnavailable; the call itself is
// left to finish in the background (there is no way to cancel it). After
// one timeout the keyring is considered gone: later calls fail at once
// instead of waiting again.
func WithTimeout(k Keyring, d time.Duration) Keyring {
	return &timeoutKeyring{k: k, d: d}
}

type timeoutKeyring struct {
	k Keyring
	d time.Duration

	mu   sync.Mutex
	dead error // set after the first timeout
}

func (t *timeoutKeyring) Get(service, user string) (string, error) {
	var s string
	err := t.call("read", func(k Keyring) (err error) {
		s, err = k.Get(service, user)
		return err
	})
	if err != nil {
		return "", err
	}
	return s, nil
}

func (t *timeoutKeyring) Set(service, user, secret string) error {
	return t.call("write", func(k Keyring) error { return k.Set(service, user, secret) })
}

func (t *timeoutKeyring) Delete(service, user string) error {
	return t.call("delete", func(k Keyring) error { return k.Delete(service, user) })
}

func (t *timeoutKeyring) call(op string, f func(Keyring) error) error {
	t.mu.Lock()
	dead := t.dead
	t.mu.Unlock()
	if dead != nil {
		return dead
	}
	done := make(chan error, 1) // buffered: a late answer never blocks the goroutine
	go func() { done <- f(t.k) }()
	timer := time.NewTimer(t.d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		err := fmt.Errorf("%w: %w from the keychain within %s (%s); is a Secret Service such as gnome-keyring running and unlocked?", ErrUnavailable, errTimeout, t.d, op)
		t.mu.Lock()
		t.dead = err
		t.mu.Unlock()
		return err
	}
}
