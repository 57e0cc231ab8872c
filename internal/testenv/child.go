package testenv

import "os/exec"

// StartChild starts cmd so that it dies with the test binary: Pdeathsig
// (on Linux), set from a goroutine locked to a thread that lives as long
// as the child, since the signal follows the starting thread, not the
// process. The channel is closed once the child has exited and been
// reaped: read cmd.ProcessState then, and never call cmd.Wait yourself.
func StartChild(cmd *exec.Cmd) (<-chan struct{}, error) {
	setPdeathsig(cmd)
	return startChild(cmd)
}
