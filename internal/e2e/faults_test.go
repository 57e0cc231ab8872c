package e2e

// Faults in the parts (reliability scenario 7): the database restarted
// mid-upload, the object store unreachable for 10 s, Redis down, and a
// client→server link that resets, times out and closes slowly on a share
// of its connections. Each test puts the fault under a real upload, checks
// the upload ends byte-identical (at once, or after the resume a user would
// run), that nothing is counted twice or left behind, that the server
// stayed up and said what it could meanwhile, and logs its figures (for
// docs/RELIABILITY.md). Traffic stays on 127.0.0.1; every wait is bounded.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	jetty "github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// faultStats counts what an upload went through, from its progress events.
type faultStats struct {
	chunkRetries   atomic.Int64
	controlRetries atomic.Int64
	chunksDone     atomic.Int64
	firstChunk     chan struct{} // closed when the server first stores a chunk
	once           sync.Once

	mu   sync.Mutex
	errs map[string]int // retried errors, by text, addresses and ids masked
}

// maskErr matches what differs between otherwise equal errors: ports,
// session ids, chunk indexes.
var maskErr = regexp.MustCompile(`:\d{2,5}\b|ses_[a-z0-9]+|/chunks/\d+`)

func newFaultStats() *faultStats {
	return &faultStats{firstChunk: make(chan struct{}), errs: map[string]int{}}
}

func (f *faultStats) Event(e engine.Event) {
	switch e.Kind {
	case engine.EventChunkDone:
		f.chunksDone.Add(1)
		f.once.Do(func() { close(f.firstChunk) })
	case engine.EventRetry:
		if e.Index < 0 {
			f.controlRetries.Add(1)
		} else {
			f.chunkRetries.Add(1)
		}
		if e.Err != nil {
			msg := maskErr.ReplaceAllString(e.Err.Error(), "*")
			if len(msg) > 160 {
				msg = msg[:160] + "…"
			}
			f.mu.Lock()
			f.errs[msg]++
			f.mu.Unlock()
		}
	}
}

// errorSummary is the retried errors, most frequent first (at most 5).
func (f *faultStats) errorSummary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return "none"
	}
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range f.errs {
		all = append(all, kv{k, n})
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[j].n > all[i].n {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	var b strings.Builder
	for i, e := range all {
		if i == 5 {
			fmt.Fprintf(&b, "; …")
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d× %s", e.n, e.k)
	}
	return b.String()
}

// uploadOutcome is what uploadResuming did.
type uploadOutcome struct {
	res  *engine.Result // the successful run's result; nil if none
	runs int
	sent int64 // chunk payload bytes sent over all runs
	took time.Duration
	errs []string // the failed runs' errors
}

// uploadResuming uploads path and, when a run fails, runs it again as a
// user would (the journal in opts.JournalDir resumes it), maxRuns at most.
func uploadResuming(ctx context.Context, c *engine.Client, path string, opts engine.Options, maxRuns int) uploadOutcome {
	var out uploadOutcome
	t0 := time.Now()
	for out.runs < maxRuns && ctx.Err() == nil {
		out.runs++
		res, err := engine.Upload(ctx, c, path, opts)
		if res != nil {
			out.sent += res.BytesSent
		}
		if err == nil {
			out.res = res
			break
		}
		out.errs = append(out.errs, err.Error())
	}
	out.took = time.Since(t0)
	return out
}

// waitFirstChunk waits until the upload's first chunk is stored; the test
// fails when the upload ends first (too fast to put a fault under it) or
// nothing is stored within 60 s.
func waitFirstChunk(t *testing.T, st *faultStats, done <-chan uploadOutcome) {
	t.Helper()
	select {
	case <-st.firstChunk:
	case out := <-done:
		t.Fatalf("the upload ended before a fault could be put under it: %+v", out)
	case <-time.After(60 * time.Second):
		t.Fatal("no chunk stored within 60 s")
	}
}

// awaitUpload waits for the upload (bounded by its own context) and fails
// the test when no run succeeded.
func awaitUpload(t *testing.T, done <-chan uploadOutcome, st *faultStats) uploadOutcome {
	t.Helper()
	out := <-done
	if out.res == nil {
		t.Fatalf("upload failed %d times, last errors %q; retried: %s", out.runs, out.errs, st.errorSummary())
	}
	return out
}

func (s *server) client() *engine.Client {
	return &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
}

func s3Config(m testenv.S3) *s3blob.Config {
	return &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
}

// viaProxy puts a toxiproxy proxy in front of the host of the URL raw and
// returns raw pointing at the proxy (path and query, such as a
// search_path, kept).
func viaProxy(t *testing.T, raw string) (string, *testenv.Proxy) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.Toxiproxy(t).Proxy(t, u.Host)
	u.Host = p.Addr()
	return u.String(), p
}

// answer is one HTTP exchange with the server.
type answer struct {
	status int
	header http.Header
	body   string
	took   time.Duration
	err    error
}

var probeHTTP = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// call sends a request (authenticated with key and secret when key is
// not empty) and reads the whole answer.
func call(method, u, key, secret string, body []byte) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return answer{err: err}
	}
	if key != "" {
		req.SetBasicAuth(key, secret)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	res, err := probeHTTP.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(t0)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: string(b), took: time.Since(t0), err: err}
}

