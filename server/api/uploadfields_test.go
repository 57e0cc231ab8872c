package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 19, items 1, 2 and the pipeline id of item 8: multipart fields
// wherever they stand, lookups by cache key and pipeline, the pipeline id
// on every upload path.

const (
	pipeA = "123e4567-e89b-12d3-a456-426614174000"
	pipeB = "9b2f6c1e-0d4a-4f3b-8c7d-5e6f7a8b9c0d"
)

// formPart is one part of a multipart upload: a field, or the file when
// file is set.
type formPart struct {
	name, value string
	file        []byte
	filename    string
}

func field(name, value string) formPart { return formPart{name: name, value: value} }

func filePart(name string, data []byte) formPart {
	return formPart{name: "file", filename: name, file: data}
}

// uploadForm sends a multipart upload of parts, in that order.
func (e *env) uploadForm(key, secret string, headers map[string]string, parts ...formPart) uploadResult {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.file != nil || p.filename != "" {
			w, err := mw.CreateFormFile(p.name, p.filename)
			if err != nil {
				e.t.Fatal(err)
			}
			w.Write(p.file)
			continue
		}
		if err := mw.WriteField(p.name, p.value); err != nil {
			e.t.Fatal(err)
		}
	}
	mw.Close()
	req, _ := http.NewRequest("POST", e.url+"/api/storage/upload", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := uploadResult{status: res.StatusCode, raw: string(raw)}
	json.Unmarshal(raw, &r.body)
	r.asset, _ = r.body["asset"].(map[string]any)
	return r
}

// list answers GET /api/storage/assets with the query.
func (e *env) list(key, secret string, query url.Values) (resp, []map[string]any) {
	e.t.Helper()
	r := e.do("GET", "/api/storage/assets?"+query.Encode(), "", userHeaders(key, secret))
	var out []map[string]any
	if as, ok := r.body["assets"].([]any); ok {
		for _, a := range as {
			out = append(out, a.(map[string]any))
		}
	}
	return r, out
}

// nothingLeft checks that the account holds no object, no asset and no
// reservation: a refused upload left nothing behind.
func (e *env) nothingLeft(t *testing.T, userID, key, secret string) {
	t.Helper()
	if objs := e.objects("users/" + userID + "/"); len(objs) != 0 {
		t.Fatalf("objects left behind: %+v", objs)
	}
	if r, as := e.list(key, secret, nil); r.status != 200 || len(as) != 0 {
		t.Fatalf("assets left behind: %d %s", r.status, r.raw)
	}
	if a := e.account(userID); a.StorageUsedBytes != 0 || a.StorageReservedBytes != 0 {
		t.Fatalf("account after a refused upload: used %d reserved %d", a.StorageUsedBytes, a.StorageReservedBytes)
	}
}

// TestSeedCurlMultipartCacheKey runs seed 002's own curl line ("2. Test
// File Upload": -F file=@test-image.jpg -F cache_key=…, the field after
// the file) with the real curl against a real server: the cache key is
// recorded, and the lookup by it finds the asset.
func TestSeedCurlMultipartCacheKey(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("JETTY_REQUIRE_SERVICES") != "" {
			t.Fatal("curl not installed")
		}
		t.Skip("curl not installed")
	}
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_seed_curl", "pro")
		dir := t.TempDir()
		img := bytes.Repeat([]byte("JPEG"), 3000)
		if err := os.WriteFile(filepath.Join(dir, "test-image.jpg"), img, 0o600); err != nil {
			t.Fatal(err)
		}
		// Seed 002, verbatim but for the address and the credentials.
		cmd := exec.Command(curl, "-sS", "-X", "POST", e.url+"/api/storage/upload",
			"-H", "Authorization: Bearer "+key,
			"-H", "X-API-Secret: "+secret,
			"-F", "file=@test-image.jpg",
			"-F", "cache_key=dalle_image_sunset_beach",
			"-w", "\n%{http_code}")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		text := strings.TrimSpace(string(out))
		cut := strings.LastIndex(text, "\n")
		body, status := strings.TrimSpace(text[:max(cut, 0)]), text[cut+1:]
		if status != "201" {
			t.Fatalf("curl upload: %s %s", status, body)
		}
		var up struct {
			Success bool           `json:"success"`
			Asset   map[string]any `json:"asset"`
		}
		if err := json.Unmarshal([]byte(body), &up); err != nil {
			t.Fatal(err)
		}
		if !up.Success || up.Asset["cache_key"] != "dalle_image_sunset_beach" || up.Asset["filename"] != "test-image.jpg" || up.Asset["size"] != float64(len(img)) {
			t.Fatalf("curl upload answered %s; want the cache key recorded", body)
		}
		r, as := e.list(key, secret, url.Values{"cache_key": {"dalle_image_sunset_beach"}})
		if r.status != 200 || len(as) != 1 || as[0]["id"] != up.Asset["id"] {
			t.Fatalf("lookup by cache key: %d %s", r.status, r.raw)
		}
	})
}

