package main

import (
	"errors"

	"github.com/jettythunder/jetty/keychain"
)

// CredentialStore is where `jetty login` keeps credentials and `jetty
// logout` removes them: a *keychain.Store (the OS keychain, then the plain
// file). Tests use a keychain.Store with a fake keyring.
type CredentialStore interface {
	Save(server, key, secret string, insecure bool) (source string, err error)
	Load(server string) (keychain.Credentials, string, error)
	Delete(server string) (removed []string, err error)
	Current() (string, error)
}

// systemStore is the store main uses: the OS keychain with its timeout,
// then $XDG_CONFIG_HOME/jetty (or ~/.config/jetty), warnings on stderr.
func systemStore(f *Factory) *keychain.Store {
	dir, _ := keychain.DefaultDir(f.Getenv) // an error surfaces on first use
	return &keychain.Store{Keyring: keychain.System(), Dir: dir, Warn: f.IO.ErrOut}
}

// loadFrom adapts a store to Factory.LoadCredentials: nothing stored is
// an auth error (exit 3).
func loadFrom(s CredentialStore) func(string) (Credentials, string, error) {
	return func(server string) (Credentials, string, error) {
		c, source, err := s.Load(server)
		if err != nil {
			if errors.Is(err, keychain.ErrNotFound) {
				return Credentials{}, "", &ExitError{Code: ExitAuth, Err: err}
			}
			return Credentials{}, "", err
		}
		return Credentials(c), source, nil
	}
}