// checkErrorBody fails unless a is a JSON error answer ({"error", "code"}
// and nothing more revealing) with a 5xx status that names none of
// secrets (addresses, credentials, internal names).
// checkOutage is checkErrorBody for an outage of a part: 503
// unavailable with a Retry-After, so clients pace themselves (a bare 500
// until issue 16).
func checkOutage(t *testing.T, what string, a answer, secrets ...string) {
	t.Helper()
	checkErrorBody(t, what, a, secrets...)
	if a.err != nil {
		return
	}
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	if a.status != 503 || !strings.Contains(a.body, `"code":"unavailable"`) || err != nil || ra < 1 {
		t.Errorf("%s: %d Retry-After %q %s; want 503 unavailable with a Retry-After", what, a.status, a.header.Get("Retry-After"), a.body)
	}
}

func checkErrorBody(t *testing.T, what string, a answer, secrets ...string) {
	t.Helper()
	if a.err != nil {
		t.Errorf("%s: %v (the server must answer, not drop the request)", what, a.err)
		return
	}
	if a.status < 500 {
		t.Errorf("%s: %d %s, want a 5xx", what, a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want JSON", what, ct)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(a.body), &body); err != nil {
		t.Errorf("%s: body %q is not JSON: %v", what, a.body, err)
		return
	}
	if msg, _ := body["error"].(string); msg == "" {
		t.Errorf("%s: body %q has no error message", what, a.body)
	}
	if code, _ := body["code"].(string); code == "" {
		t.Errorf("%s: body %q has no error code", what, a.body)
	}
	lower := strings.ToLower(a.body)
	for _, s := range secrets {
		if s != "" && strings.Contains(lower, strings.ToLower(s)) {
			t.Errorf("%s: body %q reveals %q", what, a.body, s)
		}
	}
}

// account is the e2e account as the database has it now.
func (s *server) account(t *testing.T) jetty.Account {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acct, err := s.app.Store().AccountByUserID(ctx, "usr_e2e")
	if err != nil {
		t.Fatal(err)
	}
	return acct
}

// checkStored checks the upload's outcome: the asset downloads
// byte-identical, the account holds exactly one asset and is charged its
// size once, with nothing left reserved.
func checkStored(t *testing.T, s *server, res *engine.Result, sum string, size int64) {
	t.Helper()
	if res.Asset.Hash != sum || res.Asset.Size != size {
		t.Fatalf("asset %s of %d bytes, want %s of %d", res.Asset.Hash, res.Asset.Size, sum, size)
	}
	got, n := s.download(t, res.Asset.ID)
	if got != sum || n != size {
		t.Fatalf("download: %d bytes hashing to %s, want %d bytes hashing to %s", n, got, size, sum)
	}
	acct := s.account(t)
	if acct.StorageUsedBytes != size || acct.StorageReservedBytes != 0 {
		t.Errorf("account: %d bytes used and %d reserved, want %d and 0 (counted once, nothing left reserved)", acct.StorageUsedBytes, acct.StorageReservedBytes, size)
	}
	a := call("GET", s.url+"/api/storage/assets", s.key, s.secret, nil)
	var list struct {
		Assets []struct {
			ID string `json:"id"`
		} `json:"assets"`
	}
	if a.err != nil || a.status != 200 || json.Unmarshal([]byte(a.body), &list) != nil {
		t.Fatalf("list assets: %d %s %v", a.status, a.body, a.err)
	}
	if len(list.Assets) != 1 {
		t.Errorf("the account has %d assets, want 1: %s", len(list.Assets), a.body)
	}
}

// checkUp checks the server answers /healthz at once and /readyz within
// 15 s (its database pool reconnecting).
func checkUp(t *testing.T, s *server) {
	t.Helper()
	if a := call("GET", s.url+"/healthz", "", "", nil); a.err != nil || a.status != 200 {
		t.Fatalf("healthz after the fault: %d %v", a.status, a.err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := call("GET", s.url+"/readyz", "", "", nil)
		if a.err == nil && a.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after the fault: %d %s %v", a.status, a.body, a.err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sleepUntil sleeps until t (if it is in the future).
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// --- PostgreSQL ---

// TestFaultPostgresRestart: a private PostgreSQL cluster, stopped with an
// immediate shutdown (every backend dies at once, as in a crash) while an
// upload is under way and started again 4 s later (crash recovery
// included). The upload completes, byte-identical and charged once; the
// server stays up and answers meanwhile.
func TestFaultPostgresRestart(t *testing.T) {
	pg := testenv.PostgresServer(t)
	m := testenv.MinIO(t)
	s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: pg.URL(), RedisURL: testenv.RedisURL(t), S3: s3Config(m)})
	postgresOutage(t, s, pg.Addr(), "restart", func() { pg.Stop(t, true) }, func() { pg.Start(t) })
}

// TestFaultPostgresLinkCut: the same with the machine's PostgreSQL behind
// a toxiproxy proxy that is disabled for 4 s (every connection closed,
// new ones refused), as a network cut or a restart seen from the server.
func TestFaultPostgresLinkCut(t *testing.T) {
	dsn, p := viaProxy(t, testenv.PostgresURL(t))
	m := testenv.MinIO(t)
	s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: dsn, RedisURL: testenv.RedisURL(t), S3: s3Config(m)})
	postgresOutage(t, s, p.Addr(), "link cut", func() { p.Disable(t) }, func() { p.Enable(t) })
}

