package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/apiclient"
)

// ClientOptions are the flags every command that talks to a server takes.
type ClientOptions struct {
	Server string // --server; "" means JETTY_SERVER, then the logged-in server
}

// Client resolves the server and credentials (flags, then JETTY_SERVER /
// JETTY_API_KEY / JETTY_API_SECRET, then the OS keychain, then the plain
// file) and returns a client for them, with where the credentials came
// from.
func (f *Factory) Client(o ClientOptions) (*apiclient.Client, string, error) {
	server := o.Server
	if server == "" {
		server = f.Getenv("JETTY_SERVER")
	}
	key, secret := f.Getenv("JETTY_API_KEY"), f.Getenv("JETTY_API_SECRET")
	if key != "" || secret != "" {
		if key == "" || secret == "" {
			return nil, "", authError("JETTY_API_KEY and JETTY_API_SECRET must be set together")
		}
		if server == "" {
			return nil, "", authError("JETTY_API_KEY is set but JETTY_SERVER is not: set JETTY_SERVER to the server's URL")
		}
		return &apiclient.Client{BaseURL: strings.TrimRight(server, "/"), APIKey: key, APISecret: secret, UserAgent: userAgent()}, "environment", nil
	}
	if f.LoadCredentials == nil {
		return nil, "", authError("not logged in: run `jetty login --server URL`, or set JETTY_SERVER, JETTY_API_KEY and JETTY_API_SECRET")
	}
	c, source, err := f.LoadCredentials(server)
	if err != nil {
		return nil, "", err
	}
	return &apiclient.Client{BaseURL: strings.TrimRight(c.Server, "/"), APIKey: c.APIKey, APISecret: c.APISecret, UserAgent: userAgent()}, source, nil
}

func userAgent() string { return "jetty/" + version }

// authError is an error with the auth exit code.
func authError(format string, args ...any) error {
	return &ExitError{Code: ExitAuth, Err: fmt.Errorf(format, args...)}
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
	case ae.Status == 413 || ae.Code == "quota_exceeded" || ae.Code == "too_large" || ae.Code == "bandwidth_quota_exceeded" || ae.Code == "tier_lacks_feature":
		return &ExitError{Code: ExitQuota, Err: fmt.Errorf("%w\n(see `jetty quota`; delete files with `jetty rm` or upgrade the tier)", err)}
	}
	return err
}
