package storetest

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// edgeTests cover server.EdgeStore.
var edgeTests = []storeTest{
	{"EdgeLocations", testEdgeLocations},
	{"EdgeHeartbeat", testEdgeHeartbeat},
	{"EdgeHeartbeatValidation", testEdgeHeartbeatValidation},
	{"LiveEdges", testLiveEdges},
	{"RemoveEdge", testRemoveEdge},
	{"PruneEdges", testPruneEdges},
	{"EdgeHeartbeatConcurrent", testEdgeHeartbeatConcurrent},
}

// seedEdgeLocations is the catalogue the migration seeds, by ID.
var seedEdgeLocations = []server.EdgeLocation{
	{ID: "ams", Name: "Amsterdam", City: "Amsterdam", Country: "NL", Region: "eu-west", Latitude: 52.3676, Longitude: 4.9041},
	{ID: "arn", Name: "Stockholm", City: "Stockholm", Country: "SE", Region: "eu-north", Latitude: 59.3293, Longitude: 18.0686},
	{ID: "bom", Name: "Mumbai", City: "Mumbai", Country: "IN", Region: "ap-south", Latitude: 19.0760, Longitude: 72.8777},
	{ID: "cdg", Name: "Paris", City: "Paris", Country: "FR", Region: "eu-west", Latitude: 48.8566, Longitude: 2.3522},
	{ID: "dfw", Name: "Dallas", City: "Dallas", Country: "US", Region: "us-central", Latitude: 32.7767, Longitude: -96.7970},
	{ID: "dxb", Name: "Dubai", City: "Dubai", Country: "AE", Region: "me-central", Latitude: 25.2048, Longitude: 55.2708},
	{ID: "fra", Name: "Frankfurt", City: "Frankfurt am Main", Country: "DE", Region: "eu-central", Latitude: 50.1109, Longitude: 8.6821},
	{ID: "gru", Name: "São Paulo", City: "São Paulo", Country: "BR", Region: "sa-east", Latitude: -23.5505, Longitude: -46.6333},
	{ID: "iad", Name: "Ashburn", City: "Ashburn", Country: "US", Region: "us-east", Latitude: 39.0438, Longitude: -77.4874},
	{ID: "jnb", Name: "Johannesburg", City: "Johannesburg", Country: "ZA", Region: "af-south", Latitude: -26.2041, Longitude: 28.0473},
	{ID: "lax", Name: "Los Angeles", City: "Los Angeles", Country: "US", Region: "us-west", Latitude: 34.0522, Longitude: -118.2437},
	{ID: "lhr", Name: "London", City: "London", Country: "GB", Region: "eu-west", Latitude: 51.5074, Longitude: -0.1278},
	{ID: "nrt", Name: "Tokyo", City: "Tokyo", Country: "JP", Region: "ap-northeast", Latitude: 35.6762, Longitude: 139.6503},
	{ID: "ord", Name: "Chicago", City: "Chicago", Country: "US", Region: "us-central", Latitude: 41.8781, Longitude: -87.6298},
	{ID: "sea", Name: "Seattle", City: "Seattle", Country: "US", Region: "us-west", Latitude: 47.6062, Longitude: -122.3321},
	{ID: "sin", Name: "Singapore", City: "Singapore", Country: "SG", Region: "ap-southeast", Latitude: 1.3521, Longitude: 103.8198},
	{ID: "sjc", Name: "San Jose", City: "San Jose", Country: "US", Region: "us-west", Latitude: 37.3382, Longitude: -121.8863},
	{ID: "syd", Name: "Sydney", City: "Sydney", Country: "AU", Region: "ap-southeast", Latitude: -33.8688, Longitude: 151.2093},
	{ID: "waw", Name: "Warsaw", City: "Warsaw", Country: "PL", Region: "eu-central", Latitude: 52.2297, Longitude: 21.0122},
	{ID: "yyz", Name: "Toronto", City: "Toronto", Country: "CA", Region: "ca-central", Latitude: 43.6532, Longitude: -79.3832},
}

// edgeBase is the clock of the edge tests: fixed, in the future, with
// microseconds (the precision stores keep).
var edgeBase = time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC)

