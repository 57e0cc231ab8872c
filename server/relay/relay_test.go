package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

const (
	edgeSecret  = "relay_test_edge_secret_c46ea7c96dbf2187791da18223727056"
	tokenSecret = "relay_test_token_secret_4430bc5e78c8e3c4db4ca01871a12c9d"
	webhook     = "whsec_relay_test_5d2e8a41c7f09b36e1a4d8c2f7b05e93"
)

type origin struct {
	url  string
	app  *app.App
	c    *control
	stop func() error // stops the origin (also at the end of the test)
}

// control calls the origin's control API with the test account's key
// and secret. The relay's tests speak the wire contract (package
// protocol) themselves, as a relay does: no client package.
type control struct {
	base, key, secret string
}

// call makes one control call; an answer other than 2xx is an error
// naming its status and body.
func (c *control) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set(protocol.HeaderAPISecret, c.secret)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (c *control) OpenSession(ctx context.Context, req protocol.OpenRequest) (protocol.OpenResponse, error) {
	var out protocol.OpenResponse
	return out, c.call(ctx, http.MethodPost, protocol.PathSessions, req, &out)
}

func (c *control) SessionStatus(ctx context.Context, id string) (protocol.SessionState, error) {
	var out protocol.SessionState
	return out, c.call(ctx, http.MethodGet, protocol.PathSessions+"/"+id, nil, &out)
}

func (c *control) Complete(ctx context.Context, id string) (protocol.OpenResponse, error) {
	var out protocol.OpenResponse
	return out, c.call(ctx, http.MethodPost, protocol.PathSessions+"/"+id+"/complete", protocol.CompleteRequest{}, &out)
}

func (c *control) Abort(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, protocol.PathSessions+"/"+id, nil, nil)
}

func (c *control) Candidates(ctx context.Context) (protocol.OptimalResponse, error) {
	var out protocol.OptimalResponse
	return out, c.call(ctx, http.MethodPost, protocol.PathOptimalEdges, protocol.OptimalRequest{}, &out)
}

// plan is the manifest of data in chunks of chunkSize.
func plan(name string, data []byte, chunkSize int64) *protocol.Manifest {
	m := protocol.NewManifest(name, int64(len(data)), chunkSize)
	for i, c := range m.Chunks {
		m.Chunks[i].SHA256 = hashOf(data[c.Offset : c.Offset+c.Size])
	}
	m.SHA256 = hashOf(data)
	return m
}

func startOrigin(t *testing.T, cfg app.Config) *origin {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.WebhookSecret = webhook
	cfg.TokenSecret = tokenSecret
	cfg.EdgeSecret = edgeSecret
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	a, stop, err := app.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	o := &origin{url: a.URL(), app: a, stop: stop}
	key, secret := testenv.Provision(t, o.url, webhook, "usr_relay", "enterprise")
	o.c = &control{base: o.url, key: key, secret: secret}
	return o
}

// serve runs r on a fresh listener until the test ends.
func serve(t *testing.T, r *Relay) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx, ln); err != nil {
		cancel()
		t.Fatalf("relay: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := r.Wait(); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func newRelay(t *testing.T, o *origin, id string, mod func(*Config)) *Relay {
	t.Helper()
	cfg := Config{Origin: o.url, ID: id, Secret: edgeSecret, Interval: 100 * time.Millisecond, DrainTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// openSession opens a session for data (chunks of 5 MiB).
func openSession(t *testing.T, o *origin, data []byte) (*protocol.Session, *protocol.Manifest) {
	t.Helper()
	m := plan("data.bin", data, 5<<20)
	resp, err := o.c.OpenSession(context.Background(), protocol.OpenRequest{Manifest: m})
	if err != nil || resp.Session == nil {
		t.Fatalf("open session: %v %+v", err, resp)
	}
	return resp.Session, m
}

type answer struct {
	status int
	code   string
}

// put sends a chunk PUT to base with the given token, hash header and body.
func put(t *testing.T, base, session string, index int, token, sum string, body []byte, size int64) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, base+"/api/jetty/sessions/"+session+"/chunks/"+strconv.Itoa(index), bytes.NewReader(body))
	req.ContentLength = size
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Chunk-SHA256", sum)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		// A lying Content-Length can end in a transport error: refused all
		// the same.
		return answer{status: -1, code: err.Error()}
	}
	defer res.Body.Close()
	buf := new(bytes.Buffer)
	buf.ReadFrom(res.Body)
	code := ""
	if i := strings.Index(buf.String(), `"code":"`); i >= 0 {
		rest := buf.String()[i+8:]
		code = rest[:strings.IndexByte(rest, '"')]
	}
	return answer{status: res.StatusCode, code: code}
}