// TestUploadFieldsAfterFile: every field is read wherever it stands
// relative to the file part, and a field overrides its header.
func TestUploadFieldsAfterFile(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_fields", "pro")
		// Past one S3 part, so the object is well under way when the
		// fields arrive.
		big := randBytes(7, 6*mib+3)
		cases := []struct {
			name    string
			headers map[string]string
			parts   []formPart
			check   func(a map[string]any) bool
		}{
			{"cache_key after", nil, []formPart{filePart("a.bin", []byte("after")), field("cache_key", "k-after")},
				func(a map[string]any) bool { return a["cache_key"] == "k-after" }},
			{"ttl after", nil, []formPart{filePart("b.bin", []byte("ttl after")), field("ttl", "3600")},
				func(a map[string]any) bool { return expiresIn(a, time.Hour) }},
			{"agentcache_pipeline_id after", nil, []formPart{filePart("c.bin", []byte("pipe after")), field("agentcache_pipeline_id", strings.ToUpper(pipeA))},
				func(a map[string]any) bool { return a["agentcache_pipeline_id"] == pipeA }},
			{"pipeline_id after", nil, []formPart{filePart("d.bin", []byte("alias after")), field("pipeline_id", pipeB)},
				func(a map[string]any) bool { return a["agentcache_pipeline_id"] == pipeB }},
			{"all after, big file", nil, []formPart{filePart("e.bin", big), field("ttl", "60"), field("pipeline_id", pipeA), field("cache_key", "k-big")},
				func(a map[string]any) bool {
					return a["cache_key"] == "k-big" && a["agentcache_pipeline_id"] == pipeA && expiresIn(a, time.Minute) && a["size"] == float64(len(big)) && a["hash"] == hexsum(big)
				}},
			{"split around the file", nil, []formPart{field("cache_key", "k-split"), filePart("f.bin", []byte("split")), field("agentcache_pipeline_id", pipeB)},
				func(a map[string]any) bool {
					return a["cache_key"] == "k-split" && a["agentcache_pipeline_id"] == pipeB
				}},
			{"fields override headers", map[string]string{"X-Cache-Key": "k-header", "X-AgentCache-Pipeline-Id": pipeA, "X-TTL": "60"},
				[]formPart{filePart("g.bin", []byte("override")), field("cache_key", "k-field"), field("agentcache_pipeline_id", pipeB)},
				func(a map[string]any) bool {
					return a["cache_key"] == "k-field" && a["agentcache_pipeline_id"] == pipeB && expiresIn(a, time.Minute)
				}},
			{"headers alone on a form", map[string]string{"X-Cache-Key": "k-h", "X-AgentCache-Pipeline-Id": pipeA},
				[]formPart{filePart("h.bin", []byte("headers"))},
				func(a map[string]any) bool { return a["cache_key"] == "k-h" && a["agentcache_pipeline_id"] == pipeA }},
		}
		for _, tc := range cases {
			r := e.uploadForm(key, secret, tc.headers, tc.parts...)
			if r.status != 201 || !tc.check(r.asset) {
				t.Fatalf("%s: %d %s", tc.name, r.status, r.raw)
			}
			// What was answered is what was recorded.
			g := e.do("GET", "/api/storage/assets/"+r.asset["id"].(string), "", userHeaders(key, secret))
			if g.status != 200 || !tc.check(g.body["asset"].(map[string]any)) {
				t.Fatalf("%s: recorded %d %s", tc.name, g.status, g.raw)
			}
		}
		// The big file's bytes came through whole.
		_, as := e.list(key, secret, url.Values{"cache_key": {"k-big"}})
		if len(as) != 1 {
			t.Fatalf("lookup k-big: %v", as)
		}
		if st, _, sum, n := e.download(key, secret, as[0]["id"].(string), ""); st != 200 || sum != hexsum(big) || n != int64(len(big)) {
			t.Fatalf("download big: %d %d %s", st, n, sum)
		}
		// The same content with other fields after the file: a new asset
		// with its own fields, deduplicated.
		r := e.uploadForm(key, secret, nil, filePart("e2.bin", big), field("cache_key", "k-big-2"))
		if r.status != 201 || r.body["deduplicated"] != true || r.asset["cache_key"] != "k-big-2" || r.asset["agentcache_pipeline_id"] != nil {
			t.Fatalf("dedup with fields after: %d %s", r.status, r.raw)
		}
		if a := e.account("usr_fields"); a.StorageReservedBytes != 0 {
			t.Fatalf("reservation left: %d", a.StorageReservedBytes)
		}
	})
}

