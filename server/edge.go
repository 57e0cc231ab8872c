package server

import (
	"context"
	"time"
)

// EdgeLocation is one point of presence of the edge catalogue
// (edge_locations, seeded with 20 rows by a migration). A location is
// active while at least one relay serving it heartbeats.
type EdgeLocation struct {
	ID        string // short code, e.g. "fra"
	Name      string // e.g. "Frankfurt"
	City      string
	Country   string // ISO 3166-1 alpha-2
	Region    string // continent-level region, e.g. "eu-central"
	Latitude  float64
	Longitude float64
}

// EdgeNode is a running relay (`jetty edge`) as its last heartbeat
// described it (edge_nodes).
type EdgeNode struct {
	ID         string // chosen by the relay at start, e.g. "edge_..."
	URL        string // public base URL clients use
	LocationID string // "" when the relay named none
	Mode       string // "s3" (writes parts to storage) or "relay" (forwards to the origin)
	Capacity   int    // chunk uploads it takes at once
	InFlight   int    // chunk uploads in progress at the heartbeat
	Draining   bool   // shutting down: not offered any more
	// Interval is the relay's heartbeat period; the node counts as live
	// until LastSeen + EdgeLiveness(Interval).
	Interval  time.Duration
	StartedAt time.Time
	LastSeen  time.Time
	// BytesIn is the payload bytes the relay stored since it started;
	// Throughput the bytes per second it stored over its last heartbeat
	// interval (both as the relay measured them).
	BytesIn    int64
	Throughput int64
}

// EdgeLiveness is how long after its last heartbeat a node is still
// offered: three heartbeat periods, at least one second.
func EdgeLiveness(interval time.Duration) time.Duration {
	return max(3*interval, time.Second)
}

// EdgeStore keeps the edge catalogue and the live relays.
type EdgeStore interface {
	// EdgeLocations lists the catalogue, ordered by ID.
	EdgeLocations(ctx context.Context) ([]EdgeLocation, error)
	// EdgeHeartbeat inserts or updates the node n.ID with LastSeen = now
	// (StartedAt is kept from the first heartbeat; n.StartedAt and
	// n.LastSeen are ignored). An unknown n.LocationID is EInvalid, and so
	// is a node that does not validate: an empty ID or one over 128 bytes,
	// an empty URL, a Mode other than "s3" or "relay", a negative Capacity,
	// InFlight, Interval, BytesIn or Throughput.
	EdgeHeartbeat(ctx context.Context, n EdgeNode, now time.Time) (EdgeNode, error)
	// RemoveEdge deletes a node (deregistration); a missing one is not an
	// error.
	RemoveEdge(ctx context.Context, id string) error
	// LiveEdges lists the nodes that are not draining and whose last
	// heartbeat is recent enough (LastSeen + EdgeLiveness(Interval) > now),
	// ordered by ID.
	LiveEdges(ctx context.Context, now time.Time) ([]EdgeNode, error)
	// PruneEdges deletes nodes not seen for longer than olderThan before
	// now and reports how many it deleted.
	PruneEdges(ctx context.Context, now time.Time, olderThan time.Duration) (int, error)
}
