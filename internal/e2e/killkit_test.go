package e2e

// The kit of the kill tests (kill_test.go): kill points, a proxy that
// kills a victim at one of them, child processes for clients, servers and
// relays, and the checks of what a kill may leave behind.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	domain "github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/jobs"
	"github.com/jettythunder/jetty/server/relay"
)

// Kill points: where in an upload the victim (client, server or relay)
// dies. "before" points stop the request at the proxy, "during" points
// forward it and kill after a delay or once the store holds the object
// (the answer, if any, is never delivered), "after" points kill once the
// server has answered, before the answer is delivered.
const (
	atOpenBefore     = "open-before"
	atOpenDuring     = "open-during"
	atOpenAfter      = "open-after"
	atChunks         = "chunks" // once so many bytes of chunk bodies passed the proxy in this run
	atCompleteBefore = "complete-before"
	atCompleteDuring = "complete-during"
	// atCompleteAssembled kills the victim as soon as the store holds the
	// assembled object, before the database may have recorded it.
	atCompleteAssembled = "complete-assembled"
	atCompleteAfter     = "complete-after"
)

type killPoint struct {
	at    string
	bytes int64         // atChunks
	delay time.Duration // the -during points
}

func (k killPoint) String() string {
	switch k.at {
	case atChunks:
		return fmt.Sprintf("%s@%.2fMiB", k.at, float64(k.bytes)/(1<<20))
	case atOpenDuring, atCompleteDuring:
		return fmt.Sprintf("%s+%v", k.at, k.delay)
	}
	return k.at
}

// completing reports whether the victim dies after the server may have
// taken the completion on.
func (k killPoint) completing() bool {
	return k.at == atCompleteDuring || k.at == atCompleteAssembled || k.at == atCompleteAfter
}

// killGroups are the parts of an upload kill points fall in.
var killGroups = []string{"open", "chunks", "complete"}

// killSchedule is the groups of n kills: each group once, in random
// order, then random groups, chunks twice as likely as the others.
func killSchedule(rng *rand.Rand, n int) []string {
	out := append([]string(nil), killGroups...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	for len(out) < n {
		g := []string{"open", "chunks", "chunks", "complete"}[rng.IntN(4)]
		out = append(out, g)
	}
	return out[:n]
}

// drawPoint draws a kill point in group for an upload with remaining
// bytes of chunks to send; maxDelay bounds the delays of -during points.
func drawPoint(rng *rand.Rand, group string, remaining int64, maxDelay time.Duration) killPoint {
	delay := time.Duration(rng.Int64N(int64(maxDelay) + 1))
	switch group {
	case "open":
		return killPoint{at: []string{atOpenBefore, atOpenDuring, atOpenAfter}[rng.IntN(3)], delay: delay}
	case "chunks":
		if remaining > 1 {
			return killPoint{at: atChunks, bytes: 1 + rng.Int64N(remaining-1)}
		}
	}
	return killPoint{at: []string{atCompleteBefore, atCompleteDuring, atCompleteAssembled, atCompleteAfter}[rng.IntN(4)], delay: delay}
}

// killSeed is the seed of a test's kill points: JETTY_E2E_SEED replays a
// failure, otherwise the clock. It is logged either way.
func killSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("JETTY_E2E_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("JETTY_E2E_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (replay: JETTY_E2E_SEED=%d go test -race -count=1 -run '^%s$' -v ./internal/e2e)", seed, seed, t.Name())
	return seed
}

// rngFor is the random source of one subtest: the seed and its name.
func rngFor(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	io.WriteString(h, name)
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// trapProxy forwards to a target that may change (a restarted server),
// counts the chunk-body bytes that pass, and, armed, kills a victim at a
// kill point.
type trapProxy struct {
	*httptest.Server
	rp         *httputil.ReverseProxy
	target     atomic.Pointer[url.URL]
	trap       atomic.Pointer[trap]
	chunkBytes atomic.Int64
}

// trap is one armed kill.
type trap struct {
	kp   killPoint
	fire func() // kills the victim
	// assembled reports whether the store holds the object of the upload
	// (atCompleteAssembled).
	assembled func() bool
	cut       bool  // once fired, cut every request: the network of a dead client or server
	base      int64 // chunkBytes when armed
	once      sync.Once
	fired     chan struct{}
}

func (t *trap) fireNow() { t.once.Do(func() { t.fire(); close(t.fired) }) }

func (t *trap) done() bool {
	select {
	case <-t.fired:
		return true
	default:
		return false
	}
}

// hold marks a request whose answer the trap keeps: it fires when the
// answer arrives (fireOnAnswer) or waits until it fired, then drops it.
type hold struct {
	t            *trap
	fireOnAnswer bool
}

type holdKey struct{}

var errTrapped = errors.New("e2e: cut by the kill trap")

func newTrapProxy(t testing.TB, target string) *trapProxy {
	t.Helper()
	p := &trapProxy{}
	p.setTarget(t, target)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target.Load())
			pr.Out.Host = pr.In.Host // the server builds chunk URLs from the host the client used
		},
		ModifyResponse: func(resp *http.Response) error {
			h, _ := resp.Request.Context().Value(holdKey{}).(*hold)
			if h == nil {
				return nil
			}
			if h.fireOnAnswer {
				h.t.fireNow()
			} else {
				<-h.t.fired
			}
			return errTrapped
		},
		// A failed or trapped request is cut, as a dead peer's would be.
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) },
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.Start()
	t.Cleanup(p.Close)
	return p
}

