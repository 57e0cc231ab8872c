package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseOpenSSLSpeed(t *testing.T) {
	out := "CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab\nThe 'numbers' are in 1000s of bytes per second processed.\ntype        8388608 bytes\nsha256         1797558.86k\n"
	v, err := parseOpenSSLSpeed(out)
	if err != nil || v < 1797.5 || v > 1797.6 {
		t.Fatalf("got %v, %v", v, err)
	}
	if _, err := parseOpenSSLSpeed("nothing"); err == nil {
		t.Fatal("no error on an answer without a figure")
	}
}

func mb(tool string, mbps float64) result {
	return result{tool: tool, bytes: int64(mbps * 1e6), dur: time.Second}
}

func TestTargetTable(t *testing.T) {
	var w strings.Builder
	ex := extras{runs: []sizedRun{{mib: 256, rs: []result{mb(tJetty, 115), mb(tAWSTuned, 100)}}}}
	targetTable(&w, linkNamed("wan-4MB"), ex)
	got := w.String()
	for _, want := range []string{
		"| jetty ≥ 85% of 32 × 4 MB/s | 256 MiB | 90% (115.0 of 128 MB/s) | PASS |",
		"| jetty ≥ 90% of 32 × 4 MB/s | 1 GiB (measured at 256 MiB only: indicative) | 90% (115.0 of 128 MB/s) | FAIL (indicative) |",
		"| jetty ≥ 1.3× aws s3 cp (tuned) | 1 GiB (measured at 256 MiB only: indicative) | 1.15× (115.0 vs 100.0 MB/s) | FAIL (indicative) |",
		"| jetty ≥ 3× aws s3 cp (defaults) | 1 GiB (measured at 256 MiB only: indicative) | aws s3 cp not measured | not measured |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	w.Reset()
	ex = extras{uplink: 12.5e6, runs: []sizedRun{{mib: 1024, rs: []result{mb(tJetty, 12), mb(tSingle, 11), mb(tAWSTuned, 12.2)}}}}
	targetTable(&w, linkNamed("aggregate"), ex)
	got = w.String()
	for _, want := range []string{"| jetty ≥ 95% of the uplink | 1 GiB | 96% (12.00 of 12.50 MB/s) | PASS |", "lowest 0.98× (aws s3 cp (tuned); 2 peers) | FAIL |"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestNearest(t *testing.T) {
	runs := []sizedRun{{mib: 256}, {mib: 1024}}
	if r, exact := nearest(runs, 1024); !exact || r.mib != 1024 {
		t.Fatal(r, exact)
	}
	if r, exact := nearest(runs, 10240); exact || r.mib != 1024 {
		t.Fatal(r, exact)
	}
	if r, _ := nearest(runs[1:], 256); r.mib != 1024 {
		t.Fatal(r)
	}
	if r, _ := nearest(nil, 256); r != nil {
		t.Fatal(r)
	}
}

func TestSinglePUTSkipped(t *testing.T) {
	e := &linkEnv{l: linkNamed("loopback")}
	if r := e.runTool(nil, tSingle, "", 10<<30, 10240); r.skipped == "" || r.mbps() != 0 {
		t.Errorf("10 GiB single PUT not skipped: %+v", r)
	}
	e.l = linkNamed("wan-2MB")
	if r := e.runTool(nil, tSingle, "", 1<<30, 1024); !strings.Contains(r.skipped, "537 s") {
		t.Errorf("1 GiB single PUT at 2 MB/s: %+v", r)
	}
}
