package sqlstore

import (
	"context"
	"database/sql"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
)

// Bounds of edge nodes.
const (
	maxEdgeIDLen    = 128
	maxEdgeURLLen   = 2048
	maxEdgeLocLen   = 64
	maxEdgeCount    = math.MaxInt32 // capacity and inflight are INTEGER columns
	maxEdgeInterval = 10 * time.Minute
)

// Modes of a relay, as server.EdgeNode documents them.
const (
	edgeModeS3    = "s3"
	edgeModeRelay = "relay"
)

const edgeNodeCols = `id, url, location_id, mode, capacity, inflight, draining, interval_ms, started_at, last_seen, bytes_in, throughput_bps`

func scanEdgeNode(r scanner) (server.EdgeNode, error) {
	var (
		n        server.EdgeNode
		loc      sql.NullString
		interval int64
	)
	if err := r.Scan(&n.ID, &n.URL, &loc, &n.Mode, &n.Capacity, &n.InFlight, &n.Draining, &interval, &n.StartedAt, &n.LastSeen, &n.BytesIn, &n.Throughput); err != nil {
		return server.EdgeNode{}, err
	}
	n.LocationID = loc.String
	n.Interval = time.Duration(interval) * time.Millisecond
	n.StartedAt = n.StartedAt.UTC()
	n.LastSeen = n.LastSeen.UTC()
	return n, nil
}

// checkEdgeNode validates what a heartbeat reports.
func checkEdgeNode(n server.EdgeNode) error {
	switch {
	case n.ID == "" || !validText(n.ID, maxEdgeIDLen):
		return server.Errorf(server.EInvalid, "edge node id must be 1 to %d bytes of UTF-8 without NUL", maxEdgeIDLen)
	case n.URL == "" || !validText(n.URL, maxEdgeURLLen):
		return server.Errorf(server.EInvalid, "edge node url must be 1 to %d bytes of UTF-8 without NUL", maxEdgeURLLen)
	case n.Mode != edgeModeS3 && n.Mode != edgeModeRelay:
		return server.Errorf(server.EInvalid, "edge node mode must be %q or %q, got %q", edgeModeS3, edgeModeRelay, n.Mode)
	case n.Capacity < 0 || n.Capacity > maxEdgeCount:
		return server.Errorf(server.EInvalid, "edge node capacity must be between 0 and %d, got %d", maxEdgeCount, n.Capacity)
	case n.InFlight < 0 || n.InFlight > maxEdgeCount:
		return server.Errorf(server.EInvalid, "edge node inflight must be between 0 and %d, got %d", maxEdgeCount, n.InFlight)
	case n.BytesIn < 0 || n.Throughput < 0:
		return server.Errorf(server.EInvalid, "edge node bytes_in and throughput must not be negative")
	case n.Interval < 0 || n.Interval > maxEdgeInterval:
		return server.Errorf(server.EInvalid, "edge node heartbeat interval must be between 0 and %s, got %s", maxEdgeInterval, n.Interval)
	case !validText(n.LocationID, maxEdgeLocLen):
		return unknownEdgeLocation(n.LocationID)
	}
	return nil
}

func unknownEdgeLocation(id string) error {
	if !validKey(id) || len(id) > maxEdgeLocLen {
		return server.Errorf(server.EInvalid, "unknown edge location")
	}
	return server.Errorf(server.EInvalid, "unknown edge location %q", id)
}

// sortEdgeNodes orders nodes by ID, byte-wise in both dialects (an ORDER
// BY on PostgreSQL follows the database's collation).
func sortEdgeNodes(ns []server.EdgeNode) {
	slices.SortFunc(ns, func(a, b server.EdgeNode) int { return strings.Compare(a.ID, b.ID) })
}

