package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

// fullEnv is a server whose object store lives on a small filesystem
// that the test fills: fill leaves about n bytes free and returns the
// undo; advance moves the server's clock.
type fullEnv struct {
	*env
	mnt     string
	fs      *fsblob.Store // nil on S3
	advance func(time.Duration)
	full    func() // waits until the store has noticed it is full
}

// eachSmallStorage runs fn on the embedded default with its files on a
// 64 MiB tmpfs (SQLite elsewhere), and on PostgreSQL + Redis with a MinIO
// of the test's own whose drive is such a tmpfs.
func eachSmallStorage(t *testing.T, fn func(t *testing.T, e *fullEnv)) {
	clockFor := func() (func() time.Time, func(time.Duration)) {
		var off atomic.Int64
		return func() time.Time { return time.Now().Add(time.Duration(off.Load())) },
			func(d time.Duration) { off.Add(int64(d)) }
	}
	t.Run("sqlite+fs", func(t *testing.T) {
		mnt := testenv.SmallFS(t, 64*mib)
		fs, err := fsblob.New(filepath.Join(mnt, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		b := backends()[0]
		clock, advance := clockFor()
		fn(t, &fullEnv{env: newEnvFull(t, b.store(t), b.limit(t), fs, clock), mnt: mnt, fs: fs, advance: advance, full: func() {}})
	})
	t.Run("postgres+s3", func(t *testing.T) {
		mnt := testenv.SmallFS(t, 96*mib)
		m := testenv.MinIOOn(t, filepath.Join(mnt, "data"))
		s3 := s3Blobs(t, m)
		b := backends()[1]
		clock, advance := clockFor()
		fn(t, &fullEnv{env: newEnvFull(t, b.store(t), b.limit(t), s3, clock), mnt: mnt, advance: advance, full: func() { testenv.WaitMinIOFull(t, m) }})
	})
}

// putChunkRaw sends one chunk and returns the status and the error body.
func putChunkRaw(t *testing.T, s *session, index int, sum string, body []byte) (int, string, string) {
	t.Helper()
	u := strings.Replace(s.ChunkURL, "{index}", fmt.Sprint(index), 1)
	req, _ := http.NewRequest("PUT", u, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("X-Chunk-SHA256", sum)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b struct{ Code, Error string }
	json.NewDecoder(res.Body).Decode(&b)
	return res.StatusCode, b.Code, b.Error
}

func wantStorageFull(t *testing.T, what string, status int, code, msg string) {
	t.Helper()
	if status != http.StatusInsufficientStorage || code != server.EInsufficientStorage ||
		!strings.Contains(msg, "storage is full") || !strings.Contains(msg, "try again later") {
		t.Fatalf("%s on a full disk: %d %s %q; want 507 %s saying the storage is full and to try later", what, status, code, msg, server.EInsufficientStorage)
	}
}

// The disk holding the objects fills up: a chunk PUT, a single-request
// upload and a completion are answered 507 insufficient_storage with a
// message, nothing is stored or left behind, the reservation and the
// session are unchanged, /readyz says 503 storage "full"; once space is
// freed the same upload goes on and completes.
func TestStorageFull(t *testing.T) {
	eachSmallStorage(t, func(t *testing.T, e *fullEnv) {
		key, secret := e.provision("usr_full", "pro")
		data := randBytes(3, 11*mib)
		m := plan("full.bin", data, 5*mib)
		o := e.open(key, secret, m)
		if o.status != 201 {
			t.Fatalf("open: %d %s", o.status, o.raw)
		}
		ses := o.Session
		sendAll(t, ses, m, data, []int{0})
		before := e.account("usr_full")
		unfill := testenv.Fill(t, e.mnt, mib)
		e.full()

		c := m.Chunks[1]
		st, code, msg := putChunkRaw(t, ses, 1, c.SHA256, data[c.Offset:c.Offset+c.Size])
		// MinIO refuses before reading the part, the server's store
		// waits for its "100 Continue" and reads the refusal, and the
		// server reads the chunk out before it answers: one attempt gets
		// the 507, never a reset or a 503.
		wantStorageFull(t, "chunk PUT", st, code, msg)
		s := e.jsonCall("GET", "/api/jetty/sessions/"+ses.ID, key, secret, nil)
		if !strings.Contains(s.raw, `"held":[0]`) || !strings.Contains(s.raw, `"state":"open"`) {
			t.Errorf("session after the refused chunk: %s", s.raw)
		}
		r := e.do("GET", "/readyz", "", nil)
		checks, _ := r.body["checks"].(map[string]any)
		if r.status != 503 || checks["storage"] != "full" || checks["database"] != "ok" {
			t.Errorf("readyz on a full disk: %d %s; want 503 with storage full", r.status, r.raw)
		}
		up := e.upload(key, secret, "small.bin", strings.NewReader(string(data[:2*mib])), 2*mib, nil)
		var ub struct{ Code, Error string }
		json.Unmarshal([]byte(up.raw), &ub)
		wantStorageFull(t, "single upload", up.status, ub.Code, ub.Error)
		if a := e.account("usr_full"); a.StorageUsedBytes != before.StorageUsedBytes || a.StorageReservedBytes != before.StorageReservedBytes {
			t.Errorf("quota after the refusals: used %d reserved %d; before %d %d", a.StorageUsedBytes, a.StorageReservedBytes, before.StorageUsedBytes, before.StorageReservedBytes)
		}
		if objs := e.objects("users/usr_full/"); len(objs) != 0 {
			t.Errorf("objects after the refusals: %+v", objs)
		}
		if e.fs != nil {
			if ents, _ := os.ReadDir(filepath.Join(e.fs.Dir(), "tmp")); len(ents) != 0 {
				t.Errorf("tmp/ holds %d files after the refusals", len(ents))
			}
			// A new upload that cannot fit is refused before any byte.
			other := plan("other.bin", randBytes(4, 6*mib), 5*mib)
			if o := e.open(key, secret, other); o.status != 507 || o.Code != server.EInsufficientStorage {
				t.Errorf("open of a file larger than the free space: %d %s", o.status, o.raw)
			}
		}
		if !strings.Contains(e.logs.String(), "storage full") {
			t.Errorf("no warning logged for the operator")
		}

		unfill()
		e.advance(time.Minute) // past the S3 store's "recently full"
		// MinIO caches its free space for a moment: the chunk is retried
		// as the engine would (bounded).
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			st, code, msg = putChunkRaw(t, ses, 1, c.SHA256, data[c.Offset:c.Offset+c.Size])
			if st == 200 || time.Now().After(deadline) {
				break
			}
		}
		if st != 200 {
			t.Fatalf("chunk once space is back: %d %s %s", st, code, msg)
		}
		e.advance(time.Minute) // past any refusal while MinIO's cache caught up
		if r := e.do("GET", "/readyz", "", nil); r.status != 200 {
			t.Errorf("readyz once space is back: %d %s", r.status, r.raw)
		}
		sendAll(t, ses, m, data, []int{2})

		var cr openResult
		if e.fs != nil {
			// The chunks were written in place (issue 18): completing
			// copies nothing, so it needs no room, even on a full disk.
			unfill = testenv.Fill(t, e.mnt, mib)
			cr = e.jsonCall("POST", "/api/jetty/sessions/"+ses.ID+"/complete", key, secret, nil)
			unfill()
			if cr.status != 200 || cr.Asset["hash"] != m.SHA256 || cr.Asset["hash_verified"] != true {
				t.Fatalf("complete on a full disk: %d %s; want 200 with the verified hash", cr.status, cr.raw)
			}
		} else {
			cr = e.jsonCall("POST", "/api/jetty/sessions/"+ses.ID+"/complete", key, secret, nil)
		}
		if cr.status != 200 || cr.Asset["hash"] != m.SHA256 {
			t.Fatalf("complete once space is back: %d %s", cr.status, cr.raw)
		}
		if code, _, got, n := e.download(key, secret, cr.Asset["id"].(string), ""); code != 200 || got != m.SHA256 || n != m.Size {
			t.Fatalf("download: %d %d %s", code, n, got)
		}
		if up := e.upload(key, secret, "small.bin", strings.NewReader(string(data[:2*mib])), 2*mib, nil); up.status != 201 {
			t.Errorf("single upload once space is back: %d %s", up.status, up.raw)
		}
	})
}

// JETTY_STORAGE_MIN_FREE: sizes, percentages, off; bad values refused.
func TestParseMinFree(t *testing.T) {
	for in, want := range map[string]api.MinFree{
		"": {}, "off": {Off: true}, "0": {Off: true}, "2GiB": {Bytes: 2 << 30}, "500MB": {Bytes: 500e6},
		"10%": {Percent: 10}, "1048576": {Bytes: 1 << 20}, " 64 MiB ": {Bytes: 64 << 20},
	} {
		got, err := api.ParseMinFree(in)
		if err != nil || got != want {
			t.Errorf("ParseMinFree(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"-5", "101%", "0%", "lots", "5 parsecs", "%"} {
		if _, err := api.ParseMinFree(in); err == nil {
			t.Errorf("ParseMinFree(%q) accepted", in)
		}
	}
}
