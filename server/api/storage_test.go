package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
)

type uploadResult struct {
	status int
	body   map[string]any
	raw    string
	asset  map[string]any
}

// upload sends a raw upload (seed 000 style) of body with the given
// length (-1 for chunked).
func (e *env) upload(key, secret, filename string, body io.Reader, length int64, extra map[string]string) uploadResult {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.url+"/api/storage/upload", body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	req.Header.Set("X-Filename", filename)
	req.Header.Set("Content-Type", "application/octet-stream")
	for k, v := range extra {
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

// download fetches an asset, hashing it, and returns status, headers,
// hash and length.
func (e *env) download(key, secret, id string, rangeHeader string) (int, http.Header, string, int64) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/api/storage/assets/"+id+"/download", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	h := sha256.New()
	n, _ := io.Copy(h, res.Body)
	return res.StatusCode, res.Header, hex.EncodeToString(h.Sum(nil)), n
}

func (e *env) account(userID string) server.Account {
	e.t.Helper()
	a, err := e.store.AccountByUserID(context.Background(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) objects(prefix string) []blob.Info {
	e.t.Helper()
	infos, err := e.blobs.List(context.Background(), prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	return infos
}

// TestUploadSeedFlow: seed 000's curl upload returns its asset shape and
// the bytes come back identical; seed 002's multipart form with cache_key
// works too.
func TestUploadSeedFlow(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_test_123", "pro")
		content := "Hello JettyThunder!\n"
		r := e.upload(key, secret, "test.txt", strings.NewReader(content), int64(len(content)), map[string]string{"Content-Type": "text/plain"})
		if r.status != 201 || r.body["success"] != true {
			t.Fatalf("upload: %d %s", r.status, r.raw)
		}
		sum := sha256.Sum256([]byte(content))
		if r.asset["size"] != 20.0 || r.asset["hash"] != hex.EncodeToString(sum[:]) || r.asset["id"] == "" {
			t.Fatalf("asset shape: %s", r.raw)
		}
		if !regexp.MustCompile(`^users/usr_test_123/\d{13}-[a-z2-7]{12}\.txt$`).MatchString(r.asset["key"].(string)) {
			t.Fatalf("key %q", r.asset["key"])
		}
		if u := r.asset["url"].(string); !strings.HasPrefix(u, e.url+"/api/storage/assets/") {
			t.Fatalf("url %q does not point at this server", u)
		}
		id := r.asset["id"].(string)
		st, h, got, _ := e.download(key, secret, id, "")
		if st != 200 || got != hex.EncodeToString(sum[:]) || h.Get("Content-Type") != "text/plain" || h.Get("X-Content-SHA256") != got {
			t.Fatalf("download: %d %v %s", st, h, got)
		}
		if a := e.account("usr_test_123"); a.StorageUsedBytes != 20 || a.StorageReservedBytes != 0 {
			t.Fatalf("usage after upload: used %d reserved %d", a.StorageUsedBytes, a.StorageReservedBytes)
		}

		// Seed 002: multipart with cache_key.
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("cache_key", "dalle_image_sunset_beach")
		fw, _ := mw.CreateFormFile("file", "test-image.jpg")
		fw.Write([]byte("JPEGDATA"))
		mw.Close()
		req, _ := http.NewRequest("POST", e.url+"/api/storage/upload", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-API-Secret", secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var up map[string]any
		json.NewDecoder(res.Body).Decode(&up)
		res.Body.Close()
		asset := up["asset"].(map[string]any)
		if res.StatusCode != 201 || asset["cache_key"] != "dalle_image_sunset_beach" || asset["filename"] != "test-image.jpg" || asset["size"] != 8.0 || !strings.HasSuffix(asset["key"].(string), ".jpg") {
			t.Fatalf("multipart upload: %d %v", res.StatusCode, up)
		}

		// Listing shows both, newest first; metadata by id.
		l := e.do("GET", "/api/storage/assets", "", userHeaders(key, secret))
		assets := l.body["assets"].([]any)
		if l.status != 200 || len(assets) != 2 || assets[0].(map[string]any)["filename"] != "test-image.jpg" {
			t.Fatalf("list: %d %s", l.status, l.raw)
		}
		g := e.do("GET", "/api/storage/assets/"+id, "", userHeaders(key, secret))
		if g.status != 200 || g.body["asset"].(map[string]any)["uploaded_via"] != "api" {
			t.Fatalf("get: %d %s", g.status, g.raw)
		}
	})
}

// TestUploadSizesRoundTrip: byte-identical round trips at the sizes that
// matter for part boundaries.
func TestUploadSizesRoundTrip(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_sizes", "enterprise")
		for i, n := range []int64{0, 1, 5<<20 - 1, 5<<20 + 1, 8<<20 + 3, 17 << 20} {
			for _, length := range []int64{n, -1} { // declared, then chunked
				r := e.upload(key, secret, fmt.Sprintf("f%d.bin", n), testenv.NewRandReader(byte(i), n), length, nil)
				if r.status != 201 {
					t.Fatalf("upload %d bytes (length %d): %d %s", n, length, r.status, r.raw)
				}
				want := testenv.RandHash(byte(i), n)
				if r.asset["hash"] != want || r.asset["size"] != float64(n) {
					t.Fatalf("upload %d: asset %v, want hash %s", n, r.asset, want)
				}
				st, _, got, size := e.download(key, secret, r.asset["id"].(string), "")
				if st != 200 || got != want || size != n {
					t.Fatalf("download %d: status %d size %d hash %s", n, st, size, got)
				}
			}
		}
	})
}

// TestUploadOneGiB: 1 GiB streams through and back byte-identical.
func TestUploadOneGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB round trip skipped in -short mode")
	}
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_big", "enterprise")
		const n = 1 << 30
		r := e.upload(key, secret, "big.bin", testenv.NewRandReader(7, n), n, nil)
		if r.status != 201 || r.asset["hash"] != testenv.RandHash(7, n) {
			t.Fatalf("upload: %d %s", r.status, r.raw)
		}
		st, _, got, size := e.download(key, secret, r.asset["id"].(string), "")
		if st != 200 || size != n || got != r.asset["hash"] {
			t.Fatalf("download: %d %d %s", st, size, got)
		}
	})
}

