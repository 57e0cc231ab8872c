package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/keychain"
)

// LogoutOptions are the inputs of `jetty logout`.
type LogoutOptions struct {
	F      *Factory
	Server string
}

// NewCmdLogout builds `jetty logout`.
func NewCmdLogout(f *Factory, runF func(*LogoutOptions) error) *cobra.Command {
	opts := &LogoutOptions{F: f}
	cmd := &cobra.Command{
		Use:   "logout [--server URL]",
		Short: "Remove stored credentials from the OS keychain and the plain file",
		Long: `Remove the stored credentials for a server (default: JETTY_SERVER, then the
server you last logged in to) from the OS keychain and from the plain file,
wherever they are. Not being logged in is not an error.

Environment variables (JETTY_API_KEY, JETTY_API_SECRET) are not touched:
unset them yourself.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return logoutRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	return cmd
}

func logoutRun(opts *LogoutOptions) error {
	out := opts.F.IO.Out
	server, _, err := opts.F.ResolveServer(opts.Server)
	if err != nil {
		return err
	}
	if server == "" {
		fmt.Fprintln(out, "Not logged in; nothing to remove.")
		return envNote(opts.F)
	}
	server, err = keychain.NormalizeServer(server)
	if err != nil {
		return usageError("--server: %v", err)
	}
	removed, err := opts.F.store().Delete(server)
	if err != nil {
		if len(removed) > 0 {
			fmt.Fprintf(out, "Removed the credentials for %s from %s.\n", server, describeAll(removed))
		}
		return err
	}
	if len(removed) == 0 {
		fmt.Fprintf(out, "Not logged in to %s; nothing to remove.\n", server)
		return envNote(opts.F)
	}
	fmt.Fprintf(out, "Logged out of %s: removed the credentials from %s.\n", server, describeAll(removed))
	return envNote(opts.F)
}

// envNote reminds that environment credentials still apply.
func envNote(f *Factory) error {
	if f.Getenv("JETTY_API_KEY") != "" || f.Getenv("JETTY_API_SECRET") != "" {
		fmt.Fprintln(f.IO.ErrOut, "note: JETTY_API_KEY/JETTY_API_SECRET are still set in the environment; unset them to stop using those credentials")
	}
	return nil
}

// describeAll names where credentials were removed from: "the OS
// keychain and the plain file PATH".
func describeAll(sources []keychain.Source) string {
	words := make([]string, len(sources))
	for i, s := range sources {
		words[i] = s.String()
	}
	return strings.Join(words, " and ")
}
