//go:build !linux

package testenv

import "os/exec"

// pgOwn does nothing outside Linux: the cluster runs as this process's
// user, which owns the directory.
func pgOwn(dir string) error { return nil }

// pgRunAs does nothing outside Linux (see pgOwn).
func pgRunAs(cmd *exec.Cmd) error { return nil }