func expiresIn(a map[string]any, d time.Duration) bool {
	s, _ := a["expires_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return false
	}
	left := time.Until(at)
	return left > d-5*time.Minute && left <= d+time.Second
}

// TestUploadFormRefusals: an unknown field, a field sent twice and a bad
// value are refused with 400 naming the field, before or after the file;
// nothing is left behind (no object, no asset, no reservation).
func TestUploadFormRefusals(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		const user = "usr_refusals"
		key, secret := e.provision(user, "pro")
		big := randBytes(9, 6*mib+1)
		small := []byte("small file")
		cases := []struct {
			name  string
			parts []formPart
			want  string // in the message
		}{
			{"unknown before", []formPart{field("cache_kye", "x"), filePart("a.bin", small)}, `"cache_kye"`},
			{"unknown after", []formPart{filePart("a.bin", big), field("cachekey", "x")}, `"cachekey"`},
			{"unknown after, small", []formPart{filePart("a.bin", small), field("filename", "x")}, `"filename"`},
			{"duplicate before", []formPart{field("cache_key", "a"), field("cache_key", "b"), filePart("a.bin", small)}, `"cache_key" appears twice`},
			{"duplicate around", []formPart{field("cache_key", "a"), filePart("a.bin", big), field("cache_key", "b")}, `"cache_key" appears twice`},
			{"duplicate after", []formPart{filePart("a.bin", big), field("ttl", "60"), field("ttl", "60")}, `"ttl" appears twice`},
			{"pipeline under both names", []formPart{filePart("a.bin", big), field("pipeline_id", pipeA), field("agentcache_pipeline_id", pipeA)}, `"agentcache_pipeline_id" appears twice`},
			{"second file", []formPart{filePart("a.bin", big), filePart("b.bin", small)}, `"file" appears twice`},
			{"cache_key too long after", []formPart{filePart("a.bin", big), field("cache_key", strings.Repeat("k", 1025))}, "cache_key"},
			{"field far too long after", []formPart{filePart("a.bin", small), field("cache_key", strings.Repeat("k", 64<<10))}, "cache_key"},
			{"cache_key control after", []formPart{filePart("a.bin", big), field("cache_key", "a\nb")}, "cache_key"},
			{"bad ttl after", []formPart{filePart("a.bin", big), field("ttl", "soon")}, "ttl"},
			{"zero ttl after", []formPart{filePart("a.bin", small), field("ttl", "0")}, "ttl"},
			{"bad pipeline after", []formPart{filePart("a.bin", big), field("agentcache_pipeline_id", "pipeline-7")}, "agentcache_pipeline_id"},
			{"bad pipeline alias before", []formPart{field("pipeline_id", "{"+pipeA+"}"), filePart("a.bin", small)}, "pipeline_id"},
		}
		for _, tc := range cases {
			r := e.uploadForm(key, secret, nil, tc.parts...)
			if r.status != 400 || r.body["code"] != "invalid_request" || !strings.Contains(r.body["error"].(string), tc.want) {
				t.Fatalf("%s: %d %s; want 400 invalid_request naming %s", tc.name, r.status, r.raw, tc.want)
			}
			e.nothingLeft(t, user, key, secret)
		}
		// A bad header is refused as well.
		r := e.uploadForm(key, secret, map[string]string{"X-AgentCache-Pipeline-Id": "nope"}, filePart("a.bin", small))
		if r.status != 400 || !strings.Contains(r.raw, "X-AgentCache-Pipeline-Id") {
			t.Fatalf("bad pipeline header: %d %s", r.status, r.raw)
		}
		e.nothingLeft(t, user, key, secret)
		// And the account still takes a good upload.
		if r := e.uploadForm(key, secret, nil, filePart("ok.bin", small), field("cache_key", "fine")); r.status != 201 {
			t.Fatalf("upload after refusals: %d %s", r.status, r.raw)
		}
	})
}