func newEdge(id string) server.EdgeNode {
	return server.EdgeNode{
		ID:         id,
		URL:        "https://" + id + ".edge.example.com",
		LocationID: "fra",
		Mode:       "s3",
		Capacity:   64,
		InFlight:   3,
		Interval:   10 * time.Second,
	}
}

func mustHeartbeat(t *testing.T, s server.Store, n server.EdgeNode, now time.Time) server.EdgeNode {
	t.Helper()
	got, err := s.EdgeHeartbeat(ctxFor(t), n, now)
	if err != nil {
		t.Fatalf("EdgeHeartbeat(%s): %v", n.ID, err)
	}
	return got
}

// liveIDs returns the IDs LiveEdges lists at now, in its order.
func liveIDs(t *testing.T, s server.Store, now time.Time) []string {
	t.Helper()
	nodes, err := s.LiveEdges(ctxFor(t), now)
	if err != nil {
		t.Fatalf("LiveEdges: %v", err)
	}
	ids := []string{}
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

func wantLive(t *testing.T, s server.Store, now time.Time, want ...string) {
	t.Helper()
	got := liveIDs(t, s, now)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("LiveEdges at %s = %q, want %q", now.Format(time.RFC3339Nano), got, want)
	}
}

// edgeCount is how many nodes the store holds, live or not: PruneEdges
// of everything, far in the future, counts them (and deletes them).
func edgeCount(t *testing.T, s server.Store) int {
	t.Helper()
	n, err := s.PruneEdges(ctxFor(t), edgeBase.Add(100*365*24*time.Hour), 0)
	if err != nil {
		t.Fatalf("PruneEdges: %v", err)
	}
	return n
}

