// Package units formats byte counts for people, the same way in the
// server's messages and the command line's output.
package units

import "fmt"

// HumanBytes formats n in binary units: 512 B, 1.5 KiB, 20.0 GiB.
func HumanBytes(n int64) string {
	const prefixes = "KMGTPE"
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	i := 0
	for (v >= 1024 || v <= -1024) && i < len(prefixes)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, prefixes[i])
}