func postgresOutage(t *testing.T, s *server, dbAddr, kind string, cut, restore func()) {
	const (
		size    = 64 << 20
		chunk   = 5 << 20
		workers = 4
		outage  = 4 * time.Second
	)
	path, sum := writeFile(t, 71, size)
	st := newFaultStats()
	// 8 MiB/s: the upload takes about 8 s, so the outage falls in it.
	opts := engine.Options{Workers: workers, ChunkSize: chunk, BandwidthLimit: 8 << 20, JournalDir: t.TempDir(), Progress: st}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan uploadOutcome, 1)
	go func() { done <- uploadResuming(ctx, s.client(), path, opts, 3) }()
	waitFirstChunk(t, st, done)

	t0 := time.Now()
	cut()
	chunksBefore := st.chunksDone.Load()
	// Meanwhile the server is up: liveness answers, readiness says the
	// database is unavailable, a control call gets a JSON 5xx that does
	// not say where the database is.
	if a := call("GET", s.url+"/healthz", "", "", nil); a.err != nil || a.status != 200 {
		t.Errorf("healthz with the database down: %d %v", a.status, a.err)
	}
	a := call("GET", s.url+"/readyz", "", "", nil)
	if a.err != nil || a.status != 503 || !strings.Contains(a.body, `"database":"unavailable"`) {
		t.Errorf("readyz with the database down: %d %s %v; want 503 naming the database", a.status, a.body, a.err)
	}
	q := call("GET", s.url+"/api/agentcache/quota", s.key, s.secret, nil)
	checkOutage(t, "quota with the database down", q, dbAddr, "sqlstore", "pgx", "postgres://", "dial tcp", "connection refused", "SQLSTATE")
	sleepUntil(t0.Add(outage))
	restore()
	down := time.Since(t0)

	out := awaitUpload(t, done, st)
	checkStored(t, s, out.res, sum, size)
	checkUp(t, s)
	retries := st.chunkRetries.Load() + st.controlRetries.Load()
	if retries == 0 && out.runs == 1 {
		t.Fatalf("the outage did not touch the upload (no retry): the test tested nothing")
	}
	t.Logf("PostgreSQL %s for %.1f s under a %d MiB upload (%d workers × %d MiB, 8 MiB/s), %d chunks stored before it: done in %.1f s, %d run(s), %d chunk and %d control retries, %.2f× the file size sent; during the outage quota answered %d in %v",
		kind, down.Seconds(), size>>20, workers, chunk>>20, chunksBefore, out.took.Seconds(), out.runs, st.chunkRetries.Load(), st.controlRetries.Load(), float64(out.sent)/size, q.status, q.took.Round(time.Millisecond))
	if len(out.errs) > 0 {
		t.Logf("failed runs before the resume that completed: %q", out.errs)
	}
	t.Logf("retried errors: %s", st.errorSummary())
}