// TestAssetLookupByCacheKey: GET /api/storage/assets?cache_key= is an
// exact, account-scoped lookup, paginated like the list; the pipeline
// filter works the same way, and bad queries are refused.
func TestAssetLookupByCacheKey(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		ka, sa := e.provision("usr_lookup_a", "pro")
		kb, sb := e.provision("usr_lookup_b", "pro")
		const k = "dalle_image_sunset_beach"
		var mine []string
		for i, c := range []struct{ key, pipe string }{{k, pipeA}, {"other", pipeA}, {k, ""}, {strings.ToUpper(k), pipeA}, {k, pipeB}} {
			h := map[string]string{"X-Cache-Key": c.key}
			if c.pipe != "" {
				h["X-AgentCache-Pipeline-Id"] = c.pipe
			}
			r := e.upload(ka, sa, fmt.Sprintf("f%d.txt", i), strings.NewReader(fmt.Sprintf("content %d", i)), -1, h)
			if r.status != 201 {
				t.Fatalf("upload %d: %d %s", i, r.status, r.raw)
			}
			if c.key == k {
				mine = append([]string{r.asset["id"].(string)}, mine...) // newest first
			}
		}
		theirs := e.upload(kb, sb, "theirs.txt", strings.NewReader("content 0"), -1, map[string]string{"X-Cache-Key": k, "X-AgentCache-Pipeline-Id": pipeA})
		if theirs.status != 201 {
			t.Fatalf("upload b: %d %s", theirs.status, theirs.raw)
		}
		ids := func(as []map[string]any) []string {
			var out []string
			for _, a := range as {
				out = append(out, a["id"].(string))
			}
			return out
		}
		r, as := e.list(ka, sa, url.Values{"cache_key": {k}})
		if r.status != 200 || fmt.Sprint(ids(as)) != fmt.Sprint(mine) {
			t.Fatalf("lookup: %d %s; want %v", r.status, r.raw, mine)
		}
		// Page by page.
		var paged []string
		q := url.Values{"cache_key": {k}, "limit": {"1"}}
		for range 10 {
			r, as := e.list(ka, sa, q)
			if r.status != 200 || len(as) > 1 {
				t.Fatalf("page: %d %s", r.status, r.raw)
			}
			paged = append(paged, ids(as)...)
			next, _ := r.body["next_cursor"].(string)
			if next == "" {
				break
			}
			q.Set("cursor", next)
		}
		if fmt.Sprint(paged) != fmt.Sprint(mine) {
			t.Fatalf("paged lookup %v, want %v", paged, mine)
		}
		// Account b sees only its own.
		if r, as := e.list(kb, sb, url.Values{"cache_key": {k}}); r.status != 200 || len(as) != 1 || as[0]["id"] != theirs.asset["id"] {
			t.Fatalf("lookup of b: %d %s", r.status, r.raw)
		}
		// Nothing matches: an empty list, not an error.
		if r, as := e.list(ka, sa, url.Values{"cache_key": {"nothing"}}); r.status != 200 || len(as) != 0 || !strings.Contains(r.raw, `"assets":[]`) {
			t.Fatalf("lookup of nothing: %d %s", r.status, r.raw)
		}
		// The pipeline filter, alone and with the cache key.
		if r, as := e.list(ka, sa, url.Values{"pipeline_id": {pipeA}}); r.status != 200 || len(as) != 3 {
			t.Fatalf("pipeline lookup: %d %s", r.status, r.raw)
		}
		if r, as := e.list(ka, sa, url.Values{"pipeline_id": {strings.ToUpper(pipeA)}, "cache_key": {k}}); r.status != 200 || len(as) != 1 || as[0]["agentcache_pipeline_id"] != pipeA || as[0]["cache_key"] != k {
			t.Fatalf("pipeline and cache key lookup: %d %s", r.status, r.raw)
		}
		// Bad queries.
		for _, q := range []string{"cache_key=", "pipeline_id=", "pipeline_id=pipeline-7", "cache_key=a&cache_key=b", "cachekey=x", "cache_key=" + strings.Repeat("k", 1025), "cache_key=a%0Ab"} {
			r := e.do("GET", "/api/storage/assets?"+q, "", userHeaders(ka, sa))
			wantError(t, r, 400, "invalid_request")
		}
	})
}

