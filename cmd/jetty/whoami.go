package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/protocol"
)

// WhoamiOptions are the inputs of `jetty whoami`.
type WhoamiOptions struct {
	F      *Factory
	Client ClientOptions
	JSON   bool
}

// whoamiResult is what `jetty whoami --json` prints: the server's answer
// plus where the server and the credentials came from.
type whoamiResult struct {
	protocol.Whoami
	Server            string `json:"server"`
	ServerSource      string `json:"server_source"`      // flag, environment, login
	CredentialsSource string `json:"credentials_source"` // environment, keychain, file
	CredentialsFile   string `json:"credentials_file,omitempty"`
}

// NewCmdWhoami builds `jetty whoami`.
func NewCmdWhoami(f *Factory, runF func(*WhoamiOptions) error) *cobra.Command {
	opts := &WhoamiOptions{F: f}
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show the account, server and where the credentials come from",
		Long: `Show which account the credentials belong to (user id, email, tier, status),
which server they are for, and where they came from: the environment
(JETTY_API_KEY/JETTY_API_SECRET), the OS keychain, or the plain file.
The credentials are checked against the server.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return whoamiRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the result as JSON")
	return cmd
}

func whoamiRun(ctx context.Context, opts *WhoamiOptions) error {
	c, origin, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	w, err := c.Whoami(ctx)
	if err != nil {
		return apiFailure(err)
	}
	r := whoamiResult{
		Whoami:            w,
		Server:            c.BaseURL,
		ServerSource:      origin.Server.String(),
		CredentialsSource: origin.Credentials.Kind.String(),
		CredentialsFile:   origin.Credentials.Path,
	}
	if opts.JSON {
		return writeJSON(opts.F.IO.Out, r)
	}
	serverFrom := map[ServerSource]string{ServerFlag: "--server", ServerEnv: "JETTY_SERVER", ServerLogin: "last login"}[origin.Server]
	tw := tabwriter.NewWriter(opts.F.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "User:\t%s\n", w.UserID)
	fmt.Fprintf(tw, "Email:\t%s\n", w.Email)
	fmt.Fprintf(tw, "Tier:\t%s (%s)\n", w.Tier, w.Status)
	fmt.Fprintf(tw, "Account:\t%s\n", w.AccountID)
	fmt.Fprintf(tw, "Server:\t%s (from %s)\n", r.Server, serverFrom)
	fmt.Fprintf(tw, "Credentials:\t%s\n", origin.Credentials)
	return tw.Flush()
}
