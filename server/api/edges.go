package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/protocol/edgeauth"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/chunkadmit"
)

// Edge timing and limits.
const (
	minEdgeInterval = 100 * time.Millisecond
	maxEdgeInterval = time.Minute
	// presignTTL bounds presigned part URLs; never beyond the session.
	presignTTL = 15 * time.Minute
)

// edgeCaller authenticates a relay's call to the origin and returns its id
// and the request body.
func (s *Server) edgeCaller(r *http.Request) (string, []byte, error) {
	if s.edgeKeys == nil {
		return "", nil, server.Errorf(server.EUnauthorized, "this server takes no relays: set JETTY_EDGE_SECRET on it and on its relays")
	}
	id, body, err := s.edgeKeys.Verify(r, s.now())
	switch {
	case errors.Is(err, edgeauth.ErrNoAuth), errors.Is(err, edgeauth.ErrBadAuth):
		return "", nil, server.Errorf(server.EUnauthorized, "%v", err)
	case errors.Is(err, edgeauth.ErrBadSignature), errors.Is(err, edgeauth.ErrStale):
		return "", nil, server.Errorf(server.EUnauthorized, "%v", err)
	case err != nil:
		return "", nil, server.Errorf(server.EInvalid, "%v", err)
	}
	connguard.Authenticated(r.Context())
	return id, body, nil
}

