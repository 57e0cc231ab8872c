package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/keychain"
	"github.com/jettythunder/jetty/protocol"
)

// ClientOptions are the flags every command that talks to a server takes.
type ClientOptions struct {
	Server string // --server; "" means JETTY_SERVER, then the logged-in server
}

// Origin says where a client's server URL and credentials came from.
type Origin struct {
	Server      ServerSource
	Credentials keychain.Source
}

// Client resolves the server and credentials (flags, then JETTY_SERVER /
// JETTY_API_KEY / JETTY_API_SECRET, then the credential store: the OS
// keychain, then the plain file) and returns a client for them, with
// where they came from. With credentials in the environment the store is
// never built.
func (f *Factory) Client(o ClientOptions) (*engine.Client, Origin, error) {
	key, secret := f.Getenv("JETTY_API_KEY"), f.Getenv("JETTY_API_SECRET")
	if key != "" || secret != "" {
		if key == "" || secret == "" {
			return nil, Origin{}, authError("JETTY_API_KEY and JETTY_API_SECRET must be set together")
		}
		server, from := f.GivenServer(o.Server)
		if server == "" {
			return nil, Origin{}, authError("JETTY_API_KEY is set but JETTY_SERVER is not: set JETTY_SERVER to the server's URL")
		}
		c := &engine.Client{BaseURL: strings.TrimRight(server, "/"), APIKey: key, APISecret: secret, UserAgent: userAgent()}
		return c, Origin{Server: from, Credentials: keychain.Source{Kind: keychain.SourceEnv}}, nil
	}
	server, from, err := f.ResolveServer(o.Server)
	if err != nil {
		return nil, Origin{}, err
	}
	if server == "" {
		return nil, Origin{}, &ExitError{Code: ExitAuth, Err: &keychain.NotLoggedInError{}}
	}
	cr, source, err := f.store().Load(server)
	if err != nil {
		if errors.Is(err, keychain.ErrNotFound) {
			return nil, Origin{}, &ExitError{Code: ExitAuth, Err: err}
		}
		return nil, Origin{}, err
	}
	c := &engine.Client{BaseURL: strings.TrimRight(cr.Server, "/"), APIKey: cr.APIKey, APISecret: cr.APISecret, UserAgent: userAgent()}
	return c, Origin{Server: from, Credentials: source}, nil
}

func userAgent() string { return "jetty/" + version }

// authError is an error with the auth exit code.
func authError(format string, args ...any) error {
	return &ExitError{Code: ExitAuth, Err: fmt.Errorf(format, args...)}
}

// fileNotFound adds what to do to the server's 404 for a file id (of
// download and rm): the one place this hint is added.
func fileNotFound(err error) error {
	var ae *engine.APIError
	if errors.As(err, &ae) && ae.Status == 404 && ae.Code == protocol.CodeNotFound {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w\n(run `jetty ls` to list your files and their ids)", err)}
	}
	return err
}

// apiFailure maps an error from the server or the engine to the exit
// code scripts rely on, and adds what to do next.
func apiFailure(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	if rf := reachFailure(err); rf != nil {
		return rf
	}
	if engine.IsStorageFull(err) {
		return &ExitError{Code: ExitStorageFull, Err: fmt.Errorf("%w\n(the server cannot store more now: run the same command later, it resumes and sends only what is missing; tell the server's operator if it lasts)", err)}
	}
	var ae *engine.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Status == 401:
		return &ExitError{Code: ExitAuth, Err: fmt.Errorf("%w\n(run `jetty login` again, or check JETTY_API_KEY and JETTY_API_SECRET)", err)}
	case ae.Code == "account_suspended" || ae.Code == "account_deleted":
		return &ExitError{Code: ExitAuth, Err: err}
	case ae.Code == "too_large":
		// A per-file limit: deleting files cannot help.
		return &ExitError{Code: ExitQuota, Err: fmt.Errorf("%w\n(see `jetty quota` for your tier; split the file or upgrade the tier)", err)}
	case ae.Status == 413 || ae.Code == "quota_exceeded" || ae.Code == "bandwidth_quota_exceeded" || ae.Code == "tier_lacks_feature":
		return &ExitError{Code: ExitQuota, Err: fmt.Errorf("%w\n(see `jetty quota`; delete files with `jetty rm` or upgrade the tier)", err)}
	}
	return err
}
