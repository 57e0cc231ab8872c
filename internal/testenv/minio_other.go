//go:build !linux

package testenv

import "os/exec"

// setPdeathsig does nothing outside Linux: there MinIO outlives a test
// binary that is killed, and must be stopped by hand.
func setPdeathsig(cmd *exec.Cmd) {}

// processAlive reports true so that no data directory is swept.
func processAlive(pid int) bool { return true }

// reapWhenGone does nothing outside Linux.
func reapWhenGone(dir string) {}