func held(t *testing.T, o *origin, id string) []int {
	t.Helper()
	st, err := o.c.SessionStatus(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Held
}

// TestRelayRefusesBadChunks: forged, expired, foreign and missing tokens,
// wrong hashes, lying sizes and indexes outside the manifest are refused
// by the relay and leave nothing stored; a good chunk is then taken. Both
// modes: forwarding to an origin that keeps files, and writing parts to
// S3 itself.
func TestRelayRefusesBadChunks(t *testing.T) {
	t.Run("relay", func(t *testing.T) {
		o := startOrigin(t, app.Config{})
		r := newRelay(t, o, "edge_fwd", nil)
		if r.Mode() != protocol.ModeRelay {
			t.Fatalf("mode %s", r.Mode())
		}
		badChunks(t, o, r)
	})
	t.Run("s3", func(t *testing.T) {
		m := testenv.MinIO(t)
		s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		o := startOrigin(t, app.Config{S3: s3cfg})
		r := newRelay(t, o, "edge_s3", func(c *Config) { c.S3 = s3cfg })
		if r.Mode() != protocol.ModeS3 {
			t.Fatalf("mode %s", r.Mode())
		}
		badChunks(t, o, r)
	})
}

func badChunks(t *testing.T, o *origin, r *Relay) {
	base := serve(t, r)
	data, _ := io.ReadAll(testenv.NewRandReader(3, 12<<20+7)) // chunks 0, 1 of 5 MiB, 2 of 2 MiB + 7
	s, m := openSession(t, o, data)
	c0 := data[:5<<20]
	sum0 := m.Chunks[0].SHA256
	good := s.UploadToken

	other, _ := uploadtoken.NewSigner([]byte("not the origin's secret"))
	forged := other.Sign(uploadtoken.Claims{SessionID: s.ID, AccountID: "x", MaxWorkers: 32, Expires: time.Now().Add(time.Hour).Unix()})
	real, _ := uploadtoken.NewSigner([]byte(tokenSecret))
	st, err := o.app.Store().SessionByID(context.Background(), accountOf(t, o), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	expired := real.Sign(uploadtoken.Claims{SessionID: s.ID, AccountID: st.AccountID, MaxWorkers: 32, Expires: time.Now().Add(-time.Minute).Unix()})
	foreign := real.Sign(uploadtoken.Claims{SessionID: "ses_other", AccountID: st.AccountID, MaxWorkers: 32, Expires: time.Now().Add(time.Hour).Unix()})
	tampered := good[:len(good)-2] + flip(good[len(good)-2:])

	wrong := bytes.Clone(c0)
	wrong[12345] ^= 0xff
	for _, tc := range []struct {
		name  string
		token string
		index int
		sum   string
		body  []byte
		size  int64
		want  answer
	}{
		{"no token", "", 0, sum0, c0, int64(len(c0)), answer{401, "token_invalid"}},
		{"forged token", forged, 0, sum0, c0, int64(len(c0)), answer{401, "token_invalid"}},
		{"tampered token", tampered, 0, sum0, c0, int64(len(c0)), answer{401, "token_invalid"}},
		{"expired token", expired, 0, sum0, c0, int64(len(c0)), answer{401, "token_expired"}},
		{"token of another session", foreign, 0, sum0, c0, int64(len(c0)), answer{401, "token_invalid"}},
		{"wrong bytes", good, 0, sum0, wrong, int64(len(wrong)), answer{400, "checksum_mismatch"}},
		{"hash not the manifest's", good, 0, hashOf(wrong), wrong, int64(len(wrong)), answer{400, "checksum_mismatch"}},
		{"size not the manifest's", good, 0, sum0, c0[:100], 100, answer{400, "invalid_request"}},
		{"index outside the manifest", good, 3, sum0, c0, int64(len(c0)), answer{400, "invalid_request"}},
		{"negative index", good, -1, sum0, c0, int64(len(c0)), answer{400, "invalid_request"}},
		{"bad hash header", good, 0, "abc", c0, int64(len(c0)), answer{400, "invalid_request"}},
	} {
		got := put(t, base, s.ID, tc.index, tc.token, tc.sum, tc.body, tc.size)
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// A body shorter than its Content-Length: the transport gives up or
	// the relay refuses; either way nothing is stored.
	if got := put(t, base, s.ID, 0, good, sum0, c0[:1000], int64(len(c0))); got.status == 200 {
		t.Errorf("truncated body accepted: %+v", got)
	}
	// Every refusal above was answered as one; none left a part behind
	// (what the relay's Stats counters told before, read from storage).
	if h := held(t, o, s.ID); len(h) != 0 {
		t.Fatalf("after refusals the storage holds chunks %v", h)
	}
	// Good data through the relay succeeds and is held.
	if got := put(t, base, s.ID, 0, good, sum0, c0, int64(len(c0))); got.status != 200 {
		t.Fatalf("good chunk: %+v", got)
	}
	if h := held(t, o, s.ID); len(h) != 1 || h[0] != 0 {
		t.Fatalf("held %v, want [0]", h)
	}
	// The other chunks through the relay, then completion: the asset is
	// the file. (An upload by the engine through a relay after refusals:
	// internal/e2e, TestEdgesRelayAfterRefusals.)
	for _, c := range m.Chunks[1:] {
		if got := put(t, base, s.ID, c.Index, good, c.SHA256, data[c.Offset:c.Offset+c.Size], c.Size); got.status != 200 {
			t.Fatalf("chunk %d: %+v", c.Index, got)
		}
	}
	done, err := o.c.Complete(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Asset == nil || done.Asset.Hash != hashOf(data) {
		t.Fatalf("completed through the relay: %+v", done.Asset)
	}
	// A chunk for the completed session is refused.
	if got := put(t, base, s.ID, 0, good, sum0, c0, int64(len(c0))); got.status != 409 && got.status != 410 {
		t.Errorf("chunk after completion: %+v", got)
	}
}

func accountOf(t *testing.T, o *origin) string {
	acct, err := o.app.Store().AccountByUserID(context.Background(), "usr_relay")
	if err != nil {
		t.Fatal(err)
	}
	return acct.ID
}

func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// offered reports whether optimal-edges offers id.
func offered(t *testing.T, o *origin, id string) bool {
	t.Helper()
	resp, err := o.c.Candidates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range resp.Edges {
		if e.ID == id {
			return true
		}
	}
	return false
}

// TestRelayStopsHeartbeating: a relay that registered and then went
// silent (no deregistration) stops being offered within its liveness
// (three heartbeat periods, at least 1 s).
func TestRelayStopsHeartbeating(t *testing.T) {
	o := startOrigin(t, app.Config{})
	r := newRelay(t, o, "edge_silent", func(c *Config) { c.PublicURL = "http://127.0.0.1:1" })
	if err := r.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !offered(t, o, "edge_silent") {
		t.Fatal("a registered relay is not offered")
	}
	start := time.Now()
	for offered(t, o, "edge_silent") {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a silent relay is still offered after 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("dropped after %v, before its liveness of 1 s", d)
	}
}

// TestRelayDrains: a relay shut down says so and deregisters: it is not
// offered any more at once, and its healthz says it is draining meanwhile.
func TestRelayDrains(t *testing.T) {
	o := startOrigin(t, app.Config{})
	r := newRelay(t, o, "edge_drain", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx, ln); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, res)
	}
	res.Body.Close()
	if !offered(t, o, "edge_drain") {
		t.Fatal("not offered while serving")
	}
	cancel()
	if err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	if offered(t, o, "edge_drain") {
		t.Error("still offered after it drained")
	}
	nodes, err := o.app.Store().LiveEdges(context.Background(), time.Now())
	if err != nil || len(nodes) != 0 {
		t.Errorf("live edges after deregistration: %v %v", nodes, err)
	}
}

// TestRelayWrongSecret: a relay whose secret differs from the origin's
// cannot register, and says why.
func TestRelayWrongSecret(t *testing.T) {
	o := startOrigin(t, app.Config{})
	r := newRelay(t, o, "edge_wrong", func(c *Config) { c.Secret = "another_edge_secret_4794083119971e5e6aea9ceb897bb9de" })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	err := r.Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "JETTY_EDGE_SECRET") {
		t.Fatalf("err %v, want a refusal naming JETTY_EDGE_SECRET", err)
	}
	var oe *originError
	if !errors.As(err, &oe) || oe.status != 401 {
		t.Errorf("err %v, want the origin's 401", err)
	}
}

// TestNewRefusesBadConfig: bad settings are refused before anything runs.
func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Origin: "", Secret: edgeSecret},
		{Origin: "ftp://x", Secret: edgeSecret},
		{Origin: "http://127.0.0.1:1", Secret: ""},
		{Origin: "http://127.0.0.1:1", Secret: edgeSecret, PublicURL: "not a url"},
		{Origin: "http://127.0.0.1:1", Secret: edgeSecret, ID: "a/b"},
	} {
		if _, err := New(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	// Weak secrets: refused, saying which variable and how to make one.
	for _, weak := range []string{"s", " ", strings.Repeat("ab", 20), edgeSecret + "\n"} {
		_, err := New(context.Background(), Config{Origin: "http://127.0.0.1:1", Secret: weak})
		if err == nil || !strings.Contains(err.Error(), "JETTY_EDGE_SECRET") || !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Errorf("weak secret %q: %v", weak, err)
		}
	}
}