func (p *trapProxy) setTarget(t testing.TB, target string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p.target.Store(u)
}

// arm sets a trap for the next run: fire kills the victim at kp;
// assembled tells when the store holds the upload's object (for
// atCompleteAssembled).
func (p *trapProxy) arm(kp killPoint, cut bool, fire func(), assembled func() bool) *trap {
	tr := &trap{kp: kp, fire: fire, assembled: assembled, cut: cut, base: p.chunkBytes.Load(), fired: make(chan struct{})}
	p.trap.Store(tr)
	return tr
}

func (p *trapProxy) disarm() { p.trap.Store(nil) }

func requestKind(r *http.Request) string {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/jetty/sessions":
		return "open"
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/jetty/sessions/") && strings.HasSuffix(r.URL.Path, "/complete"):
		return "complete"
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/chunks/"):
		return "chunk"
	}
	return ""
}

func (p *trapProxy) serve(w http.ResponseWriter, r *http.Request) {
	t := p.trap.Load()
	if t != nil && t.cut && t.done() {
		panic(http.ErrAbortHandler)
	}
	kind := requestKind(r)
	if t != nil && !t.done() {
		at := t.kp.at
		switch {
		case kind == "open" && at == atOpenBefore, kind == "complete" && at == atCompleteBefore:
			t.fireNow()
			panic(http.ErrAbortHandler)
		case kind == "open" && at == atOpenDuring, kind == "complete" && at == atCompleteDuring:
			time.AfterFunc(t.kp.delay, t.fireNow)
			r = r.WithContext(context.WithValue(r.Context(), holdKey{}, &hold{t: t}))
		case kind == "complete" && at == atCompleteAssembled:
			go func() {
				for deadline := time.Now().Add(time.Minute); !t.done() && time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
					if t.assembled() {
						t.fireNow()
					}
				}
				t.fireNow()
			}()
			r = r.WithContext(context.WithValue(r.Context(), holdKey{}, &hold{t: t}))
		case kind == "open" && at == atOpenAfter, kind == "complete" && at == atCompleteAfter:
			r = r.WithContext(context.WithValue(r.Context(), holdKey{}, &hold{t: t, fireOnAnswer: true}))
		}
	}
	if kind == "chunk" && r.Body != nil {
		r.Body = &trapBody{ReadCloser: r.Body, p: p, t: t}
	}
	p.rp.ServeHTTP(w, r)
}

// trapBody counts a chunk body's bytes and fires an atChunks trap once
// its threshold is reached.
type trapBody struct {
	io.ReadCloser
	p *trapProxy
	t *trap
}

func (b *trapBody) Read(buf []byte) (int, error) {
	if t := b.t; t != nil {
		if t.kp.at == atChunks && !t.done() {
			left := t.base + t.kp.bytes - b.p.chunkBytes.Load()
			if left <= 0 {
				t.fireNow()
			} else if int64(len(buf)) > left {
				buf = buf[:left]
			}
		}
		if t.cut && t.done() {
			return 0, errTrapped
		}
	}
	n, err := b.ReadCloser.Read(buf)
	b.p.chunkBytes.Add(int64(n))
	return n, err
}

