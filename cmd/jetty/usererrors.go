package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jettythunder/jetty/engine"
)

// reachFailure is the one place a server that could not be reached
// becomes a message: which server, what happened in plain words, and
// what to do next (per kind: refused, DNS, TLS, plain HTTP, timeout).
// It returns nil when err is not a network failure (or is an
// interruption: Ctrl-C is not the network's fault).
func reachFailure(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	var msg, server string
	var cause error
	var re *engine.ReachError
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		msg, server, cause = err.Error(), re.Server, re.Err
	case errors.As(err, &ue):
		// A call outside the control API (a chunk to an edge, a ranged
		// read): name the host it went to.
		server = ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			server = u.Scheme + "://" + u.Host
		}
		_, words := engine.ClassifyNet(ue)
		plain := "cannot reach " + server + ": " + words
		// Keep what the error says around the transport's text (the
		// file's name, "gave up after 8 attempts").
		msg, cause = strings.Replace(err.Error(), ue.Error(), plain, 1), ue
		if msg == err.Error() {
			msg = plain
		}
	default:
		return nil
	}
	where := "check the URL (--server, JETTY_SERVER or the server you logged in to)"
	again := "then run the same command again (uploads and downloads resume where they stopped)"
	var next string
	switch kind, _ := engine.ClassifyNet(cause); kind {
	case engine.NetRefused:
		next = "the server is not answering: is `jetty server` running there? Check --server or JETTY_SERVER,\nthen run the same command again (uploads and downloads resume where they stopped)"
	case engine.NetDNS:
		next = fmt.Sprintf("%s for a misspelt host name, and your network connection", where)
	case engine.NetPlainHTTP:
		next = "the server does not speak HTTPS: use an http:// URL (--server, JETTY_SERVER), or put TLS in front of it"
	case engine.NetTLS:
		next = "if the server uses a private certificate authority, add it to this machine's trusted certificates or set SSL_CERT_FILE to it; check that the URL's host name is the one in its certificate and that the clock is right"
	case engine.NetTimeout:
		next = fmt.Sprintf("check your network connection and any proxy (HTTPS_PROXY), %s", again)
	default:
		next = fmt.Sprintf("check your network connection and %s, %s", where[len("check "):], again)
	}
	return &ExitError{Code: ExitFailure, Err: &hintedError{msg: msg + "\n(" + next + ")", err: err}}
}

// hintedError replaces an error's message with one that says what to do
// next, keeping the error for errors.Is and errors.As.
type hintedError struct {
	msg string
	err error
}

func (e *hintedError) Error() string { return e.msg }
func (e *hintedError) Unwrap() error { return e.err }

// pathFailure is the one place a local file that cannot be used becomes
// a message: "no such file: PATH" or "cannot read PATH: permission
// denied", with what to do next, instead of Go's "stat PATH: no such
// file or directory". given is the path as the user gave it (shown when
// the failing path is that file); it returns nil when err is not about
// a path.
func pathFailure(given string, err error) error {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return nil
	}
	p := pe.Path
	if given != "" && sameFilePath(given, p) {
		p = given
	}
	shown := safeName(p)
	var msg, next string
	switch {
	case errors.Is(pe.Err, fs.ErrNotExist):
		msg = "no such file: " + shown
		if !filepath.IsAbs(p) {
			if wd, werr := os.Getwd(); werr == nil {
				next = "check the path; it is relative to the current directory, " + safeName(wd)
			}
		}
		if next == "" {
			next = "check the path"
		}
	case errors.Is(pe.Err, fs.ErrPermission):
		msg = "cannot read " + shown + ": permission denied"
		next = "check its permissions and those of its directories (ls -l " + shown + ")"
	case errors.Is(pe.Err, syscall.EISDIR):
		msg = shown + " is a directory"
		next = "give the directory itself to upload all its files"
	default:
		msg = "cannot read " + shown + ": " + pe.Err.Error()
		next = "check the path and its permissions"
	}
	return &ExitError{Code: ExitFailure, Err: &hintedError{msg: msg + "\n(" + next + ")", err: err}}
}

// sameFilePath reports whether a and b name the same path (one may be
// the absolute form of the other).
func sameFilePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}
