package edges

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Scoring constants.
const (
	// MaxSlowdown: a candidate whose estimate is more than this many
	// times the best one's is dropped; it would only slow the tail.
	MaxSlowdown = 4
	// MinLoadFactor is the least a candidate's load scales its weight by.
	MinLoadFactor = 0.1
	// MinEstimate is the least time a chunk is estimated to take
	// anywhere: below it, figures are noise (loopback, a LAN) and must
	// not decide between candidates.
	MinEstimate = time.Millisecond
)

// Scored is a candidate kept by Score.
type Scored struct {
	Measurement
	// Estimate is the time one worker is expected to take per chunk on
	// this candidate: 2×RTT + chunk size / throughput (at least
	// MinEstimate).
	Estimate time.Duration
	// Assumed is true when the candidate had no throughput figure of its
	// own and was credited with the best one measured among the others.
	Assumed bool
	// Weight is the candidate's share (the weights of a Score sum to 1).
	Weight float64
}

// Score turns measurements into weighted candidates, best first, for
// chunks of chunkSize bytes sent by workers parallel workers. It is a
// pure function.
//
//   - Unhealthy candidates are dropped.
//   - Each candidate's Estimate is T = 2×RTT + chunkSize/Throughput. A
//     candidate without a throughput figure (direct routes, which cannot
//     be probed for it) is assumed to do as well as the best throughput
//     measured among the others — the object store is rarely the narrow
//     part of the path; if no candidate has a figure, T = 2×RTT. T is at
//     least MinEstimate.
//   - Candidates whose T is more than MaxSlowdown times the best T are
//     dropped.
//   - Weight ∝ 1/T × (1 − Load), the load factor never below
//     MinLoadFactor.
//   - The list is sorted by weight (then T, then ID), cut to workers
//     entries when workers > 0 (a route needs a worker to be of use), and
//     the weights normalised to sum to 1.
func Score(ms []Measurement, chunkSize int64, workers int) []Scored {
	var best float64
	for _, m := range ms {
		if m.Healthy && m.Throughput > best && !math.IsInf(m.Throughput, 0) {
			best = m.Throughput
		}
	}
	out := make([]Scored, 0, len(ms))
	for _, m := range ms {
		if !m.Healthy {
			continue
		}
		s := Scored{Measurement: m}
		thr := m.Throughput
		if thr <= 0 || math.IsNaN(thr) || math.IsInf(thr, 0) {
			thr, s.Assumed = best, best > 0
		}
		t := 2 * max(m.RTT, 0).Seconds()
		if chunkSize > 0 && thr > 0 {
			t += float64(chunkSize) / thr
		}
		s.Estimate = max(time.Duration(t*float64(time.Second)), MinEstimate)
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil
	}
	bestT := slices.MinFunc(out, func(a, b Scored) int { return cmp.Compare(a.Estimate, b.Estimate) }).Estimate
	out = slices.DeleteFunc(out, func(s Scored) bool { return s.Estimate > MaxSlowdown*bestT })
	for i := range out {
		out[i].Weight = loadFactor(out[i].Candidate.Load) / out[i].Estimate.Seconds()
	}
	slices.SortStableFunc(out, func(a, b Scored) int {
		return cmp.Or(cmp.Compare(b.Weight, a.Weight), cmp.Compare(a.Estimate, b.Estimate), cmp.Compare(a.Candidate.ID, b.Candidate.ID))
	})
	if workers > 0 && len(out) > workers {
		out = out[:workers]
	}
	normalise(out)
	return out
}

// loadFactor is 1 − load, within [MinLoadFactor, 1].
func loadFactor(load float64) float64 {
	if math.IsNaN(load) {
		return 1
	}
	return min(max(1-load, MinLoadFactor), 1)
}

// normalise scales the weights to sum to 1.
func normalise(s []Scored) {
	var sum float64
	for _, x := range s {
		sum += x.Weight
	}
	if sum <= 0 {
		return
	}
	for i := range s {
		s[i].Weight /= sum
	}
}