// kid is a child process of the test binary.
type kid struct {
	cmd    *exec.Cmd
	out    bytes.Buffer // stdout, once exited
	errOut *testenv.SyncBuffer

	mu     sync.Mutex // the kill may come from any goroutine (a proxy's)
	exited <-chan struct{}
}

// newKid prepares this test binary as a child with JETTY_E2E_CHILD=mode
// and env added.
func newKid(t testing.TB, mode string, env ...string) *kid {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	k := &kid{cmd: exec.Command(exe, "-test.run=^$"), errOut: &testenv.SyncBuffer{}}
	k.cmd.Env = append(append(os.Environ(), "JETTY_E2E_CHILD="+mode), env...)
	k.cmd.Stdout = &k.out
	k.cmd.Stderr = k.errOut
	return k
}

// start runs the child (it dies with the test binary); it is killed at
// the end of the test if still running.
func (k *kid) start(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	exited, err := testenv.StartChild(k.cmd)
	k.exited = exited
	k.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.kill)
}

// done is closed once the child has exited.
func (k *kid) done() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.exited
}

// kill ends the child with SIGKILL (no shutdown code runs) and waits
// until it is gone.
func (k *kid) kill() {
	k.mu.Lock()
	exited := k.exited
	if exited != nil {
		k.cmd.Process.Kill()
	}
	k.mu.Unlock()
	if exited != nil {
		<-exited
	}
}

// wait waits for the child to exit by itself, at most within.
func (k *kid) wait(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case <-k.done():
	case <-time.After(within):
		k.kill()
		t.Fatalf("child did not finish within %v; stderr:\n%s", within, k.errOut.String())
	}
}

// clientEnv is the environment of childUpload for a file.
func clientEnv(serverURL, key, secret, path, journal string, workers int, chunk int64) []string {
	return []string{"JETTY_E2E_SERVER=" + serverURL, "JETTY_E2E_KEY=" + key, "JETTY_E2E_SECRET=" + secret,
		"JETTY_E2E_PATH=" + path, "JETTY_E2E_JOURNAL=" + journal,
		fmt.Sprintf("JETTY_E2E_WORKERS=%d", workers), fmt.Sprintf("JETTY_E2E_CHUNK=%d", chunk), "JETTY_E2E_BWLIMIT=0"}
}

// serverKid is a server running in a child process (JETTY_E2E_CHILD=server).
type serverKid struct {
	*kid
	url string
}

// startServerKid runs a server made from cfg in a child process and waits
// until it listens.
func startServerKid(t testing.TB, cfg app.Config) *serverKid {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.WebhookSecret = webhookSecret
	cfg.TokenSecret = "e2e_token_secret_3ef79aa985580f88c4f1414f5fe72ece" // upload tokens outlive a restart
	cfg.LiveKeys = true
	// A completion the kill interrupted is taken over once its lease ran
	// out: short here, so that the resume waits 2 s rather than 30.
	cfg.CompletionLease = 2 * time.Second
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := newKid(t, "server", "JETTY_E2E_SERVER_CONFIG="+string(raw))
	pr, pw := io.Pipe()
	k.cmd.Stdout = pw
	k.start(t)
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "SERVER "); ok {
				urls <- u
			}
		}
	}()
	go func() { <-k.exited; pw.Close() }()
	select {
	case u := <-urls:
		return &serverKid{kid: k, url: u}
	case <-k.exited:
		t.Fatalf("server child exited (%v) before listening; stderr:\n%s", k.cmd.ProcessState, k.errOut.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("server child did not listen within 60s; stderr:\n%s", k.errOut.String())
	}
	return nil
}

// stop stops the server gracefully (SIGTERM).
func (k *serverKid) stop(t testing.TB) {
	t.Helper()
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
		if !k.cmd.ProcessState.Success() {
			t.Errorf("server child: %v; stderr:\n%s", k.cmd.ProcessState, k.errOut.String())
		}
	case <-time.After(40 * time.Second):
		k.kill()
		t.Fatal("server child did not stop within 40s of SIGTERM")
	}
}

