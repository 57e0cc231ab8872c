//go:build unix

package connguard

import "syscall"

// nofile is the soft RLIMIT_NOFILE (0 when it cannot be read).
func nofile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return uint64(rl.Cur)
}
