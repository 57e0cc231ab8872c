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
	// Pattern narrows the list to names beginning with it, or matching
	// it when it is a glob (namePattern).
	Pattern string
}

// NewCmdLs builds `jetty ls`.
func NewCmdLs(f *Factory, runF func(*LsOptions) error) *cobra.Command {
	opts := &LsOptions{F: f}
	cmd := &cobra.Command{
		Use:   "ls [PREFIX | 'GLOB']",
		Short: "List your stored files, newest first",
		Long: `List your stored files, newest first, with their ids, sizes, upload times,
SHA-256 and names.

NAME is the name a file was stored under, with the folders of a directory
upload (photos/sub/q.jpg). The same file uploaded again under the same name
is one entry; other content under the same name is a new version, and the
older rows are marked "(older)".

With an argument, only some names are listed. An argument with a glob
character (*, ?, [...], or the \ that escapes one) is a glob matched
against the whole name, folder path included, as Go's path.Match does:
* and ? never match a /, so 'photos/*.jpg' lists photos/a.jpg but not
photos/sub/q.jpg ('photos/*/*.jpg' does); ** is no different from *.
Quote a glob, or your shell expands it against your local files. Any
other argument is a prefix of the name, byte for byte: 'jetty ls
photos/' lists everything under photos/ at any depth, 'jetty ls photo'
also lists photo.jpg and photos.txt. The server filters by the prefix
(for a glob, the part before its first wildcard); jetty matches the
rest of a glob.

The last line adds up the sizes listed (IEC units: KiB, MiB, GiB) and, when
files share content, what they take in storage: the account keeps each
content once. For the whole, unfiltered list that is the used storage
jetty quota shows.`,
		Example: `  jetty ls
  jetty ls photos/
  jetty ls 'photos/*.jpg'
  jetty ls '*.bin'
  jetty ls --json | jq -r '.[].id'
  jetty ls --cache-key dalle_image_sunset_beach --json
  jetty ls --pipeline-id 123e4567-e89b-12d3-a456-426614174000`,
		ValidArgsFunction: completeFiles(f, &opts.Client, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError("jetty ls takes one prefix or glob, got %d arguments: quote a glob so that your shell does not expand it, e.g. jetty ls 'photos/*.jpg'", len(args))
			}
			if len(args) == 1 {
				if err := checkNamePattern(args[0]); err != nil {
					return err
				}
				opts.Pattern = args[0]
			}
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
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print a JSON array of files (\"older_version\": true on older versions)")
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
	filter := engine.ListFilter{CacheKey: opts.CacheKey, PipelineID: opts.PipelineID, Prefix: patternPrefix(opts.Pattern)}
	glob := isGlob(opts.Pattern)
	if opts.Limit > 0 && !glob {
		page, err := c.ListWhere(ctx, filter, "", min(opts.Limit, 1000))
		if err != nil {
			return apiFailure(err)
		}
		assets = page.Assets
	} else if assets, err = c.ListAllWhere(ctx, filter); err != nil {
		return apiFailure(err)
	}
	if glob {
		assets = matchGlob(assets, opts.Pattern, opts.Limit)
	}
	out := opts.F.IO.Out
	listed := markVersions(assets)
	if opts.JSON {
		return writeJSON(out, listed)
	}
	if len(assets) == 0 && (filter != (engine.ListFilter{}) || opts.Pattern != "") {
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
	older := 0
	for _, a := range listed {
		total += a.Size
		name := a.Filename
		if a.OlderVersion {
			name += " (older)"
			older++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.12s\t%s\n", a.ID, units.HumanBytes(a.Size), a.CreatedAt.Local().Format("2006-01-02 15:04"), a.Hash, name)
	}
	tw.Flush()
	fmt.Fprintln(out, lsSummary(len(assets), older, total, storedBytes(assets)))
	return nil
}

// lsSummary is the line under the table: "3 files, 900 MiB (600 MiB
// stored after deduplication)", the older versions counted when there
// are any. The stored figure counts each content once, as `jetty quota`
// does.
func lsSummary(files, older int, total, stored int64) string {
	noun := "files"
	if files == 1 {
		noun = "file"
	}
	line := fmt.Sprintf("%d %s", files, noun)
	switch {
	case older == 1:
		line += " (1 older version)"
	case older > 1:
		line += fmt.Sprintf(" (%d older versions)", older)
	}
	line += ", " + units.HumanBytes(total)
	if stored != total {
		line += fmt.Sprintf(" (%s stored after deduplication)", units.HumanBytes(stored))
	}
	return line
}
