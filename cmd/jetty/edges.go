package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/edges"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// EdgesOptions are the inputs of `jetty edges`.
type EdgesOptions struct {
	F         *Factory
	Client    ClientOptions
	JSON      bool
	Locations bool
	Size      int64
	Workers   int
	Timeout   time.Duration

	sizeFlag string
}

// NewCmdEdges builds `jetty edges`.
func NewCmdEdges(f *Factory, runF func(*EdgesOptions) error) *cobra.Command {
	opts := &EdgesOptions{F: f}
	cmd := &cobra.Command{
		Use:   "edges",
		Short: "Show the edges an upload would use, their latency and their weights",
		Long: `Ask the server for the edges it offers (POST /api/jetty/optimal-edges), probe
each one as an upload does (round trips and a short throughput sample, all
at once, within --timeout), and show what was measured and the share of the
workers each edge would get.

The origin is always a candidate. Tiers without JettySpeed use the origin
alone and nothing is probed. --size scores the edges for a file of that
size (the chunk size depends on it). --locations lists the edge catalogue
with the number of live relays at each location instead.`,
		Example: `  jetty edges
  jetty edges --size 10GiB --workers 32
  jetty edges --json
  jetty edges --locations`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.sizeFlag != "" {
				n, err := parseSize(opts.sizeFlag)
				if err != nil {
					return usageError("--size: %v", err)
				}
				opts.Size = n
			}
			if opts.Workers < 0 {
				return usageError("--workers must be positive")
			}
			if opts.Timeout < 0 || opts.Timeout > time.Minute {
				return usageError("--timeout must be between 0 and 1m")
			}
			if runF != nil {
				return runF(opts)
			}
			return edgesRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	fl.BoolVar(&opts.JSON, "json", false, "print the report as JSON")
	fl.BoolVar(&opts.Locations, "locations", false, "list the edge catalogue and its live relays")
	fl.StringVar(&opts.sizeFlag, "size", "", "score for a file of this size, e.g. 10GiB (default: the server's default chunk size)")
	fl.IntVarP(&opts.Workers, "workers", "w", 0, "score for this many workers (default: the server's suggestion)")
	fl.DurationVar(&opts.Timeout, "timeout", edges.DefaultProbeTimeout, "bound on the probes")
	return cmd
}

func edgesRun(ctx context.Context, opts *EdgesOptions) error {
	ec, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	out := opts.F.IO.Out
	if opts.Locations {
		var body struct {
			Locations []protocol.Location `json:"locations"`
			Relays    int                 `json:"relays"`
		}
		if err := ec.Call(ctx, http.MethodGet, protocol.PathEdgeLocations, nil, &body); err != nil {
			return apiFailure(err)
		}
		if opts.JSON {
			return writeJSON(out, body)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLOCATION\tREGION\tRELAYS")
		for _, l := range body.Locations {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", l.ID, l.Name+", "+l.Country, l.Region, l.Relays)
		}
		tw.Flush()
		fmt.Fprintf(out, "\n%d live relays.\n", body.Relays)
		return nil
	}
	req := protocol.OptimalRequest{FileSize: opts.Size}
	// Chunk size 0: the one the server advises for a file of that size.
	rep, err := edges.Evaluate(ctx, ec, 0, opts.Workers, edges.EvaluateOptions{Request: req, Probe: edges.ProbeOptions{Timeout: opts.Timeout}})
	if err != nil {
		return apiFailure(err)
	}
	if opts.JSON {
		return writeJSON(out, rep)
	}
	if !rep.JettySpeed {
		fmt.Fprintln(out, "Your tier has no JettySpeed: uploads go to the origin alone, one stream each.")
		fmt.Fprintln(out, "Upgrade to a tier with JettySpeed for parallel uploads through edges.")
		return nil
	}
	if len(rep.Measurements) == 0 {
		fmt.Fprintf(out, "Only the origin (%s) is offered: no relay is live. Uploads use %d workers on %s chunks.\n",
			strings.TrimRight(ec.BaseURL, "/"), rep.Workers, units.HumanBytes(rep.ChunkSize))
		return nil
	}
	weights := map[string]float64{}
	for _, s := range rep.Candidates {
		weights[s.Candidate.ID] = s.Weight
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EDGE\tKIND\tWHERE\tRTT\tTHROUGHPUT\tSTATUS\tWEIGHT")
	for _, m := range rep.Measurements {
		where := m.Candidate.URL
		if l := m.Candidate.Location; l != nil && l.Name != "" {
			where = l.Name + " (" + m.Candidate.URL + ")"
		}
		status := "ok"
		if !m.Healthy {
			status = "unhealthy"
			if m.Err != nil {
				status = "unhealthy: " + m.Err.Error()
			}
		}
		tput := "-"
		if m.Throughput > 0 {
			tput = units.HumanBytes(int64(m.Throughput)) + "/s"
		}
		w := "-"
		if x, ok := weights[m.Candidate.ID]; ok {
			w = fmt.Sprintf("%.0f%%", 100*x)
			if x > 0 && x < 0.005 {
				w = "<1%"
			}
		} else if m.Healthy {
			status = "ok (too slow to use)"
		}
		rtt := "-"
		if m.RTT > 0 {
			rtt = fmt.Sprintf("%.1fms", float64(m.RTT)/float64(time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Candidate.ID, m.Candidate.Kind, where, rtt, tput, status, w)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nScored for %d workers on %s chunks, probed in %s. Weights are each edge's share of the workers.\n",
		rep.Workers, units.HumanBytes(rep.ChunkSize), rep.Took.Round(time.Millisecond))
	return nil
}