func TestDownloadRanges(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_range", "pro")
		data := make([]byte, 1000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		r := e.upload(key, secret, "r.bin", bytes.NewReader(data), int64(len(data)), nil)
		id := r.asset["id"].(string)
		hash := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
		for _, c := range []struct {
			h          string
			status     int
			start, end int
		}{
			{"bytes=0-99", 206, 0, 100},
			{"bytes=500-", 206, 500, 1000},
			{"bytes=-10", 206, 990, 1000},
			{"bytes=990-5000", 206, 990, 1000},
			{"bytes=0-0,5-6", 200, 0, 1000},
		} {
			st, h, got, n := e.download(key, secret, id, c.h)
			if st != c.status || got != hash(data[c.start:c.end]) || n != int64(c.end-c.start) {
				t.Errorf("%s: status %d len %d", c.h, st, n)
			}
			if st == 206 && h.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/1000", c.start, c.end-1) {
				t.Errorf("%s: Content-Range %q", c.h, h.Get("Content-Range"))
			}
		}
		for _, bad := range []string{"bytes=1000-", "bytes=5-2", "items=0-1", "bytes=abc"} {
			st, h, _, _ := e.download(key, secret, id, bad)
			if st != 416 || h.Get("Content-Range") != "bytes */1000" {
				t.Errorf("%s: status %d Content-Range %q, want 416", bad, st, h.Get("Content-Range"))
			}
		}
		// Hit count and bandwidth counted the bytes sent.
		a, err := e.store.AssetByID(context.Background(), e.account("usr_range").ID, id)
		if err != nil || a.HitCount != 5 || a.LastAccessed.IsZero() {
			t.Fatalf("asset after downloads: %+v %v", a, err)
		}
		used, _ := e.store.BandwidthUsed(context.Background(), a.AccountID, time.Now())
		if used != 100+500+10+10+1000 {
			t.Fatalf("bandwidth used %d", used)
		}
	})
}

