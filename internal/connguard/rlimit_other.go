//go:build !unix

package connguard

// nofile is 0 where there is no RLIMIT_NOFILE to read (Windows).
func nofile() uint64 { return 0 }
