package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/keychain"
	"github.com/jettythunder/jetty/protocol"
)

// Files given by id or by name (issue 20): every command that takes a
// stored file (`jetty rm`, `jetty download`) resolves its argument with
// resolveFiles, and completes it with completeFiles.

// versions says what a name that several stored files share (older
// versions of a file uploaded again with other content) resolves to.
type versions int

const (
	// oneVersion refuses a shared name, listing the candidates.
	oneVersion versions = iota
	// newestVersion picks the newest (download --latest).
	newestVersion
	// allVersions takes every one (rm --all-versions).
	allVersions
)

// idPattern is the form of a file's id: a UUID as the server writes it.
var idPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolveFiles finds the stored files arg names. An argument of the form
// of an id (a UUID) that is the id of one of the account's files is that
// file; anything else (and an id-shaped argument that is no file's id)
// is a file name, matched exactly (case and all; a name may hold '/', the
// folder path of a directory upload) through the server's name lookup
// (GET /api/storage/assets?name=, one request for a name of a few
// versions). One match is the answer. Several are refused with a usage
// error that lists them and says how to pick one (its id, or flag),
// unless v picks the newest or all of them; the list is newest first.
// None is an error that says so and points at `jetty ls`, after one more
// try of an argument without '/' as an id: ids are the server's to
// choose, the form of a UUID only makes them tried first.
func resolveFiles(ctx context.Context, c *engine.Client, arg string, v versions, flag string) ([]protocol.Asset, error) {
	if arg == "" {
		return nil, usageError("an empty argument: give a file's name or id (see `jetty ls`)")
	}
	uuid := idPattern.MatchString(arg)
	if uuid {
		if a, ok, err := assetByID(ctx, c, arg); err != nil {
			return nil, err
		} else if ok {
			return []protocol.Asset{a}, nil
		}
	}
	as, err := c.ListAllWhere(ctx, engine.ListFilter{Name: arg})
	if err != nil {
		return nil, err
	}
	if len(as) == 0 && !uuid && !strings.Contains(arg, "/") {
		if a, ok, err := assetByID(ctx, c, arg); err != nil {
			return nil, err
		} else if ok {
			return []protocol.Asset{a}, nil
		}
	}
	switch {
	case len(as) == 0 && uuid:
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("no file with id or name %s\n(run `jetty ls` to list your files' names and ids)", arg)}
	case len(as) == 0 && isGlob(arg) && !strings.Contains(arg, "'"):
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("no file named %s\n(names are matched exactly, not as patterns: run `jetty ls '%s'` to see the files it matches and their ids)", quoteName(arg), arg)}
	case len(as) == 0:
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("no file named %s\n(names are matched exactly, with their folders; run `jetty ls` to list your files' names and ids)", quoteName(arg))}
	case len(as) == 1 || v == allVersions:
		return as, nil
	case v == newestVersion:
		return as[:1], nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d files are named %s: give the id of the one you mean, or %s\n", len(as), quoteName(arg), flag)
	writeCandidates(&b, as)
	return nil, &ExitError{Code: ExitUsage, Err: errors.New(strings.TrimRight(b.String(), "\n"))}
}

// assetByID looks id up: ok is false when the account has no such file.
func assetByID(ctx context.Context, c *engine.Client, id string) (protocol.Asset, bool, error) {
	a, err := c.Asset(ctx, id)
	var ae *engine.APIError
	switch {
	case err == nil:
		return a, true, nil
	case errors.As(err, &ae) && ae.Status == 404:
		return a, false, nil
	}
	return a, false, err
}

// writeCandidates lists files sharing a name, as `jetty ls` does, newest
// first.
func writeCandidates(w io.Writer, as []protocol.Asset) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tSIZE\tUPLOADED\tSHA-256")
	for _, a := range as {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%.12s\n", a.ID, units.HumanBytes(a.Size), a.CreatedAt.Local().Format("2006-01-02 15:04:05"), a.Hash)
	}
	tw.Flush()
}

// quoteName shows a name in a message: as it is when it is plain, quoted
// when it holds spaces, quotes or control characters (shown escaped).
func quoteName(name string) string {
	if name != "" && !strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == 0x7f || (r >= 0x80 && r < 0xa0)
	}) {
		return name
	}
	return fmt.Sprintf("%q", name)
}

