package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// fakeServer implements the protocol's session endpoints in memory, for
// the engine's unit tests only (the real server is tested against the
// engine elsewhere). It checks what a server must check: credentials,
// tokens, chunk sizes and hashes, the worker ceiling; and it assembles
// files so tests can compare bytes.
type fakeServer struct {
	t   testing.TB
	srv *httptest.Server

	// Set before use.
	strategy protocol.Strategy
	keep     bool // keep chunk bytes (else only their hashes)
	// putHook, when set, runs before a chunk PUT is handled (attempt is
	// 1-based per index); it returns true when it answered the request.
	putHook func(w http.ResponseWriter, r *http.Request, index, attempt int) bool
	// completeHook, when set, may answer a completion (n is 1-based).
	completeHook func(w http.ResponseWriter, s *fakeSession, n int) bool
	openHook     func(w http.ResponseWriter, n int) bool

	mu          sync.Mutex
	sessions    map[string]*fakeSession
	assets      map[string]protocol.Asset // by sha256 + size
	objects     map[string][]byte
	tokenGen    int
	refreshes   int
	opens       []protocol.OpenResponse
	attempts    map[int]int
	inflight    int
	maxInflight int
	tooMany     int // PUTs refused for the ceiling
	completes   int
	nextID      int
	stored      map[int]int // chunks stored, by index (origin, relays, direct)
	store       *fakeStore  // the direct route's object store, when a test made one
	singles     int         // single-request uploads answered
	// oldServer answers as a server before sized sessions: no size echo,
	// no chunk_url or strategy in the status; noStreams refuses stream
	// sessions as a server before them.
	oldServer, noStreams bool
	// presignHook sees each presign request that reached a session.
	presignHook func(protocol.PresignRequest)
	// singleHook, when set, may answer a single-request upload first.
	singleHook func(w http.ResponseWriter, r *http.Request) bool
}

type fakeSession struct {
	id        string
	ref       string // the stream's client ref
	size      int64  // a sized session's size (0: none)
	m         *protocol.Manifest
	chunkSize int64
	chunks    map[int][]byte
	hashes    map[int]string
	asset     *protocol.Asset
}

const (
	fakeKey    = "jt_test_key"
	fakeSecret = "jts_test_secret"
)

func newFake(t testing.TB) *fakeServer {
	f := &fakeServer{
		t:        t,
		strategy: protocol.Strategy{Workers: 8, MaxWorkers: 32},
		keep:     true,
		sessions: map[string]*fakeSession{},
		assets:   map[string]protocol.Asset{},
		objects:  map[string][]byte{},
		attempts: map[int]int{},
		stored:   map[int]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/jetty/sessions", f.control(f.open))
	mux.HandleFunc("GET /api/jetty/sessions/{id}", f.control(f.status))
	mux.HandleFunc("DELETE /api/jetty/sessions/{id}", f.control(f.abort))
	mux.HandleFunc("POST /api/jetty/sessions/{id}/token", f.control(f.refreshToken))
	mux.HandleFunc("POST /api/jetty/sessions/{id}/complete", f.control(f.complete))
	mux.HandleFunc("PUT /api/jetty/sessions/{id}/chunks/{index}", f.put)
	mux.HandleFunc("POST /api/jetty/sessions/{id}/presign", f.presign) // fake_routes_test.go
	mux.HandleFunc("POST /api/storage/upload", f.control(f.single))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) client() *Client {
	return &Client{BaseURL: f.srv.URL, APIKey: fakeKey, APISecret: fakeSecret, HTTP: f.srv.Client()}
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeServer) control(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fakeKey || r.Header.Get("X-API-Secret") != fakeSecret {
			writeErr(w, 401, "wrong_api_secret", "bad credentials")
			return
		}
		h(w, r)
	}
}

func (f *fakeServer) currentToken() string { return fmt.Sprintf("tok-%d", f.tokenGen) }

// expireTokens makes every token issued so far expired.
func (f *fakeServer) expireTokens() {
	f.mu.Lock()
	f.tokenGen++
	f.mu.Unlock()
}

