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
	IDs    []string
	JSON   bool
}

// NewCmdRm builds `jetty rm`.
func NewCmdRm(f *Factory, runF func(*RmOptions) error) *cobra.Command {
	opts := &RmOptions{F: f}
	cmd := &cobra.Command{
		Use:   "rm ASSET_ID...",
		Short: "Delete stored files",
		Long: `Delete stored files by asset id (see 'jetty ls'). The space is freed when no
other file of yours has the same content.`,
		Example: `  jetty rm 0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("jetty rm needs at least one ASSET_ID (see `jetty ls`)")
			}
			opts.IDs = args
			if runF != nil {
				return runF(opts)
			}
			return rmRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print one JSON object per deleted file")
	return cmd
}

func rmRun(ctx context.Context, opts *RmOptions) error {
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	failed := 0
	var last error
	for _, id := range opts.IDs {
		d, err := c.Delete(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return &ExitError{Code: ExitInterrupted, Err: fmt.Errorf("interrupted")}
			}
			failed++
			last = apiFailure(fileNotFound(err))
			fmt.Fprintf(opts.F.IO.ErrOut, "jetty: %s: %v\n", id, last)
			continue
		}
		if opts.JSON {
			writeJSON(opts.F.IO.Out, map[string]any{"deleted": d.Deleted, "freed_bytes": d.FreedBytes})
		} else {
			fmt.Fprintf(opts.F.IO.Out, "deleted %s (freed %s)\n", d.Deleted, units.HumanBytes(d.FreedBytes))
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(opts.IDs) && len(opts.IDs) == 1:
		return &SilentError{Code: ExitCodeFor(last)}
	default:
		return &SilentError{Code: ExitPartial}
	}
}
