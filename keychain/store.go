package keychain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/jettythunder/jetty/internal/safefile"
)

// Service is the keychain service name credentials are stored under.
const Service = "jetty"

// File names inside Store.Dir.
const (
	CredentialsFile = "credentials.json" // secrets, 0600; only the fallback
	ConfigFile      = "config.json"      // current server, nothing secret
)

// Credentials are a server and the key and secret for it.
type Credentials struct {
	Server    string
	APIKey    string
	APISecret string
}

// Store keeps credentials in the OS keychain, or in a plain file when
// asked to or when the keychain is unavailable.
type Store struct {
	Keyring Keyring   // nil: System()
	Dir     string    // config directory; "": DefaultDir
	Warn    io.Writer // warnings (plain-file storage, keychain trouble); nil: discarded
}

// DefaultDir is the config directory: $XDG_CONFIG_HOME/jetty when
// XDG_CONFIG_HOME is set (absolute) on any OS, else the OS's own place:
// ~/.config/jetty on Linux and other Unixes, ~/Library/Application
// Support/jetty on macOS, %AppData%\jetty on Windows. getenv is os.Getenv
// or a test's replacement.
func DefaultDir(getenv func(string) string) (string, error) {
	return defaultDir(runtime.GOOS, getenv)
}

// defaultDir is DefaultDir for the OS goos.
func defaultDir(goos string, getenv func(string) string) (string, error) {
	if x := getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "jetty"), nil
	}
	if goos == "windows" {
		if a := getenv("AppData"); a != "" {
			return filepath.Join(a, "jetty"), nil
		}
		return "", errors.New("cannot find the config directory: %AppData% is not set (or set XDG_CONFIG_HOME)")
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("cannot find the config directory: set XDG_CONFIG_HOME or HOME (%w)", err)
		}
	}
	if goos == "darwin" || goos == "ios" {
		return filepath.Join(home, "Library", "Application Support", "jetty"), nil
	}
	return filepath.Join(home, ".config", "jetty"), nil
}

// NormalizeServer returns the canonical form of a server URL, used as the
// keychain user and the file's key: scheme and host in lower case, no
// trailing slash, no query or fragment. Only http and https are accepted.
func NormalizeServer(server string) (string, error) {
	s := strings.TrimSpace(server)
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("%q is not a server URL: use http(s)://HOST[:PORT], for example https://jetty.example.com", server)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", false
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// NotLoggedInError says no credentials are stored for Server ("" when no
// server was given and none was logged in to). It wraps ErrNotFound.
type NotLoggedInError struct {
	Server string
	// Keychain is why the keychain could not be searched, if it could not.
	Keychain error
}

func (e *NotLoggedInError) Error() string {
	var msg string
	if e.Server == "" {
		msg = "not logged in: run `jetty login --server URL`, or set JETTY_SERVER, JETTY_API_KEY and JETTY_API_SECRET"
	} else {
		msg = fmt.Sprintf("not logged in to %s: run `jetty login --server %s`", e.Server, e.Server)
	}
	if e.Keychain != nil {
		msg += fmt.Sprintf(" (%v)", e.Keychain)
	}
	return msg
}

func (e *NotLoggedInError) Unwrap() error { return ErrNotFound }

// systemOnce shares one System keyring among stores without one, so a
// timeout seen by one is remembered by all.
var systemOnce = sync.OnceValue(System)

func (s *Store) keyring() Keyring {
	if s.Keyring == nil {
		return systemOnce()
	}
	return s.Keyring
}

func (s *Store) dir() (string, error) {
	if s.Dir != "" {
		return s.Dir, nil
	}
	return DefaultDir(os.Getenv)
}

func (s *Store) warnf(format string, args ...any) {
	if s.Warn != nil {
		fmt.Fprintf(s.Warn, "warning: "+format+"\n", args...)
	}
}

// Save stores key and secret for server and makes it the current server.
// The keychain comes first; with insecure, or when the keychain is
// unavailable, the plain file is used, with a warning that names it and
// says why. It returns where the credentials went: the keychain or the
// file.
func (s *Store) Save(server, key, secret string, insecure bool) (Source, error) {
	server, err := NormalizeServer(server)
	if err != nil {
		return Source{}, err
	}
	if key == "" || secret == "" || strings.Contains(key, ":") || strings.ContainsAny(key+secret, "\r\n") {
		return Source{}, errors.New("an API key and secret are required (the key without ':', neither with line breaks)")
	}
	dir, err := s.dir()
	if err != nil {
		return Source{}, err
	}
	path := filepath.Join(dir, CredentialsFile)
	if !insecure {
		kerr := s.keyring().Set(Service, server, key+":"+secret)
		if kerr == nil {
			// A copy left in the plain file from an earlier login would
			// outlive this one: remove it.
			if _, err := s.deleteFromFile(dir, server); err != nil {
				s.warnf("could not remove the old plain-text copy from %s: %v", path, err)
			}
			if err := s.setCurrent(dir, server); err != nil {
				return keychainSource(), err
			}
			return keychainSource(), nil
		}
		if !errors.Is(kerr, ErrUnavailable) {
			return Source{}, fmt.Errorf("storing credentials in the OS keychain: %w", kerr)
		}
		s.warnf("%v.\nStoring the API secret in plain text in %s (mode 0600) instead; anyone who can read that file can use your account.\nRun `jetty logout` to remove it, or use JETTY_API_KEY and JETTY_API_SECRET instead of logging in.", kerr, path)
	} else {
		// An older keychain entry would win over the file on Load.
		if err := s.keyring().Delete(Service, server); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnavailable) {
			return Source{}, fmt.Errorf("removing the old keychain entry: %w", err)
		}
		s.warnf("storing the API secret in plain text in %s (mode 0600) because insecure storage was asked for (--insecure-storage); anyone who can read that file can use your account", path)
	}
	if err := s.updateFile(dir, func(f *credFile) { f.Servers[server] = fileEntry{APIKey: key, APISecret: secret} }); err != nil {
		return Source{}, err
	}
	if err := s.setCurrent(dir, server); err != nil {
		return fileSource(path), err
	}
	return fileSource(path), nil
}