func (f *fakeServer) sessionBody(s *fakeSession) *protocol.Session {
	missing := []int{}
	if s.m != nil {
		for _, c := range s.m.Chunks {
			if f.hasChunk(s, c) || (c.Size == 0 && len(s.m.Chunks) == 1) {
				continue
			}
			missing = append(missing, c.Index)
		}
	}
	return &protocol.Session{
		ID:             s.id,
		ExpiresAt:      time.Now().Add(24 * time.Hour).UTC(),
		ChunkURL:       f.srv.URL + "/api/jetty/sessions/" + s.id + "/chunks/{index}",
		UploadToken:    f.currentToken(),
		TokenExpiresAt: time.Now().Add(15 * time.Minute).UTC(),
		Missing:        missing,
		Strategy:       protocol.Strategy{Workers: f.strategy.Workers, MaxWorkers: f.strategy.MaxWorkers, ChunkSize: s.chunkSize},
	}
}

func (f *fakeServer) hasChunk(s *fakeSession, c protocol.Chunk) bool {
	h, ok := s.hashes[c.Index]
	return ok && h == c.SHA256
}

func (f *fakeServer) open(w http.ResponseWriter, r *http.Request) {
	var req protocol.OpenRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, "invalid_request", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.openHook != nil && f.openHook(w, len(f.opens)+1) {
		f.opens = append(f.opens, protocol.OpenResponse{})
		return
	}
	if (req.Manifest == nil) == (req.Stream == nil) {
		writeErr(w, 400, "invalid_request", "manifest or stream")
		return
	}
	if m := req.Manifest; m != nil {
		if err := m.Validate(); err != nil {
			writeErr(w, 400, "invalid_manifest", err.Error())
			return
		}
		key := fmt.Sprintf("%s/%d", m.SHA256, m.Size)
		if a, ok := f.assets[key]; ok {
			resp := protocol.OpenResponse{Deduplicated: true, Asset: &a}
			f.opens = append(f.opens, resp)
			writeJSON(w, 200, resp)
			return
		}
		for _, s := range f.sessions {
			if s.m != nil && s.asset == nil && s.m.SHA256 == m.SHA256 && s.m.Size == m.Size {
				resp := protocol.OpenResponse{Session: f.sessionBody(s)}
				f.opens = append(f.opens, resp)
				writeJSON(w, 200, resp)
				return
			}
		}
	} else if ref := req.Stream.Ref; ref != "" && !f.oldServer && func() bool {
		for _, s := range f.sessions {
			if s.ref == ref && s.asset == nil {
				resp := protocol.OpenResponse{Session: f.sessionBody(s)}
				resp.Session.Size = req.Stream.Size
				f.opens = append(f.opens, resp)
				writeJSON(w, 200, resp)
				return true
			}
		}
		return false
	}() {
		return
	} else if f.noStreams {
		writeErr(w, 400, "invalid_request", "send either \"manifest\" or \"stream\"")
		return
	} else if cs := req.Stream.ChunkSize; cs < protocol.MinChunkSize || cs > protocol.MaxChunkSize {
		writeErr(w, 400, "invalid_manifest", "chunk size")
		return
	}
	f.nextID++
	s := &fakeSession{id: fmt.Sprintf("ses_%d", f.nextID), m: req.Manifest, chunks: map[int][]byte{}, hashes: map[int]string{}}
	if req.Manifest != nil {
		s.chunkSize = req.Manifest.ChunkSize
	} else {
		s.chunkSize, s.ref, s.size = req.Stream.ChunkSize, req.Stream.Ref, req.Stream.Size
	}
	f.sessions[s.id] = s
	resp := protocol.OpenResponse{Session: f.sessionBody(s)}
	if req.Stream != nil && !f.oldServer {
		resp.Session.Size = req.Stream.Size
	}
	f.opens = append(f.opens, resp)
	writeJSON(w, 201, resp)
}

