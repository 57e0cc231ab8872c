package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/internal/units"
)

// RmOptions are the inputs of `jetty rm`.
type RmOptions struct {
	F      *Factory
	Client ClientOptions
	// Files are ids or names (resolveFiles).
	Files []string
	JSON  bool
	// AllVersions deletes every file of a name several files share.
	AllVersions bool
}

// NewCmdRm builds `jetty rm`.
func NewCmdRm(f *Factory, runF func(*RmOptions) error) *cobra.Command {
	opts := &RmOptions{F: f}
	cmd := &cobra.Command{
		Use:   "rm FILE...",
		Short: "Delete stored files",
		Long: `Delete stored files, each given by name or by id (see 'jetty ls'). The
space is freed when no other file of yours has the same content.

A FILE that is the id of one of your files is that file; anything else is
a file name, matched exactly (case and all) with its folder path as 'jetty
ls' shows it (photos/sub/q.jpg). When several files share the name (the
same name uploaded again with other content), jetty lists them and
deletes nothing: give the id of the one you mean, or --all-versions to
delete every one. Names and ids complete in the shell (see 'jetty
completion --help').`,
		Example: `  jetty rm big.bin
  jetty rm photos/sub/q.jpg notes.txt
  jetty rm 0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11
  jetty rm --all-versions big.bin`,
		ValidArgsFunction: completeFiles(f, &opts.Client, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("jetty rm needs at least one FILE: a name or an id (see `jetty ls`)")
			}
			opts.Files = args
			if runF != nil {
				return runF(opts)
			}
			return rmRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print one JSON object per deleted file")
	cmd.Flags().BoolVar(&opts.AllVersions, "all-versions", false, "when several files share a name, delete every one")
	return cmd
}

func rmRun(ctx context.Context, opts *RmOptions) error {
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	v := oneVersion
	if opts.AllVersions {
		v = allVersions
	}
	failed := 0
	var last error
	fail := func(arg string, err error) {
		failed++
		last = apiFailure(fileNotFound(err))
		fmt.Fprintf(opts.F.IO.ErrOut, "jetty: %s: %v\n", quoteName(arg), last)
	}
	for _, arg := range opts.Files {
		as, err := resolveFiles(ctx, c, arg, v, "--all-versions to delete every one")
		if err != nil {
			if ctx.Err() != nil {
				return &ExitError{Code: ExitInterrupted, Err: fmt.Errorf("interrupted")}
			}
			fail(arg, err)
			continue
		}
		for _, a := range as {
			d, err := c.Delete(ctx, a.ID)
			if err != nil {
				if ctx.Err() != nil {
					return &ExitError{Code: ExitInterrupted, Err: fmt.Errorf("interrupted")}
				}
				fail(arg, err)
				continue
			}
			if opts.JSON {
				writeJSON(opts.F.IO.Out, map[string]any{"deleted": d.Deleted, "filename": a.Filename, "freed_bytes": d.FreedBytes})
			} else {
				fmt.Fprintf(opts.F.IO.Out, "deleted %s (%s, freed %s)\n", d.Deleted, quoteName(a.Filename), units.HumanBytes(d.FreedBytes))
			}
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == 1 && len(opts.Files) == 1:
		return &SilentError{Code: ExitCodeFor(last)}
	default:
		return &SilentError{Code: ExitPartial}
	}
}