// TestHostileFilenames: traversal, control characters, huge and invalid
// UTF-8 names are stored as clean metadata inside the account prefix.
func TestHostileFilenames(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_names", "pro")
		names := map[string]string{
			"../../etc/passwd":        "etc/passwd", // folders kept, ".." dropped
			"a%00b.txt":               "ab.txt",     // NUL, percent-encoded in the header
			"line%0D%0Abreak.txt":     "linebreak.txt",
			strings.Repeat("n", 2048): strings.Repeat("n", server.MaxFilenameLen),
			"bad%FF%FEname.txt":       "bad\uFFFDname.txt",
		}
		for sent, want := range names {
			r := e.upload(key, secret, sent, strings.NewReader("x"), 1, nil)
			if r.status != 201 {
				t.Fatalf("upload %q: %d %s", sent, r.status, r.raw)
			}
			if r.asset["filename"] != want {
				t.Errorf("filename %q stored as %q, want %q", sent, r.asset["filename"], want)
			}
			if k := r.asset["key"].(string); !strings.HasPrefix(k, "users/usr_names/") || strings.Contains(k, "..") || !blob.ValidKey(k) {
				t.Errorf("key %q escapes the prefix", k)
			}
		}
		for _, o := range e.objects("") {
			if !strings.HasPrefix(o.Key, "users/usr_names/") {
				t.Errorf("object %q outside the account prefix", o.Key)
			}
		}
		l := e.do("GET", "/api/storage/assets", "", userHeaders(key, secret))
		if l.status != 200 || len(l.body["assets"].([]any)) != len(names) {
			t.Fatalf("list: %d %s", l.status, l.raw)
		}
	})
}

// TestUploadLimits: over the tier's size or the quota is refused with
// nothing stored and the quota unchanged.
func TestUploadLimits(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_limits", "starter") // 2 GiB quota, 50 MiB files
		max := int64(50 << 20)
		nothingStored := func(name string) {
			t.Helper()
			a := e.account("usr_limits")
			if a.StorageUsedBytes != 0 || a.StorageReservedBytes != 0 {
				t.Fatalf("%s: used %d reserved %d after refusal", name, a.StorageUsedBytes, a.StorageReservedBytes)
			}
			if objs := e.objects("users/usr_limits/"); len(objs) != 0 {
				t.Fatalf("%s: %d objects stored", name, len(objs))
			}
		}
		check := func(name string, r uploadResult, status int, code string, mention ...string) {
			t.Helper()
			if r.status != status || r.body["code"] != code {
				t.Fatalf("%s: %d %s, want %d %s", name, r.status, r.raw, status, code)
			}
			for _, m := range mention {
				if !strings.Contains(r.body["error"].(string), m) {
					t.Errorf("%s: message %q does not mention %q", name, r.body["error"], m)
				}
			}
			nothingStored(name)
		}
		// Declared too large: refused before reading.
		check("declared over max", e.upload(key, secret, "big.bin", testenv.NewRandReader(1, max+1), max+1, nil), 413, server.ETooLarge, "50.0 MiB", "starter", "pro")
		// Chunked body over the max: cut off while streaming.
		check("chunked over max", e.upload(key, secret, "big.bin", testenv.NewRandReader(1, max+1), -1, nil), 413, server.ETooLarge, "50.0 MiB")
		// Exactly the max is fine.
		r := e.upload(key, secret, "max.bin", testenv.NewRandReader(2, max), max, nil)
		if r.status != 201 {
			t.Fatalf("upload of exactly the max: %d %s", r.status, r.raw)
		}
		if d := e.do("DELETE", "/api/storage/assets/"+r.asset["id"].(string), "", userHeaders(key, secret)); d.status != 200 {
			t.Fatalf("delete: %d %s", d.status, d.raw)
		}
		nothingStored("after deleting the max-size file")

		// Over quota: fill the quota with a reservation, then upload.
		a := e.account("usr_limits")
		res, err := e.store.Reserve(context.Background(), a.ID, a.StorageQuotaBytes()-10, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		over := e.upload(key, secret, "q.bin", strings.NewReader(strings.Repeat("q", 11)), 11, nil)
		if over.status != 413 || over.body["code"] != server.EQuotaExceeded || !strings.Contains(over.body["error"].(string), "upgrade to pro") {
			t.Fatalf("over quota: %d %s", over.status, over.raw)
		}
		overChunked := e.upload(key, secret, "q.bin", strings.NewReader(strings.Repeat("q", 11)), -1, nil)
		if overChunked.status != 413 || overChunked.body["code"] != server.EQuotaExceeded {
			t.Fatalf("over quota chunked: %d %s", overChunked.status, overChunked.raw)
		}
		e.store.ReleaseReservation(context.Background(), res.ID)
		nothingStored("after quota refusals")

		// Missing X-Filename.
		req, _ := http.NewRequest("POST", e.url+"/api/storage/upload", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-API-Secret", secret)
		res2, _ := http.DefaultClient.Do(req)
		res2.Body.Close()
		if res2.StatusCode != 400 {
			t.Fatalf("upload without X-Filename: %d", res2.StatusCode)
		}
		// The free tier (0 GB) stores nothing.
		fkey, fsecret := e.provision("usr_free_up", "free")
		if r := e.upload(fkey, fsecret, "x.txt", strings.NewReader("x"), 1, nil); r.status != 413 {
			t.Fatalf("free tier upload: %d %s", r.status, r.raw)
		}
	})
}