// Current returns the server last logged in to, or "" when none.
func (s *Store) Current() (string, error) {
	dir, err := s.dir()
	if err != nil {
		return "", err
	}
	c, err := readConfig(dir)
	return c.CurrentServer, err
}

// Load finds the credentials for server ("" means the current server):
// the keychain first, then the plain file. It returns where they came
// from: the keychain or the file. Nothing stored is a
// *NotLoggedInError (wrapping ErrNotFound).
func (s *Store) Load(server string) (Credentials, Source, error) {
	dir, err := s.dir()
	if err != nil {
		return Credentials{}, Source{}, err
	}
	if server == "" {
		c, err := readConfig(dir)
		if err != nil {
			return Credentials{}, Source{}, err
		}
		if c.CurrentServer == "" {
			return Credentials{}, Source{}, &NotLoggedInError{}
		}
		server = c.CurrentServer
	}
	server, err = NormalizeServer(server)
	if err != nil {
		return Credentials{}, Source{}, err
	}
	v, kerr := s.keyring().Get(Service, server)
	if kerr == nil {
		key, secret, ok := strings.Cut(v, ":")
		if !ok || key == "" || secret == "" {
			return Credentials{}, Source{}, fmt.Errorf("the keychain entry for %s (service %q) is malformed: run `jetty login --server %s` again", server, Service, server)
		}
		return Credentials{Server: server, APIKey: key, APISecret: secret}, keychainSource(), nil
	}
	if !errors.Is(kerr, ErrNotFound) && !errors.Is(kerr, ErrUnavailable) {
		return Credentials{}, Source{}, kerr
	}
	path := filepath.Join(dir, CredentialsFile)
	f, err := s.readFile(path)
	if err != nil {
		return Credentials{}, Source{}, err
	}
	if e, ok := f.Servers[server]; ok && e.APIKey != "" && e.APISecret != "" {
		return Credentials{Server: server, APIKey: e.APIKey, APISecret: e.APISecret}, fileSource(path), nil
	}
	nl := &NotLoggedInError{Server: server}
	if errors.Is(kerr, ErrUnavailable) {
		nl.Keychain = kerr
	}
	return Credentials{}, Source{}, nl
}

