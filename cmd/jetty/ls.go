package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// LsOptions are the inputs of `jetty ls`.
type LsOptions struct {
	F      *Factory
	Client ClientOptions
	JSON   bool
	Limit  int
}

// NewCmdLs builds `jetty ls`.
func NewCmdLs(f *Factory, runF func(*LsOptions) error) *cobra.Command {
	opts := &LsOptions{F: f}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List your stored files, newest first",
		Example: `  jetty ls
  jetty ls --json | jq -r '.[].id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 0 {
				return usageError("--limit must be positive")
			}
			if runF != nil {
				return runF(opts)
			}
			return lsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print a JSON array of assets")
	cmd.Flags().IntVar(&opts.Limit, "limit", 0, "list at most this many (default: all)")
	return cmd
}

func lsRun(ctx context.Context, opts *LsOptions) error {
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	var assets []protocol.Asset
	if opts.Limit > 0 {
		page, err := c.List(ctx, "", min(opts.Limit, 1000))
		if err != nil {
			return apiFailure(err)
		}
		assets = page.Assets
	} else if assets, err = c.ListAll(ctx); err != nil {
		return apiFailure(err)
	}
	out := opts.F.IO.Out
	if opts.JSON {
		if assets == nil {
			assets = []protocol.Asset{}
		}
		return writeJSON(out, assets)
	}
	if len(assets) == 0 {
		fmt.Fprintln(out, "No files yet. Upload one with `jetty upload FILE`.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIZE\tUPLOADED\tSHA-256\tNAME")
	var total int64
	for _, a := range assets {
		total += a.Size
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.12s\t%s\n", a.ID, units.HumanBytes(a.Size), a.CreatedAt.Local().Format("2006-01-02 15:04"), a.Hash, a.Filename)
	}
	tw.Flush()
	noun := "files"
	if len(assets) == 1 {
		noun = "file"
	}
	fmt.Fprintf(out, "%d %s, %s\n", len(assets), noun, units.HumanBytes(total))
	return nil
}
