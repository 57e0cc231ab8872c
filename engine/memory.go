package engine

import (
	"runtime/debug"
)

// memorySlack is what a process needs beyond its chunk buffers: planning
// pieces, HTTP connections, the runtime and garbage between collections.
const memorySlack = 48 << 20

// MemoryBudget is the most memory an upload with these settings should
// need: one chunk buffer per worker, the pipeline's read-ahead
// (pipeBuffers: a file read once is read into chunk buffers, and a
// stream too) plus a fixed slack.
func MemoryBudget(workers int, chunkSize int64) int64 {
	return int64(max(workers, 1)+pipeBuffers(chunkSize))*chunkSize + memorySlack
}

// pipeBuffers is how many chunk buffers the pipelined path reads ahead of
// its workers (one being read, one queued; one only for chunks above
// 16 MiB, so that the read-ahead stays within 32 MiB of the
// workers × chunk bound).
func pipeBuffers(chunkSize int64) int {
	if chunkSize > 16<<20 {
		return 1
	}
	return 2
}

// LimitMemory sets the Go runtime's soft memory limit to MemoryBudget, so
// the collector runs before garbage (short-lived request buffers, planning
// pieces) lets the heap grow past the chunk buffers. Commands call it once
// before an upload; it returns the previous limit. An explicit GOMEMLIMIT
// in the environment wins.
func LimitMemory(workers int, chunkSize int64) int64 {
	prev := debug.SetMemoryLimit(-1)
	if prev != int64(^uint64(0)>>1) { // GOMEMLIMIT or an earlier call set it
		return prev
	}
	return debug.SetMemoryLimit(MemoryBudget(workers, chunkSize))
}