// TestBodyLongerThanDeclared: a body longer than its Content-Length is cut
// at the declared length.
func TestBodyLongerThanDeclared(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_liar", "pro")
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/storage/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-API-Secret: %s\r\nX-Filename: liar.txt\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhelloEXTRA-BYTES-THAT-LIE", key, secret)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(res.Body).Decode(&body)
		if res.StatusCode != 201 || body["asset"].(map[string]any)["size"] != 5.0 {
			t.Fatalf("liar upload: %d %v", res.StatusCode, body)
		}
		if a := e.account("usr_liar"); a.StorageUsedBytes != 5 {
			t.Fatalf("used %d, want 5", a.StorageUsedBytes)
		}
	})
}

// TestDeduplication: identical content is stored once per account, also
// when uploaded concurrently; deleting one asset never breaks another; no
// dedup across accounts.
func TestDeduplication(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_dedup", "pro")
		okey, osecret := e.provision("usr_other_acct", "pro")
		content := strings.Repeat("same bytes ", 1000)
		n := int64(len(content))
		first := e.upload(key, secret, "a.txt", strings.NewReader(content), n, nil)
		second := e.upload(key, secret, "b.txt", strings.NewReader(content), n, nil)
		if first.body["deduplicated"] != false || second.body["deduplicated"] != true {
			t.Fatalf("dedup flags: %s / %s", first.raw, second.raw)
		}
		if first.asset["key"] != second.asset["key"] || first.asset["id"] == second.asset["id"] {
			t.Fatalf("assets should share one object under two ids: %v %v", first.asset, second.asset)
		}
		var wg sync.WaitGroup
		results := make([]uploadResult, 8)
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = e.upload(key, secret, fmt.Sprintf("c%d.txt", i), strings.NewReader(content), n, nil)
			}(i)
		}
		wg.Wait()
		for _, r := range results {
			if r.status != 201 || r.body["deduplicated"] != true {
				t.Fatalf("concurrent duplicate: %d %s", r.status, r.raw)
			}
		}
		if objs := e.objects("users/usr_dedup/"); len(objs) != 1 {
			t.Fatalf("%d objects stored for one content", len(objs))
		}
		if a := e.account("usr_dedup"); a.StorageUsedBytes != n || a.StorageReservedBytes != 0 {
			t.Fatalf("used %d reserved %d, want %d and 0", a.StorageUsedBytes, a.StorageReservedBytes, n)
		}
		// Another account: its own copy, no hint of ours.
		o := e.upload(okey, osecret, "a.txt", strings.NewReader(content), n, nil)
		if o.body["deduplicated"] != false || strings.HasPrefix(o.asset["key"].(string), "users/usr_dedup/") {
			t.Fatalf("cross-account upload: %s", o.raw)
		}
		if st, _, _, _ := e.download(okey, osecret, first.asset["id"].(string), ""); st != 404 {
			t.Fatalf("other account downloads our asset: %d", st)
		}
		if r := e.do("DELETE", "/api/storage/assets/"+first.asset["id"].(string), "", userHeaders(okey, osecret)); r.status != 404 {
			t.Fatalf("other account deletes our asset: %d", r.status)
		}
		// Delete the first: the second still downloads; quota unchanged.
		d := e.do("DELETE", "/api/storage/assets/"+first.asset["id"].(string), "", userHeaders(key, secret))
		if d.status != 200 || d.body["freed_bytes"] != 0.0 {
			t.Fatalf("delete first: %d %s", d.status, d.raw)
		}
		if st, _, got, _ := e.download(key, secret, second.asset["id"].(string), ""); st != 200 || got != second.asset["hash"] {
			t.Fatalf("second after deleting first: %d", st)
		}
		// Delete the rest: quota back to zero, object gone.
		ids := []string{second.asset["id"].(string)}
		for _, r := range results {
			ids = append(ids, r.asset["id"].(string))
		}
		var freed float64
		for _, id := range ids {
			d := e.do("DELETE", "/api/storage/assets/"+id, "", userHeaders(key, secret))
			if d.status != 200 {
				t.Fatalf("delete %s: %d", id, d.status)
			}
			freed += d.body["freed_bytes"].(float64)
		}
		if freed != float64(n) || e.account("usr_dedup").StorageUsedBytes != 0 || len(e.objects("users/usr_dedup/")) != 0 {
			t.Fatalf("after deleting all: freed %v used %d objects %d", freed, e.account("usr_dedup").StorageUsedBytes, len(e.objects("users/usr_dedup/")))
		}
		if r := e.do("DELETE", "/api/storage/assets/"+ids[0], "", userHeaders(key, secret)); r.status != 404 {
			t.Fatalf("second delete: %d", r.status)
		}
	})
}

