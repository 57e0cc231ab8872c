package main

import (
	"errors"
	"sync"

	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/keychain"
)

// CredentialStore is where `jetty login` keeps credentials, `jetty
// logout` removes them and every other command finds them: a
// *keychain.Store (the OS keychain, then the plain file). Tests use a
// keychain.Store with a fake keyring.
type CredentialStore interface {
	Save(server, key, secret string, insecure bool) (keychain.Source, error)
	Load(server string) (keychain.Credentials, keychain.Source, error)
	Delete(server string) (removed []keychain.Source, err error)
	Current() (string, error)
}

// newFactory is the factory main uses: the credential store is the
// system one, built on first use.
func newFactory(io *iostreams.IOStreams, getenv func(string) string) *Factory {
	f := &Factory{IO: io, Getenv: getenv}
	f.Credentials = lazyStore(func() CredentialStore { return systemStore(f) })
	return f
}

// lazyStore builds the store on the first call and returns that one
// store on every call, so a command that never asks for it (credentials
// in the environment, `jetty version`, `jetty server`) never builds it,
// and a keychain timeout seen once is remembered for the whole run.
func lazyStore(build func() CredentialStore) func() CredentialStore {
	return sync.OnceValue(build)
}

// systemStore is the store main uses: the OS keychain with its timeout,
// then $XDG_CONFIG_HOME/jetty (or ~/.config/jetty), warnings on stderr.
func systemStore(f *Factory) *keychain.Store {
	dir, _ := keychain.DefaultDir(f.Getenv) // an error surfaces on first use
	return &keychain.Store{Keyring: keychain.System(), Dir: dir, Warn: f.IO.ErrOut}
}

// store returns the factory's credential store. A Factory without one
// (tests that need no stored credentials) has an empty store that cannot
// keep anything.
func (f *Factory) store() CredentialStore {
	if f.Credentials == nil {
		return noStore{}
	}
	return f.Credentials()
}

// noStore holds nothing and cannot store.
type noStore struct{}

func (noStore) Save(string, string, string, bool) (keychain.Source, error) {
	return keychain.Source{}, errors.New("no credential store")
}

func (noStore) Load(string) (keychain.Credentials, keychain.Source, error) {
	return keychain.Credentials{}, keychain.Source{}, &keychain.NotLoggedInError{}
}

func (noStore) Delete(string) ([]keychain.Source, error) { return nil, nil }
func (noStore) Current() (string, error)                 { return "", nil }

// ServerSource says where a command's server URL came from.
type ServerSource int

const (
	ServerNone  ServerSource = iota // none given and none logged in to
	ServerFlag                      // --server
	ServerEnv                       // JETTY_SERVER
	ServerLogin                     // the server last logged in to
)

// String is the name `jetty whoami --json` prints as server_source.
func (s ServerSource) String() string {
	switch s {
	case ServerFlag:
		return "flag"
	case ServerEnv:
		return "environment"
	case ServerLogin:
		return "login"
	}
	return ""
}

// GivenServer is the server the user named: --server (flag), then
// JETTY_SERVER. It never looks at the credential store: login, and
// commands with credentials in the environment, use only this. The URL
// is returned as given; callers normalise it.
func (f *Factory) GivenServer(flag string) (string, ServerSource) {
	if flag != "" {
		return flag, ServerFlag
	}
	if env := f.Getenv("JETTY_SERVER"); env != "" {
		return env, ServerEnv
	}
	return "", ServerNone
}

// ResolveServer is the server a command talks to: GivenServer, else the
// server last logged in to (the credential store's current server, read
// only then). There is no default: none is ("", ServerNone, nil).
func (f *Factory) ResolveServer(flag string) (string, ServerSource, error) {
	if s, from := f.GivenServer(flag); s != "" {
		return s, from, nil
	}
	cur, err := f.store().Current()
	if err != nil || cur == "" {
		return "", ServerNone, err
	}
	return cur, ServerLogin, nil
}
