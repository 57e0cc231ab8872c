package engine

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// Fakes of the routes other than the origin, for the engine's tests: a
// relay that forwards chunk PUTs to the fake origin, and an object store
// taking presigned part PUTs (with the fake origin's presign endpoint).

// selectFunc adapts a function to EdgeSelector.
type selectFunc func(ctx context.Context, s *protocol.Session, chunkSize int64, workers int) ([]Route, error)

func (f selectFunc) Select(ctx context.Context, s *protocol.Session, chunkSize int64, workers int) ([]Route, error) {
	return f(ctx, s, chunkSize, workers)
}

// fakeRelay is a `jetty edge` relay: it forwards chunk PUTs to the fake
// origin (same path, same token) unless its hook answers first.
type fakeRelay struct {
	id    string
	f     *fakeServer
	srv   *httptest.Server
	proxy *httputil.ReverseProxy

	mu sync.Mutex
	// hook, when set, runs before a PUT is forwarded (n is the relay's
	// 1-based request count); it returns true when it answered.
	hook        func(w http.ResponseWriter, r *http.Request, index, n int) bool
	requests    int
	forwarded   []int // chunks the origin stored through this relay
	refused     int   // requests the hook answered
	inflight    int
	maxInflight int
}

func newRelay(f *fakeServer, id string) *fakeRelay {
	target, _ := url.Parse(f.srv.URL)
	rl := &fakeRelay{id: id, f: f, proxy: httputil.NewSingleHostReverseProxy(target)}
	rl.proxy.ErrorLog = log.New(io.Discard, "", 0)
	rl.srv = httptest.NewServer(http.HandlerFunc(rl.serve))
	f.t.Cleanup(rl.srv.Close)
	return rl
}

func (rl *fakeRelay) setHook(h func(w http.ResponseWriter, r *http.Request, index, n int) bool) {
	rl.mu.Lock()
	rl.hook = h
	rl.mu.Unlock()
}