// Delete removes the credentials for server ("" means the current
// server) from the keychain and from the plain file, and forgets it as
// the current server. It returns where they were removed from (nothing
// when there were none). An unavailable keychain is a warning, not an
// error: there is nothing to remove from a keychain that cannot be used.
func (s *Store) Delete(server string) ([]Source, error) {
	dir, err := s.dir()
	if err != nil {
		return nil, err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	if server == "" {
		if server = cfg.CurrentServer; server == "" {
			return nil, nil
		}
	}
	server, err = NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	var removed []Source
	switch kerr := s.keyring().Delete(Service, server); {
	case kerr == nil:
		removed = append(removed, keychainSource())
	case errors.Is(kerr, ErrNotFound):
	case errors.As(kerr, new(*NoKeychainError)):
		s.warnf("%v; only the plain file was checked", kerr)
	case errors.Is(kerr, ErrUnavailable):
		s.warnf("%v; nothing was removed from it", kerr)
	default:
		return nil, fmt.Errorf("removing credentials from the OS keychain: %w", kerr)
	}
	ok, err := s.deleteFromFile(dir, server)
	if err != nil {
		return removed, err
	}
	if ok {
		removed = append(removed, fileSource(filepath.Join(dir, CredentialsFile)))
	}
	if cfg.CurrentServer == server {
		cfg.CurrentServer = ""
		if err := writeJSONFile(dir, ConfigFile, cfg); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// The plain file.

type credFile struct {
	Version int                  `json:"version"`
	Servers map[string]fileEntry `json:"servers"`
}

type fileEntry struct {
	APIKey    string `json:"api_key"`
	APISecret string `json:"api_secret"`
}

type config struct {
	CurrentServer string `json:"current_server,omitempty"`
}

// readOwn reads the file at path when it is a regular file of the user's
// with one link (internal/safefile): a link, a named pipe, a directory or
// another user's file there is never read or followed, but refused with
// what to do. A missing file is (nil, nil, nil).
func readOwn(path, what, next string) ([]byte, fs.FileInfo, error) {
	f, err := safefile.Open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	var ue *safefile.UnsafeError
	if errors.As(err, &ue) {
		return nil, nil, fmt.Errorf("refusing to read %s from %s: it %s. jetty reads only a file it wrote itself (someone else may have put this one there): remove it, then %s%s", what, ue.Path, ue.Reason, next, ue.Hint())
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", what, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return b, st, nil
}

func (s *Store) readFile(path string) (credFile, error) {
	f := credFile{Version: 1, Servers: map[string]fileEntry{}}
	b, st, err := readOwn(path, "credentials", "run `jetty login` again")
	if err != nil || st == nil {
		return f, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		s.warnf("%s is readable by other users (mode %04o): run `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s is not valid JSON (%v): fix or delete it and run `jetty login` again", path, err)
	}
	if f.Servers == nil {
		f.Servers = map[string]fileEntry{}
	}
	return f, nil
}

func (s *Store) updateFile(dir string, change func(*credFile)) error {
	f, err := s.readFile(filepath.Join(dir, CredentialsFile))
	if err != nil {
		return err
	}
	change(&f)
	f.Version = 1
	return writeJSONFile(dir, CredentialsFile, f)
}

// deleteFromFile removes server from the file and reports whether it was
// there. The file is removed when it holds nothing more.
func (s *Store) deleteFromFile(dir, server string) (bool, error) {
	path := filepath.Join(dir, CredentialsFile)
	f, err := s.readFile(path)
	if err != nil {
		return false, err
	}
	if _, ok := f.Servers[server]; !ok {
		return false, nil
	}
	delete(f.Servers, server)
	if len(f.Servers) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		return true, nil
	}
	return true, writeJSONFile(dir, CredentialsFile, f)
}

func readConfig(dir string) (config, error) {
	var c config
	path := filepath.Join(dir, ConfigFile)
	b, st, err := readOwn(path, "the current server", "run `jetty login` again (it writes a new one)")
	if err != nil || st == nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s is not valid JSON (%v): fix or delete it", path, err)
	}
	return c, nil
}

func (s *Store) setCurrent(dir, server string) error {
	c, err := readConfig(dir)
	if err != nil {
		return err
	}
	if c.CurrentServer == server {
		return nil
	}
	c.CurrentServer = server
	return writeJSONFile(dir, ConfigFile, c)
}

// writeJSONFile writes v to dir/name atomically (a new 0600 temporary
// file in the same directory, never created through a link, synced, then
// renamed over the old one: safefile.WriteFile), creating dir with mode
// 0700.
func writeJSONFile(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := safefile.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}
