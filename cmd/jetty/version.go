package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Set by the release build through -ldflags "-X main.version=...".
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// VersionOptions are the inputs of `jetty version`.
type VersionOptions struct {
	F *Factory
}

// NewCmdVersion builds `jetty version`.
func NewCmdVersion(f *Factory, runF func(*VersionOptions) error) *cobra.Command {
	opts := &VersionOptions{F: f}
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return versionRun(opts)
		},
	}
}

func versionRun(opts *VersionOptions) error {
	_, err := fmt.Fprintln(opts.F.IO.Out, versionLine())
	return err
}

// versionLine is what `jetty version` and `jetty --version` print.
func versionLine() string {
	return fmt.Sprintf("jetty %s (commit %s, built %s, %s/%s, %s)",
		version, commit, date, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
