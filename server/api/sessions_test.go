package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/jobs"
	"github.com/jettythunder/jetty/server/memory"
)

const mib = 1 << 20

type tchunk struct {
	Index  int    `json:"index"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type tmanifest struct {
	Version   int      `json:"version"`
	Name      string   `json:"name"`
	Size      int64    `json:"size"`
	ChunkSize int64    `json:"chunk_size"`
	SHA256    string   `json:"sha256"`
	Chunks    []tchunk `json:"chunks"`
}

func hexsum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// plan builds a manifest for data the simple way (the engine has its own
// planner; this one checks the server independently).
func plan(name string, data []byte, chunk int64) tmanifest {
	m := tmanifest{Version: 1, Name: name, Size: int64(len(data)), ChunkSize: chunk, SHA256: hexsum(data)}
	for off, i := int64(0), 0; off < int64(len(data)) || i == 0; i++ {
		end := min(off+chunk, int64(len(data)))
		m.Chunks = append(m.Chunks, tchunk{Index: i, Offset: off, Size: end - off, SHA256: hexsum(data[off:end])})
		off = end
		if end == int64(len(data)) {
			break
		}
	}
	return m
}

type session struct {
	ID        string    `json:"id"`
	ChunkURL  string    `json:"chunk_url"`
	Token     string    `json:"upload_token"`
	TokenExp  time.Time `json:"token_expires_at"`
	Missing   []int     `json:"missing"`
	ExpiresAt time.Time `json:"expires_at"`
	Strategy  struct {
		Workers    int `json:"workers"`
		MaxWorkers int `json:"max_workers"`
	} `json:"strategy"`
}

type openResult struct {
	status       int
	raw          string
	Deduplicated bool           `json:"deduplicated"`
	Session      *session       `json:"session"`
	Asset        map[string]any `json:"asset"`
	Code         string         `json:"code"`
	Missing      []int          `json:"missing"`
}

func (e *env) jsonCall(method, path, key, secret string, body any) openResult {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := openResult{status: res.StatusCode, raw: string(raw)}
	json.Unmarshal(raw, &out)
	return out
}

func (e *env) open(key, secret string, m tmanifest) openResult {
	e.t.Helper()
	return e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"manifest": m})
}

// putChunk sends one chunk; it returns the status and error code.
func putChunk(t *testing.T, s *session, token string, index int, sum string, body []byte) (int, string) {
	t.Helper()
	u := strings.Replace(s.ChunkURL, "{index}", fmt.Sprint(index), 1)
	req, _ := http.NewRequest("PUT", u, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Chunk-SHA256", sum)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b struct{ Code string }
	json.NewDecoder(res.Body).Decode(&b)
	return res.StatusCode, b.Code
}

func sendAll(t *testing.T, s *session, m tmanifest, data []byte, indexes []int) {
	t.Helper()
	sendChunks(t, s, m, data, indexes, func(st int, code string) bool { return st == 200 })
}

// sendAllUntilConflict is sendAll for an upload that shares its session
// with another: a chunk answered 409 conflict (the session is being or
// has been completed by the other) is not an error; any other refusal is.
func sendAllUntilConflict(t *testing.T, s *session, m tmanifest, data []byte, indexes []int) {
	t.Helper()
	sendChunks(t, s, m, data, indexes, func(st int, code string) bool { return st == 200 || st == 409 && code == "conflict" })
}

// sendChunks PUTs the chunks at indexes in parallel; an answer ok refuses
// is an error.
func sendChunks(t *testing.T, s *session, m tmanifest, data []byte, indexes []int, ok func(status int, code string) bool) {
	t.Helper()
	var wg sync.WaitGroup
	for _, i := range indexes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := m.Chunks[i]
			if st, code := putChunk(t, s, s.Token, i, c.SHA256, data[c.Offset:c.Offset+c.Size]); !ok(st, code) {
				t.Errorf("chunk %d: %d %s", i, st, code)
			}
		}(i)
	}
	wg.Wait()
}

func randBytes(seed byte, n int64) []byte {
	b, _ := io.ReadAll(testenv.NewRandReader(seed, n))
	return b
}

// TestSessionFlow: open, send in parallel, complete, download identical;
// completing twice is harmless; the same content again is answered at open.
func TestSessionFlow(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_sess", "pro")
		data := randBytes(1, 23*mib+17)
		m := plan("movie.mp4", data, 5*mib)
		o := e.open(key, secret, m)
		if o.status != 201 || o.Session == nil || len(o.Session.Missing) != 5 || o.Session.Strategy.Workers != 16 || o.Session.Strategy.MaxWorkers != 32 {
			t.Fatalf("open: %d %s", o.status, o.raw)
		}
		if !strings.HasPrefix(o.Session.ChunkURL, e.url+"/api/jetty/sessions/") {
			t.Fatalf("chunk_url %q is not at the URL the client used", o.Session.ChunkURL)
		}
		if a := e.account("usr_sess"); a.StorageReservedBytes != m.Size {
			t.Fatalf("reserved %d, want %d", a.StorageReservedBytes, m.Size)
		}
		// Resume: the same manifest finds the session; only missing chunks.
		sendAll(t, o.Session, m, data, []int{0, 2})
		again := e.open(key, secret, m)
		if again.status != 200 || again.Session.ID != o.Session.ID || fmt.Sprint(again.Session.Missing) != "[1 3 4]" {
			t.Fatalf("reopen: %d %s", again.status, again.raw)
		}
		// Completing early names the missing chunks.
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if c.status != 409 || c.Code != server.EChunksMissing || fmt.Sprint(c.Missing) != "[1 3 4]" {
			t.Fatalf("early complete: %d %s", c.status, c.raw)
		}
		sendAll(t, again.Session, m, data, again.Session.Missing)
		st := e.jsonCall("GET", "/api/jetty/sessions/"+o.Session.ID, key, secret, nil)
		if st.status != 200 || !strings.Contains(st.raw, `"held":[0,1,2,3,4]`) || !strings.Contains(st.raw, `"missing":[]`) {
			t.Fatalf("status: %d %s", st.status, st.raw)
		}
		c = e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if c.status != 200 || c.Deduplicated || c.Asset["hash"] != m.SHA256 || c.Asset["uploaded_via"] != "jettyspeed" {
			t.Fatalf("complete: %d %s", c.status, c.raw)
		}
		c2 := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if c2.status != 200 || c2.Asset["id"] != c.Asset["id"] {
			t.Fatalf("second complete: %d %s", c2.status, c2.raw)
		}
		code, _, got, n := e.download(key, secret, c.Asset["id"].(string), "")
		if code != 200 || got != m.SHA256 || n != m.Size {
			t.Fatalf("download: %d %d %s", code, n, got)
		}
		if a := e.account("usr_sess"); a.StorageUsedBytes != m.Size || a.StorageReservedBytes != 0 {
			t.Fatalf("after complete: used %d reserved %d", a.StorageUsedBytes, a.StorageReservedBytes)
		}
		// The same file again: the same asset at once, no session, no quota.
		d := e.open(key, secret, m)
		if d.status != 200 || !d.Deduplicated || d.Session != nil || d.Asset["hash"] != m.SHA256 || d.Asset["id"] != c.Asset["id"] {
			t.Fatalf("dedup open: %d %s", d.status, d.raw)
		}
		// The same content under another name: an asset of its own.
		renamed := m
		renamed.Name = "copy of " + m.Name
		if d := e.open(key, secret, renamed); d.status != 200 || !d.Deduplicated || d.Session != nil || d.Asset["id"] == c.Asset["id"] || d.Asset["filename"] != renamed.Name {
			t.Fatalf("dedup open under another name: %d %s", d.status, d.raw)
		}
		if a := e.account("usr_sess"); a.StorageUsedBytes != m.Size {
			t.Fatalf("dedup used quota: %d", a.StorageUsedBytes)
		}
		// A chunk after completion is refused.
		if st, code := putChunk(t, o.Session, again.Session.Token, 0, m.Chunks[0].SHA256, data[:5*mib]); st != 409 {
			t.Fatalf("chunk after completion: %d %s", st, code)
		}
	})
}

// TestChunkVerification: a wrong hash is refused and nothing is kept;
// tokens are checked.
func TestChunkVerification(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_verify", "pro")
		data := randBytes(2, 6*mib)
		m := plan("v.bin", data, 5*mib)
		o := e.open(key, secret, m)
		s := o.Session
		c0 := data[:5*mib]
		// Header disagrees with the manifest: refused before reading.
		if st, code := putChunk(t, s, s.Token, 0, hexsum([]byte("x")), c0); st != 400 || code != server.EChecksumMismatch {
			t.Fatalf("wrong header: %d %s", st, code)
		}
		// Corrupted body: refused while streaming, nothing kept.
		bad := bytes.Clone(c0)
		bad[12345] ^= 1
		if st, code := putChunk(t, s, s.Token, 0, m.Chunks[0].SHA256, bad); st != 400 || code != server.EChecksumMismatch {
			t.Fatalf("corrupt body: %d %s", st, code)
		}
		st := e.jsonCall("GET", "/api/jetty/sessions/"+s.ID, key, secret, nil)
		if !strings.Contains(st.raw, `"held":[]`) {
			t.Fatalf("corrupt chunk held: %s", st.raw)
		}
		// Wrong size, bad index.
		if st, _ := putChunk(t, s, s.Token, 0, m.Chunks[0].SHA256, c0[:100]); st != 400 {
			t.Fatalf("short chunk: %d", st)
		}
		if st, _ := putChunk(t, s, s.Token, 7, m.Chunks[0].SHA256, c0); st != 400 {
			t.Fatalf("index beyond manifest: %d", st)
		}
		// Tokens: missing, forged, another session's.
		if st, code := putChunk(t, s, "", 0, m.Chunks[0].SHA256, c0); st != 401 || code != server.ETokenInvalid {
			t.Fatalf("no token: %d %s", st, code)
		}
		if st, code := putChunk(t, s, changeLast(s.Token), 0, m.Chunks[0].SHA256, c0); st != 401 || code != server.ETokenInvalid {
			t.Fatalf("forged token: %d %s", st, code)
		}
		other := e.open(key, secret, plan("o.bin", randBytes(3, 1000), 1000))
		if st, code := putChunk(t, s, other.Session.Token, 0, m.Chunks[0].SHA256, c0); st != 401 || code != server.ETokenInvalid {
			t.Fatalf("other session's token: %d %s", st, code)
		}
		// The retry with the right bytes succeeds.
		if st, code := putChunk(t, s, s.Token, 0, m.Chunks[0].SHA256, c0); st != 200 {
			t.Fatalf("good chunk: %d %s", st, code)
		}
		// Bad manifests.
		mm := plan("x", data, 5*mib)
		mm.Chunks[1].Offset++
		if r := e.open(key, secret, mm); r.status != 400 || r.Code != server.EInvalidManifest {
			t.Fatalf("bad manifest: %d %s", r.status, r.raw)
		}
		mm = plan("x", data, 1*mib) // chunks under 5 MiB
		if r := e.open(key, secret, mm); r.status != 400 || r.Code != server.EInvalidManifest {
			t.Fatalf("small chunks: %d %s", r.status, r.raw)
		}
	})
}

// TestTokenExpiry: an expired token is refused with token_expired and a
// fresh one from /token works.
func TestTokenExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newClockEnv(t, clock)
	key, secret := e.provision("usr_tok", "pro")
	data := randBytes(4, 1000)
	m := plan("t.bin", data, 1000)
	o := e.open(key, secret, m)
	mu.Lock()
	now = now.Add(16 * time.Minute)
	mu.Unlock()
	if st, code := putChunk(t, o.Session, o.Session.Token, 0, m.Chunks[0].SHA256, data); st != 401 || code != server.ETokenExpired {
		t.Fatalf("expired token: %d %s", st, code)
	}
	var tok struct {
		Token string `json:"upload_token"`
	}
	r := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/token", key, secret, nil)
	json.Unmarshal([]byte(r.raw), &tok)
	if r.status != 200 || tok.Token == "" {
		t.Fatalf("refresh: %d %s", r.status, r.raw)
	}
	if st, code := putChunk(t, o.Session, tok.Token, 0, m.Chunks[0].SHA256, data); st != 200 {
		t.Fatalf("fresh token: %d %s", st, code)
	}
	// Past the session's expiry: gone.
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	if r := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil); r.status != 410 {
		t.Fatalf("complete after expiry: %d %s", r.status, r.raw)
	}
}

// TestSessionLimits: quota and size refusals at open; a tier without
// JettySpeed gets one stream, enforced.
func TestSessionLimits(t *testing.T) {
	var slots *slotEvents
	watch := func(cfg *api.Config) { slots = newSlotEvents(); cfg.Streams = slots.watch(memory.NewSemaphore()) }
	eachStorageWith(t, watch, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_slim", "starter") // 50 MiB files, 2 GiB
		big := tmanifest{Version: 1, Name: "big", Size: 60 * mib, ChunkSize: 60 * mib, SHA256: strings.Repeat("a", 64),
			Chunks: []tchunk{{Index: 0, Size: 60 * mib, SHA256: strings.Repeat("a", 64)}}}
		if r := e.open(key, secret, big); r.status != 413 || r.Code != server.ETooLarge {
			t.Fatalf("over max size: %d %s", r.status, r.raw)
		}
		data := randBytes(5, 10*mib)
		m := plan("s.bin", data, 5*mib)
		o := e.open(key, secret, m)
		if o.status != 201 || o.Session.Strategy.Workers != 1 || o.Session.Strategy.MaxWorkers != 1 {
			t.Fatalf("starter open: %d %s", o.status, o.raw)
		}
		// Hold one chunk upload open, then try a second: 429.
		pr, pw := io.Pipe()
		u := strings.Replace(o.Session.ChunkURL, "{index}", "0", 1)
		req, _ := http.NewRequest("PUT", u, pr)
		req.ContentLength = 5 * mib
		req.Header.Set("Authorization", "Bearer "+o.Session.Token)
		req.Header.Set("X-Chunk-SHA256", m.Chunks[0].SHA256)
		done := make(chan int)
		go func() {
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- 0
				return
			}
			res.Body.Close()
			done <- res.StatusCode
		}()
		pw.Write(data[:1*mib])
		if !slots.next(t) { // the first chunk holds the session's one slot
			t.Fatal("the first chunk was refused a slot")
		}
		st, code := putChunk(t, o.Session, o.Session.Token, 1, m.Chunks[1].SHA256, data[5*mib:])
		if st != 429 || code != server.ETooManyStreams {
			t.Fatalf("second stream on a one-stream tier: %d %s", st, code)
		}
		pw.Write(data[1*mib : 5*mib])
		pw.Close()
		if st := <-done; st != 200 {
			t.Fatalf("first stream: %d", st)
		}
		if st, code := putChunk(t, o.Session, o.Session.Token, 1, m.Chunks[1].SHA256, data[5*mib:]); st != 200 {
			t.Fatalf("stream after the first finished: %d %s", st, code)
		}
		// Over quota: fill it, then open.
		a := e.account("usr_slim")
		if _, err := e.store.Reserve(context.Background(), a.ID, a.StorageQuotaBytes()-m.Size-10, time.Hour); err != nil {
			t.Fatal(err)
		}
		if r := e.open(key, secret, plan("q.bin", randBytes(6, 20), 20)); r.status != 413 || r.Code != server.EQuotaExceeded {
			t.Fatalf("over quota: %d %s", r.status, r.raw)
		}
	})
}

// TestAbortAndExpiry: abort removes parts and the reservation; an
// abandoned session leaves nothing after the jobs run past its expiry.
func TestAbortAndExpiry(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		key, secret := e.provision("usr_abort", "pro")
		data := randBytes(7, 11*mib)
		m := plan("a.bin", data, 5*mib)
		o := e.open(key, secret, m)
		sendAll(t, o.Session, m, data, []int{0, 1})
		if r := e.jsonCall("DELETE", "/api/jetty/sessions/"+o.Session.ID, key, secret, nil); r.status != 200 {
			t.Fatalf("abort: %d %s", r.status, r.raw)
		}
		if a := e.account("usr_abort"); a.StorageReservedBytes != 0 {
			t.Fatalf("reserved %d after abort", a.StorageReservedBytes)
		}
		if ups, _ := e.blobs.ListUploads(ctx, "users/", time.Time{}); len(ups) != 0 {
			t.Fatalf("uploads after abort: %+v", ups)
		}
		if st, _ := putChunk(t, o.Session, o.Session.Token, 2, m.Chunks[2].SHA256, data[10*mib:]); st != 410 {
			t.Fatalf("chunk after abort: %d", st)
		}
		// Abandoned: parts sent, then nothing.
		data2 := randBytes(8, 11*mib)
		m2 := plan("b.bin", data2, 5*mib)
		o2 := e.open(key, secret, m2)
		sendAll(t, o2.Session, m2, data2, []int{0, 2})
		r := &jobs.Runner{Store: e.store, Blobs: e.blobs, Holder: "t", Now: func() time.Time { return time.Now().Add(25 * time.Hour) }}
		if _, err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if a := e.account("usr_abort"); a.StorageReservedBytes != 0 || a.StorageUsedBytes != 0 {
			t.Fatalf("after expiry cleanup: reserved %d used %d", a.StorageReservedBytes, a.StorageUsedBytes)
		}
		if ups, _ := e.blobs.ListUploads(ctx, "users/", time.Time{}); len(ups) != 0 {
			t.Fatalf("parts left after expiry cleanup: %+v", ups)
		}
		if objs := e.objects(""); len(objs) != 0 {
			t.Fatalf("objects left: %+v", objs)
		}
	})
}

// TestConcurrentSameContent: two uploads of the same content at once are
// stored once.
func TestConcurrentSameContent(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_twin", "pro")
		data := randBytes(9, 7*mib)
		m := plan("twin.bin", data, 5*mib)
		var wg sync.WaitGroup
		results := make([]openResult, 2)
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				o := e.open(key, secret, m)
				if o.Session == nil {
					results[i] = o
					return
				}
				// Both uploads share the session. Once one completes it,
				// the other's chunks get 409 conflict, which the protocol
				// defines as "stop sending and complete" (the engine does
				// exactly that); complete then answers with the asset.
				sendAllUntilConflict(t, o.Session, m, data, o.Session.Missing)
				results[i] = e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
			}(i)
		}
		wg.Wait()
		for _, r := range results {
			if r.status != 200 || r.Asset["hash"] != m.SHA256 {
				t.Fatalf("upload: %d %s", r.status, r.raw)
			}
		}
		if objs := e.objects("users/usr_twin/"); len(objs) != 1 {
			t.Fatalf("%d objects for one content", len(objs))
		}
		if a := e.account("usr_twin"); a.StorageUsedBytes != m.Size || a.StorageReservedBytes != 0 {
			t.Fatalf("used %d reserved %d", a.StorageUsedBytes, a.StorageReservedBytes)
		}
	})
}

// TestStreamSession: unknown length, chunks as they come, manifest at the end.
func TestStreamSession(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_stream", "pro")
		data := randBytes(10, 12*mib+5)
		m := plan("build.tar", data, 5*mib)
		o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "build.tar", "chunk_size": 5 * mib}})
		if o.status != 201 {
			t.Fatalf("open stream: %d %s", o.status, o.raw)
		}
		sendAll(t, o.Session, m, data, []int{0, 1, 2})
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, map[string]any{"manifest": m})
		if c.status != 200 || c.Asset["hash"] != m.SHA256 || c.Asset["size"] != float64(m.Size) {
			t.Fatalf("complete stream: %d %s", c.status, c.raw)
		}
		if a := e.account("usr_stream"); a.StorageUsedBytes != m.Size || a.StorageReservedBytes != 0 {
			t.Fatalf("used %d reserved %d", a.StorageUsedBytes, a.StorageReservedBytes)
		}
		code, _, got, _ := e.download(key, secret, c.Asset["id"].(string), "")
		if code != 200 || got != m.SHA256 {
			t.Fatalf("download: %d %s", code, got)
		}
		// An empty file through a session.
		em := plan("empty", nil, 5*mib)
		eo := e.open(key, secret, em)
		if eo.status != 201 || len(eo.Session.Missing) != 0 {
			t.Fatalf("open empty: %d %s", eo.status, eo.raw)
		}
		ec := e.jsonCall("POST", "/api/jetty/sessions/"+eo.Session.ID+"/complete", key, secret, nil)
		if ec.status != 200 || ec.Asset["size"] != 0.0 {
			t.Fatalf("complete empty: %d %s", ec.status, ec.raw)
		}
	})
}
