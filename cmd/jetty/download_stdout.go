package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// checkStdoutOutput refuses what cannot go with -o - (the file's bytes
// on stdout) before anything is fetched.
func checkStdoutOutput(opts *DownloadOptions) error {
	switch {
	case opts.JSON:
		return usageError("--json and -o - both write to stdout: drop --json, or give -o a file name")
	case opts.F.IO.StdoutTTY:
		return usageError("-o - writes the file's bytes to stdout, which is a terminal: redirect it (> FILE) or pipe it (| COMMAND)")
	}
	return nil
}

// downloadToStdout writes asset a to stdout in order (engine.
// DownloadStream): progress, warnings and the summary go to stderr, so
// stdout holds the bytes and nothing else. There is no part file and
// nothing resumes. On a SHA-256 mismatch the end of the file is never
// written and the command fails.
func downloadToStdout(ctx context.Context, opts *DownloadOptions, c *engine.Client, a protocol.Asset, started time.Time) error {
	ios := opts.F.IO
	p := newDownloadProgress(opts, cleanFilename(a.Filename), a.Size)
	res, err := engine.DownloadStream(ctx, c, a, ios.Out, engine.DownloadOptions{
		Workers:  opts.Workers,
		Progress: p.update,
		Warn:     p.warn,
	})
	p.finish(err)
	if err != nil {
		if ctx.Err() != nil {
			return &ExitError{Code: ExitInterrupted, Err: fmt.Errorf("interrupted: the output is incomplete; a download to stdout does not resume, run the command again")}
		}
		return downloadFailure(ctx, a.ID, err)
	}
	if !opts.Quiet {
		el := time.Since(started)
		check := "SHA-256 verified" // the hash itself: jetty ls --json
		if !res.Verified {
			check = "no SHA-256 stored to verify"
		}
		fmt.Fprintf(ios.ErrOut, "downloaded %s to stdout: %s in %s (%s), %s\n", quoteName(a.Filename), units.HumanBytes(a.Size), humanDuration(el), humanRate(rateOf(res.Fetched, el)), check)
	}
	return nil
}
