// Command jetty is the JettyThunder upload client with its embedded
// JettySpeed engine, and the companion server (`jetty server`).
//
// main is thin: it builds the command tree, runs it, prints the error (the
// only place that does) and exits with the code the error maps to.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jettythunder/jetty/internal/iostreams"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	io := iostreams.System()
	root := NewCmdRoot(newFactory(io, os.Getenv))
	root.SetArgs(os.Args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var silent *SilentError
	if !errors.As(err, &silent) {
		fmt.Fprintln(io.ErrOut, "jetty:", err)
	}
	return ExitCodeFor(err)
}
