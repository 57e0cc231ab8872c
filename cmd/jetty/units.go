package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jettythunder/jetty/internal/units"
)

// parseSize reads a byte count for flags like --chunk-size: a number with
// an optional unit. Units with an "i" (KiB, MiB, GiB, TiB) and bare
// letters (K, M, G, T, as in rsync and curl) are powers of 1024; KB, MB,
// GB, TB are powers of 1000; B or nothing is bytes. Case is ignored;
// fractions are allowed ("1.5GiB").
func parseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return !(unicode.IsDigit(r) || r == '.') })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit, e.g. 64MiB, 8M or 1048576", orig)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit, e.g. 64MiB, 8M or 1048576", orig)
	}
	mult := float64(1)
	switch strings.ToLower(unit) {
	case "", "b":
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB or TB)", orig, unit)
	}
	n := v * mult
	if n > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q: too large", orig)
	}
	return int64(math.Round(n)), nil
}

// parseRate reads a bandwidth for --bwlimit: a size per second, with or
// without "/s" ("20MB/s", "10M", "1.5MiB/s").
func parseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	low := strings.ToLower(t)
	for _, suf := range []string{"/s", "ps"} {
		if strings.HasSuffix(low, suf) {
			t = t[:len(t)-len(suf)]
			break
		}
	}
	n, err := parseSize(t)
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q: want bytes per second, e.g. 20MiB/s, 10M or 512KiB/s", s)
	}
	return n, nil
}

// humanRate formats bytes per second in binary units, as sizes are
// (units.HumanBytes): "45.2 MiB/s", "1.4 GiB/s".
func humanRate(bps float64) string {
	return units.HumanBytes(int64(math.Round(max(bps, 0)))) + "/s"
}

// humanDuration rounds d for people: 850ms, 12.3s, 4m05s.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}

// rateOf is n bytes over d as bytes per second (0 for no time).
func rateOf(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
