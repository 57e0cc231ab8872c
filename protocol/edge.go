package protocol

import (
	"fmt"
	"time"
)

// Paths of the edge protocol on the origin (and, for chunks and probes,
// on relays).
const (
	// PathEdgeHeartbeat: POST, edge-authenticated, body Heartbeat.
	PathEdgeHeartbeat = "/api/jetty/edges/heartbeat"
	// PathEdgeNode: DELETE PathEdgeNode+id deregisters a relay (edge-authenticated).
	PathEdgeNode = "/api/jetty/edges/nodes/"
	// PathEdgeSession: GET PathEdgeSession+id, edge-authenticated: SessionInfo.
	PathEdgeSession = "/api/jetty/edges/sessions/"
	// PathOptimalEdges: POST, API key: OptimalRequest → OptimalResponse.
	PathOptimalEdges = "/api/jetty/optimal-edges"
	// PathProbe: POST a body of up to MaxProbeBytes; the receiver reads
	// it for at most ProbeReadTime (or the ProbeParamMillis the sender
	// asks for, counted from the first byte) and answers ProbeResult. No
	// authentication (it stores nothing).
	PathProbe = "/api/jetty/probe"
	// ProbeParamMillis is the query parameter of a probe that bounds
	// the reading: at most this many milliseconds from the body's first
	// byte (1..ProbeReadTime in ms; other values are ignored). Receivers
	// that predate it read for ProbeReadTime, which is only slower.
	ProbeParamMillis = "ms"
	// PathEdgeLocations: GET, API key: the catalogue with live relay counts.
	PathEdgeLocations = "/api/jetty/edges"
)

// Probe limits.
const (
	MaxProbeBytes = 1 << 20
	ProbeReadTime = 2 * time.Second
)

// Modes of a relay.
const (
	ModeS3    = "s3"    // writes parts straight to the S3 backend
	ModeRelay = "relay" // forwards chunks to the origin
)

// Kinds of Candidate: what kind of receiver it is. The engine's route
// kinds are these.
const (
	KindOrigin = "origin"
	KindRelay  = "relay"
	KindDirect = "direct"
)

// Location is a catalogue entry.
type Location struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	City      string  `json:"city"`
	Country   string  `json:"country"`
	Region    string  `json:"region"`
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	// Relays is the number of live relays serving the location (in the
	// catalogue listing only).
	Relays int `json:"relays"`
}

// Heartbeat is what a relay reports every interval.
type Heartbeat struct {
	ID         string `json:"id"`
	URL        string `json:"url"`
	Location   string `json:"location,omitempty"`
	Mode       string `json:"mode"`
	Capacity   int    `json:"capacity"`
	InFlight   int    `json:"inflight"`
	IntervalMS int64  `json:"interval_ms"`
	Draining   bool   `json:"draining,omitempty"`
	Version    string `json:"version,omitempty"`
	// BytesIn is the payload bytes of the chunks the relay stored (or
	// forwarded and the origin took) since it started; ThroughputBps the
	// bytes per second of those over the relay's last heartbeat interval.
	BytesIn       int64 `json:"bytes_in,omitempty"`
	ThroughputBps int64 `json:"throughput_bps,omitempty"`
	// Bucket is the S3 bucket a relay in mode s3 writes to; the origin
	// refuses a relay whose bucket is not its own.
	Bucket string `json:"bucket,omitempty"`
}

// HeartbeatResponse tells a relay how to verify upload tokens and where
// the origin keeps its objects.
type HeartbeatResponse struct {
	// TokenKey is the upload-token verification key, sealed with the
	// edge secret (see Seal).
	TokenKey string `json:"token_key"`
	// Backend is "s3" or "fs"; Bucket the S3 bucket when s3.
	Backend string `json:"backend"`
	Bucket  string `json:"bucket,omitempty"`
	// LivenessMS is how long the origin keeps offering the relay without
	// a heartbeat.
	LivenessMS int64 `json:"liveness_ms"`
}

