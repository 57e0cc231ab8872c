package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// LsOptions are the inputs of `jetty ls`.
type LsOptions struct {
	F      *Factory
	Client ClientOptions
	JSON   bool
	Limit  int
	// CacheKey and PipelineID narrow the list (exact match).
	CacheKey   string
	PipelineID string
}

// NewCmdLs builds `jetty ls`.
func NewCmdLs(f *Factory, runF func(*LsOptions) error) *cobra.Command {
	opts := &LsOptions{F: f}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List your stored files, newest first",
		Example: `  jetty ls
  jetty ls --json | jq -r '.[].id'
  jetty ls --cache-key dalle_image_sunset_beach --json
  jetty ls --pipeline-id 123e4567-e89b-12d3-a456-426614174000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 0 {
				return usageError("--limit must be positive")
			}
			if cmd.Flags().Changed("cache-key") && opts.CacheKey == "" {
				return usageError("--cache-key is empty: give the cache key to look up")
			}
			if opts.PipelineID != "" || cmd.Flags().Changed("pipeline-id") {
				p, ok := protocol.NormalizePipelineID(opts.PipelineID)
				if !ok {
					return usageError("--pipeline-id %q is not a UUID (e.g. 123e4567-e89b-12d3-a456-426614174000)", opts.PipelineID)
				}
				opts.PipelineID = p
			}
			if runF != nil {
				return runF(opts)
			}
			return lsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print a JSON array of files")
	cmd.Flags().IntVar(&opts.Limit, "limit", 0, "list at most this many (default: all)")
	cmd.Flags().StringVar(&opts.CacheKey, "cache-key", "", "only files recorded with exactly this cache key")
	cmd.Flags().StringVar(&opts.PipelineID, "pipeline-id", "", "only files of this AgentCache pipeline (a UUID)")
	return cmd
}

func lsRun(ctx context.Context, opts *LsOptions) error {
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	var assets []protocol.Asset
	filter := engine.ListFilter{CacheKey: opts.CacheKey, PipelineID: opts.PipelineID}
	if opts.Limit > 0 {
		page, err := c.ListWhere(ctx, filter, "", min(opts.Limit, 1000))
		if err != nil {
			return apiFailure(err)
		}
		assets = page.Assets
	} else if assets, err = c.ListAllWhere(ctx, filter); err != nil {
		return apiFailure(err)
	}
	out := opts.F.IO.Out
	if opts.JSON {
		if assets == nil {
			assets = []protocol.Asset{}
		}
		return writeJSON(out, assets)
	}
	if len(assets) == 0 && filter != (engine.ListFilter{}) {
		fmt.Fprintln(out, "No files match.")
		return nil
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