// route is the relay as a Route of session s.
func (rl *fakeRelay) route(s *protocol.Session, weight float64) Route {
	return Route{ID: rl.id, Kind: RouteRelay, Label: "test relay", ChunkURL: strings.Replace(s.ChunkURL, rl.f.srv.URL, rl.srv.URL, 1), Weight: weight}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (rl *fakeRelay) serve(w http.ResponseWriter, r *http.Request) {
	index := -1
	if k := strings.LastIndex(r.URL.Path, "/"); k >= 0 {
		index, _ = strconv.Atoi(r.URL.Path[k+1:])
	}
	rl.mu.Lock()
	rl.requests++
	n, hook := rl.requests, rl.hook
	rl.inflight++
	rl.maxInflight = max(rl.maxInflight, rl.inflight)
	rl.mu.Unlock()
	defer func() {
		rl.mu.Lock()
		rl.inflight--
		rl.mu.Unlock()
	}()
	if hook != nil && hook(w, r, index, n) {
		rl.mu.Lock()
		rl.refused++
		rl.mu.Unlock()
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	rl.proxy.ServeHTTP(sw, r)
	if sw.status/100 == 2 {
		rl.mu.Lock()
		rl.forwarded = append(rl.forwarded, index)
		rl.mu.Unlock()
	}
}

func (rl *fakeRelay) counts() (requests, refused, maxInflight int, forwarded []int) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.requests, rl.refused, rl.maxInflight, slices.Clone(rl.forwarded)
}

// fakeStore is an object store taking presigned part PUTs for the fake
// origin's sessions. Part URLs come from the origin's presign endpoint;
// the store checks the signed headers (the SHA-256 among them, as S3's
// x-amz-checksum-sha256) and that no credential of the client reached
// it, and answers errors in S3's XML.
type fakeStore struct {
	f   *fakeServer
	srv *httptest.Server

	mu       sync.Mutex
	ttl      time.Duration // lifetime of the part URLs handed out
	hook     func(w http.ResponseWriter, r *http.Request, index, attempt int) bool
	presigns [][]int     // the chunks of each presign call, in order
	attempts map[int]int // part PUTs by chunk
	leaks    []string    // headers that must not reach a store, seen
	methods  []string
}

func newStore(f *fakeServer) *fakeStore {
	st := &fakeStore{f: f, ttl: 15 * time.Minute, attempts: map[int]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/parts/{id}/{index}", st.put)
	st.srv = httptest.NewServer(mux)
	f.t.Cleanup(st.srv.Close)
	f.mu.Lock()
	f.store = st
	f.mu.Unlock()
	return st
}

func (st *fakeStore) setHook(h func(w http.ResponseWriter, r *http.Request, index, attempt int) bool) {
	st.mu.Lock()
	st.hook = h
	st.mu.Unlock()
}

// route is the store as a direct Route of session s.
func (st *fakeStore) route(s *protocol.Session, weight float64) Route {
	return Route{ID: "direct", Kind: RouteDirect, PresignURL: st.f.srv.URL + "/api/jetty/sessions/" + s.ID + "/presign", Weight: weight}
}

func (st *fakeStore) calls() [][]int {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([][]int, len(st.presigns))
	for i, c := range st.presigns {
		out[i] = slices.Clone(c)
	}
	return out
}

func (st *fakeStore) stats() (attempts map[int]int, leaks []string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	a := map[int]int{}
	for k, v := range st.attempts {
		a[k] = v
	}
	return a, slices.Clone(st.leaks)
}

// s3Error answers as S3 does.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>%s</Code><Message>%s</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>`, code, msg)
}

// presign is the fake origin's presign endpoint: upload token only.
func (f *fakeServer) presign(w http.ResponseWriter, r *http.Request) {
	var req protocol.PresignRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, "invalid_request", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, st := f.session(w, r), f.store
	if s == nil {
		return
	}
	sized := s.m == nil && s.size > 0 && !f.oldServer
	switch {
	case st == nil || (s.m == nil && !sized):
		writeErr(w, 404, "not_found", "no direct route here")
		return
	case sized != (req.SHA256 != nil) || (sized && len(req.SHA256) != len(req.Chunks)):
		writeErr(w, 400, "invalid_request", "hashes go with a sized session's chunks, one each")
		return
	case r.Header.Get("X-API-Secret") != "":
		writeErr(w, 400, "invalid_request", "presign takes the upload token, not the API secret")
		return
	case r.Header.Get("Authorization") != "Bearer "+f.currentToken():
		writeErr(w, 401, protocol.CodeTokenExpired, "upload token expired")
		return
	case len(req.Chunks) == 0 || len(req.Chunks) > protocol.MaxPresign:
		writeErr(w, 400, "invalid_request", "1 to 64 chunks")
		return
	}
	if f.presignHook != nil {
		f.presignHook(req)
	}
	st.mu.Lock()
	st.presigns = append(st.presigns, slices.Clone(req.Chunks))
	n, ttl := len(st.presigns), st.ttl
	st.mu.Unlock()
	resp := protocol.PresignResponse{Parts: []protocol.PresignedPart{}}
	for k, i := range req.Chunks {
		var raw []byte
		if sized {
			if i < 0 || int64(i)*s.chunkSize >= s.size {
				writeErr(w, 413, "too_large", "past the session's size")
				return
			}
			raw, _ = hex.DecodeString(req.SHA256[k])
		} else {
			if i < 0 || i >= len(s.m.Chunks) {
				writeErr(w, 400, "invalid_request", "no such chunk")
				return
			}
			raw, _ = hex.DecodeString(s.m.Chunks[i].SHA256)
		}
		resp.Parts = append(resp.Parts, protocol.PresignedPart{
			Index:  i,
			URL:    fmt.Sprintf("%s/parts/%s/%d?partNumber=%d&X-Amz-Signature=sig%d", st.srv.URL, s.id, i, i+1, n),
			Method: http.MethodPut,
			Headers: map[string]string{
				"x-amz-checksum-sha256": base64.StdEncoding.EncodeToString(raw),
				"x-amz-meta-signed":     "yes",
			},
			ExpiresAt: time.Now().Add(ttl).UTC(),
		})
	}
	writeJSON(w, 200, resp)
}

func (st *fakeStore) put(w http.ResponseWriter, r *http.Request) {
	index, _ := strconv.Atoi(r.PathValue("index"))
	st.mu.Lock()
	st.attempts[index]++
	attempt, hook := st.attempts[index], st.hook
	for _, h := range []string{"Authorization", "X-API-Secret", "X-Upload-Token", "X-Chunk-SHA256"} {
		if r.Header.Get(h) != "" {
			st.leaks = append(st.leaks, h)
		}
	}
	st.methods = append(st.methods, r.Method)
	st.mu.Unlock()
	if hook != nil && hook(w, r, index, attempt) {
		return
	}
	if r.Method != http.MethodPut || r.Header.Get("x-amz-meta-signed") != "yes" {
		s3Error(w, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || int64(len(body)) != r.ContentLength {
		s3Error(w, 400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
		return
	}
	sum := sha256.Sum256(body)
	if base64.StdEncoding.EncodeToString(sum[:]) != r.Header.Get("x-amz-checksum-sha256") {
		s3Error(w, 400, S3CodeBadDigest, "The SHA256 you specified did not match the calculated checksum.")
		return
	}
	f := st.f
	f.mu.Lock()
	s := f.sessions[r.PathValue("id")]
	if s == nil || (s.m == nil && (s.size <= 0 || int64(index)*s.chunkSize >= s.size || min(s.chunkSize, s.size-int64(index)*s.chunkSize) != int64(len(body)))) ||
		(s.m != nil && (index >= len(s.m.Chunks) || s.m.Chunks[index].Size != int64(len(body)))) {
		f.mu.Unlock()
		s3Error(w, 404, "NoSuchUpload", "The specified upload does not exist.")
		return
	}
	s.hashes[index] = hex.EncodeToString(sum[:])
	if f.keep {
		s.chunks[index] = body
	}
	f.stored[index]++
	f.mu.Unlock()
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	w.WriteHeader(http.StatusOK)
}

// storedCounts is how many times each chunk was stored, any route.
func (f *fakeServer) storedCounts() map[int]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int]int{}
	for k, v := range f.stored {
		out[k] = v
	}
	return out
}
