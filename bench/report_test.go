package bench

import (
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
)

// jettyFor is the jetty row a tool's row is compared with: the same
// server's.
func jettyFor(tool string) string {
	if tool == tCurlEmb || tool == tJettyEmb {
		return tJettyEmb
	}
	return tJetty
}

// table writes one markdown table: MB/s, jetty's figure over the row's,
// the row's share of what bounds the link (the uplink, 32 connections at
// the per-connection cap, or one core's SHA-256 on loopback), peak RSS,
// CPU.
func table(w io.Writer, l link, title string, rs []result, ex extras) {
	by := map[string]result{}
	for _, r := range rs {
		by[r.tool] = r
	}
	share, shareHead := func(result) string { return "–" }, "share"
	pct := func(v, of float64) string {
		if v == 0 || of == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f%%", 100*v/of)
	}
	switch {
	case ex.uplink > 0:
		shareHead = fmt.Sprintf("of uplink (%.1f MB/s)", ex.uplink/1e6)
		share = func(r result) string { return pct(r.mbps()*1e6, ex.uplink) }
	case l.perConn() > 0:
		c := capWorkers * l.perConn()
		shareHead = fmt.Sprintf("of %d × cap (%.0f MB/s)", capWorkers, c/1e6)
		share = func(r result) string { return pct(r.mbps()*1e6, c) }
	case ex.openssl > 0:
		shareHead = fmt.Sprintf("of openssl sha256, 1 core (%.0f MB/s)", ex.openssl)
		share = func(r result) string { return pct(r.mbps(), ex.openssl) }
	}
	fmt.Fprintf(w, "### %s\n\n", title)
	if l.about != "" {
		fmt.Fprintf(w, "Link: %s.\n\n", l.about)
	}
	if ex.uplinkCheck != "" {
		fmt.Fprintf(w, "%s\n\n", ex.uplinkCheck)
	}
	if ex.openssl == 0 && ex.opensslNote != "" {
		fmt.Fprintf(w, "openssl: %s\n\n", ex.opensslNote)
	}
	fmt.Fprintf(w, "| tool | MB/s | time | jetty ÷ this | %s | peak RSS | CPU | notes |\n", shareHead)
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range rs {
		mb, note := fmt.Sprintf("%.1f", r.mbps()), r.note
		switch {
		case r.skipped != "":
			fmt.Fprintf(w, "| %s | skipped | – | – | – | – | – | %s |\n", r.tool, r.skipped)
			continue
		case r.err != nil:
			mb = "failed"
			note = strings.ReplaceAll(r.err.Error(), "|", "/")
			note = strings.ReplaceAll(note, "\n", " ")
			if len(note) > 160 {
				note = note[:160] + "…"
			}
		}
		ratio := "–"
		if j, ok := by[jettyFor(r.tool)]; ok && j.tool != r.tool && j.mbps() > 0 && r.mbps() > 0 {
			ratio = fmt.Sprintf("%.2f×", j.mbps()/r.mbps())
		}
		fmt.Fprintf(w, "| %s | %s | %.1f s | %s | %s | %d MiB | %.1f s | %s |\n", r.tool, mb, r.dur.Seconds(),
			ratio, share(r), r.rssKiB>>10, r.cpu.Seconds(), note)
	}
	fmt.Fprintln(w)
}

// A target is one of issue 18's, judged on one link at one file size.
type target struct {
	link string
	mib  int64
	what string
	// eval gives the figure and whether it meets the target; ok false:
	// not measured (what is missing).
	eval func(by map[string]result, l link, ex extras) (figure string, pass, ok bool)
}

func atLeastCap(min float64) func(map[string]result, link, extras) (string, bool, bool) {
	return func(by map[string]result, l link, _ extras) (string, bool, bool) {
		j, ok := by[tJetty]
		if !ok || j.mbps() == 0 || l.perConn() == 0 {
			return "jetty not measured", false, false
		}
		c := capWorkers * l.perConn() / 1e6
		return fmt.Sprintf("%.0f%% (%.1f of %.0f MB/s)", 100*j.mbps()/c, j.mbps(), c), j.mbps() >= min*c, true
	}
}

func atLeastUplink(min float64) func(map[string]result, link, extras) (string, bool, bool) {
	return func(by map[string]result, _ link, ex extras) (string, bool, bool) {
		j, ok := by[tJetty]
		if !ok || j.mbps() == 0 || ex.uplink == 0 {
			return "jetty not measured", false, false
		}
		u := ex.uplink / 1e6
		f := fmt.Sprintf("%.0f%% (%.2f of %.2f MB/s", 100*j.mbps()/u, j.mbps(), u)
		if ex.uplinkMeasured > 0 {
			f += fmt.Sprintf("; one curl through the veth: %.2f", ex.uplinkMeasured/1e6)
		}
		return f + ")", j.mbps() >= min*u, true
	}
}

func atLeastTimes(jetty, peer string, min float64) func(map[string]result, link, extras) (string, bool, bool) {
	return func(by map[string]result, _ link, _ extras) (string, bool, bool) {
		j, p := by[jetty], by[peer]
		if j.mbps() == 0 || p.mbps() == 0 {
			var miss []string
			for _, r := range []result{{tool: jetty}, {tool: peer}} {
				if by[r.tool].mbps() == 0 {
					miss = append(miss, r.tool)
				}
			}
			return strings.Join(miss, ", ") + " not measured", false, false
		}
		return fmt.Sprintf("%.2f× (%.1f vs %.1f MB/s)", j.mbps()/p.mbps(), j.mbps(), p.mbps()), j.mbps() >= min*p.mbps(), true
	}
}