// completionTimeout bounds what completing a file asks of the server:
// a shell waits for it.
const completionTimeout = 2 * time.Second

// completeFiles is the ValidArgsFunction of the commands that take stored
// files: the names (and, once what is typed looks like the start of an
// id, the ids) of the account's files that begin with what is typed.
// Names are completed a folder at a time ("photos/" first, then what is
// in it), through the server's prefix lookup. It never prompts, never
// prints and gives up after completionTimeout: not logged in, a server
// down or slow, any error completes nothing. one is true for a command
// that takes a single file.
func completeFiles(f *Factory, o *ClientOptions, one bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		none := cobra.ShellCompDirectiveNoFileComp
		if one && len(args) > 0 {
			return nil, none
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		c, _, err := quietFactory(f).Client(*o)
		if err != nil {
			return nil, none
		}
		page, err := c.ListWhere(ctx, engine.ListFilter{Prefix: toComplete}, "", 1000)
		if err != nil {
			return nil, none
		}
		var out []string
		seen := map[string]bool{}
		folder := false
		for _, a := range page.Assets {
			if !strings.HasPrefix(a.Filename, toComplete) {
				continue
			}
			name, desc := a.Filename, units.HumanBytes(a.Size)
			if i := strings.IndexByte(name[len(toComplete):], '/'); i >= 0 {
				name, desc, folder = name[:len(toComplete)+i+1], "folder", true
			}
			if !seen[name] && name != "" {
				seen[name] = true
				out = append(out, name+"\t"+desc)
			}
		}
		if toComplete != "" && len(toComplete) <= 36 && strings.Trim(toComplete, "0123456789abcdef-") == "" {
			if page, err := c.List(ctx, "", 1000); err == nil {
				for _, a := range page.Assets {
					if strings.HasPrefix(a.ID, toComplete) {
						out = append(out, a.ID+"\t"+a.Filename)
					}
				}
			}
		}
		if folder {
			none |= cobra.ShellCompDirectiveNoSpace
		}
		return out, none
	}
}

// quietFactory is f for completion: nothing it does may print, so the
// credential store's warnings are dropped. The store is still built only
// when credentials are not in the environment.
func quietFactory(f *Factory) *Factory {
	q := *f
	if f.Credentials != nil {
		q.Credentials = lazyStore(func() CredentialStore {
			s := f.Credentials()
			if ks, ok := s.(*keychain.Store); ok {
				quiet := *ks
				quiet.Warn = nil
				return &quiet
			}
			return s
		})
	}
	return &q
}

// `jetty ls PATTERN`: a glob when it holds a glob character (*, ?, [ or
// the \ that escapes one), matched against whole names with path.Match
// (* and ? never cross a /); otherwise a prefix of the names. The server
// filters by the prefix: the whole argument, or a glob's literal part
// before its first wildcard.

// isGlob reports whether pattern is a glob rather than a prefix.
func isGlob(pattern string) bool { return strings.ContainsAny(pattern, `*?[\`) }

// checkNamePattern refuses an empty argument and a malformed glob.
func checkNamePattern(pattern string) error {
	if pattern == "" {
		return usageError("jetty ls: the prefix is empty: give the beginning of the names to list (photos/) or a glob ('*.jpg'), or no argument to list everything")
	}
	if _, err := path.Match(pattern, ""); isGlob(pattern) && err != nil {
		return usageError("jetty ls: %q is not a valid glob (%v): * and ? match within a folder, [...] a set of characters, \\ escapes the next one", pattern, err)
	}
	return nil
}

// patternPrefix is the prefix the server filters by: the literal part
// of a glob before its first wildcard (its escapes undone), or the
// whole of a prefix.
func patternPrefix(pattern string) string {
	if !isGlob(pattern) {
		return pattern
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '*', '?', '[':
			return b.String()
		case '\\':
			i++
			if i == len(pattern) {
				return b.String()
			}
		}
		b.WriteByte(pattern[i])
	}
	return b.String()
}

// matchGlob keeps the assets whose names match pattern (a valid glob), at
// most limit of them (0: all), in order.
func matchGlob(as []protocol.Asset, pattern string, limit int) []protocol.Asset {
	var out []protocol.Asset
	for _, a := range as {
		if ok, _ := path.Match(pattern, a.Filename); ok {
			out = append(out, a)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}