// EdgeLocations lists the catalogue, ordered by ID; see server.EdgeStore.
func (s *Store) EdgeLocations(ctx context.Context) ([]server.EdgeLocation, error) {
	const op = "edge locations"
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, name, city, country, region, latitude, longitude FROM edge_locations ORDER BY id`)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	out := []server.EdgeLocation{}
	for rows.Next() {
		var l server.EdgeLocation
		if err := rows.Scan(&l.ID, &l.Name, &l.City, &l.Country, &l.Region, &l.Latitude, &l.Longitude); err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	slices.SortFunc(out, func(a, b server.EdgeLocation) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// EdgeHeartbeat records a heartbeat of node n at now (the store's clock
// when zero); see server.EdgeStore. It is one upsert, so concurrent
// heartbeats of one node leave one row; the last one written wins, except
// for started_at, which the first heartbeat set. The interval is stored
// in whole milliseconds (n.Interval is truncated), and the node stays live
// until LastSeen + server.EdgeLiveness of the stored interval. Errors:
// EInvalid for a node that does not validate (empty or over-long ID or
// URL, a mode other than "s3" or "relay", a negative capacity or
// inflight, an interval outside 0..10 minutes) or an unknown LocationID.
func (s *Store) EdgeHeartbeat(ctx context.Context, n server.EdgeNode, now time.Time) (server.EdgeNode, error) {
	if err := checkEdgeNode(n); err != nil {
		return server.EdgeNode{}, err
	}
	if now.IsZero() {
		now = s.now()
	}
	now = ts(now)
	intervalMS := n.Interval.Milliseconds()
	liveUntil := ts(now.Add(server.EdgeLiveness(time.Duration(intervalMS) * time.Millisecond)))
	var loc any
	if n.LocationID != "" {
		loc = n.LocationID
	}
	got, err := scanEdgeNode(s.db.QueryRowContext(ctx, s.q(`INSERT INTO edge_nodes (`+edgeNodeCols+`, live_until)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET url = excluded.url, location_id = excluded.location_id, mode = excluded.mode,
  capacity = excluded.capacity, inflight = excluded.inflight, draining = excluded.draining,
  interval_ms = excluded.interval_ms, last_seen = excluded.last_seen, live_until = excluded.live_until,
  bytes_in = excluded.bytes_in, throughput_bps = excluded.throughput_bps
RETURNING `+edgeNodeCols),
		n.ID, n.URL, loc, n.Mode, n.Capacity, n.InFlight, n.Draining, intervalMS, now, now, n.BytesIn, n.Throughput, liveUntil))
	if isForeignKeyViolation(err) {
		return server.EdgeNode{}, unknownEdgeLocation(n.LocationID)
	}
	if err != nil {
		return server.EdgeNode{}, wrap("edge heartbeat", err)
	}
	return got, nil
}

// RemoveEdge deletes node id; a missing one is not an error.
func (s *Store) RemoveEdge(ctx context.Context, id string) error {
	if !validKey(id) {
		return nil // no row can have it
	}
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM edge_nodes WHERE id = ?`), id); err != nil {
		return wrap("remove edge", err)
	}
	return nil
}

// LiveEdges lists the nodes that are not draining and whose last
// heartbeat is recent enough at now (the store's clock when zero),
// ordered by ID; see server.EdgeStore.
func (s *Store) LiveEdges(ctx context.Context, now time.Time) ([]server.EdgeNode, error) {
	const op = "live edges"
	if now.IsZero() {
		now = s.now()
	}
	return s.edgeNodes(ctx, op, s.q(`SELECT `+edgeNodeCols+` FROM edge_nodes
WHERE live_until > ? AND draining = false ORDER BY id`), ts(now))
}

// edgeNodes runs a query of edgeNodeCols rows and returns them sorted
// (sortEdgeNodes); op names the failure.
func (s *Store) edgeNodes(ctx context.Context, op, query string, args ...any) ([]server.EdgeNode, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	out := []server.EdgeNode{}
	for rows.Next() {
		n, err := scanEdgeNode(rows)
		if err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	sortEdgeNodes(out)
	return out, nil
}

// PruneEdges deletes the nodes whose last heartbeat is more than
// olderThan before now and reports how many it deleted. A negative
// olderThan is EInvalid.
func (s *Store) PruneEdges(ctx context.Context, now time.Time, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, server.Errorf(server.EInvalid, "prune age must not be negative, got %s", olderThan)
	}
	if now.IsZero() {
		now = s.now()
	}
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM edge_nodes WHERE last_seen < ?`), ts(now.Add(-olderThan)))
	if err != nil {
		return 0, wrap("prune edges", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("prune edges", err)
	}
	return int(n), nil
}