// atLeastEvery: jetty against every peer measured (not the embedded
// server's rows, which are another server).
func atLeastEvery(min float64) func(map[string]result, link, extras) (string, bool, bool) {
	return func(by map[string]result, _ link, _ extras) (string, bool, bool) {
		j := by[tJetty]
		if j.mbps() == 0 {
			return "jetty not measured", false, false
		}
		worst, worstTool, n := 0.0, "", 0
		for _, t := range []string{tSingle, tAWS, tAWSTuned, tRclone, tRcloneTuned} {
			p, ok := by[t]
			if !ok || p.mbps() == 0 {
				continue
			}
			n++
			if x := j.mbps() / p.mbps(); worstTool == "" || x < worst {
				worst, worstTool = x, t
			}
		}
		if n == 0 {
			return "no peer measured", false, false
		}
		return fmt.Sprintf("lowest %.2f× (%s; %d peers)", worst, worstTool, n), worst >= min, true
	}
}

var targets = []target{
	{"wan-4MB", 256, "jetty ≥ 85% of 32 × 4 MB/s", atLeastCap(0.85)},
	{"wan-4MB", 1024, "jetty ≥ 90% of 32 × 4 MB/s", atLeastCap(0.90)},
	{"wan-4MB", 1024, "jetty ≥ 1.3× aws s3 cp (tuned)", atLeastTimes(tJetty, tAWSTuned, 1.3)},
	{"wan-4MB", 1024, "jetty ≥ 3× aws s3 cp (defaults)", atLeastTimes(tJetty, tAWS, 3)},
	{"wan-2MB", 1024, "jetty ≥ 90% of 32 × 2 MB/s", atLeastCap(0.90)},
	{"aggregate", 1024, "jetty ≥ 95% of the uplink", atLeastUplink(0.95)},
	{"aggregate", 1024, "jetty ≥ 1.0× every peer", atLeastEvery(1.0)},
	{"loopback", 1024, "jetty ≥ 2× aws s3 cp (defaults)", atLeastTimes(tJetty, tAWS, 2)},
	{"loopback", 10240, "jetty ≥ 2× aws s3 cp (defaults)", atLeastTimes(tJetty, tAWS, 2)},
	{"loopback", 1024, "jetty ≥ 1.5× one curl -T PUT, both to the embedded server", atLeastTimes(tJettyEmb, tCurlEmb, 1.5)},
}

// targetTable writes the link's targets with PASS or FAIL. A target
// whose file size this run did not measure is judged on the nearest size
// measured, marked as indicative.
func targetTable(w io.Writer, l link, ex extras) {
	var mine []target
	for _, t := range targets {
		if t.link == l.name {
			mine = append(mine, t)
		}
	}
	if len(mine) == 0 {
		return
	}
	fmt.Fprintf(w, "#### Targets (issue 18), %s\n\n", l.name)
	fmt.Fprintln(w, "| target | at | figure | result |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, t := range mine {
		run, exact := nearest(ex.runs, t.mib)
		if run == nil {
			fmt.Fprintf(w, "| %s | %s | not measured in this run | – |\n", t.what, mibName(t.mib))
			continue
		}
		by := map[string]result{}
		for _, r := range run.rs {
			by[r.tool] = r
		}
		fig, pass, ok := t.eval(by, l, ex)
		at, verdict := mibName(t.mib), "FAIL"
		if pass {
			verdict = "PASS"
		}
		if !exact {
			at = fmt.Sprintf("%s (measured at %s only: indicative)", mibName(t.mib), mibName(run.mib))
			verdict += " (indicative)"
		}
		if !ok {
			verdict = "not measured"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.what, at, fig, verdict)
	}
	fmt.Fprintln(w)
}

// nearest is the run at mib, else the largest run below it, else the
// smallest above it.
func nearest(runs []sizedRun, mib int64) (*sizedRun, bool) {
	var best *sizedRun
	for i := range runs {
		r := &runs[i]
		if r.mib == mib {
			return r, true
		}
		switch {
		case best == nil:
			best = r
		case r.mib < mib && (best.mib > mib || r.mib > best.mib):
			best = r
		case r.mib > mib && best.mib > mib && r.mib < best.mib:
			best = r
		}
	}
	return best, false
}

func mibName(mib int64) string {
	if mib >= 1024 && mib%1024 == 0 {
		return fmt.Sprintf("%d GiB", mib/1024)
	}
	return fmt.Sprintf("%d MiB", mib)
}

// opensslSHA256 runs `openssl speed -evp sha256 -bytes 8388608 -seconds
// 3` (one process: one core) and returns its figure in MB/s.
func opensslSHA256() (float64, string) {
	out, err := exec.Command("openssl", "speed", "-evp", "sha256", "-bytes", "8388608", "-seconds", "3").Output()
	if err != nil {
		return 0, fmt.Sprintf("`openssl speed` failed: %v", err)
	}
	v, err := parseOpenSSLSpeed(string(out))
	if err != nil {
		return 0, err.Error()
	}
	return v, "(`openssl speed -evp sha256 -bytes 8388608 -seconds 3`)"
}

// parseOpenSSLSpeed reads the last figure of openssl speed's table, in
// 1000s of bytes per second, as MB/s.
func parseOpenSSLSpeed(out string) (float64, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(strings.ToLower(f[0]), "sha256") {
			continue
		}
		last := f[len(f)-1]
		if !strings.HasSuffix(last, "k") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(last, "k"), 64)
		if err != nil {
			continue
		}
		return v / 1000, nil
	}
	return 0, fmt.Errorf("no sha256 figure in openssl's answer: %.200q", out)
}
