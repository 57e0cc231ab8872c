package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// setPdeathsig makes the kernel kill the child when the thread that
// started it (and so the test binary) dies.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// reapWhenGone starts a detached shell that removes dir once this process
// has exited (MinIO deletes objects lazily through its own trash, so the
// data directory can hold everything the tests wrote). Best effort:
// whatever it misses, sweepMinIODirs removes on a later run.
func reapWhenGone(dir string) {
	cmd := exec.Command("/bin/sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 1; done; sleep 1; rm -rf "$2"`,
		"jetty-minio-reaper", strconv.Itoa(os.Getpid()), dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		go cmd.Wait()
	}
}
