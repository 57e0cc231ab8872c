package edges

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

func meas(id, kind string, rtt time.Duration, thr float64, load float64) Measurement {
	return Measurement{Candidate: protocol.Candidate{ID: id, Kind: kind, Load: load}, RTT: rtt, Throughput: thr, Healthy: true}
}

func TestScore(t *testing.T) {
	const MiB = 1 << 20
	ms := time.Millisecond
	type want struct {
		id       string
		estimate time.Duration
		weight   float64
		assumed  bool
	}
	// w computes normalised weights of estimates (with load factors).
	w := func(est []time.Duration, lf []float64) []float64 {
		var sum float64
		out := make([]float64, len(est))
		for i, e := range est {
			out[i] = lf[i] / e.Seconds()
			sum += out[i]
		}
		for i := range out {
			out[i] /= sum
		}
		return out
	}
	cases := []struct {
		name    string
		in      []Measurement
		chunk   int64
		workers int
		want    []want
	}{
		{
			name:  "empty",
			chunk: 8 * MiB,
		},
		{
			name:  "all unhealthy",
			in:    []Measurement{{Candidate: protocol.Candidate{ID: "origin", Kind: protocol.KindOrigin}, RTT: ms, Throughput: MiB, Err: ErrTimedOut}},
			chunk: 8 * MiB,
		},
		{
			// origin: 2×10 ms + 8 MiB / 80 MiB/s = 120 ms; relay:
			// 2×5 ms + 8 MiB / 160 MiB/s = 60 ms: twice the weight.
			name: "faster first, weights ∝ 1/T",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 80*MiB, 0),
				meas("r1", protocol.KindRelay, 5*ms, 160*MiB, 0),
			},
			chunk: 8 * MiB,
			want: []want{
				{"r1", 60 * ms, 2.0 / 3, false},
				{"origin", 120 * ms, 1.0 / 3, false},
			},
		},
		{
			name: "unhealthy dropped",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 80*MiB, 0),
				{Candidate: protocol.Candidate{ID: "r1", Kind: protocol.KindRelay}, RTT: ms, Throughput: 1000 * MiB, Err: errors.New("throughput: timed out")},
			},
			chunk: 8 * MiB,
			want:  []want{{"origin", 120 * ms, 1, false}},
		},
		{
			// best 2×10+100 = 120 ms; 4× = 480 ms. r-ok: 2×39+400 = 478
			// (kept); r-slow: 2×50+400 = 500 (dropped).
			name: "4x cut",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 80*MiB, 0),
				meas("r-ok", protocol.KindRelay, 39*ms, 20*MiB, 0),
				meas("r-slow", protocol.KindRelay, 50*ms, 20*MiB, 0),
			},
			chunk: 8 * MiB,
			want: func() []want {
				ws := w([]time.Duration{120 * ms, 478 * ms}, []float64{1, 1})
				return []want{{"origin", 120 * ms, ws[0], false}, {"r-ok", 478 * ms, ws[1], false}}
			}(),
		},
		{
			// Same T (60 ms); load 0.5 halves, 0.95 and 3 floor at 0.1,
			// a negative load counts as none.
			name: "load scaling",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 5*ms, 160*MiB, 0),
				meas("half", protocol.KindRelay, 5*ms, 160*MiB, 0.5),
				meas("busy", protocol.KindRelay, 5*ms, 160*MiB, 0.95),
				meas("over", protocol.KindRelay, 5*ms, 160*MiB, 3),
				meas("neg", protocol.KindRelay, 5*ms, 160*MiB, -2),
			},
			chunk: 8 * MiB,
			want: func() []want {
				e := 60 * ms
				ws := w([]time.Duration{e, e, e, e, e}, []float64{1, 1, 0.5, 0.1, 0.1})
				// Equal weights: by ID.
				return []want{{"neg", e, ws[0], false}, {"origin", e, ws[1], false}, {"half", e, ws[2], false}, {"busy", e, ws[3], false}, {"over", e, ws[4], false}}
			}(),
		},
		{
			// direct has no figure: credited with the best (160 MiB/s):
			// 2×2 ms + 50 ms = 54 ms.
			name: "direct assumes the best throughput",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 80*MiB, 0),
				meas("r1", protocol.KindRelay, 5*ms, 160*MiB, 0),
				meas("direct", protocol.KindDirect, 2*ms, 0, 0),
			},
			chunk: 8 * MiB,
			want: func() []want {
				ws := w([]time.Duration{54 * ms, 60 * ms, 120 * ms}, []float64{1, 1, 1})
				return []want{{"direct", 54 * ms, ws[0], true}, {"r1", 60 * ms, ws[1], false}, {"origin", 120 * ms, ws[2], false}}
			}(),
		},
		{
			// An unhealthy candidate's figure is not the best to assume.
			name: "assumption ignores unhealthy figures",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 80*MiB, 0),
				{Candidate: protocol.Candidate{ID: "r1", Kind: protocol.KindRelay}, Throughput: 8000 * MiB, Err: ErrBadStatus},
				meas("direct", protocol.KindDirect, 10*ms, 0, 0),
			},
			chunk: 8 * MiB,
			want:  []want{{"direct", 120 * ms, 0.5, true}, {"origin", 120 * ms, 0.5, false}},
		},
		{
			name: "no throughput anywhere: RTT only",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 0, 0),
				meas("direct", protocol.KindDirect, 20*ms, 0, 0),
			},
			chunk: 8 * MiB,
			want: func() []want {
				ws := w([]time.Duration{20 * ms, 40 * ms}, []float64{1, 1})
				return []want{{"origin", 20 * ms, ws[0], false}, {"direct", 40 * ms, ws[1], false}}
			}(),
		},
		{
			name: "estimate floor",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 0, 0, 0),
				meas("r1", protocol.KindRelay, 100*time.Microsecond, 0, 0),
			},
			chunk: 8 * MiB,
			want:  []want{{"origin", MinEstimate, 0.5, false}, {"r1", MinEstimate, 0.5, false}},
		},
		{
			name: "cut to workers",
			in: []Measurement{
				meas("origin", protocol.KindOrigin, 10*ms, 80*MiB, 0),
				meas("r1", protocol.KindRelay, 5*ms, 160*MiB, 0),
				meas("r2", protocol.KindRelay, 6*ms, 160*MiB, 0),
			},
			chunk:   8 * MiB,
			workers: 2,
			want: func() []want {
				ws := w([]time.Duration{60 * ms, 62 * ms}, []float64{1, 1})
				return []want{{"r1", 60 * ms, ws[0], false}, {"r2", 62 * ms, ws[1], false}}
			}(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Score(tc.in, tc.chunk, tc.workers)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d candidates %v, want %d", len(got), ids(got), len(tc.want))
			}
			var sum float64
			for i, g := range got {
				wt := tc.want[i]
				if g.Candidate.ID != wt.id {
					t.Fatalf("order %v, want %s at %d", ids(got), wt.id, i)
				}
				if d := g.Estimate - wt.estimate; d < -time.Microsecond || d > time.Microsecond {
					t.Errorf("%s: estimate %v, want %v", wt.id, g.Estimate, wt.estimate)
				}
				if math.Abs(g.Weight-wt.weight) > 1e-6 {
					t.Errorf("%s: weight %.6f, want %.6f", wt.id, g.Weight, wt.weight)
				}
				if g.Assumed != wt.assumed {
					t.Errorf("%s: assumed %v, want %v", wt.id, g.Assumed, wt.assumed)
				}
				sum += g.Weight
			}
			if len(got) > 0 && math.Abs(sum-1) > 1e-9 {
				t.Errorf("weights sum to %v", sum)
			}
		})
	}
}

func TestScoreDoesNotModifyInput(t *testing.T) {
	in := []Measurement{
		meas("r1", protocol.KindRelay, 50*time.Millisecond, 1<<20, 0),
		meas("origin", protocol.KindOrigin, time.Millisecond, 1<<30, 0),
	}
	Score(in, 1<<20, 4)
	if in[0].Candidate.ID != "r1" || in[1].Candidate.ID != "origin" {
		t.Fatalf("input reordered: %+v", in)
	}
}

func ids(s []Scored) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Candidate.ID
	}
	return out
}
