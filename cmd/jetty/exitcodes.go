package main

import "github.com/spf13/cobra"

// exitCodesHelp is the text of `jetty help exit-codes`; README repeats it.
const exitCodesHelp = `jetty exits with a code scripts can rely on:

  0    success
  1    any other error (network, server error, bad file)
  2    usage: unknown command or flag, missing or extra arguments,
       refusing to overwrite a file without --force
  3    authentication: not logged in, wrong or missing key or secret,
       suspended or deleted account
  4    quota or tier limit: storage quota, file too large for the tier,
       monthly bandwidth quota
  5    partial failure: some of several files failed (the others finished)
  6    the server's storage is full: nothing more could be stored; run the
       same command later (an upload resumes), and tell the server's
       operator if it lasts
  130  interrupted (Ctrl-C or SIGTERM); an interrupted upload resumes when
       the same command runs again

Every error message says what to do next.`

// NewCmdExitCodes builds the `exit-codes` help topic.
func NewCmdExitCodes() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What jetty's exit codes mean",
		Long:  exitCodesHelp,
	}
}
