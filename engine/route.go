package engine

import (
	"context"

	"github.com/jettythunder/jetty/protocol"
)

// Kinds of Route.
const (
	// RouteOrigin is the server's own chunk endpoint (the session's
	// chunk_url).
	RouteOrigin = protocol.KindOrigin
	// RouteRelay is a `jetty edge` relay: same chunk protocol and upload
	// token as the origin, another base URL.
	RouteRelay = protocol.KindRelay
	// RouteDirect is the object store itself: each chunk goes to a
	// presigned part URL (with its SHA-256 signed in) that the server
	// hands out at PresignURL.
	RouteDirect = protocol.KindDirect
)

// Route is one way for chunks to reach storage, with the share of the
// workers it gets.
type Route struct {
	// ID names the route in statistics: the edge id, "origin" or
	// "direct".
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Label is a human description (location, host).
	Label string `json:"label,omitempty"`
	// Location is the edge catalogue location a relay serves (e.g.
	// "fra"), "" when it names none.
	Location string `json:"location,omitempty"`
	// ChunkURL is the PUT address of chunks, "{index}" standing for the
	// chunk index (origin and relay routes).
	ChunkURL string `json:"chunk_url,omitempty"`
	// PresignURL is where presigned part URLs are asked for (direct
	// routes): POST with the upload token.
	PresignURL string `json:"presign_url,omitempty"`
	// Weight is the route's share of the workers (any positive scale).
	Weight float64 `json:"weight"`
}

// EdgeSelector picks the routes of an upload once its session is open.
// Implementations (package edges) ask the server for candidates and probe
// them with the session's upload token.
//
// The engine does not wait for it: Select runs in the background while
// the workers send through the origin (or the routes a RouteStarter
// names), and the routes it returns join the running upload (see
// router.go). ctx ends when the upload does; Select must then return.
type EdgeSelector interface {
	// Select returns the routes to use, best first, with their weights.
	// An error or an empty list leaves the upload on the routes it
	// started on (the origin alone, unless a RouteStarter named others).
	Select(ctx context.Context, s *protocol.Session, chunkSize int64, workers int) ([]Route, error)
}

// RouteStarter is an optional interface of an EdgeSelector: StartRoutes
// names, at once and without waiting on the network, routes an upload
// may start on while its Select runs (package edges: the best edge of
// its last selection for this server, while fresh), with their weights,
// as Select would; nil starts on the origin alone. Select's routes
// replace them when they come (those it does not name stay as reserves
// of weight 0).
type RouteStarter interface {
	StartRoutes(s *protocol.Session) []Route
}

// WorkerAdvisor is an optional interface of an EdgeSelector: after
// Select, it may ask for another number of workers than the server
// suggested, when Options.Workers left the choice to the engine (for
// example more on a path whose connections are each slow, where parallel
// streams are what fills the link). The engine keeps the answer within
// 1..ceiling. Since the workers start before Select answers, the pool
// starts with the suggested number: an answer given within the first
// moments (a selection decided at once, see selectGrace) sets the number
// as before, a later one can only grow a file's pool (up to the ceiling;
// a smaller answer is ignored). A stream's pool keeps its starting size:
// its memory (workers+2 blocks) is set when it starts.
type WorkerAdvisor interface {
	AdviseWorkers(suggested, ceiling int) int
}

// Prefetcher is an optional interface of an EdgeSelector: Prefetch is
// called as a file upload starts, before the file is hashed, so that the
// selector can ask for candidates and probe them meanwhile; the Select
// that follows uses what it found. It must return at once.
type Prefetcher interface {
	Prefetch(ctx context.Context, fileSize, chunkSize int64, workers int)
}

// PresignHinter is an optional interface of an EdgeSelector: before its
// Select has decided (its probe may still be running), PresignHint names
// the presign URL a direct route of session s would have, when the
// selector already knows that the server offers one; "" otherwise. It
// must return at once. The engine then asks for the first chunks' parts
// while the selection goes on, so that direct workers start with their
// URLs in hand; they are used only if a direct route with that URL joins
// (from StartRoutes or Select). A direct route that joins without them
// asks for the first queued chunks' parts as it joins.
type PresignHinter interface {
	PresignHint(s *protocol.Session) string
}