func (f *fakeServer) session(w http.ResponseWriter, r *http.Request) *fakeSession {
	s := f.sessions[r.PathValue("id")]
	if s == nil {
		writeErr(w, 404, "not_found", "no such session")
	}
	return s
}

func (f *fakeServer) status(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.session(w, r)
	if s == nil {
		return
	}
	body := f.sessionBody(s)
	held := []int{}
	for i := range s.hashes {
		held = append(held, i)
	}
	st := protocol.SessionState{ID: s.id, State: "open", ExpiresAt: body.ExpiresAt, Held: held, Missing: body.Missing}
	switch {
	case s.asset != nil:
		st.State, st.AssetID = "completed", s.asset.ID
	case !f.oldServer:
		st.ChunkURL, st.Strategy = body.ChunkURL, &body.Strategy
	}
	writeJSON(w, 200, st)
}

func (f *fakeServer) abort(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.session(w, r); s != nil {
		delete(f.sessions, s.id)
		writeJSON(w, 200, map[string]any{"success": true})
	}
}

func (f *fakeServer) refreshToken(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.session(w, r); s != nil {
		f.refreshes++
		writeJSON(w, 200, protocol.Token{UploadToken: f.currentToken(), TokenExpiresAt: time.Now().Add(15 * time.Minute).UTC()})
	}
}

func (f *fakeServer) put(w http.ResponseWriter, r *http.Request) {
	index, _ := strconv.Atoi(r.PathValue("index"))
	f.mu.Lock()
	f.attempts[index]++
	attempt := f.attempts[index]
	hook := f.putHook
	f.mu.Unlock()
	if hook != nil && hook(w, r, index, attempt) {
		return
	}
	f.mu.Lock()
	s := f.session(w, r)
	if s == nil {
		f.mu.Unlock()
		return
	}
	if tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); tok != f.currentToken() {
		f.mu.Unlock()
		writeErr(w, 401, protocol.CodeTokenExpired, "upload token expired")
		return
	}
	sum := r.Header.Get("X-Chunk-SHA256")
	if s.m != nil {
		if index >= len(s.m.Chunks) || s.m.Chunks[index].Size != r.ContentLength {
			f.mu.Unlock()
			writeErr(w, 400, "invalid_request", "bad index or size")
			return
		}
		if s.m.Chunks[index].SHA256 != sum {
			f.mu.Unlock()
			writeErr(w, 400, protocol.CodeChecksumMismatch, "header differs from manifest")
			return
		}
	} else if r.ContentLength <= 0 || r.ContentLength > s.chunkSize {
		f.mu.Unlock()
		writeErr(w, 400, "invalid_request", "stream chunk size")
		return
	}
	if f.inflight >= f.strategy.MaxWorkers {
		f.tooMany++
		f.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		writeErr(w, 429, protocol.CodeTooManyStreams, "too many streams")
		return
	}
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()

	h := sha256.New()
	var buf bytes.Buffer
	var dst io.Writer = h
	if f.keep {
		dst = io.MultiWriter(h, &buf)
	}
	n, err := io.Copy(dst, r.Body)
	if err != nil || n != r.ContentLength {
		writeErr(w, 400, "invalid_request", "body ended early")
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		writeErr(w, 400, protocol.CodeChecksumMismatch, "bytes do not hash to the header")
		return
	}
	f.mu.Lock()
	s.hashes[index] = sum
	if f.keep {
		s.chunks[index] = buf.Bytes()
	}
	f.stored[index]++
	f.mu.Unlock()
	writeJSON(w, 200, map[string]any{"index": index, "size": n, "sha256": sum})
}

