package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// NetProblem is why a server could not be reached, in the few kinds a
// person can act on.
type NetProblem int

const (
	NetOther     NetProblem = iota // anything else on the way
	NetRefused                     // nothing listens at the address (connection refused)
	NetDNS                         // the host name was not found
	NetTLS                         // the TLS handshake or the certificate failed
	NetPlainHTTP                   // an https:// URL, but the server speaks plain HTTP
	NetTimeout                     // no answer in time
)

// ReachError is a call that got no answer from the server: the network,
// DNS or TLS failed, or the server did not answer in time. Its message
// names the server and says what happened in plain words (the URL,
// "dial tcp" and the like stay in Err); Err is the transport's error
// (a *url.Error), so Retryable and errors.Is see through it.
type ReachError struct {
	Server string // the server's base URL
	Err    error
}

func (e *ReachError) Error() string {
	_, words := ClassifyNet(e.Err)
	return "cannot reach " + e.Server + ": " + words
}

func (e *ReachError) Unwrap() error { return e.Err }

// ClassifyNet says what kind of network failure err is, and describes it
// in plain words ("connection refused: nothing is listening there").
func ClassifyNet(err error) (NetProblem, string) {
	var dns *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	var rh tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return NetDNS, "the host name " + dns.Name + " was not found (DNS)"
		}
		if dns.IsTimeout {
			return NetDNS, "looking up the host name " + dns.Name + " timed out (DNS)"
		}
		return NetDNS, "looking up the host name " + dns.Name + " failed (DNS: " + dns.Err + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return NetRefused, "connection refused: nothing is listening there"
	case strings.Contains(errText(err), "server gave HTTP response to HTTPS client"), errors.As(err, &rh):
		return NetPlainHTTP, "the server answered in plain HTTP to an https:// URL"
	case errors.As(err, &unknownCA):
		return NetTLS, "its TLS certificate is signed by an authority this machine does not trust"
	case errors.As(err, &hostname):
		return NetTLS, "its TLS certificate is not valid for this host name (" + hostname.Error() + ")"
	case errors.As(err, &invalid):
		return NetTLS, "its TLS certificate is not valid (" + invalid.Error() + ")"
	case errors.As(err, &verify):
		return NetTLS, "its TLS certificate could not be verified (" + verify.Err.Error() + ")"
	case errors.As(err, &alert):
		return NetTLS, "the TLS handshake failed (" + alert.Error() + ")"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return NetTimeout, "no answer in time"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return NetOther, "the connection was reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return NetOther, "no route to the host (network unreachable)"
	}
	return NetOther, innermost(err)
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// innermost is the message of the transport's own cause, without the
// "Get "URL": dial tcp …" wrapping of *url.Error and *net.OpError.
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return errText(err)
}

// Reach checks that the server answers at all, without credentials (GET
// /healthz): any HTTP answer is a server there; no answer is a
// *ReachError. Login calls it before asking for a key and a secret.
func (c *Client) Reach(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint("/healthz"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", c.userAgent())
	resp, err := c.send(req, 0)
	if err != nil {
		return &ReachError{Server: c.serverKey(), Err: err}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return nil
}