// SessionInfo is what a relay needs to accept chunks of a session.
type SessionInfo struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account_id"`
	State     string    `json:"state"` // open, completing, completed, aborted
	ExpiresAt time.Time `json:"expires_at"`
	ObjectKey string    `json:"object_key"`
	UploadID  string    `json:"upload_id"`
	ChunkSize int64     `json:"chunk_size"`
	// Chunks is the manifest (nil for a stream session, whose chunks are
	// 1..ChunkSize bytes with the hash their sender declares).
	Chunks []ChunkInfo `json:"chunks,omitempty"`
	// Reserved is what a stream session reserved: all its chunks together
	// must fit (StreamChunkRefusal). 0 for a session with a manifest.
	Reserved int64 `json:"reserved,omitempty"`
}

// StreamChunkRefusal says why chunk index of size bytes cannot be taken
// for a stream session (no manifest) cut in chunkSize chunks that
// reserved reserved bytes; empty code when it can. Chunk i covers bytes
// [i×chunkSize, i×chunkSize+size) of the stream, so every chunk a session
// can hold lies inside its reservation: at most reserved bytes in all,
// whatever indexes are sent and how often. The origin and every relay
// apply it.
func StreamChunkRefusal(index int, size, chunkSize, reserved int64) (code, msg string) {
	if size < 1 || size > chunkSize {
		return CodeInvalid, fmt.Sprintf("stream chunks are 1..%d bytes", chunkSize)
	}
	if end := int64(index)*chunkSize + size; end > reserved {
		return CodeTooLarge, fmt.Sprintf("stream chunk %d would end at byte %d, beyond the %d bytes reserved for this stream when it was opened (the free quota or the tier's largest file); nothing was stored", index, end, reserved)
	}
	return "", ""
}

// ChunkInfo is one manifest entry.
type ChunkInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// OptimalRequest asks for candidates. Every field is optional.
type OptimalRequest struct {
	FileSize int64 `json:"file_size,omitempty"`
	// Region or coordinates of the client, when it knows them: relays
	// nearer come first among equally loaded ones.
	Region    string   `json:"region,omitempty"`
	Latitude  *float64 `json:"latitude,omitempty"`
	Longitude *float64 `json:"longitude,omitempty"`
}

// Candidate is one receiver offered to the client.
type Candidate struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // origin, relay, direct
	// URL is the base URL (origin, relay) or the storage endpoint
	// (direct; probed for latency only).
	URL      string    `json:"url"`
	Location *Location `json:"location,omitempty"`
	// Load is in-flight chunks over capacity at the last heartbeat.
	Load float64 `json:"load"`
	// Weight is the server's a-priori share (the client refines it).
	Weight float64 `json:"weight"`
}

// EdgeStrategy is the server's advice for an upload over edges.
type EdgeStrategy struct {
	ChunkSize  int64              `json:"chunk_size"`
	Workers    int                `json:"workers"`
	MaxWorkers int                `json:"max_workers"`
	Weights    map[string]float64 `json:"weights"`
}

// OptimalResponse lists up to MaxCandidates receivers, the origin always
// among them.
type OptimalResponse struct {
	JettySpeed bool         `json:"jettyspeed"`
	Edges      []Candidate  `json:"edges"`
	Strategy   EdgeStrategy `json:"strategy"`
}

// MaxCandidates is the most candidates optimal-edges returns.
const MaxCandidates = 5

// ProbeResult is the receiver's account of a probe: bytes read and the
// time from the first byte to the last.
type ProbeResult struct {
	Bytes  int64 `json:"bytes"`
	Micros int64 `json:"micros"`
}

// LocationsResponse answers GET PathEdgeLocations: the catalogue, each
// location with its live relays, and the number of live relays.
type LocationsResponse struct {
	Locations []Location `json:"locations"`
	Relays    int        `json:"relays"`
}

// DeregisterResponse answers DELETE PathEdgeNode+id.
type DeregisterResponse struct {
	Success bool   `json:"success"`
	ID      string `json:"id"`
}