// handleEdgeHeartbeat answers POST /api/jetty/edges/heartbeat.
func (s *Server) handleEdgeHeartbeat(w http.ResponseWriter, r *http.Request) {
	id, body, err := s.edgeCaller(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var hb protocol.Heartbeat
	if err := json.Unmarshal(body, &hb); err != nil {
		s.writeError(w, r, server.Errorf(server.EInvalid, "heartbeat body: %v", err))
		return
	}
	if hb.ID != id {
		s.writeError(w, r, server.Errorf(server.EUnauthorized, "heartbeat of %q signed as %q", hb.ID, id))
		return
	}
	u, err := url.Parse(hb.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		s.writeError(w, r, server.Errorf(server.EInvalid, "relay url must be an absolute http(s) URL, got %q", hb.URL))
		return
	}
	if hb.Mode != protocol.ModeS3 && hb.Mode != protocol.ModeRelay {
		s.writeError(w, r, server.Errorf(server.EInvalid, "relay mode must be %q or %q", protocol.ModeS3, protocol.ModeRelay))
		return
	}
	if hb.Mode == protocol.ModeS3 && s.backend != "s3" {
		s.writeError(w, r, server.Errorf(server.EInvalid, "this server keeps objects on its own disk: a relay must forward chunks to it (start the relay without S3 settings)"))
		return
	}
	if hb.Mode == protocol.ModeS3 && hb.Bucket != "" && hb.Bucket != s.bucket {
		s.writeError(w, r, server.Errorf(server.EInvalid, "this server keeps objects in bucket %q, the relay writes to %q: give the relay the server's LYVE_BUCKET_NAME", s.bucket, hb.Bucket))
		return
	}
	interval := time.Duration(hb.IntervalMS) * time.Millisecond
	if interval < minEdgeInterval || interval > maxEdgeInterval {
		s.writeError(w, r, server.Errorf(server.EInvalid, "interval_ms must be %d..%d", minEdgeInterval.Milliseconds(), maxEdgeInterval.Milliseconds()))
		return
	}
	node, err := s.store.EdgeHeartbeat(r.Context(), server.EdgeNode{
		ID: hb.ID, URL: strings.TrimRight(hb.URL, "/"), LocationID: hb.Location, Mode: hb.Mode,
		Capacity: hb.Capacity, InFlight: hb.InFlight, Draining: hb.Draining, Interval: interval,
		BytesIn: hb.BytesIn, Throughput: hb.ThroughputBps,
	}, s.now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.metrics.edgeHeartbeats.Inc()
	writeJSON(w, http.StatusOK, protocol.HeartbeatResponse{
		TokenKey:   s.edgeKeys.Seal(s.tokens.Key()),
		Backend:    s.backend,
		Bucket:     s.bucket,
		LivenessMS: server.EdgeLiveness(node.Interval).Milliseconds(),
	})
}

// handleEdgeDeregister answers DELETE /api/jetty/edges/nodes/{id}.
func (s *Server) handleEdgeDeregister(w http.ResponseWriter, r *http.Request) {
	id, _, err := s.edgeCaller(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if id != r.PathValue("id") {
		s.writeError(w, r, server.Errorf(server.EUnauthorized, "a relay deregisters only itself"))
		return
	}
	if err := s.store.RemoveEdge(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.DeregisterResponse{Success: true, ID: id})
}

// handleEdgeSession answers GET /api/jetty/edges/sessions/{id}?account=…:
// what a relay needs to take the session's chunks.
func (s *Server) handleEdgeSession(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.edgeCaller(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	accountID := r.URL.Query().Get("account")
	sess, err := s.store.SessionByID(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A suspended or deleted account's sessions take no more bytes:
	// relays refuse its chunks once their cached lookup runs out.
	if _, err := s.activeAccount(r.Context(), accountID); err != nil {
		s.writeError(w, r, err)
		return
	}
	info := protocol.SessionInfo{
		ID: sess.ID, AccountID: sess.AccountID, State: string(sess.State), ExpiresAt: sess.ExpiresAt.UTC(),
		ObjectKey: sess.ObjectKey, UploadID: sess.UploadID, ChunkSize: sess.ChunkSize,
	}
	if sess.Stream {
		info.Reserved = sess.Reserved
	}
	if sess.Manifest != nil && !sess.Stream {
		m, err := s.manifests.get(sess)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		info.Chunks = make([]protocol.ChunkInfo, len(m.Chunks))
		for i, c := range m.Chunks {
			info.Chunks[i] = protocol.ChunkInfo{Size: c.Size, SHA256: c.SHA256}
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// handleOptimalEdges answers POST /api/jetty/optimal-edges: the origin,
// the direct route to storage when there is one, and the best live
// relays, at most protocol.MaxCandidates, with a strategy.
func (s *Server) handleOptimalEdges(w http.ResponseWriter, r *http.Request, acct server.Account) {
	ctx := r.Context()
	var req protocol.OptimalRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if req.FileSize < 0 {
		s.writeError(w, r, server.Errorf(server.EInvalid, "file_size must not be negative"))
		return
	}
	if (req.Latitude == nil) != (req.Longitude == nil) ||
		(req.Latitude != nil && (math.Abs(*req.Latitude) > 90 || math.Abs(*req.Longitude) > 180)) {
		s.writeError(w, r, server.Errorf(server.EInvalid, "latitude and longitude go together, within ±90 and ±180"))
		return
	}
	t, err := s.tier(ctx, acct.Tier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	workers, ceiling := workersFor(t)
	chunk := protocol.DefaultChunkSize
	if req.FileSize > 0 {
		chunk = protocol.ChooseChunkSize(req.FileSize)
	}
	origin := protocol.Candidate{ID: protocol.KindOrigin, Kind: protocol.KindOrigin, URL: s.baseURL(r), Weight: 1}
	out := protocol.OptimalResponse{
		JettySpeed: t.JettySpeedEnabled && !s.jettySpeedOff,
		Edges:      []protocol.Candidate{origin},
		Strategy:   protocol.EdgeStrategy{ChunkSize: chunk, Workers: workers, MaxWorkers: ceiling},
	}
	if out.JettySpeed {
		if s.presigner() != nil && s.directURL != "" {
			out.Edges = append(out.Edges, protocol.Candidate{ID: protocol.KindDirect, Kind: protocol.KindDirect, URL: s.directURL, Weight: 1})
		}
		relays, err := s.rankedRelays(ctx, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Edges = append(out.Edges, relays[:min(len(relays), protocol.MaxCandidates-len(out.Edges))]...)
	}
	out.Strategy.Weights = map[string]float64{}
	var sum float64
	for _, c := range out.Edges {
		sum += c.Weight
	}
	for _, c := range out.Edges {
		out.Strategy.Weights[c.ID] = c.Weight / sum
	}
	writeJSON(w, http.StatusOK, out)
}

// rankedRelays lists the live relays, least loaded first; among equally
// loaded ones (within 10%) the nearer to the client's hint first.
func (s *Server) rankedRelays(ctx context.Context, req protocol.OptimalRequest) ([]protocol.Candidate, error) {
	nodes, err := s.store.LiveEdges(ctx, s.now())
	if err != nil {
		return nil, err
	}
	locs, err := s.edgeLocations(ctx)
	if err != nil {
		return nil, err
	}
	type ranked struct {
		c    protocol.Candidate
		dist float64
	}
	list := make([]ranked, 0, len(nodes))
	for _, n := range nodes {
		load := 0.0
		if n.Capacity > 0 {
			load = min(float64(n.InFlight)/float64(n.Capacity), 1)
		}
		if load >= 1 {
			continue // full: offered again when it has room
		}
		c := protocol.Candidate{ID: n.ID, Kind: protocol.KindRelay, URL: n.URL, Load: load, Weight: max(1-load, 0.1)}
		dist := 0.0
		if l, ok := locs[n.LocationID]; ok {
			loc := l
			c.Location = &loc
			switch {
			case req.Latitude != nil:
				dist = haversineKm(*req.Latitude, *req.Longitude, l.Latitude, l.Longitude)
			case req.Region != "" && !strings.EqualFold(req.Region, l.Region):
				dist = 1
			}
		}
		list = append(list, ranked{c, dist})
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if math.Abs(a.c.Load-b.c.Load) > 0.1 {
			return a.c.Load < b.c.Load
		}
		if a.dist != b.dist {
			return a.dist < b.dist
		}
		return a.c.ID < b.c.ID
	})
	out := make([]protocol.Candidate, len(list))
	for i, x := range list {
		out[i] = x.c
	}
	return out, nil
}

// edgeLocations is the catalogue by id.
func (s *Server) edgeLocations(ctx context.Context) (map[string]protocol.Location, error) {
	list, err := s.store.EdgeLocations(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]protocol.Location, len(list))
	for _, l := range list {
		m[l.ID] = protocol.Location{ID: l.ID, Name: l.Name, City: l.City, Country: l.Country, Region: l.Region, Latitude: l.Latitude, Longitude: l.Longitude}
	}
	return m, nil
}

// haversineKm is the great-circle distance between two points.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}

// handleEdgeLocations answers GET /api/jetty/edges: the catalogue with
// the number of live relays at each location.
func (s *Server) handleEdgeLocations(w http.ResponseWriter, r *http.Request, acct server.Account) {
	locs, err := s.edgeLocations(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	nodes, err := s.store.LiveEdges(r.Context(), s.now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, n := range nodes {
		if l, ok := locs[n.LocationID]; ok {
			l.Relays++
			locs[n.LocationID] = l
		}
	}
	out := make([]protocol.Location, 0, len(locs))
	for _, l := range locs {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, protocol.LocationsResponse{Locations: out, Relays: len(nodes)})
}

// presigner is the object store's presigner, when it has one.
func (s *Server) presigner() blob.Presigner {
	p, _ := s.blobs.(blob.Presigner)
	return p
}

// handlePresign answers POST /api/jetty/sessions/{id}/presign: presigned
// part URLs (the direct route), authorised by the upload token like chunk
// PUTs. Each URL stores exactly the manifest's bytes for its chunk: the
// chunk's SHA-256 is signed in and checked by storage.
func (s *Server) handlePresign(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := s.presigner()
	if p == nil || s.directURL == "" {
		s.writeError(w, r, server.Errorf(server.ENotFound, "this server offers no direct uploads to storage"))
		return
	}
	claims, _, err := chunkadmit.Token(r, s.tokens, s.now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if info := requestInfoFrom(ctx); info != nil {
		info.accountID = claims.AccountID
	}
	if _, err := s.activeAccount(ctx, claims.AccountID); err != nil {
		s.writeError(w, r, err)
		return
	}
	var req protocol.PresignRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Chunks) == 0 || len(req.Chunks) > protocol.MaxPresign {
		s.writeError(w, r, server.Errorf(server.EInvalid, "ask for 1..%d chunks at a time", protocol.MaxPresign))
		return
	}
	// The session takes chunks as for a chunk PUT (server/chunkadmit).
	sess, view, err := s.sessionView(ctx, claims)
	if err == nil {
		err = chunkadmit.Open(view, s.now())
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// What each part must be: from the manifest, or for a session without
	// one yet (sized, pipelined) from the hashes asked with and the
	// session's chunking, inside its reservation as for a chunk PUT.
	var partOf func(i int) (size int64, sum string, err error)
	switch {
	case sess.Stream && sess.Manifest == nil:
		if len(req.SHA256) != len(req.Chunks) {
			s.writeError(w, r, server.Errorf(server.EInvalid, "a session without a manifest presigns parts with their hashes: give one \"sha256\" per chunk (%d chunks, %d hashes)", len(req.Chunks), len(req.SHA256)))
			return
		}
		sums := make(map[int]string, len(req.Chunks))
		for k, i := range req.Chunks {
			sums[i] = req.SHA256[k]
		}
		partOf = func(i int) (int64, string, error) {
			if !protocol.IsHex64(sums[i]) {
				return 0, "", server.Errorf(server.EInvalid, "chunk %d: sha256 must be 64 hex digits", i)
			}
			if i < 0 || i > protocol.MaxChunkIndex {
				return 0, "", server.Errorf(server.EInvalid, "chunk %d is outside 0..%d", i, protocol.MaxChunkIndex)
			}
			start := int64(i) * sess.ChunkSize
			if start >= sess.Reserved {
				return 0, "", server.Errorf(server.ETooLarge, "chunk %d starts at byte %d, past the %d bytes this session reserved", i, start, sess.Reserved)
			}
			size := min(sess.ChunkSize, sess.Reserved-start)
			if code, msg := protocol.StreamChunkRefusal(i, size, sess.ChunkSize, sess.Reserved); code != "" {
				return 0, "", server.Errorf(code, "%s", msg)
			}
			return size, sums[i], nil
		}
	case sess.Manifest == nil || sess.Stream:
		s.writeError(w, r, server.Errorf(server.EInvalid, "direct uploads need a session opened with a manifest or a size"))
		return
	default:
		if len(req.SHA256) != 0 {
			s.writeError(w, r, server.Errorf(server.EInvalid, "this session has a manifest: presign names chunks only, without \"sha256\""))
			return
		}
		m, err := s.manifests.get(sess)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		partOf = func(i int) (int64, string, error) {
			if i < 0 || i >= len(m.Chunks) {
				return 0, "", server.Errorf(server.EInvalid, "chunk %d is outside the manifest's %d chunks", i, len(m.Chunks))
			}
			c := m.Chunks[i]
			if c.Size == 0 {
				return 0, "", server.Errorf(server.EInvalid, "chunk %d is empty: nothing to send", i)
			}
			return c.Size, c.SHA256, nil
		}
	}
	ttl := min(presignTTL, time.Until(sess.ExpiresAt), claims.ExpiresAt().Sub(s.now())+time.Minute)
	if ttl < time.Second {
		s.writeError(w, r, server.Errorf(server.ETokenExpired, "upload token expired: get a new one with POST /api/jetty/sessions/{id}/token"))
		return
	}
	out := protocol.PresignResponse{Parts: make([]protocol.PresignedPart, 0, len(req.Chunks))}
	for _, i := range req.Chunks {
		size, sum, err := partOf(i)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		digest, _ := hex.DecodeString(sum)
		pr, err := p.PresignPart(ctx, sess.ObjectKey, sess.UploadID, i+1, size, digest, ttl)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Parts = append(out.Parts, protocol.PresignedPart{Index: i, URL: pr.URL, Method: pr.Method, Headers: pr.Headers, ExpiresAt: pr.Expires.UTC()})
	}
	s.metrics.presigned.Add(float64(len(out.Parts)))
	writeJSON(w, http.StatusOK, out)
}