func (f *fakeServer) complete(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Manifest *protocol.Manifest `json:"manifest"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, "invalid_request", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.session(w, r)
	if s == nil {
		return
	}
	f.completes++
	if f.completeHook != nil && f.completeHook(w, s, f.completes) {
		return
	}
	if s.asset != nil {
		writeJSON(w, 200, protocol.CompleteResponse{Asset: *s.asset})
		return
	}
	m := s.m
	if m == nil {
		if req.Manifest == nil {
			writeErr(w, 400, "invalid_request", "stream needs its manifest")
			return
		}
		if err := req.Manifest.Validate(); err != nil {
			writeErr(w, 400, "invalid_manifest", err.Error())
			return
		}
		m = req.Manifest
	}
	missing := []int{}
	for _, c := range m.Chunks {
		if !f.hasChunk(s, c) && !(c.Size == 0 && len(m.Chunks) == 1) {
			missing = append(missing, c.Index)
		}
	}
	if len(missing) > 0 {
		writeJSON(w, 409, map[string]any{"error": "chunks missing", "code": protocol.CodeChunksMissing, "missing": missing})
		return
	}
	if f.keep {
		var all []byte
		for _, c := range m.Chunks {
			all = append(all, s.chunks[c.Index]...)
		}
		if sum := sha256.Sum256(all); hex.EncodeToString(sum[:]) != m.SHA256 || int64(len(all)) != m.Size {
			writeErr(w, 400, "invalid_manifest", "assembled object does not match the manifest")
			return
		}
		f.objects[m.SHA256] = all
	}
	if a, ok := f.assets[fmt.Sprintf("%s/%d", m.SHA256, m.Size)]; ok {
		// Held already (the real server drops the new copy).
		s.asset = &a
		writeJSON(w, 200, protocol.CompleteResponse{Asset: a, Deduplicated: true})
		return
	}
	a := protocol.Asset{ID: "ast_" + s.id, Key: "users/u/" + m.Name, Size: m.Size, Hash: m.SHA256, Filename: m.Name, CreatedAt: time.Now().UTC()}
	s.asset = &a
	f.assets[fmt.Sprintf("%s/%d", m.SHA256, m.Size)] = a
	writeJSON(w, 200, protocol.CompleteResponse{Asset: a})
}

// setPutHook replaces the PUT hook while requests may be running.
func (f *fakeServer) setPutHook(h func(w http.ResponseWriter, r *http.Request, index, attempt int) bool) {
	f.mu.Lock()
	f.putHook = h
	f.mu.Unlock()
}

// object returns the assembled bytes of content with that hash.
func (f *fakeServer) object(sum string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objects[sum]
}

func (f *fakeServer) stats() (attempts map[int]int, maxInflight, refreshes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := map[int]int{}
	for k, v := range f.attempts {
		a[k] = v
	}
	return a, f.maxInflight, f.refreshes
}

// resetConn drops the connection without an answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("no hijacker")
	}
	c, _, err := hj.Hijack()
	if err == nil {
		c.Close()
	}
}

// single answers POST /api/storage/upload (small files): the bytes must
// hash to X-Content-SHA256.
func (f *fakeServer) single(w http.ResponseWriter, r *http.Request) {
	if f.singleHook != nil && f.singleHook(w, r) {
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil || int64(len(data)) != r.ContentLength {
		writeErr(w, 400, "invalid_request", fmt.Sprintf("body ended early: %d of %d: %v", len(data), r.ContentLength, err))
		return
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	if want := r.Header.Get("X-Content-SHA256"); want != hash {
		writeErr(w, 400, "checksum_mismatch", "the bytes do not hash to X-Content-SHA256")
		return
	}
	name, _ := url.PathUnescape(r.Header.Get("X-Filename"))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.singles++
	k := fmt.Sprintf("%s/%d", hash, len(data))
	if a, ok := f.assets[k]; ok {
		writeJSON(w, 201, map[string]any{"success": true, "deduplicated": true, "asset": a})
		return
	}
	f.nextID++
	a := protocol.Asset{ID: fmt.Sprintf("ast_single_%d", f.nextID), Key: "users/u/" + name, Size: int64(len(data)), Hash: hash, Filename: name, ContentType: r.Header.Get("Content-Type"), CacheKey: r.Header.Get("X-Cache-Key"), CreatedAt: time.Now().UTC()}
	f.assets[k] = a
	f.objects[hash] = data
	writeJSON(w, 201, map[string]any{"success": true, "deduplicated": false, "asset": a})
}
