//go:build !race

package e2e

// raceEnabled reports a -race build (TestLoad prints it with its figures).
const raceEnabled = false
