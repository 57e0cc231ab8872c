package console

import (
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// TestNodeHealth: healthy while the last heartbeat is younger than two
// periods, stale until the liveness (three periods, at least 1 s) ends,
// down after; draining whatever the heartbeat.
func TestNodeHealth(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		interval, age time.Duration
		draining      bool
		want          string
	}{
		{5 * time.Second, 0, false, healthHealthy},
		{5 * time.Second, 9 * time.Second, false, healthHealthy},
		{5 * time.Second, 10 * time.Second, false, healthStale},
		{5 * time.Second, 14 * time.Second, false, healthStale},
		{5 * time.Second, 15 * time.Second, false, healthDown},
		{5 * time.Second, time.Hour, false, healthDown},
		{100 * time.Millisecond, 900 * time.Millisecond, false, healthHealthy}, // periods under 1 s: the floors
		{100 * time.Millisecond, time.Second, false, healthDown},
		{5 * time.Second, 0, true, healthDraining},
	} {
		n := server.EdgeNode{Interval: c.interval, LastSeen: now.Add(-c.age), Draining: c.draining}
		if got := nodeHealth(n, now); got != c.want {
			t.Errorf("period %s, heartbeat %s ago, draining %v: %s, want %s", c.interval, c.age, c.draining, got, c.want)
		}
	}
}

// TestBuildEdges: relays under their locations, a location's health its
// best relay's, relays of no catalogue location listed apart.
func TestBuildEdges(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	locs := []server.EdgeLocation{{ID: "ams", Name: "Amsterdam", Latitude: 52.4, Longitude: 4.9}, {ID: "fra", Name: "Frankfurt"}, {ID: "syd", Name: "Sydney", Longitude: 151.2}}
	nodes := []server.EdgeNode{
		{ID: "a", LocationID: "fra", Interval: time.Second, LastSeen: now.Add(-time.Hour), Capacity: 4, InFlight: 8},
		{ID: "b", LocationID: "fra", Interval: time.Second, LastSeen: now, Capacity: 4, InFlight: 1, Throughput: 3 << 20, BytesIn: 5 << 30},
		{ID: "c", Interval: time.Second, LastSeen: now},
	}
	d := buildEdges(locs, nodes, now)
	if d.Locations[0].Health != healthNone || d.Locations[1].Health != healthHealthy || len(d.Locations[1].Relays) != 2 {
		t.Fatalf("locations %+v", d.Locations)
	}
	if d.Served != 1 || d.Counts[healthHealthy] != 2 || d.Counts[healthDown] != 1 || len(d.Orphans) != 1 || len(d.Relays) != 3 {
		t.Fatalf("served %d, counts %v, %d orphans, %d relays", d.Served, d.Counts, len(d.Orphans), len(d.Relays))
	}
	b := d.Locations[1].Relays[1]
	if b.Load != "1 of 4 chunks" || b.LoadPct != 25 || b.Rate != "3.0 MiB/s" || b.Delivered != "5.0 GiB" || b.Class != "healthy" {
		t.Fatalf("relay b: %+v", b)
	}
	if a := d.Locations[1].Relays[0]; a.LoadPct != 100 {
		t.Fatalf("a relay over its capacity fills the meter to %v%%, want 100", a.LoadPct)
	}
	if syd := d.Locations[2]; syd.Anchor != "end" || syd.Class != "none" {
		t.Fatalf("Sydney, near the map's right edge: %+v", syd)
	}
}

// TestPercentile: nearest rank.
func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 95: 10, 90: 9, 10: 1, 100: 10, 1: 1} {
		if got := Percentile(s, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := Percentile([]float64{7}, 95); got != 7 {
		t.Errorf("p95 of one value = %v", got)
	}
}