// --- MinIO ---

// TestFaultMinIOUnreachable: the object store is unreachable (its proxy
// disabled) for 10 s in the middle of an upload. Meanwhile calls that need
// only the database still work and those that need storage get a JSON 5xx
// that reveals neither the store's address nor its credentials. The
// upload then completes (or its resume does), byte-identical, charged
// once, with no multipart upload or stray object left in the bucket.
func TestFaultMinIOUnreachable(t *testing.T) {
	const (
		size    = 64 << 20
		chunk   = 5 << 20
		workers = 4
		outage  = 10 * time.Second
	)
	m := testenv.MinIO(t)
	p := testenv.Toxiproxy(t).Proxy(t, m.Endpoint)
	cfg := s3Config(m)
	cfg.Endpoint = p.URL()
	s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: testenv.PostgresURL(t), RedisURL: testenv.RedisURL(t), S3: cfg})
	path, sum := writeFile(t, 72, size)

	// A second file, whose session open is tried during the outage.
	other, err := engine.Plan(context.Background(), newGenReaderAt(6<<20), 6<<20, chunk, engine.PlanOptions{Name: "other.bin"})
	if err != nil {
		t.Fatal(err)
	}
	openBody, _ := json.Marshal(protocol.OpenRequest{Manifest: other})

	st := newFaultStats()
	opts := engine.Options{Workers: workers, ChunkSize: chunk, BandwidthLimit: 8 << 20, JournalDir: t.TempDir(), Progress: st}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan uploadOutcome, 1)
	go func() { done <- uploadResuming(ctx, s.client(), path, opts, 3) }()
	waitFirstChunk(t, st, done)

	acct := s.account(t)
	sess, err := openSessionOf(context.Background(), s.app.Store(), acct.ID, sum, size, journalSession(t, opts.JournalDir, s.client().BaseURL, path))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{p.Addr(), strings.TrimPrefix(m.Endpoint, "http://"), m.AccessKey, m.SecretKey, m.Bucket, sess.ObjectKey, sess.UploadID, "s3blob", "dial tcp", "connection refused", "amz"}

	t0 := time.Now()
	p.Disable(t)
	// Probe rounds start only in the first 3 s: a storage call may take
	// several seconds to fail (the S3 client retries), and every probe must
	// be answered before storage comes back (a session opened then would
	// be a legitimate multipart upload).
	var probes, storageErrs int
	var worst time.Duration
	for probes == 0 || time.Since(t0) < 3*time.Second {
		probes++
		// The database alone: fine.
		if a := call("GET", s.url+"/api/agentcache/quota", s.key, s.secret, nil); a.err != nil || a.status != 200 {
			t.Errorf("quota with storage down: %d %s %v; want 200 (it needs only the database)", a.status, a.body, a.err)
		}
		// Storage: a clear refusal.
		var status, open answer
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			status = call("GET", s.url+"/api/jetty/sessions/"+sess.ID, s.key, s.secret, nil)
		}()
		go func() { defer wg.Done(); open = call("POST", s.url+"/api/jetty/sessions", s.key, s.secret, openBody) }()
		wg.Wait()
		for _, a := range []answer{status, open} {
			worst = max(worst, a.took)
			if a.err == nil && a.status >= 500 {
				storageErrs++
			}
			checkOutage(t, "a storage call with storage down", a, secrets...)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if a := call("GET", s.url+"/healthz", "", "", nil); a.err != nil || a.status != 200 {
		t.Errorf("healthz with storage down: %d %v", a.status, a.err)
	}
	sleepUntil(t0.Add(outage))
	p.Enable(t)
	down := time.Since(t0)

	out := awaitUpload(t, done, st)
	checkStored(t, s, out.res, sum, size)
	checkUp(t, s)
	if st.chunkRetries.Load()+st.controlRetries.Load() == 0 && out.runs == 1 {
		t.Fatalf("the outage did not touch the upload (no retry): the test tested nothing")
	}

	// Nothing left behind in the bucket: no multipart upload (the one
	// session's was completed, the refused opens made none), one object.
	s3c := m.S3Client()
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer lcancel()
	ups, err := s3c.ListMultipartUploads(lctx, &s3.ListMultipartUploadsInput{Bucket: &m.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		for _, u := range ups.Uploads {
			t.Errorf("multipart upload left in the bucket: %s %s", *u.Key, *u.UploadId)
		}
	}
	objs, err := s3c.ListObjectsV2(lctx, &s3.ListObjectsV2Input{Bucket: &m.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Contents) != 1 || *objs.Contents[0].Key != sess.ObjectKey {
		var keys []string
		for _, o := range objs.Contents {
			keys = append(keys, *o.Key)
		}
		t.Errorf("objects in the bucket: %q, want just %s", keys, sess.ObjectKey)
	}
	t.Logf("MinIO unreachable for %.1f s under a %d MiB upload (%d workers × %d MiB, 8 MiB/s): done in %.1f s, %d run(s), %d chunk and %d control retries, %.2f× the file size sent; %d probe rounds, %d storage calls answered 5xx, slowest %v",
		down.Seconds(), size>>20, workers, chunk>>20, out.took.Seconds(), out.runs, st.chunkRetries.Load(), st.controlRetries.Load(), float64(out.sent)/size, probes, storageErrs, worst.Round(time.Millisecond))
	if len(out.errs) > 0 {
		t.Logf("failed runs before the resume that completed: %q", out.errs)
	}
	t.Logf("retried errors: %s", st.errorSummary())
}

// --- Redis ---

// TestFaultRedisDown: with Redis unreachable the server degrades and does
// not die (docs/decisions.md, rate limiting: fail open). Authenticated
// calls still answer 200, past the tier's per-minute limit, without rate
// limit headers and without waiting long; /readyz reports the limiter
// unavailable; an upload completes. Once Redis is back the limiter counts
// and refuses again.
func TestFaultRedisDown(t *testing.T) {
	const size = 32 << 20
	rurl, p := viaProxy(t, testenv.RedisURL(t))
	m := testenv.MinIO(t)
	s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: testenv.PostgresURL(t), RedisURL: rurl, S3: s3Config(m)})
	// The free tier allows 10 control calls a minute.
	freeKey, freeSecret := testenv.Provision(t, s.url, webhookSecret, "usr_free", "free")
	quota := func() answer { return call("GET", s.url+"/api/agentcache/quota", freeKey, freeSecret, nil) }

	before := quota()
	if before.err != nil || before.status != 200 || before.header.Get("X-RateLimit-Limit") != "10" {
		t.Fatalf("quota before: %d %v %v", before.status, before.header, before.err)
	}

	p.Disable(t)
	t0 := time.Now()
	const calls = 15 // past the limit of 10
	var worst time.Duration
	for i := 0; i < calls; i++ {
		a := quota()
		worst = max(worst, a.took)
		if a.err != nil || a.status != 200 {
			t.Fatalf("call %d with Redis down: %d %s %v; want 200 (the limiter fails open)", i+1, a.status, a.body, a.err)
		}
		if h := a.header.Get("X-RateLimit-Remaining"); h != "" {
			t.Fatalf("call %d with Redis down carries X-RateLimit-Remaining %s: counted where?", i+1, h)
		}
	}
	// redis.AllowTimeout (1 s) bounds the limiter's part.
	if worst > 4*time.Second {
		t.Errorf("a call with Redis down took %v; the limiter must fail fast", worst)
	}
	if a := call("GET", s.url+"/healthz", "", "", nil); a.err != nil || a.status != 200 {
		t.Errorf("healthz with Redis down: %d %v", a.status, a.err)
	}
	ready := call("GET", s.url+"/readyz", "", "", nil)
	if ready.err != nil || ready.status != 503 || !strings.Contains(ready.body, `"limiter":"unavailable"`) || !strings.Contains(ready.body, `"database":"ok"`) {
		t.Errorf("readyz with Redis down: %d %s %v; want 503 with the limiter unavailable and the database ok (docs/decisions.md)", ready.status, ready.body, ready.err)
	}
	path, sum := writeFile(t, 74, size)
	st := newFaultStats()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := uploadResuming(ctx, s.client(), path, engine.Options{Workers: 8, ChunkSize: 5 << 20, JournalDir: t.TempDir(), Progress: st}, 1)
	if out.res == nil {
		t.Fatalf("upload with Redis down: %q", out.errs)
	}
	checkStored(t, s, out.res, sum, size)
	down := time.Since(t0)

	p.Enable(t)
	// The limiter counts again once the client reconnects (go-redis
	// retries its dial about once a second), and refuses past the limit.
	t1 := time.Now()
	var back time.Duration
	var refused answer
	for i := 0; i < 40 && refused.status == 0; i++ {
		a := quota()
		if a.err != nil {
			t.Fatal(a.err)
		}
		switch {
		case a.status == 429:
			refused = a
		case a.status != 200:
			t.Fatalf("quota after Redis came back: %d %s", a.status, a.body)
		case a.header.Get("X-RateLimit-Remaining") != "" && back == 0:
			back = time.Since(t1)
		case back == 0:
			time.Sleep(100 * time.Millisecond) // not counted yet
		}
		if time.Since(t1) > 20*time.Second {
			break
		}
	}
	if refused.status != 429 || refused.header.Get("Retry-After") == "" || !strings.Contains(refused.body, `"code":"rate_limited"`) {
		t.Fatalf("no 429 rate_limited with Retry-After after Redis came back (last %d %s)", refused.status, refused.body)
	}
	checkUp(t, s)
	t.Logf("Redis down for %.1f s: %d control calls past a limit of 10 all answered 200, slowest %v; a %d MiB upload took %.1f s (%d retries); readyz %d %s; after Redis came back the limiter counted again within %v and refused with 429",
		down.Seconds(), calls, worst.Round(time.Millisecond), size>>20, out.took.Seconds(), st.chunkRetries.Load()+st.controlRetries.Load(), ready.status, strings.TrimSpace(ready.body), back.Round(time.Millisecond))
}