// sameEdge compares nodes, times by instant.
func sameEdge(a, b server.EdgeNode) bool {
	if !a.StartedAt.Equal(b.StartedAt) || !a.LastSeen.Equal(b.LastSeen) {
		return false
	}
	a.StartedAt, a.LastSeen, b.StartedAt, b.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func testEdgeLocations(t *testing.T, s server.Store) {
	got, err := s.EdgeLocations(ctxFor(t))
	if err != nil {
		t.Fatalf("EdgeLocations: %v", err)
	}
	if len(got) != 20 || len(got) != len(seedEdgeLocations) {
		t.Fatalf("EdgeLocations returned %d rows, want 20: %+v", len(got), got)
	}
	for i, want := range seedEdgeLocations {
		l := got[i]
		if l.ID != want.ID || l.Name != want.Name || l.City != want.City || l.Country != want.Country || l.Region != want.Region {
			t.Errorf("location %d = %+v, want %+v", i, l, want)
		}
		if math.Abs(l.Latitude-want.Latitude) > 1e-9 || math.Abs(l.Longitude-want.Longitude) > 1e-9 {
			t.Errorf("%s at (%v, %v), want (%v, %v)", l.ID, l.Latitude, l.Longitude, want.Latitude, want.Longitude)
		}
		if l.Latitude < -90 || l.Latitude > 90 || l.Longitude < -180 || l.Longitude > 180 || l.Latitude == 0 && l.Longitude == 0 {
			t.Errorf("%s has insane coordinates (%v, %v)", l.ID, l.Latitude, l.Longitude)
		}
		if len(l.Country) != 2 || strings.ToUpper(l.Country) != l.Country {
			t.Errorf("%s country %q is not ISO 3166-1 alpha-2", l.ID, l.Country)
		}
		if i > 0 && got[i-1].ID >= l.ID {
			t.Errorf("locations not ordered by id: %s before %s", got[i-1].ID, l.ID)
		}
	}
	// Southern and western hemispheres keep their signs.
	for _, l := range got {
		switch l.ID {
		case "syd", "gru", "jnb":
			if l.Latitude >= 0 {
				t.Errorf("%s latitude %v, want south (negative)", l.ID, l.Latitude)
			}
		case "lax", "sjc", "sea", "iad", "ord", "dfw", "yyz", "lhr":
			if l.Longitude >= 0 {
				t.Errorf("%s longitude %v, want west (negative)", l.ID, l.Longitude)
			}
		}
	}
}

func testEdgeHeartbeat(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	n := newEdge("edge_hb_" + randHex(4))
	n.StartedAt = edgeBase.Add(-time.Hour) // ignored: the first heartbeat's time is the start
	n.LastSeen = edgeBase.Add(-time.Hour)  // ignored: LastSeen is now
	first, err := s.EdgeHeartbeat(ctx, n, edgeBase)
	if err != nil {
		t.Fatalf("EdgeHeartbeat: %v", err)
	}
	want := n
	want.StartedAt, want.LastSeen = edgeBase, edgeBase
	if !sameEdge(first, want) {
		t.Fatalf("first heartbeat = %+v, want %+v", first, want)
	}
	if first.StartedAt.Location() != time.UTC || first.LastSeen.Location() != time.UTC {
		t.Errorf("times not in UTC: %v, %v", first.StartedAt, first.LastSeen)
	}

	// The next heartbeat updates everything but StartedAt.
	later := edgeBase.Add(10*time.Second + 789*time.Microsecond)
	u := n
	u.URL = "https://moved.edge.example.com"
	u.LocationID = "ams"
	u.Mode = "relay"
	u.Capacity = 32
	u.InFlight = 17
	u.Interval = 5 * time.Second
	second, err := s.EdgeHeartbeat(ctx, u, later)
	if err != nil {
		t.Fatalf("second EdgeHeartbeat: %v", err)
	}
	want = u
	want.StartedAt, want.LastSeen = edgeBase, later
	if !sameEdge(second, want) {
		t.Fatalf("second heartbeat = %+v, want %+v", second, want)
	}
	live, err := s.LiveEdges(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || !sameEdge(live[0], second) {
		t.Fatalf("LiveEdges = %+v, want [%+v]", live, second)
	}

	// No location: stored and returned as "".
	u.LocationID = ""
	u.InFlight = 0
	third := mustHeartbeat(t, s, u, later.Add(time.Second))
	if third.LocationID != "" || third.InFlight != 0 || !third.StartedAt.Equal(edgeBase) || !third.LastSeen.Equal(later.Add(time.Second)) {
		t.Fatalf("heartbeat without location = %+v", third)
	}
	if live, err := s.LiveEdges(ctx, later.Add(time.Second)); err != nil || len(live) != 1 || !sameEdge(live[0], third) {
		t.Fatalf("LiveEdges = %+v, %v; want [%+v]", live, err, third)
	}

	// A node without location from the start, and an ID of 128 bytes.
	other := newEdge(strings.Repeat("e", 128))
	other.LocationID = ""
	got := mustHeartbeat(t, s, other, edgeBase)
	if got.ID != other.ID || got.LocationID != "" {
		t.Fatalf("node of 128-byte id = %+v", got)
	}
	if n := edgeCount(t, s); n != 2 {
		t.Fatalf("store holds %d nodes, want 2", n)
	}
}

func testEdgeHeartbeatValidation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	cases := []struct {
		name   string
		change func(*server.EdgeNode)
	}{
		{"empty id", func(n *server.EdgeNode) { n.ID = "" }},
		{"id of 129 bytes", func(n *server.EdgeNode) { n.ID = strings.Repeat("e", 129) }},
		{"id with NUL", func(n *server.EdgeNode) { n.ID = "edge\x00x" }},
		{"invalid UTF-8 id", func(n *server.EdgeNode) { n.ID = "edge\xff" }},
		{"empty url", func(n *server.EdgeNode) { n.URL = "" }},
		{"negative capacity", func(n *server.EdgeNode) { n.Capacity = -1 }},
		{"negative inflight", func(n *server.EdgeNode) { n.InFlight = -1 }},
		{"negative interval", func(n *server.EdgeNode) { n.Interval = -time.Second }},
		{"empty mode", func(n *server.EdgeNode) { n.Mode = "" }},
		{"unknown mode", func(n *server.EdgeNode) { n.Mode = "proxy" }},
		{"unknown location", func(n *server.EdgeNode) { n.LocationID = "xyz" }},
		{"location in upper case", func(n *server.EdgeNode) { n.LocationID = "FRA" }},
		{"invalid UTF-8 location", func(n *server.EdgeNode) { n.LocationID = "fr\xff" }},
		{"location with NUL", func(n *server.EdgeNode) { n.LocationID = "fra\x00" }},
	}
	for _, c := range cases {
		n := newEdge("edge_bad_" + randHex(4))
		c.change(&n)
		_, err := s.EdgeHeartbeat(ctx, n, edgeBase)
		if server.ErrorCode(err) != server.EInvalid {
			t.Errorf("%s: got %v, want code %s", c.name, err, server.EInvalid)
		}
		if msg := server.ErrorMessage(err); strings.Contains(strings.ToLower(msg), "insert") || strings.Contains(msg, "edge_nodes") {
			t.Errorf("%s: message leaks SQL: %q", c.name, msg)
		}
	}
	wantLive(t, s, edgeBase)
	if n := edgeCount(t, s); n != 0 {
		t.Fatalf("invalid heartbeats stored %d nodes", n)
	}

	// An unknown location leaves an existing node as it was.
	n := newEdge("edge_keep_" + randHex(4))
	before := mustHeartbeat(t, s, n, edgeBase)
	bad := n
	bad.LocationID = "nowhere"
	bad.InFlight = 9
	_, err := s.EdgeHeartbeat(ctx, bad, edgeBase.Add(time.Second))
	wantCode(t, err, server.EInvalid)
	live, err := s.LiveEdges(ctx, edgeBase)
	if err != nil || len(live) != 1 || !sameEdge(live[0], before) {
		t.Fatalf("after a refused heartbeat LiveEdges = %+v, %v; want [%+v]", live, err, before)
	}
}

func testLiveEdges(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	wantLive(t, s, edgeBase) // none yet

	// b: interval 10s, live for 30s. a: interval 0, live for 1s (the
	// floor). c: draining. d: seen long ago.
	b := newEdge("edge_b")
	mustHeartbeat(t, s, b, edgeBase)
	a := newEdge("edge_a")
	a.Interval = 0
	a.LocationID = ""
	mustHeartbeat(t, s, a, edgeBase)
	c := newEdge("edge_c")
	c.Draining = true
	mustHeartbeat(t, s, c, edgeBase)
	d := newEdge("edge_d")
	mustHeartbeat(t, s, d, edgeBase.Add(-time.Hour))

	wantLive(t, s, edgeBase, "edge_a", "edge_b")
	wantLive(t, s, edgeBase.Add(time.Second-time.Microsecond), "edge_a", "edge_b")
	// LastSeen + EdgeLiveness(Interval) == now: no longer live.
	wantLive(t, s, edgeBase.Add(server.EdgeLiveness(0)), "edge_b")
	wantLive(t, s, edgeBase.Add(server.EdgeLiveness(b.Interval)-time.Microsecond), "edge_b")
	wantLive(t, s, edgeBase.Add(server.EdgeLiveness(b.Interval)))
	wantLive(t, s, edgeBase.Add(time.Hour))

	// The draining node comes back when it stops draining; a fresh
	// heartbeat revives d; draining takes b out at once.
	c.Draining = false
	mustHeartbeat(t, s, c, edgeBase.Add(20*time.Second))
	mustHeartbeat(t, s, d, edgeBase.Add(20*time.Second))
	b.Draining = true
	mustHeartbeat(t, s, b, edgeBase.Add(20*time.Second))
	wantLive(t, s, edgeBase.Add(20*time.Second), "edge_c", "edge_d")
	wantLive(t, s, edgeBase.Add(49*time.Second), "edge_c", "edge_d")
	wantLive(t, s, edgeBase.Add(50*time.Second))

	// What LiveEdges returns is the node as stored.
	live, err := s.LiveEdges(ctx, edgeBase.Add(20*time.Second))
	if err != nil || len(live) != 2 {
		t.Fatalf("LiveEdges = %+v, %v", live, err)
	}
	want := c
	want.StartedAt, want.LastSeen = edgeBase, edgeBase.Add(20*time.Second)
	if !sameEdge(live[0], want) {
		t.Errorf("live[0] = %+v, want %+v", live[0], want)
	}

	// Ordered by id, byte-wise.
	for _, id := range []string{"edge_Z", "edge_0", "edge_z", "Edge_m", "edge__"} {
		mustHeartbeat(t, s, newEdge(id), edgeBase.Add(30*time.Second))
	}
	wantLive(t, s, edgeBase.Add(30*time.Second), "Edge_m", "edge_0", "edge_Z", "edge__", "edge_c", "edge_d", "edge_z")
}

func testRemoveEdge(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	mustHeartbeat(t, s, newEdge("edge_1"), edgeBase)
	mustHeartbeat(t, s, newEdge("edge_2"), edgeBase)
	if err := s.RemoveEdge(ctx, "edge_1"); err != nil {
		t.Fatalf("RemoveEdge: %v", err)
	}
	wantLive(t, s, edgeBase, "edge_2")
	for _, id := range []string{"edge_1", "no-such-edge", "", "bad\xff", "nul\x00"} {
		if err := s.RemoveEdge(ctx, id); err != nil {
			t.Errorf("RemoveEdge(%q) of a missing node: %v", id, err)
		}
	}
	wantLive(t, s, edgeBase, "edge_2")
	// A removed node that heartbeats again starts afresh.
	again := mustHeartbeat(t, s, newEdge("edge_1"), edgeBase.Add(time.Second))
	if !again.StartedAt.Equal(edgeBase.Add(time.Second)) {
		t.Errorf("re-registered node StartedAt = %v, want %v", again.StartedAt, edgeBase.Add(time.Second))
	}
	wantLive(t, s, edgeBase.Add(time.Second), "edge_1", "edge_2")
}

func testPruneEdges(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	if n, err := s.PruneEdges(ctx, edgeBase, time.Hour); err != nil || n != 0 {
		t.Fatalf("PruneEdges on none = %d, %v", n, err)
	}
	mustHeartbeat(t, s, newEdge("edge_old1"), edgeBase.Add(-3*time.Hour))
	mustHeartbeat(t, s, newEdge("edge_old2"), edgeBase.Add(-2*time.Hour))
	mustHeartbeat(t, s, newEdge("edge_edge"), edgeBase.Add(-time.Hour)) // exactly an hour: kept
	mustHeartbeat(t, s, newEdge("edge_new"), edgeBase.Add(-time.Minute))
	d := newEdge("edge_drain")
	d.Draining = true
	mustHeartbeat(t, s, d, edgeBase)

	n, err := s.PruneEdges(ctx, edgeBase, time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("PruneEdges = %d, %v; want 2", n, err)
	}
	if n, err := s.PruneEdges(ctx, edgeBase, time.Hour); err != nil || n != 0 {
		t.Fatalf("second PruneEdges = %d, %v; want 0", n, err)
	}
	wantLive(t, s, edgeBase.Add(-time.Hour), "edge_edge", "edge_new")
	if n, err := s.PruneEdges(ctx, edgeBase.Add(time.Microsecond), time.Hour); err != nil || n != 1 {
		t.Fatalf("PruneEdges a microsecond later = %d, %v; want 1", n, err)
	}
	wantLive(t, s, edgeBase.Add(-time.Minute), "edge_new")
	if _, err := s.PruneEdges(ctx, edgeBase, -time.Second); server.ErrorCode(err) != server.EInvalid {
		t.Errorf("PruneEdges with a negative age: %v, want %s", err, server.EInvalid)
	}
	if n := edgeCount(t, s); n != 2 {
		t.Fatalf("store holds %d nodes, want 2 (edge_new, edge_drain)", n)
	}
}

func testEdgeHeartbeatConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	const n = 20
	id := "edge_race_" + randHex(4)
	nows := make([]time.Time, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		nows[i] = edgeBase.Add(time.Duration(i) * time.Millisecond)
		node := newEdge(id)
		node.InFlight = i
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.EdgeHeartbeat(ctx, node, nows[i])
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	live, err := s.LiveEdges(ctx, edgeBase)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].ID != id {
		t.Fatalf("LiveEdges after %d concurrent heartbeats = %+v, want one node %s", n, live, id)
	}
	got := live[0]
	// StartedAt is some heartbeat's time, no later than the last one seen;
	// LastSeen and InFlight come from one and the same heartbeat.
	i := int(got.LastSeen.Sub(edgeBase) / time.Millisecond)
	if i < 0 || i >= n || !got.LastSeen.Equal(nows[i]) || got.InFlight != i {
		t.Errorf("node after the race = %+v: LastSeen and InFlight of different heartbeats", got)
	}
	if got.StartedAt.Before(edgeBase) || got.StartedAt.After(nows[n-1]) || got.StartedAt.Sub(edgeBase)%time.Millisecond != 0 {
		t.Errorf("StartedAt %v is no heartbeat's time", got.StartedAt)
	}
	if c := edgeCount(t, s); c != 1 {
		t.Fatalf("store holds %d rows for one node, want 1", c)
	}
}
