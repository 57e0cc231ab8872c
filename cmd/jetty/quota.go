package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/internal/units"
)

// QuotaOptions are the inputs of `jetty quota`.
type QuotaOptions struct {
	F      *Factory
	Client ClientOptions
	JSON   bool
}

// NewCmdQuota builds `jetty quota`.
func NewCmdQuota(f *Factory, runF func(*QuotaOptions) error) *cobra.Command {
	opts := &QuotaOptions{F: f}
	cmd := &cobra.Command{
		Use:   "quota",
		Short: "Show storage and bandwidth use against your tier's limits",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return quotaRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the server's quota answer as JSON")
	return cmd
}

func quotaRun(ctx context.Context, opts *QuotaOptions) error {
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	q, err := c.Quota(ctx)
	if err != nil {
		return apiFailure(err)
	}
	out := opts.F.IO.Out
	if opts.JSON {
		return writeJSON(out, q)
	}
	speed := "no (one stream per upload)"
	if q.JettySpeedEnabled {
		speed = "yes (parallel chunk streams)"
	}
	fmt.Fprintf(out, "Tier %s (%s), JettySpeed %s\n\n", q.Tier, q.Status, speed)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tUSED\tLIMIT\tFREE\tUSE")
	fmt.Fprintf(tw, "storage\t%s\t%s\t%s\t%.1f%%\n", units.HumanBytes(q.Storage.UsedBytes+q.Storage.ReservedBytes), units.HumanBytes(q.Storage.QuotaBytes), units.HumanBytes(q.Storage.AvailableBytes), q.Storage.PercentUsed)
	fmt.Fprintf(tw, "bandwidth (this month)\t%s\t%s\t%s\t%.1f%%\n", units.HumanBytes(q.Bandwidth.UsedBytes), units.HumanBytes(q.Bandwidth.QuotaBytes), units.HumanBytes(q.Bandwidth.AvailableBytes), q.Bandwidth.PercentUsed)
	tw.Flush()
	fmt.Fprintf(out, "\nLargest file: %s. Requests: %d per minute.\n", units.HumanBytes(q.Limits.MaxFileSizeBytes), q.Limits.RateLimitPerMinute)
	if q.Storage.ReservedBytes > 0 {
		fmt.Fprintf(out, "%s is held for uploads in progress.\n", units.HumanBytes(q.Storage.ReservedBytes))
	}
	return nil
}