// childServer is the child of startServerKid: a server made from the JSON
// app.Config in JETTY_E2E_SERVER_CONFIG, until SIGTERM or SIGKILL.
func childServer() int {
	var cfg app.Config
	if err := json.Unmarshal([]byte(os.Getenv("JETTY_E2E_SERVER_CONFIG")), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "server config:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, stopServer, err := app.Start(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		return 1
	}
	fmt.Printf("SERVER %s\n", a.URL())
	<-ctx.Done()
	if err := stopServer(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		return 1
	}
	return 0
}

// relayS3FromEnv is the S3 store a child relay writes parts to itself
// (mode s3), from JETTY_E2E_S3_*; nil (mode relay) without them.
func relayS3FromEnv() *s3blob.Config {
	ep := os.Getenv("JETTY_E2E_S3_ENDPOINT")
	if ep == "" {
		return nil
	}
	return &s3blob.Config{Endpoint: ep, Region: os.Getenv("JETTY_E2E_S3_REGION"), AccessKeyID: os.Getenv("JETTY_E2E_S3_ACCESS"),
		SecretAccessKey: os.Getenv("JETTY_E2E_S3_SECRET"), Bucket: os.Getenv("JETTY_E2E_S3_BUCKET")}
}

func relayS3Env(c *s3blob.Config) []string {
	if c == nil {
		return nil
	}
	return []string{"JETTY_E2E_S3_ENDPOINT=" + c.Endpoint, "JETTY_E2E_S3_REGION=" + c.Region, "JETTY_E2E_S3_ACCESS=" + c.AccessKeyID,
		"JETTY_E2E_S3_SECRET=" + c.SecretAccessKey, "JETTY_E2E_S3_BUCKET=" + c.Bucket}
}

// relayConfig is an in-process relay's configuration (mode s3 when s3c
// is set).
func relayConfig(origin, id string, s3c *s3blob.Config) relay.Config {
	return relay.Config{Origin: origin, ID: id, Secret: edgeSecret, S3: s3c, Interval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second}
}

// relayKid is a relay in a child process (childRelay).
type relayKid struct {
	*kid
	url string
}

// startRelayKid runs a relay (writing to s3c itself when set) in a child
// process and waits until it is registered with origin.
func startRelayKid(t testing.TB, origin, id string, s3c *s3blob.Config) *relayKid {
	t.Helper()
	k := newKid(t, "relay", append([]string{"JETTY_E2E_ORIGIN=" + origin, "JETTY_E2E_EDGE_ID=" + id}, relayS3Env(s3c)...)...)
	pr, pw := io.Pipe()
	k.cmd.Stdout = pw
	k.start(t)
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "RELAY "); ok {
				urls <- u
			}
		}
	}()
	go func() { <-k.exited; pw.Close() }()
	select {
	case u := <-urls:
		return &relayKid{kid: k, url: u}
	case <-k.exited:
		t.Fatalf("relay child exited (%v) before registering; stderr:\n%s", k.cmd.ProcessState, k.errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("relay child did not register within 20s; stderr:\n%s", k.errOut.String())
	}
	return nil
}

// backend is what the checks look at: a server's database and object
// store (the server's own or handles opened beside a child's), and its
// API while it runs.
type backend struct {
	store   domain.Store
	blobs   blob.Store
	blobDir string      // the filesystem store's root; "" on S3
	s3      *testenv.S3 // the bucket; nil on files
	url     string      // the API, while the server runs
	key     string
	secret  string
	userID  string
	written map[string]bool // SHA-256 of every file uploaded (wrote)
}

// wrote records a file the test uploads, which an object may be whole of.
func (b *backend) wrote(sum string) {
	if b.written == nil {
		b.written = map[string]bool{}
	}
	b.written[sum] = true
}

