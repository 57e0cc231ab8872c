package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// metric sums the jetty_http_requests_total samples of route with code
// ("" for any code).
func metric(t *testing.T, url, route, code string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testMetricsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, b)
	}
	re := regexp.MustCompile(`jetty_http_requests_total\{code="(\d+)",route="` + regexp.QuoteMeta(route) + `"\} (\d+)`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if code == "" || m[1] == code {
			v, _ := strconv.Atoi(m[2])
			n += v
		}
	}
	return n
}

func readyz(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestUploadStorageFull: `jetty upload` against a server whose storage is
// full stops after one attempt (no retry storm) with exit code 6 and a
// message saying so; /readyz reports the storage full; once space is
// freed the same command resumes and completes. The embedded default
// (files on a small filesystem: full when the session opens; with room
// for the file and a chunk, it completes) and PostgreSQL + MinIO on a
// small filesystem (full at the first chunk).
func TestUploadStorageFull(t *testing.T) {
	const chunk = 5 << 20
	file := filepath.Join(t.TempDir(), "big.bin")
	data := make([]byte, 3*chunk)
	for i := range data {
		data[i] = byte(i*31 + i>>13)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	const chunkRoute = "PUT /api/jetty/sessions/{id}/chunks/{index}"
	const completeRoute = "POST /api/jetty/sessions/{id}/complete"

	run := func(t *testing.T, url, mnt string, leave int64, refusedRoute string, others int, waitFull, waitSpace func()) {
		key, secret := testenv.Provision(t, url, cmdSecret, "usr_full", "pro")
		env := map[string]string{"JETTY_SERVER": url, "JETTY_API_KEY": key, "JETTY_API_SECRET": secret, "XDG_STATE_HOME": t.TempDir()}
		args := []string{"upload", file, "--json", "--workers", "1", "--edges", "origin", "--chunk-size", "5MiB", "--no-progress"}
		unfill := testenv.Fill(t, mnt, leave)
		waitFull()

		out, errOut, code := runJetty(t, env, "", args...)
		if code != ExitStorageFull || !strings.Contains(errOut, "storage is full") || !strings.Contains(errOut, "run the same command later") {
			t.Fatalf("upload on a full disk: exit %d, want %d\nstdout: %s\nstderr: %s", code, ExitStorageFull, out, errOut)
		}
		t.Logf("stderr: %s", strings.TrimSpace(errOut))
		// One attempt, answered 507 (before the fix: 8 attempts, all 507;
		// before issue 18's follow-up, resets from a full MinIO made it
		// 503s, retried).
		if n, all := metric(t, url, refusedRoute, "507"), metric(t, url, refusedRoute, ""); n != 1 || all != 1+others {
			t.Errorf("%s: %d answers, %d of them 507; want one 507 (and %d answers before it)", refusedRoute, all, n, others)
		}
		if st, body := readyz(t, url); st != 503 || !strings.Contains(body, `"storage":"full"`) {
			t.Errorf("readyz on a full disk: %d %s", st, body)
		}

		unfill()
		waitSpace()
		out, errOut, code = runJetty(t, env, "", args...)
		if code != ExitOK {
			t.Fatalf("upload once space is back: exit %d\n%s\n%s", code, out, errOut)
		}
		var res struct {
			Asset struct {
				Hash string `json:"hash"`
				Size int64  `json:"size"`
			} `json:"asset"`
			ChunksSent int `json:"chunks_sent"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Asset.Hash != hex.EncodeToString(sum[:]) || res.Asset.Size != int64(len(data)) {
			t.Fatalf("upload once space is back: %s (%v)", out, err)
		}
		t.Logf("resumed: %d chunks sent", res.ChunksSent)
		if refusedRoute == completeRoute && res.ChunksSent != 0 {
			t.Errorf("the resumed upload sent %d chunks; the server held them all", res.ChunksSent)
		}
	}

	t.Run("sqlite+fs", func(t *testing.T) {
		mnt := testenv.SmallFS(t, 64<<20)
		dir := t.TempDir()
		if err := os.Symlink(mnt, filepath.Join(dir, "blobs")); err != nil {
			t.Fatal(err)
		}
		a, stop, err := app.Start(app.Config{Listen: "127.0.0.1:0", DataDir: dir, WebhookSecret: cmdSecret, TokenSecret: testTokenSecret, MetricsToken: testMetricsToken, StorageMinFree: "8MiB"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop() })
		// Room for the file and one chunk more, as the server asks before
		// the upload starts: the chunks are written in place (issue 18),
		// so completing needs no more room and the upload succeeds (it
		// needed a part's room more to assemble them before).
		key, secret := testenv.Provision(t, a.URL(), cmdSecret, "usr_room", "pro")
		env := map[string]string{"JETTY_SERVER": a.URL(), "JETTY_API_KEY": key, "JETTY_API_SECRET": secret, "XDG_STATE_HOME": t.TempDir()}
		unfill := testenv.Fill(t, mnt, int64(len(data))+chunk+8<<10)
		out, errOut, code := runJetty(t, env, "", "upload", file, "--json", "--workers", "1", "--edges", "origin", "--chunk-size", "5MiB", "--no-progress")
		unfill()
		if code != ExitOK || !strings.Contains(out, hex.EncodeToString(sum[:])) {
			// Seen once in a full CI run (stop 26), never alone: say what
			// took the room, for whoever meets it next.
			filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					t.Logf("on the small filesystem: %s %d bytes", strings.TrimPrefix(p, mnt), fi.Size())
				}
				return nil
			})
			t.Fatalf("upload with room for the file and a chunk: exit %d\n%s\n%s", code, out, errOut)
		}
		// Less room than the file: refused before any byte (the one
		// other answer of the route is the upload above's 201).
		run(t, a.URL(), mnt, 4<<20, "POST /api/jetty/sessions", 1, func() {}, func() {})
		if st, body := readyz(t, a.URL()); st != 200 {
			t.Errorf("readyz once space is back: %d %s", st, body)
		}
	})
	t.Run("postgres+s3", func(t *testing.T) {
		mnt := testenv.SmallFS(t, 96<<20)
		m := testenv.MinIOOn(t, filepath.Join(mnt, "data"))
		s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		a, stop, err := app.Start(app.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), WebhookSecret: cmdSecret, TokenSecret: testTokenSecret, MetricsToken: testMetricsToken,
			DatabaseURL: testenv.PostgresURL(t), RedisURL: testenv.RedisURL(t), S3: s3cfg}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop() })
		waitSpace := func() {
			// MinIO caches its drive's free space for a moment.
			probe := bytes.Repeat([]byte{1}, chunk)
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
				if _, _, err := a.Blobs().Put(context.Background(), "probe/space", bytes.NewReader(probe), chunk, ""); err == nil {
					a.Blobs().Delete(context.Background(), "probe/space")
					return
				}
			}
		}
		run(t, a.URL(), mnt, 1<<20, chunkRoute, 0, func() { testenv.WaitMinIOFull(t, m) }, waitSpace)
	})
}

// testTokenSecret signs the upload tokens of the servers these tests
// start: as strong as the server requires (internal/secrets).
const testTokenSecret = "tok_9f2c4e6a8b1d3f5e7a9c0b2d4f6e8a1c"

// testMetricsToken lets these tests read the servers' /metrics.
const testMetricsToken = "met_3b8d1f6a9c2e5b7d0f4a8c1e6b3d9f2a"
