//go:build race

package s3blob_test

// Under -race sync.Pool drops a quarter of what is put back, so dropped
// buffers wait for the GC and the heap grows past the buffers in flight.
const raceEnabled = true