// TestBandwidthQuota: a download past the monthly bandwidth quota gets a
// clear error.
func TestBandwidthQuota(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_bw", "starter") // 10 GiB a month
		r := e.upload(key, secret, "f.bin", strings.NewReader("0123456789"), 10, nil)
		id := r.asset["id"].(string)
		a := e.account("usr_bw")
		if err := e.store.RecordDownload(context.Background(), a.ID, id, a.BandwidthQuotaBytes()-15, time.Now()); err != nil {
			t.Fatal(err)
		}
		if st, _, _, _ := e.download(key, secret, id, ""); st != 200 {
			t.Fatalf("download within quota: %d", st)
		}
		st := e.do("GET", "/api/storage/assets/"+id+"/download", "", userHeaders(key, secret))
		if st.status != 403 || st.body["code"] != server.EBandwidthExceeded || !strings.Contains(st.body["error"].(string), "upgrade") {
			t.Fatalf("download over quota: %d %s", st.status, st.raw)
		}
		q := e.do("GET", "/api/agentcache/quota", "", userHeaders(key, secret))
		if q.body["bandwidth"].(map[string]any)["used_bytes"].(float64) != float64(a.BandwidthQuotaBytes()-5) {
			t.Fatalf("quota bandwidth: %s", q.raw)
		}
	})
}

// TestUploadContentSHA256: with X-Content-SHA256 the server refuses bytes
// that hash otherwise (nothing stored, quota untouched) and takes the
// right ones; a malformed header is 400 before any byte is stored.
func TestUploadContentSHA256(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_sha", "pro")
		body := "hello, verified world"
		sum := sha256.Sum256([]byte(body))
		good := hex.EncodeToString(sum[:])
		wrong := strings.Repeat("0", 64)

		r := e.upload(key, secret, "a.txt", strings.NewReader(body), int64(len(body)), map[string]string{"X-Content-SHA256": wrong})
		if r.status != 400 || r.body["code"] != "checksum_mismatch" {
			t.Fatalf("wrong hash: %d %s", r.status, r.raw)
		}
		r = e.upload(key, secret, "a.txt", strings.NewReader(body), int64(len(body)), map[string]string{"X-Content-SHA256": "xyz"})
		if r.status != 400 || r.body["code"] != "invalid_request" {
			t.Fatalf("malformed hash: %d %s", r.status, r.raw)
		}
		if objs := e.objects("users/usr_sha/"); len(objs) != 0 {
			t.Fatalf("refused uploads left objects %+v", objs)
		}
		if a := e.account("usr_sha"); a.StorageUsedBytes != 0 || a.StorageReservedBytes != 0 {
			t.Fatalf("refused uploads changed usage: used %d reserved %d", a.StorageUsedBytes, a.StorageReservedBytes)
		}
		r = e.upload(key, secret, "a.txt", strings.NewReader(body), int64(len(body)), map[string]string{"X-Content-SHA256": strings.ToUpper(good)})
		if r.status != 201 || r.asset["hash"] != good {
			t.Fatalf("right hash: %d %s", r.status, r.raw)
		}
	})
}