// TestPipelineIDEverywhere: the pipeline id is settable on every upload
// path: the raw upload's header, a session opened with a manifest (and
// one answered by deduplication), a stream session and a sized session;
// a malformed one is refused before anything is reserved.
func TestPipelineIDEverywhere(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		const user = "usr_pipes"
		key, secret := e.provision(user, "pro")
		// Raw upload with the header.
		r := e.upload(key, secret, "raw.txt", strings.NewReader("raw body"), 8, map[string]string{"X-AgentCache-Pipeline-Id": strings.ToUpper(pipeA)})
		if r.status != 201 || r.asset["agentcache_pipeline_id"] != pipeA {
			t.Fatalf("raw upload: %d %s", r.status, r.raw)
		}
		if r := e.upload(key, secret, "raw.txt", strings.NewReader("raw body"), 8, map[string]string{"X-AgentCache-Pipeline-Id": "x"}); r.status != 400 {
			t.Fatalf("raw upload, bad pipeline: %d %s", r.status, r.raw)
		}
		// A session with a manifest.
		data := randBytes(3, 11*mib+7)
		m := plan("piped.bin", data, 5*mib)
		bad := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"manifest": m, "agentcache_pipeline_id": "pipeline-7"})
		if bad.status != 400 || bad.Code != "invalid_request" || !strings.Contains(bad.raw, "agentcache_pipeline_id") {
			t.Fatalf("open with a bad pipeline: %d %s", bad.status, bad.raw)
		}
		if a := e.account(user); a.StorageReservedBytes != 0 {
			t.Fatalf("a refused open reserved %d", a.StorageReservedBytes)
		}
		o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"manifest": m, "agentcache_pipeline_id": pipeB, "cache_key": "sess"})
		if o.status != 201 {
			t.Fatalf("open: %d %s", o.status, o.raw)
		}
		sendAll(t, o.Session, m, data, o.Session.Missing)
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if c.status != 200 || c.Asset["agentcache_pipeline_id"] != pipeB || c.Asset["cache_key"] != "sess" {
			t.Fatalf("complete: %d %s", c.status, c.raw)
		}
		// The same content again: answered at open, with this open's id.
		d := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"manifest": m, "agentcache_pipeline_id": pipeA})
		if d.status != 200 || !d.Deduplicated || d.Asset["agentcache_pipeline_id"] != pipeA {
			t.Fatalf("dedup open: %d %s", d.status, d.raw)
		}
		// An open without the field (an older client) records none.
		d = e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"manifest": m})
		if d.status != 200 || !d.Deduplicated || d.Asset["agentcache_pipeline_id"] != nil {
			t.Fatalf("dedup open without a pipeline: %d %s", d.status, d.raw)
		}
		// A stream session.
		sdata := randBytes(4, 6*mib)
		sm := plan("stream.tar", sdata, 5*mib)
		so := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "stream.tar", "chunk_size": 5 * mib}, "agentcache_pipeline_id": pipeA})
		if so.status != 201 {
			t.Fatalf("open stream: %d %s", so.status, so.raw)
		}
		sendAll(t, so.Session, sm, sdata, []int{0, 1})
		sc := e.jsonCall("POST", "/api/jetty/sessions/"+so.Session.ID+"/complete", key, secret, map[string]any{"manifest": sm})
		if sc.status != 200 || sc.Asset["agentcache_pipeline_id"] != pipeA {
			t.Fatalf("complete stream: %d %s", sc.status, sc.raw)
		}
		// A sized session (the pipelined path).
		zdata := randBytes(5, 5*mib+9)
		zm := plan("sized.bin", zdata, 5*mib)
		zo := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "sized.bin", "chunk_size": 5 * mib, "size": len(zdata)}, "agentcache_pipeline_id": pipeB})
		if zo.status != 201 {
			t.Fatalf("open sized: %d %s", zo.status, zo.raw)
		}
		sendAll(t, zo.Session, zm, zdata, []int{0, 1})
		zc := e.jsonCall("POST", "/api/jetty/sessions/"+zo.Session.ID+"/complete", key, secret, map[string]any{"manifest": zm})
		if zc.status != 200 || zc.Asset["agentcache_pipeline_id"] != pipeB {
			t.Fatalf("complete sized: %d %s", zc.status, zc.raw)
		}
		badStream := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "x", "chunk_size": 5 * mib}, "agentcache_pipeline_id": "nope"})
		if badStream.status != 400 || badStream.Code != "invalid_request" {
			t.Fatalf("stream with a bad pipeline: %d %s", badStream.status, badStream.raw)
		}
		if a := e.account(user); a.StorageReservedBytes != 0 {
			t.Fatalf("reserved %d after everything", a.StorageReservedBytes)
		}
		// Every path's assets, found by pipeline.
		if r, as := e.list(key, secret, url.Values{"pipeline_id": {pipeA}}); r.status != 200 || len(as) != 3 {
			t.Fatalf("pipeline A: %d %s", r.status, r.raw)
		}
		if r, as := e.list(key, secret, url.Values{"pipeline_id": {pipeB}}); r.status != 200 || len(as) != 2 {
			t.Fatalf("pipeline B: %d %s", r.status, r.raw)
		}
	})
}
