package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/keychain"
	"github.com/jettythunder/jetty/protocol"
)

// LoginOptions are the inputs of `jetty login`.
type LoginOptions struct {
	F               *Factory
	Server          string
	WithToken       bool
	InsecureStorage bool

	Prompter Prompter
}

// Prompter asks the person at the terminal.
type Prompter interface {
	// Input reads one line, echoed.
	Input(prompt string) (string, error)
	// Password reads one line without echoing it.
	Password(prompt string) (string, error)
}

// NewCmdLogin builds `jetty login`.
func NewCmdLogin(f *Factory, runF func(*LoginOptions) error) *cobra.Command {
	opts := &LoginOptions{F: f, Prompter: newTermPrompter(f.IO)}
	cmd := &cobra.Command{
		Use:   "login --server URL [--with-token] [--insecure-storage]",
		Short: "Check an API key and secret against a server and store them",
		Long: `Log in to a jetty server: check the API key and secret against the server,
then store them in the OS keychain (Secret Service, macOS Keychain, Windows
Credential Manager) for later commands.

On a terminal, login asks for the key and the secret (the secret is not
echoed). In scripts, pass them on stdin with --with-token, as one line
KEY:SECRET (or two lines: the key, then the secret). Never pass secrets as
arguments: they end up in shell history and process listings.

When no keychain is usable (a headless machine without a Secret Service)
or with --insecure-storage, the credentials go to a plain file,
credentials.json (mode 0600) in $XDG_CONFIG_HOME/jetty (~/.config/jetty),
with a warning on stderr. Keychain calls give up after 3 seconds.

JETTY_SERVER, JETTY_API_KEY and JETTY_API_SECRET, when set, override what
login stores; in CI, set them instead of logging in.`,
		Example: `  jetty login --server https://jetty.example.com
  echo "$KEY:$SECRET" | jetty login --server https://jetty.example.com --with-token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return loginRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Server, "server", "", "server URL (default: JETTY_SERVER)")
	cmd.Flags().BoolVar(&opts.WithToken, "with-token", false, "read KEY:SECRET from stdin")
	cmd.Flags().BoolVar(&opts.InsecureStorage, "insecure-storage", false, "store the credentials in a plain 0600 file instead of the OS keychain")
	return cmd
}

func loginRun(ctx context.Context, opts *LoginOptions) error {
	io := opts.F.IO
	server, _ := opts.F.GivenServer(opts.Server) // never the last login's: login names its server
	if server == "" {
		return usageError("--server is required (or set JETTY_SERVER)\nRun 'jetty login --help' for usage.")
	}
	server, err := keychain.NormalizeServer(server)
	if err != nil {
		return usageError("--server: %v", err)
	}

	var key, secret string
	switch {
	case opts.WithToken:
		if key, secret, err = readToken(io.In); err != nil {
			return err
		}
	case io.StdinTTY && io.StdoutTTY:
		// Fail fast on a server that does not answer, before asking
		// anything.
		rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
		err := (&engine.Client{BaseURL: server, UserAgent: userAgent()}).Reach(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() != nil {
				return &ExitError{Code: ExitInterrupted, Err: errors.New("interrupted")}
			}
			return apiFailure(err)
		}
		fmt.Fprintf(io.ErrOut, "Logging in to %s. Paste the API key and secret from your account page.\n", server)
		if key, err = opts.Prompter.Input("API key: "); err != nil {
			return err
		}
		if secret, err = opts.Prompter.Password("API secret: "); err != nil {
			return err
		}
		key, secret = strings.TrimSpace(key), strings.TrimSpace(secret)
	default:
		return usageError("not a terminal, so login cannot ask for the key and secret: pass them on stdin with --with-token, e.g.\n  echo \"$KEY:$SECRET\" | jetty login --server %s --with-token", server)
	}
	if key == "" || secret == "" {
		return usageError("an API key and an API secret are both required")
	}
	if err := protocol.CheckAPIKey(key); err != nil {
		return authError("that is not a valid API key: %v (copy it again; keys look like jt_live_... or jt_test_...)", err)
	}
	if err := protocol.CheckAPISecret(secret); err != nil {
		return authError("that is not a valid API secret: %v (copy it again; secrets look like jts_...)", err)
	}

	// Check the credentials before storing anything.
	c := &engine.Client{BaseURL: server, APIKey: key, APISecret: secret, UserAgent: userAgent()}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := c.Whoami(cctx)
	if err != nil {
		var ae *engine.APIError
		if errors.As(err, &ae) && ae.Status == 401 {
			return authError("%s refused these credentials: %v\nNothing was stored. Check the key and secret and try again.", server, err)
		}
		return apiFailure(err)
	}

	source, err := opts.F.store().Save(server, key, secret, opts.InsecureStorage)
	if err != nil {
		return fmt.Errorf("the credentials are valid but could not be stored: %w", err)
	}
	who := w.Email
	if who == "" {
		who = w.UserID
	}
	fmt.Fprintf(io.Out, "Logged in to %s as %s (tier %s); credentials stored in %s\n", server, who, w.Tier, source)
	if opts.F.Getenv("JETTY_API_KEY") != "" || opts.F.Getenv("JETTY_API_SECRET") != "" {
		fmt.Fprintln(io.ErrOut, "note: JETTY_API_KEY/JETTY_API_SECRET are set and take precedence over the stored credentials until you unset them")
	}
	return nil
}

// readToken reads KEY:SECRET (or KEY and SECRET on two lines) from r.
func readToken(r io.Reader) (string, string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", "", fmt.Errorf("reading stdin: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	bad := usageError("--with-token expects KEY:SECRET on stdin (one line), or the key and the secret on two lines")
	switch len(lines) {
	case 1:
		key, secret, ok := strings.Cut(lines[0], ":")
		if !ok {
			return "", "", bad
		}
		return strings.TrimSpace(key), strings.TrimSpace(secret), nil
	case 2:
		if strings.Contains(lines[0], ":") {
			return "", "", bad
		}
		return lines[0], lines[1], nil
	}
	return "", "", bad
}

// termPrompter prompts on stderr and reads from stdin; the secret is read
// with echo off when stdin is a terminal.
type termPrompter struct {
	io *iostreams.IOStreams
	r  *bufio.Reader
}

func newTermPrompter(io *iostreams.IOStreams) *termPrompter { return &termPrompter{io: io} }

func (p *termPrompter) reader() *bufio.Reader {
	if p.r == nil {
		p.r = bufio.NewReader(p.io.In)
	}
	return p.r
}

func (p *termPrompter) Input(prompt string) (string, error) {
	fmt.Fprint(p.io.ErrOut, prompt)
	line, err := p.reader().ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return "", fmt.Errorf("reading the answer: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (p *termPrompter) Password(prompt string) (string, error) {
	f, ok := p.io.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p.Input(prompt)
	}
	fmt.Fprint(p.io.ErrOut, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(p.io.ErrOut)
	if err != nil {
		return "", fmt.Errorf("reading the secret: %w", err)
	}
	return string(b), nil
}