// hashObject is the SHA-256 of an object's bytes.
func (b *backend) hashObject(t testing.TB, key string) string {
	t.Helper()
	rc, _, err := b.blobs.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatalf("read object %s: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("read object %s: %v", key, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// backendOf is the backend of a server running in this process.
func backendOf(s *server) *backend {
	b := &backend{store: s.app.Store(), blobs: s.app.Blobs(), url: s.url, key: s.key, secret: s.secret, userID: "usr_e2e"}
	if fs, ok := s.app.Blobs().(*fsblob.Store); ok {
		b.blobDir = fs.Dir()
	}
	if c := s.app.Config().S3; c != nil {
		b.s3 = &testenv.S3{Endpoint: c.Endpoint, Region: c.Region, AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, Bucket: c.Bucket}
	}
	return b
}

func (b *backend) account(t testing.TB) domain.Account {
	t.Helper()
	a, err := b.store.AccountByUserID(context.Background(), b.userID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// session is the account's session id, or the zero session for "".
func (b *backend) session(t testing.TB, id string) domain.UploadSession {
	t.Helper()
	if id == "" {
		return domain.UploadSession{}
	}
	sess, err := b.store.SessionByID(context.Background(), b.account(t).ID, id)
	if err != nil {
		t.Fatalf("session %s: %v", id, err)
	}
	return sess
}

// storedBytes is how many bytes of chunks the open session for this
// content holds (0 when there is none): session sid (from the journal; a
// pipelined upload's sized session has no content hash until it
// completes), else the one opened with this content's manifest.
func (b *backend) storedBytes(t testing.TB, sum string, size int64, sid string) int64 {
	t.Helper()
	ctx := context.Background()
	sess, err := openSessionOf(ctx, b.store, b.account(t).ID, sum, size, sid)
	if err != nil {
		return 0
	}
	parts, err := b.blobs.ListParts(ctx, sess.ObjectKey, sess.UploadID)
	if err != nil {
		return 0
	}
	var n int64
	for _, p := range parts {
		n += p.Size
	}
	return n
}

// settle waits until the server has finished with what a dead client
// left it: the session is not being completed any more.
func (b *backend) settle(t testing.TB, sessionID string) {
	t.Helper()
	if sessionID == "" {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.session(t, sessionID).State == domain.SessionCompleting {
		if time.Now().After(deadline) {
			t.Fatalf("session %s still completing 30s after its client died", sessionID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quiesce waits until the filesystem store has had no temporary file for
// a quarter of a second: a live server removes those of the chunks cut
// when their sender died.
func (b *backend) quiesce(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clear := time.Now(); time.Since(clear) < 250*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if tmp := b.tempFiles(t); len(tmp) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("temporary files stay 10s after their sender died: %v", tmp)
			}
			clear = time.Now()
		}
	}
}

// assembledFunc reports, from any goroutine, whether the store holds
// more objects than n: the object of the upload in progress is assembled.
func (b *backend) assembledFunc(n int) func() bool {
	return func() bool {
		objs, err := b.blobs.List(context.Background(), "")
		return err == nil && len(objs) > n
	}
}

// storeAssets lists the account's assets from the database.
func (b *backend) storeAssets(t testing.TB) []domain.Asset {
	t.Helper()
	page, err := b.store.ListAssets(context.Background(), b.account(t).ID, domain.AssetFilter{}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return page.Assets
}

// apiAssets lists the account's assets through the API.
func (b *backend) apiAssets(t testing.TB) []protocol.Asset {
	t.Helper()
	req, _ := http.NewRequest("GET", b.url+"/api/storage/assets?limit=1000", nil)
	req.SetBasicAuth(b.key, b.secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Assets []protocol.Asset `json:"assets"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("list assets: %s %v", res.Status, err)
	}
	return out.Assets
}

// download fetches an asset through the API and returns the SHA-256 and
// size of its bytes.
func (b *backend) download(t testing.TB, id string) (string, int64) {
	t.Helper()
	return (&server{url: b.url, key: b.key, secret: b.secret}).download(t, id)
}

func (b *backend) objects(t testing.TB) []blob.Info {
	t.Helper()
	objs, err := b.blobs.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// uploads lists the multipart uploads in progress: the store's own list
// and, on S3, the bucket's ListMultipartUploads behind its back.
func (b *backend) uploads(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	ups, err := b.blobs.ListUploads(ctx, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range ups {
		out = append(out, u.Key+" "+u.UploadID)
	}
	if b.s3 != nil {
		page, err := b.s3.S3Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &b.s3.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Uploads {
			out = append(out, "s3:"+*u.Key+" "+*u.UploadId)
		}
	}
	if b.blobDir != "" {
		ents, _ := os.ReadDir(filepath.Join(b.blobDir, "uploads"))
		for _, e := range ents {
			out = append(out, "dir:uploads/"+e.Name())
		}
	}
	return out
}

// tempFiles lists what the filesystem store holds under tmp/.
func (b *backend) tempFiles(t testing.TB) []string {
	t.Helper()
	if b.blobDir == "" {
		return nil
	}
	ents, err := os.ReadDir(filepath.Join(b.blobDir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// content is a file uploaded to completion.
type content struct {
	sum  string
	size int64
}

func usedBy(done []content) int64 {
	var n int64
	for _, c := range done {
		n += c.size
	}
	return n
}

// checkKilled checks what a kill left visible of this content, before
// any resume: no asset (API, when the server runs, and the database, by
// hash too), no object under the session's key, and no object in the
// store that is no asset's. After a server kill (pending) an object of
// no asset may be one the database records as pending, whole (the bytes
// of a file uploaded), never partial: a completion that died between the
// store and the database, left to the collector. When the client died while the server completed
// (completing) the asset may exist, exactly once and whole. It reports
// whether it does.
func (b *backend) checkKilled(t testing.TB, sum string, size int64, sessionID string, api, pending, completing bool) bool {
	t.Helper()
	ctx := context.Background()
	acct := b.account(t)
	assets := b.storeAssets(t)
	if api {
		apiList := b.apiAssets(t)
		if len(apiList) != len(assets) {
			t.Fatalf("the API lists %d assets, the database %d", len(apiList), len(assets))
		}
	}
	keys := map[string]bool{}
	found := 0
	for _, a := range assets {
		keys[a.ObjectKey] = true
		if a.SHA256 == sum {
			found++
			if a.Size != size {
				t.Fatalf("asset %s of the killed upload is %d bytes, want %d", a.ID, a.Size, size)
			}
		}
	}
	byHash, err := b.store.AssetByContent(ctx, acct.ID, sum)
	switch {
	case found > 1 || found == 1 && !completing:
		t.Fatalf("%d assets of the killed upload are visible before any resume", found)
	case found == 0 && domain.ErrorCode(err) != domain.ENotFound:
		t.Fatalf("asset lookup by hash after the kill: %+v %v", byHash, err)
	}
	if sess := b.session(t, sessionID); sess.ObjectKey != "" && found == 0 {
		if info, err := b.blobs.Stat(ctx, sess.ObjectKey); !errors.Is(err, blob.ErrNotFound) && !pending {
			t.Fatalf("the session's object %s exists after the kill: %+v %v", sess.ObjectKey, info, err)
		}
	}
	for _, o := range b.objects(t) {
		if keys[o.Key] {
			continue
		}
		known, err := b.store.IsKnownObject(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		if !pending || !known {
			t.Fatalf("object %s (%d bytes) is in the store but is no asset's (known to the database: %v)", o.Key, o.Size, known)
		}
		if h := b.hashObject(t, o.Key); !b.written[h] {
			t.Fatalf("partial object %s: %d bytes that are none of the files uploaded", o.Key, o.Size)
		}
	}
	return found == 1
}

// checkCompleted checks a resumed upload: the asset is listed exactly
// once (API and database), found by hash, its download is byte-identical,
// and the account uses exactly the bytes of the contents completed.
func (b *backend) checkCompleted(t testing.TB, sum string, size int64, assetID string, done []content) {
	t.Helper()
	n := 0
	for _, a := range b.apiAssets(t) {
		if a.Hash == sum {
			n++
			if a.ID != assetID || a.Size != size {
				t.Fatalf("listed asset %s (%d bytes), the upload's is %s (%d)", a.ID, a.Size, assetID, size)
			}
		}
	}
	if n != 1 {
		t.Fatalf("the content is listed as %d assets, want 1", n)
	}
	// Found by its content id (the SHA-256 where the server verified it,
	// else its chunk list), and only the verified kind equals the hash.
	got, err := b.store.AssetByID(context.Background(), b.account(t).ID, assetID)
	if err != nil || got.SHA256 != sum || (got.SHA256Verified != (got.ContentID == sum)) {
		t.Fatalf("asset %s: %+v %v, want hash %s", assetID, got, err, sum)
	}
	if a, err := b.store.AssetByContent(context.Background(), b.account(t).ID, got.ContentID); err != nil || a.ID != assetID {
		t.Fatalf("asset by content id %s: %+v %v, want %s", got.ContentID, a, err, assetID)
	}
	if got, n := b.download(t, assetID); got != sum || n != size {
		t.Fatalf("download: %s %d bytes, want %s %d", got, n, sum, size)
	}
	if acct := b.account(t); acct.StorageUsedBytes != usedBy(done) {
		t.Fatalf("storage used %d bytes, want %d (each content completed once)", acct.StorageUsedBytes, usedBy(done))
	}
}

// runJobs runs the background jobs as a day later (past every session's
// expiry, every reservation's and every pending deadline), then once more,
// which must find nothing left to do.
func (b *backend) runJobs(t testing.TB) jobs.Report {
	t.Helper()
	r := &jobs.Runner{Store: b.store, Blobs: b.blobs, Holder: "e2e-kill", Now: func() time.Time { return time.Now().Add(25 * time.Hour) }}
	rep, err := r.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("jobs: %v", err)
	}
	again, err := r.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("jobs, second pass: %v", err)
	}
	if again.ReservationsReleased+again.ObjectsCollected+again.OrphansRemoved+again.AssetsExpired != 0 {
		t.Fatalf("a second pass still found work: %+v", again)
	}
	return rep
}

// checkCleanup checks the state after the jobs: nothing reserved, the
// usage of the completed contents only, no multipart upload or part, no
// temporary file, and exactly the completed assets' objects, whole.
func (b *backend) checkCleanup(t testing.TB, done []content) {
	t.Helper()
	acct := b.account(t)
	if acct.StorageReservedBytes != 0 || acct.StorageUsedBytes != usedBy(done) {
		t.Fatalf("after cleanup: %d bytes reserved (want 0), %d used (want %d)", acct.StorageReservedBytes, acct.StorageUsedBytes, usedBy(done))
	}
	if ups := b.uploads(t); len(ups) != 0 {
		t.Fatalf("multipart uploads left after cleanup: %v", ups)
	}
	if tmp := b.tempFiles(t); len(tmp) != 0 {
		t.Fatalf("temporary files left after cleanup: %v", tmp)
	}
	assets := b.storeAssets(t)
	if len(assets) != len(done) {
		t.Fatalf("%d assets after cleanup, want %d", len(assets), len(done))
	}
	want := map[string]int64{}
	for _, a := range assets {
		want[a.ObjectKey] = a.Size
	}
	objs := b.objects(t)
	if len(objs) != len(want) {
		t.Fatalf("%d objects after cleanup, want the %d assets' own: %+v", len(objs), len(want), objs)
	}
	for _, o := range objs {
		if size, ok := want[o.Key]; !ok || size != o.Size {
			t.Fatalf("object %s (%d bytes) after cleanup is no asset's whole object", o.Key, o.Size)
		}
	}
}

// checkParts checks that the parts an upload holds are whole chunks of
// the file at path: none is what was in flight when a writer died.
func (b *backend) checkParts(t testing.TB, sessionID, path string, chunk int64) int {
	t.Helper()
	sess := b.session(t, sessionID)
	parts, err := b.blobs.ListParts(context.Background(), sess.ObjectKey, sess.UploadID)
	if err != nil {
		t.Fatalf("list parts: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range parts {
		buf := make([]byte, chunk)
		n, err := f.ReadAt(buf, int64(p.Number-1)*chunk)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		h := sha256.Sum256(buf[:n])
		if p.Size != int64(n) || hex.EncodeToString(p.SHA256) != hex.EncodeToString(h[:]) {
			t.Fatalf("part %d holds %d bytes hashing %x; chunk %d is %d bytes hashing %x", p.Number, p.Size, p.SHA256, p.Number-1, n, h)
		}
	}
	return len(parts)
}

// journalSession is the session id the engine's journal in dir records for
// the file at path uploaded to serverURL ("" when none).
func journalSession(t testing.TB, dir, serverURL, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(engine.JournalPath(dir, strings.TrimRight(serverURL, "/"), abs))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var j engine.Journal
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatalf("journal: %v", err)
	}
	return j.SessionID
}

func mibOf(n int64) float64 { return float64(n) / (1 << 20) }

// openSessionOf is session sid while it is open or completing, else the
// open session opened with the manifest of sum and size.
func openSessionOf(ctx context.Context, st domain.SessionStore, accountID, sum string, size int64, sid string) (domain.UploadSession, error) {
	if sid != "" {
		sess, err := st.SessionByID(ctx, accountID, sid)
		if err == nil && (sess.State == domain.SessionOpen || sess.State == domain.SessionCompleting) && sess.UploadID != "" {
			return sess, nil
		}
	}
	return st.OpenSessionFor(ctx, accountID, sum, size, time.Now())
}
