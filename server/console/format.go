package console

import (
	"fmt"
	"time"

	"github.com/jettythunder/jetty/internal/units"
)

// humanBytes prints a byte count in IEC units (KiB, MiB, GiB).
func humanBytes(n int64) string { return units.HumanBytes(n) }

// percent is part of whole in percent, one decimal ("—" when whole is 0).
func percent(part, whole int64) string {
	if whole <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", float64(part)*100/float64(whole))
}

// when prints a time in UTC to the second ("never" for the zero time).
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
