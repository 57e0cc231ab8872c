// Package bench is the WAN benchmark harness: jetty against the tools
// people would use instead (a single HTTP PUT, `aws s3 cp`, rclone), the
// same file over the same emulated links, against the same MinIO, side by
// side in one run. `make bench-peers` (bench/run.sh) installs what it
// needs and runs it; docs/BENCHMARKS.md has the figures and the command.
//
// It is a Go benchmark (BenchmarkPeers) so that it reaches the same real
// parts as the tests (testenv: MinIO, toxiproxy) and never runs as a test.
package bench
