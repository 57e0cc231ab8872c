package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
)

// DevCredentialsFile is where dev mode keeps the demo account's key and
// secret, in the data directory (mode 0600, written atomically and never
// through a link; read only when it is a regular file of the user's with
// one link). Never written outside dev mode.
const DevCredentialsFile = "dev-credentials.json"

// devCredentials is DevCredentialsFile's content.
type devCredentials struct {
	APIKey    string `json:"api_key"`
	APISecret string `json:"api_secret"`
}

// keptDemoAccount returns the demo account with the key and secret kept
// by an earlier run, when the file is there, the account still has that
// key, is active and the secret verifies (in constant time).
func (a *App) keptDemoAccount(ctx context.Context) (server.Account, string, bool) {
	path := filepath.Join(a.cfg.DataDir, DevCredentialsFile)
	b, err := readOwnFile(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("not using the kept demo credentials: issuing new ones", "path", path, "error", err)
		}
		return server.Account{}, "", false
	}
	var kept devCredentials
	if err := json.Unmarshal(b, &kept); err != nil || kept.APIKey == "" || kept.APISecret == "" {
		a.log.Warn("the kept demo credentials are not valid JSON: issuing new ones", "path", path)
		return server.Account{}, "", false
	}
	acct, err := a.store.AccountByAPIKey(ctx, kept.APIKey)
	if err != nil || acct.UserID != demoUser || acct.Status != server.StatusActive ||
		!apikey.EqualConstantTime(kept.APIKey, acct.APIKey) || !apikey.SecretMatches(kept.APISecret, acct.SecretHash) {
		return server.Account{}, "", false // gone, re-keyed or not this database's: provision again
	}
	return acct, kept.APISecret, true
}

// keepDevCredentials writes the demo account's key and secret to the
// data directory for the next dev run.
func keepDevCredentials(dataDir, key, secret string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(devCredentials{APIKey: key, APISecret: secret}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, DevCredentialsFile)
	return writeNewFile(path, append(b, '\n'))
}

// readOwnFile reads path when it is a regular file (not a link, a pipe
// or a directory) that no other user can read or write; the file opened
// must be the one checked.
func readOwnFile(path string) ([]byte, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is not a private regular file (mode %s): not reading it", path, st.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fst, err := f.Stat(); err != nil || !os.SameFile(st, fst) {
		return nil, fmt.Errorf("%s changed while it was opened: not reading it", path)
	}
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// writeNewFile replaces path with data atomically: a new 0600 file
// created next to it with O_EXCL (never through a link), written,
// synced, then renamed over path (which replaces a link itself, never
// what it points to).
func writeNewFile(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp-%d-%d", path, os.Getpid(), time.Now().UnixNano())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