// --- client→server link ---

// TestFaultClientLink: the client reaches the server through toxiproxy,
// with a share of its connections reset mid-chunk (reset_peer), a share
// going silent and closed a second later (timeout), and every close held
// back half a second (slow_close). A 64 MiB upload with 8 workers still
// completes byte-identical, without sending more than 3× the file.
// "keep-alive" is the engine's default client (a connection's luck lasts
// its life); "new connection per request" rolls the dice for every
// request, so about a quarter of them fail.
func TestFaultClientLink(t *testing.T) {
	const (
		size    = 64 << 20
		chunk   = 5 << 20
		workers = 8
	)
	m := testenv.MinIO(t)
	s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: testenv.PostgresURL(t), RedisURL: testenv.RedisURL(t), S3: s3Config(m)})
	cases := []struct {
		name      string
		keepAlive bool
	}{{"keep-alive", true}, {"new connection per request", false}}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, sum := writeFile(t, byte(75+i), size)
			p := testenv.Toxiproxy(t).Proxy(t, s.url)
			p.ResetPeer(t, "upstream", 300, 0.2)
			p.Timeout(t, "upstream", 1000, 0.1)
			p.SlowClose(t, "downstream", 500)
			c := &engine.Client{BaseURL: p.URL(), APIKey: s.key, APISecret: s.secret}
			if !tc.keepAlive {
				tr := http.DefaultTransport.(*http.Transport).Clone()
				tr.DisableKeepAlives = true
				c.HTTP = &http.Client{Transport: tr}
			}
			st := newFaultStats()
			// 32 MiB/s in all, 4 MiB/s a worker: a chunk takes over a
			// second, so a reset 300 ms in cuts it.
			opts := engine.Options{Workers: workers, ChunkSize: chunk, BandwidthLimit: 32 << 20, JournalDir: t.TempDir(), Progress: st}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out := uploadResuming(ctx, c, path, opts, 1)
			if out.res == nil {
				t.Fatalf("upload: %q; retried: %s", out.errs, st.errorSummary())
			}
			if out.res.Asset.Hash != sum {
				t.Fatalf("asset hash %s, want %s", out.res.Asset.Hash, sum)
			}
			got, n := s.download(t, out.res.Asset.ID)
			if got != sum || n != size {
				t.Fatalf("download: %s %d", got, n)
			}
			ratio := float64(out.sent) / size
			t.Logf("%s: %d MiB with %d workers × %d MiB through reset_peer 20%% (300 ms), timeout 10%% (1 s), slow_close 500 ms: done in %.1f s, %d chunk and %d control retries, %.2f× the file size sent",
				tc.name, size>>20, workers, chunk>>20, out.took.Seconds(), st.chunkRetries.Load(), st.controlRetries.Load(), ratio)
			t.Logf("retried errors: %s", st.errorSummary())
			if ratio > 3 {
				t.Errorf("sent %.2f× the file size, want at most 3×", ratio)
			}
		})
	}
	// Each file charged once, nothing left reserved.
	if acct := s.account(t); acct.StorageUsedBytes != int64(len(cases))*size || acct.StorageReservedBytes != 0 {
		t.Errorf("account: %d used, %d reserved, want %d and 0", acct.StorageUsedBytes, acct.StorageReservedBytes, int64(len(cases))*size)
	}
	checkUp(t, s)
}

