package api

import (
	"testing"
	"time"
)

func TestWindowText(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Minute: "1m", 90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s", time.Hour + time.Second: "1h0m1s"} {
		if got := windowText(d); got != want {
			t.Errorf("windowText(%v) = %q, want %q", d, got, want)
		}
	}
}