// TestRelayWrongBucket: a relay set up for another bucket than the
// origin's refuses to start instead of writing parts where no one looks.
func TestRelayWrongBucket(t *testing.T) {
	m := testenv.MinIO(t)
	s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
	o := startOrigin(t, app.Config{S3: s3cfg})
	wrong := *s3cfg
	wrong.Bucket = "some-other-bucket"
	r := newRelay(t, o, "edge_bucket", func(c *Config) { c.S3 = &wrong })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	err := r.Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "LYVE_BUCKET_NAME") {
		t.Fatalf("err %v, want a refusal naming LYVE_BUCKET_NAME", err)
	}
	if offered(t, o, "edge_bucket") {
		t.Error("the misconfigured relay is offered")
	}
}

// TestRelayStorageFull: the storage behind a relay is full (the origin's
// files on a small filesystem, or MinIO's drive): a chunk through the
// relay is answered 507 insufficient_storage, which the engine does not
// retry, not 502 (which it would, through every route); nothing is
// held; once space is freed the chunk goes through.
func TestRelayStorageFull(t *testing.T) {
	run := func(t *testing.T, o *origin, r *Relay, mnt string, full func()) {
		base := serve(t, r)
		data := make([]byte, 11<<20)
		for i := range data {
			data[i] = byte(i * 7)
		}
		s, m := openSession(t, o, data)
		unfill := testenv.Fill(t, mnt, 1<<20)
		full()
		c := m.Chunks[0]
		// The store refuses before reading the part and the origin reads
		// the chunk out before it answers, so the relay's forward ends
		// and it reads the 507: one attempt, never a 502 from a reset.
		a := put(t, base, s.ID, 0, s.UploadToken, c.SHA256, data[:c.Size], c.Size)
		if a.status != http.StatusInsufficientStorage || a.code != "insufficient_storage" {
			t.Fatalf("chunk through the relay on a full disk: %d %s; want 507 insufficient_storage", a.status, a.code)
		}
		if h := held(t, o, s.ID); len(h) != 0 {
			t.Errorf("held after the refusal: %v", h)
		}
		unfill()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			// MinIO caches its free space for a moment.
			if a = put(t, base, s.ID, 0, s.UploadToken, c.SHA256, data[:c.Size], c.Size); a.status == 200 || time.Now().After(deadline) {
				break
			}
		}
		if a.status != 200 {
			t.Fatalf("chunk once space is back: %d %s", a.status, a.code)
		}
	}
	t.Run("relay", func(t *testing.T) {
		mnt := testenv.SmallFS(t, 64<<20)
		dir := t.TempDir()
		if err := os.Symlink(mnt, filepath.Join(dir, "blobs")); err != nil {
			t.Fatal(err)
		}
		o := startOrigin(t, app.Config{DataDir: dir})
		run(t, o, newRelay(t, o, "edge_fwd", nil), mnt, func() {})
	})
	t.Run("s3", func(t *testing.T) {
		mnt := testenv.SmallFS(t, 96<<20)
		m := testenv.MinIOOn(t, filepath.Join(mnt, "data"))
		s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		o := startOrigin(t, app.Config{S3: s3cfg})
		run(t, o, newRelay(t, o, "edge_s3", func(c *Config) { c.S3 = s3cfg }), mnt, func() { testenv.WaitMinIOFull(t, m) })
	})
}
