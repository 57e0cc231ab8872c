package main

import "testing"

// TestProgress: the gate of the mid-way captures reads a percentage from
// whatever the bar looks like, and only after the typed command.
func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		screen string
		want   int
	}{
		{"$ jetty upload big.bin\nbig.bin  25% |███    | (50/200 MiB, 21 MiB/s)", 25},
		{"$ jetty upload big.bin\nbig.bin hashed 80% sent 31.5%", 31},
		{"$ jetty upload big.bin\nresuming: 16 of 38 chunks already on the server\n", -1},
		{"old 90%\n$ jetty upload big.bin\n", -1},
		{"$ jetty upload big.bin\nbig.bin 10%\nbig.bin 40%\n", 40},
	} {
		if got := progress(after(tc.screen, "jetty upload big.bin")); got != tc.want {
			t.Errorf("progress(%q) = %d, want %d", tc.screen, got, tc.want)
		}
	}
}
