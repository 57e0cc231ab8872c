package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/internal/iostreams"
)

// Factory carries what every command needs; tests build their own.
type Factory struct {
	IO     *iostreams.IOStreams
	Getenv func(string) string
	// Credentials returns the credential store: where login saves,
	// logout deletes and every other command finds stored credentials.
	// main's (newFactory) builds the system store on the first call and
	// returns that one store after; a command that needs no stored
	// credentials never calls it. nil: nothing is stored and nothing can
	// be (tests that build a bare Factory).
	Credentials func() CredentialStore
}

// Exit codes. They are part of the command-line contract (see
// docs/cli.md): scripts rely on them.
const (
	ExitOK          = 0
	ExitFailure     = 1   // anything else
	ExitUsage       = 2   // bad flags or arguments
	ExitAuth        = 3   // missing or refused credentials
	ExitQuota       = 4   // quota, tier or size limit
	ExitPartial     = 5   // some files failed
	ExitStorageFull = 6   // the server's storage is full
	ExitInterrupted = 130 // Ctrl-C or SIGTERM
)

// ExitError carries an exit code with an error message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// SilentError exits with a code without printing anything more.
type SilentError struct{ Code int }

func (e *SilentError) Error() string { return fmt.Sprintf("exit %d", e.Code) }

// usageError marks bad flags or arguments.
func usageError(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%s takes no arguments (got %q)\nRun '%s --help' for usage.", cmd.CommandPath(), args[0], cmd.CommandPath())
	}
	return nil
}

// ExitCodeFor maps an error to the process exit code.
func ExitCodeFor(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var se *SilentError
	if errors.As(err, &se) {
		return se.Code
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		return ExitUsage
	}
	return ExitFailure
}

// NewCmdRoot builds the command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "jetty <command>",
		Short: "Fast, resumable, verified uploads to JettyThunder storage",
		Long: `jetty uploads big files fast: it cuts them into chunks, hashes every chunk
(SHA-256), sends them in parallel through the best edges, resumes after any
interruption and verifies the result end to end.

It is also the companion server (jetty server) that provisions accounts,
enforces quotas and stores the objects.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version (and -v) print what `jetty version` prints.
		Version: version,
	}
	root.SetVersionTemplate(versionLine() + "\n")
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetIn(f.IO.In)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
	})
	root.AddCommand(
		NewCmdLogin(f, nil),
		NewCmdLogout(f, nil),
		NewCmdWhoami(f, nil),
		NewCmdUpload(f, nil),
		NewCmdDownload(f, nil),
		NewCmdLs(f, nil),
		NewCmdRm(f, nil),
		NewCmdQuota(f, nil),
		NewCmdServer(f, nil),
		NewCmdEdge(f, nil),
		NewCmdEdges(f, nil),
		NewCmdCompletion(f),
		NewCmdVersion(f, nil),
		NewCmdExitCodes(),
		NewCmdGenDocs(f),
	)
	return root
}
