package console

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/jettythunder/jetty/server"
)

// The edges page (GET /console/edges): the catalogue's locations and the
// relays that heartbeat, each with its health in words and in colour
// (never colour alone), drawn on an inline SVG map (equirectangular) and
// listed as cards and a table.

// Health of a relay, and of a location (the best of its relays').
const (
	healthHealthy  = "healthy"  // heartbeats on time, taking chunks
	healthStale    = "stale"    // a heartbeat is late; still offered until its liveness ends
	healthDown     = "down"     // no heartbeat within its liveness: no longer offered
	healthDraining = "draining" // shutting down: no longer offered
	healthNone     = "no relay" // a location nobody serves
)

// healthRank orders healths from best to worst, for a location's.
var healthRank = map[string]int{healthHealthy: 0, healthStale: 1, healthDraining: 2, healthDown: 3, healthNone: 4}

// nodeHealth says how a relay is doing at now: healthy while its last
// heartbeat is less than two periods old, stale until its liveness
// (server.EdgeLiveness: three periods, at least a second) ends, down
// after; a draining relay is draining whatever its heartbeat.
func nodeHealth(n server.EdgeNode, now time.Time) string {
	age := now.Sub(n.LastSeen)
	switch {
	case n.Draining:
		return healthDraining
	case age >= server.EdgeLiveness(n.Interval):
		return healthDown
	case age >= max(2*n.Interval, time.Second):
		return healthStale
	}
	return healthHealthy
}

// relayView is one relay as the page shows it.
type relayView struct {
	server.EdgeNode
	Health    string
	Class     string // the health as a CSS class name
	Location  string // the location's name, or "no location"
	Age       string // since the last heartbeat
	LoadPct   float64
	Load      string // "3 of 16 chunks"
	Rate      string // measured throughput
	Delivered string // bytes stored since start
}

// locationView is one catalogue entry with its relays.
type locationView struct {
	server.EdgeLocation
	Health string
	Class  string
	Relays []relayView
	// X and Y place the location on the map (viewBox 360 × 180).
	X, Y float64
	// LabelX is where its code is written (left of the dot near the
	// right edge).
	LabelX float64
	Anchor string
}

// edgesData is the data of the edges page.
type edgesData struct {
	Now       string
	Locations []locationView
	Relays    []relayView
	Orphans   []relayView // relays that named no catalogue location
	Counts    map[string]int
	Served    int // locations with a healthy relay
	// GridX and GridY are the map's graticule, every 30 degrees.
	GridX, GridY []int
}

// healthClass is a health as a CSS class name.
func healthClass(h string) string {
	if h == healthNone {
		return "none"
	}
	return h
}

// handleEdges shows the edges page (GET /console/edges).
func (c *Console) handleEdges(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	locs, err := c.store.EdgeLocations(ctx)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	nodes, err := c.store.EdgeNodes(ctx)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	c.render(w, r, "edges", buildEdges(locs, nodes, c.now().UTC()))
}

// buildEdges puts relays under their locations and rates their health.
func buildEdges(locs []server.EdgeLocation, nodes []server.EdgeNode, now time.Time) edgesData {
	d := edgesData{Now: now.Format("2006-01-02 15:04:05 UTC"), Counts: map[string]int{},
		GridX: []int{30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 330}, GridY: []int{30, 60, 120, 150}}
	index := map[string]int{}
	for i, l := range locs {
		index[l.ID] = i
		v := locationView{EdgeLocation: l, Health: healthNone,
			X: math.Round((l.Longitude+180)*10) / 10, Y: math.Round((90-l.Latitude)*10) / 10, Anchor: "start"}
		v.LabelX = v.X + 4
		if v.X > 320 {
			v.LabelX, v.Anchor = v.X-4, "end"
		}
		d.Locations = append(d.Locations, v)
	}
	for _, n := range nodes {
		h := nodeHealth(n, now)
		v := relayView{EdgeNode: n, Health: h, Class: healthClass(h), Location: "no location",
			Age: ago(now.Sub(n.LastSeen)), Load: fmt.Sprintf("%d of %d chunks", n.InFlight, n.Capacity),
			Rate: humanBytes(n.Throughput) + "/s", Delivered: humanBytes(n.BytesIn)}
		if n.Capacity > 0 {
			v.LoadPct = math.Min(100, float64(n.InFlight)*100/float64(n.Capacity))
		}
		d.Counts[v.Health]++
		i, ok := index[n.LocationID]
		if !ok {
			d.Relays = append(d.Relays, v)
			d.Orphans = append(d.Orphans, v)
			continue
		}
		l := &d.Locations[i]
		v.Location = l.Name
		l.Relays = append(l.Relays, v)
		if healthRank[v.Health] < healthRank[l.Health] {
			l.Health = v.Health
		}
		d.Relays = append(d.Relays, v)
	}
	for i := range d.Locations {
		l := &d.Locations[i]
		l.Class = healthClass(l.Health)
		if l.Health == healthHealthy {
			d.Served++
		}
	}
	return d
}

// ago prints a duration since an event, to the second.
func ago(d time.Duration) string {
	if d < time.Second {
		return "just now"
	}
	return d.Truncate(time.Second).String() + " ago"
}