// TestFaultPostgresMidCall: the database goes away in the middle of a
// control call, after the call changed something and before it recorded
// the rest, and comes back 8 s later. Storage answers are held back 1.5 s
// (a latency toxic) so the cut lands where it should, and the cut waits
// until the database shows the first step done:
//
//   - open: the quota is reserved, then the pending object cannot be
//     recorded; the reservation must not stay behind.
//   - complete: the session is claimed (completing) and storage assembles
//     the object, then the asset cannot be recorded; the session must not
//     stay stuck in completing (for 10 minutes) with its object orphaned.
//
// Either way the upload completes (at once or on a resume), byte-identical,
// charged once, with nothing reserved and one object in the bucket.
func TestFaultPostgresMidCall(t *testing.T) {
	const (
		size   = 24 << 20
		outage = 8 * time.Second
	)
	for _, tc := range []struct {
		name  string
		match func(r *http.Request) bool
		ready string // a query counting > 0 once the first step is done
	}{
		{"open", func(r *http.Request) bool { return r.Method == "POST" && r.URL.Path == "/api/jetty/sessions" },
			`SELECT count(*) FROM quota_reservations`},
		{"complete", func(r *http.Request) bool { return r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/complete") },
			`SELECT count(*) FROM upload_sessions WHERE state = 'completing'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := testenv.PostgresURL(t)
			dsn, dbp := viaProxy(t, direct)
			m := testenv.MinIO(t)
			s3p := testenv.Toxiproxy(t).Proxy(t, m.Endpoint)
			cfg := s3Config(m)
			cfg.Endpoint = s3p.URL()
			s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: dsn, RedisURL: testenv.RedisURL(t), S3: cfg})
			db, err := sql.Open("pgx", direct)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()

			// The client goes through a proxy that holds the first matching
			// call until the test has slowed storage down.
			seen, goOn := make(chan struct{}), make(chan struct{})
			var once sync.Once
			target, _ := url.Parse(s.url)
			rp := httputil.NewSingleHostReverseProxy(target)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.match(r) {
					once.Do(func() {
						close(seen)
						select {
						case <-goOn:
						case <-time.After(30 * time.Second):
						}
					})
				}
				rp.ServeHTTP(w, r)
			}))
			defer front.Close()
			defer func() {
				select {
				case <-goOn:
				default:
					close(goOn)
				}
			}()

			path, sum := writeFile(t, 76, size)
			st := newFaultStats()
			opts := engine.Options{Workers: 4, ChunkSize: 5 << 20, JournalDir: t.TempDir(), Progress: st}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			done := make(chan uploadOutcome, 1)
			c := &engine.Client{BaseURL: front.URL, APIKey: s.key, APISecret: s.secret}
			go func() { done <- uploadResuming(ctx, c, path, opts, 3) }()
			select {
			case <-seen:
			case out := <-done:
				t.Fatalf("the upload ended without the %s call: %+v", tc.name, out)
			case <-time.After(60 * time.Second):
				t.Fatalf("no %s call within 60 s", tc.name)
			}
			lat := s3p.Latency(t, "downstream", 1500, 0)
			close(goOn)
			deadline := time.Now().Add(20 * time.Second)
			for {
				var n int
				if err := db.QueryRow(tc.ready).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%q still 0 after 20 s", tc.ready)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t0 := time.Now()
			dbp.Disable(t)
			time.Sleep(outage)
			dbp.Enable(t)
			s3p.RemoveToxic(t, lat)
			down := time.Since(t0)

			out := awaitUpload(t, done, st)
			checkStored(t, s, out.res, sum, size)
			checkUp(t, s)
			lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer lcancel()
			s3c := m.S3Client()
			ups, err := s3c.ListMultipartUploads(lctx, &s3.ListMultipartUploadsInput{Bucket: &m.Bucket})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range ups.Uploads {
				t.Errorf("multipart upload left in the bucket: %s %s", *u.Key, *u.UploadId)
			}
			objs, err := s3c.ListObjectsV2(lctx, &s3.ListObjectsV2Input{Bucket: &m.Bucket})
			if err != nil {
				t.Fatal(err)
			}
			if len(objs.Contents) != 1 {
				var keys []string
				for _, o := range objs.Contents {
					keys = append(keys, *o.Key)
				}
				t.Errorf("objects in the bucket: %q, want one", keys)
			}
			var stuck int
			if err := db.QueryRow(`SELECT count(*) FROM upload_sessions WHERE state = 'completing'`).Scan(&stuck); err != nil || stuck != 0 {
				t.Errorf("%d sessions left completing (%v)", stuck, err)
			}
			t.Logf("PostgreSQL cut for %.1f s in the middle of %s: the %d MiB upload done in %.1f s, %d run(s), %d chunk and %d control retries, %.2f× the file size sent",
				down.Seconds(), tc.name, size>>20, out.took.Seconds(), out.runs, st.chunkRetries.Load(), st.controlRetries.Load(), float64(out.sent)/size)
			if len(out.errs) > 0 {
				t.Logf("failed runs before the resume that completed: %q", out.errs)
			}
			t.Logf("retried errors: %s", st.errorSummary())
		})
	}
}

// TestFaultRedisHangs: Redis accepts connections but never answers (a
// timeout toxic with no close: a hung or partitioned Redis). Control calls
// still answer 200 (fail open), and within a bounded time; readyz says
// the limiter is unavailable; an upload completes.
func TestFaultRedisHangs(t *testing.T) {
	const size = 16 << 20
	rurl, p := viaProxy(t, testenv.RedisURL(t))
	m := testenv.MinIO(t)
	s := startServer(t, app.Config{DataDir: t.TempDir(), DatabaseURL: testenv.PostgresURL(t), RedisURL: rurl, S3: s3Config(m)})
	quota := func() answer { return call("GET", s.url+"/api/agentcache/quota", s.key, s.secret, nil) }
	if a := quota(); a.err != nil || a.status != 200 || a.header.Get("X-RateLimit-Limit") == "" {
		t.Fatalf("quota before: %d %v", a.status, a.err)
	}
	toxic := p.Timeout(t, "upstream", 0, 1)
	t0 := time.Now()
	var worst time.Duration
	for i := 0; i < 3; i++ {
		a := quota()
		worst = max(worst, a.took)
		if a.err != nil || a.status != 200 {
			t.Fatalf("call %d with Redis hanging: %d %s %v; want 200 (fail open)", i+1, a.status, a.body, a.err)
		}
	}
	ready := call("GET", s.url+"/readyz", "", "", nil)
	if ready.err != nil || ready.status != 503 || !strings.Contains(ready.body, `"limiter":"unavailable"`) {
		t.Errorf("readyz with Redis hanging: %d %s %v; want 503 with the limiter unavailable", ready.status, ready.body, ready.err)
	}
	path, sum := writeFile(t, 77, size)
	st := newFaultStats()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := uploadResuming(ctx, s.client(), path, engine.Options{Workers: 4, ChunkSize: 5 << 20, JournalDir: t.TempDir(), Progress: st}, 1)
	if out.res == nil {
		t.Fatalf("upload with Redis hanging: %q", out.errs)
	}
	checkStored(t, s, out.res, sum, size)
	hung := time.Since(t0)
	p.RemoveToxic(t, toxic)
	// Counting again once Redis answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := quota()
		if a.err == nil && a.status == 200 && a.header.Get("X-RateLimit-Remaining") != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the limiter does not count 15 s after Redis answers again: %d %v %v", a.status, a.header, a.err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Redis hanging for %.1f s: control calls answered 200 in %v at worst, readyz %d in %v; a %d MiB upload took %.1f s (%d retries)",
		hung.Seconds(), worst.Round(time.Millisecond), ready.status, ready.took.Round(time.Millisecond), size>>20, out.took.Seconds(), st.chunkRetries.Load()+st.controlRetries.Load())
	// Without a bound it was about 10 s a call (go-redis's 3 s read
	// timeout, retried); redis.AllowTimeout makes it 1 s.
	if worst > 4*time.Second {
		t.Errorf("a control call took %v with Redis hanging: the limiter must give up sooner (fail open, fast)", worst)
	}
}
