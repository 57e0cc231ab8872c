package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jettythunder/jetty/edges"
	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
)

// Issue 21: scale-out, proven. Three `jetty server` processes (the real
// binary, so SIGKILL and SIGTERM are real) on PostgreSQL + MinIO + Redis
// behind HAProxy running deploy/haproxy.cfg as committed, two relays
// (`jetty edge`) whose origin is the balancer, and clients uploading
// through all of it:
//
//   - mixed sizes from several clients at once, every object downloaded
//     and compared, usage exact and no reservation left;
//   - one instance SIGKILLed while it serves chunk PUTs: every upload
//     completes, nothing lost or doubled;
//   - a rolling restart (SIGTERM, exit, start, ready) of every instance
//     while clients upload: no upload fails, and each draining instance
//     finishes the chunk PUTs it had in flight (its "drained" log line);
//   - the jobs: the webhook outbox worker of all three instances delivers
//     each event once; three `jetty server jobs` at once write one usage
//     row per account and day.
//
// Every wait is gated on an event (readiness, HAProxy's view of its
// servers, metrics, log lines, process exits); the figures (uploads,
// bytes, p50/p99 of chunk PUTs seen by the clients) are logged and kept
// in docs/RELIABILITY.md. `make scale-out` runs it alone, verbosely.

const (
	scaleChunk   = 5 << 20
	scaleWorkers = 4
	scaleSecret  = "e2e_scale_edge_secret_6c0f2b9a4e7d1c3f5a8b0e2d4f6a8c1e"
	scaleToken   = "e2e_scale_token_secret_9a1c3e5f7b2d4f6a8c0e1b3d5f7a9c2e"
)

// haproxyBinary finds haproxy, or skips (fails under
// JETTY_REQUIRE_SERVICES=1): scripts/test-deps.sh installs it.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("JETTY_HAPROXY_BIN"); p != "" {
		return p
	}
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy", "/sbin/haproxy"} {
		if q, err := exec.LookPath(p); err == nil {
			return q
		}
	}
	testenv.Unavailable(t, "HAProxy", fmt.Errorf("haproxy not found in PATH or /usr/sbin (make test-deps installs it)"))
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildJetty builds the jetty binary once for the test.
func buildJetty(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jetty")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/jettythunder/jetty/cmd/jetty")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build jetty: %v\n%s", err, out)
	}
	return bin
}

// proc is a child process of the test with its stderr kept.
type proc struct {
	name string
	cmd  *exec.Cmd
	done <-chan struct{}
	log  *testenv.SyncBuffer
}

func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &testenv.SyncBuffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	var err error
	if p.done, err = testenv.StartChild(p.cmd); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", name, tail(p.log.String(), 60))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// scaleWait polls cond until it holds; a minute and a half at most (a
// hang, not a timing assertion). A process that exits meanwhile fails
// the test at once.
func scaleWait(t *testing.T, what string, cond func() bool, watch ...*proc) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		for _, p := range watch {
			if p.exited() {
				t.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.name, p.cmd.ProcessState, what, tail(p.log.String(), 40))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 90s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// scaleDeployment is the cluster under test.
type scaleDeployment struct {
	t        *testing.T
	bin      string
	env      []string // of every instance (and of `jetty server jobs`)
	inst     [3]*proc
	addrs    [3]string
	lb       *proc
	lbURL    string
	statsURL string
	db       *sql.DB
	s3       testenv.S3
}

var plainHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

func (d *scaleDeployment) startInstance(i int) {
	t := d.t
	p := startProc(t, fmt.Sprintf("jetty server %d", i+1), d.env, d.bin, "server", "--listen", d.addrs[i], "--data-dir", t.TempDir())
	d.inst[i] = p
	scaleWait(t, fmt.Sprintf("instance %d ready", i+1), func() bool {
		r, err := plainHTTP.Get("http://" + d.addrs[i] + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, p)
}

// lbStatus is HAProxy's view of each instance ("UP", "DOWN", ...).
func (d *scaleDeployment) lbStatus() map[string]string {
	r, err := plainHTTP.Get(d.statsURL + "/stats;csv")
	if err != nil {
		return nil
	}
	defer r.Body.Close()
	rows, err := csv.NewReader(r.Body).ReadAll()
	if err != nil || len(rows) == 0 {
		return nil
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.TrimPrefix(strings.TrimSpace(h), "# ")] = i
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col["status"] && row[col["pxname"]] == "jetty_servers" && strings.HasPrefix(row[col["svname"]], "jetty") {
			out[row[col["svname"]]] = row[col["status"]]
		}
	}
	return out
}

func (d *scaleDeployment) waitLB(i int, want string) {
	d.t.Helper()
	name := fmt.Sprintf("jetty%d", i+1)
	scaleWait(d.t, fmt.Sprintf("HAProxy to see %s %s", name, want), func() bool {
		return strings.HasPrefix(d.lbStatus()[name], want)
	}, d.lb)
}

// putsInFlight reads jetty_http_requests_in_flight{method="PUT"} of
// instance i (-1 when it does not answer).
func (d *scaleDeployment) putsInFlight(i int) float64 {
	req, _ := http.NewRequest("GET", "http://"+d.addrs[i]+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	r, err := plainHTTP.Do(req)
	if err != nil {
		return -1
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `jetty_http_requests_in_flight{method="PUT"} `); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func (d *scaleDeployment) count(q string, args ...any) int {
	d.t.Helper()
	var n int
	if err := d.db.QueryRow(q, args...).Scan(&n); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// scaleContent is a generated file: deterministic bytes of seed.
type scaleContent struct {
	seed uint64
	size int64
}

func (c scaleContent) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), c.size-off))
	var blk [1 << 16]byte
	done := 0
	for done < want {
		pos := off + int64(done)
		testenv.FillBlock(blk[:], c.seed<<32|uint64(pos/int64(len(blk))))
		done += copy(p[done:want], blk[pos%int64(len(blk)):])
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

func (c scaleContent) sum() string {
	h := sha256.New()
	io.Copy(h, io.NewSectionReader(c, 0, c.size))
	return hex.EncodeToString(h.Sum(nil))
}

// chunkTimer records the chunk PUTs the clients send (through the
// balancer or a relay) and how long each took to be answered.
type chunkTimer struct {
	base  http.RoundTripper
	mu    sync.Mutex
	phase string
	durs  map[string][]time.Duration // by phase
	fail  map[string]int             // "phase status" (status 0: transport error) of failed PUTs
	moved int                        // PUTs the engine cancelled to send on a faster route
}

func (ct *chunkTimer) setPhase(p string) {
	ct.mu.Lock()
	ct.phase = p
	ct.mu.Unlock()
}

func (ct *chunkTimer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/chunks/") {
		return ct.base.RoundTrip(r)
	}
	start := time.Now()
	res, err := ct.base.RoundTrip(r)
	ct.mu.Lock()
	defer ct.mu.Unlock()
	switch {
	case err != nil && strings.Contains(err.Error(), "moves to a faster route"):
		ct.moved++ // the engine's own choice, not a failure
	case err != nil:
		ct.fail[ct.phase+" 0"]++
		if os.Getenv("JETTY_SCALEOUT_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "chunk PUT %s %s: %v\n", ct.phase, r.URL.Host, err)
		}
	case res.StatusCode/100 != 2:
		ct.fail[fmt.Sprintf("%s %d", ct.phase, res.StatusCode)]++
	default:
		ct.durs[ct.phase] = append(ct.durs[ct.phase], time.Since(start))
	}
	return res, err
}

// percentiles of the chunk PUTs of one phase ("" for all).
func (ct *chunkTimer) percentiles(phase string) (n int, p50, p99 time.Duration) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	var d []time.Duration
	for p, ds := range ct.durs {
		if phase == "" || p == phase {
			d = append(d, ds...)
		}
	}
	slices.Sort(d)
	if len(d) == 0 {
		return 0, 0, 0
	}
	return len(d), d[len(d)*50/100], d[min(len(d)-1, len(d)*99/100)]
}

// scaleUploads uploads generated contents and keeps what was uploaded.
type scaleUploads struct {
	t      *testing.T
	client *engine.Client
	sel    *edges.Selector
	mu     sync.Mutex
	done   map[string]scaleContent // asset id → content
	sums   map[string]string       // asset id → expected sha256
	bytes  int64
	failed atomic.Int64
	seed   atomic.Uint64
}

func (u *scaleUploads) upload(size int64, bwlimit int64) {
	c := scaleContent{seed: u.seed.Add(1), size: size}
	sum := c.sum()
	res, err := engine.UploadReader(context.Background(), u.client, c, size, fmt.Sprintf("scale-%d.bin", c.seed),
		engine.Options{Workers: scaleWorkers, ChunkSize: scaleChunk, BandwidthLimit: bwlimit, Edges: u.sel})
	if err != nil {
		u.failed.Add(1)
		u.t.Errorf("upload of %d bytes (seed %d): %v", size, c.seed, err)
		return
	}
	if res.Asset.Hash != sum || res.Asset.Size != size || res.Deduplicated {
		u.failed.Add(1)
		u.t.Errorf("upload of %d bytes (seed %d): asset %+v deduplicated %v, want hash %s", size, c.seed, res.Asset, res.Deduplicated, sum)
		return
	}
	u.mu.Lock()
	u.done[res.Asset.ID] = c
	u.sums[res.Asset.ID] = sum
	u.bytes += size
	u.mu.Unlock()
}

func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("scale-out test skipped in -short mode")
	}
	haproxy := haproxyBinary(t)
	cfgPath, err := filepath.Abs("../../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	pg := testenv.PostgresURL(t)
	redisURL := testenv.RedisURL(t)
	m := testenv.MinIO(t)
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	bin := buildJetty(t)

	d := &scaleDeployment{t: t, bin: bin, db: db, s3: m}
	for i := range d.addrs {
		d.addrs[i] = freeAddr(t)
	}
	lbAddr, statsAddr := freeAddr(t), freeAddr(t)
	d.lbURL, d.statsURL = "http://"+lbAddr, "http://"+statsAddr
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	d.env = append(slices.Clone(base),
		"DATABASE_URL="+pg, "REDIS_URL="+redisURL,
		"LYVE_ENDPOINT="+m.Endpoint, "LYVE_REGION="+m.Region, "LYVE_ACCESS_KEY_ID="+m.AccessKey,
		"LYVE_SECRET_ACCESS_KEY="+m.SecretKey, "LYVE_BUCKET_NAME="+m.Bucket,
		"AGENTCACHE_WEBHOOK_SECRET="+webhookSecret, "JETTY_EDGE_SECRET="+scaleSecret, "JETTY_TOKEN_SECRET="+scaleToken,
		"JETTY_PUBLIC_URL="+d.lbURL, "JETTY_DIRECT_UPLOADS=off", "JETTY_METRICS_TOKEN="+metricsToken,
		"JETTY_LOG_FORMAT=json",
		// Above deploy/haproxy.cfg's inter 1s × fall 2.
		"JETTY_DRAIN_DELAY=3s", "JETTY_SHUTDOWN_TIMEOUT=60s",
		// A completion cut by the SIGKILL is taken over soon.
		"JETTY_COMPLETION_LEASE=5s",
		"JETTY_WEBHOOK_ALLOW_HTTP=1", "JETTY_WEBHOOK_ALLOW_PRIVATE=1", "JETTY_WEBHOOK_POLL=100ms")

	// The first instance migrates the schema; then the other two.
	for i := range d.inst {
		d.startInstance(i)
	}
	d.lb = startProc(t, "haproxy", append(slices.Clone(base),
		"JETTY_LB_BIND="+lbAddr, "JETTY_LB_STATS="+statsAddr,
		"JETTY_BACKEND_1="+d.addrs[0], "JETTY_BACKEND_2="+d.addrs[1], "JETTY_BACKEND_3="+d.addrs[2]),
		haproxy, "-db", "-f", cfgPath)
	for i := range d.inst {
		d.waitLB(i, "UP")
	}
	key, secret := testenv.Provision(t, d.lbURL, webhookSecret, "usr_scale", "enterprise")

	relayEnv := append(slices.Clone(base), "JETTY_EDGE_SECRET="+scaleSecret, "JETTY_LOG_FORMAT=json")
	for i := range 2 {
		addr := freeAddr(t)
		startProc(t, fmt.Sprintf("jetty edge %d", i+1), relayEnv, bin, "edge", "--origin", d.lbURL, "--listen", addr,
			"--public-url", "http://"+addr, "--id", fmt.Sprintf("edge_scale_%d", i+1), "--heartbeat", "500ms")
	}
	timer := &chunkTimer{base: &http.Transport{MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: false}, durs: map[string][]time.Duration{}, fail: map[string]int{}}
	client := &engine.Client{BaseURL: d.lbURL, APIKey: key, APISecret: secret, HTTP: &http.Client{Transport: timer}}
	scaleWait(t, "both relays offered by the balanced origin", func() bool {
		resp, err := edges.Candidates(context.Background(), client, protocol.OptimalRequest{})
		if err != nil {
			return false
		}
		n := 0
		for _, e := range resp.Edges {
			if strings.HasPrefix(e.ID, "edge_scale_") {
				n++
			}
		}
		return n == 2
	})
	up := &scaleUploads{t: t, client: client, sel: &edges.Selector{Client: client}, done: map[string]scaleContent{}, sums: map[string]string{}}
	started := time.Now()

	// 1. Mixed sizes from three clients at once.
	t.Run("mixed", func(t *testing.T) {
		timer.setPhase("mixed")
		sizes := [][]int64{
			{64 << 10, 3<<20 + 1, 17<<20 + 5, 40 << 20},
			{1 << 20, 9<<20 + 3, 26<<20 + 11},
			{200 << 10, 5 << 20, 33<<20 + 7},
		}
		var wg sync.WaitGroup
		for _, list := range sizes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, n := range list {
					up.upload(n, 0)
				}
			}()
		}
		wg.Wait()
	})

	// 2. One instance SIGKILLed while it serves chunk PUTs.
	t.Run("sigkill", func(t *testing.T) {
		timer.setPhase("sigkill")
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() { defer wg.Done(); up.upload(30<<20+13, 8<<20) }()
		}
		const victim = 1
		scaleWait(t, "a chunk PUT in flight on instance 2", func() bool { return d.putsInFlight(victim) > 0 }, d.inst[victim])
		d.inst[victim].cmd.Process.Signal(syscall.SIGKILL)
		<-d.inst[victim].done
		t.Logf("instance 2 killed with chunk PUTs in flight")
		wg.Wait()
		d.startInstance(victim)
		d.waitLB(victim, "UP")
	})

	// 3. Rolling restart while clients keep uploading.
	t.Run("rolling-restart", func(t *testing.T) {
		timer.setPhase("rolling-restart")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					up.upload(15<<20+17, 4<<20)
				}
			}()
		}
		for i := range d.inst {
			p := d.inst[i]
			scaleWait(t, fmt.Sprintf("a chunk PUT in flight on instance %d", i+1), func() bool { return d.putsInFlight(i) > 0 }, p)
			p.cmd.Process.Signal(syscall.SIGTERM)
			sawDown := false
			for !p.exited() {
				if st := d.lbStatus()[fmt.Sprintf("jetty%d", i+1)]; !strings.HasPrefix(st, "UP") && st != "" {
					sawDown = true
				}
				select {
				case <-p.done:
				case <-time.After(50 * time.Millisecond):
				}
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("instance %d exited %d after SIGTERM", i+1, code)
			}
			rep := drainedLine(t, p.log.String())
			t.Logf("instance %d drained: %+v (HAProxy marked it out before it exited: %v)", i+1, rep, sawDown)
			// Gone: a chunk the client itself cut to send it on a faster
			// route (the engine's choice), not the server's failure.
			if rep.Failed != 0 || rep.Unfinished != 0 || rep.OK+rep.Gone != rep.InFlight {
				t.Errorf("instance %d: requests in flight at SIGTERM did not all end well: %+v", i+1, rep)
			}
			if rep.Puts < 1 {
				t.Logf("instance %d: its chunk PUTs ended before the signal arrived", i+1)
			}
			d.startInstance(i)
			d.waitLB(i, "UP")
		}
		close(stop)
		wg.Wait()
	})
	elapsed := time.Since(started)

	// Everything uploaded is there once, byte for byte.
	t.Run("verify", func(t *testing.T) {
		ctx := context.Background()
		for id, c := range up.done {
			rc, err := client.OpenRange(ctx, id, 0, c.size)
			if err != nil {
				t.Fatalf("download %s: %v", id, err)
			}
			h := sha256.New()
			n, err := io.Copy(h, rc)
			rc.Close()
			if err != nil || n != c.size || hex.EncodeToString(h.Sum(nil)) != up.sums[id] {
				t.Fatalf("download %s: %d bytes, %v; want %d bytes of %s", id, n, err, c.size, up.sums[id])
			}
		}
		assets, err := client.ListAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(assets) != len(up.done) {
			t.Errorf("%d assets listed, %d uploaded", len(assets), len(up.done))
		}
		q, err := client.Quota(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if q.Storage.UsedBytes != up.bytes || q.Storage.ReservedBytes != 0 {
			t.Errorf("quota: used %d reserved %d, want used %d reserved 0", q.Storage.UsedBytes, q.Storage.ReservedBytes, up.bytes)
		}
		if n := d.count("SELECT count(*) FROM quota_reservations"); n != 0 {
			t.Errorf("%d reservations left", n)
		}
		if n := d.count("SELECT count(*) FROM stored_objects"); n != len(up.done) {
			t.Errorf("%d stored objects for %d uploads", n, len(up.done))
		}
		if n := d.count("SELECT count(*) FROM agentcache_assets"); n != len(up.done) {
			t.Errorf("%d asset rows for %d uploads", n, len(up.done))
		}
		s3c := m.S3Client()
		objs, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(m.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs.Contents) != len(up.done) {
			t.Errorf("%d objects in the bucket for %d uploads", len(objs.Contents), len(up.done))
		}
		mp, err := s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(m.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		if len(mp.Uploads) != 0 {
			t.Errorf("%d multipart uploads left open", len(mp.Uploads))
		}
	})

	// 4. The jobs of three instances do each piece of work once.
	t.Run("jobs-once", func(t *testing.T) {
		var mu sync.Mutex
		got := map[string]int{}
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			mu.Lock()
			got[r.Header.Get("X-Jetty-Event-Id")]++
			mu.Unlock()
		}))
		defer recv.Close()
		const accounts = 6
		for i := range accounts {
			body := fmt.Sprintf(`{"agentcache_user_id":"usr_hook_%d","agentcache_email":"hook%d@example.com","tier":"free","webhook_url":%q}`, i, i, recv.URL+"/hook")
			partnerCall(t, d.lbURL+"/api/agentcache/provision", body, http.StatusCreated)
			for _, tier := range []string{"pro", "enterprise"} {
				partnerCall(t, d.lbURL+"/api/agentcache/upgrade", fmt.Sprintf(`{"agentcache_user_id":"usr_hook_%d","new_tier":%q}`, i, tier), http.StatusOK)
			}
		}
		want := d.count("SELECT count(*) FROM webhook_events")
		if want < accounts*3 {
			t.Fatalf("%d events in the outbox, want at least %d", want, accounts*3)
		}
		scaleWait(t, "every event delivered", func() bool {
			return d.count("SELECT count(*) FROM webhook_events WHERE state <> 'delivered'") == 0
		})
		mu.Lock()
		for id, n := range got {
			if n != 1 {
				t.Errorf("event %s delivered %d times", id, n)
			}
		}
		if len(got) != want {
			t.Errorf("%d events received, %d in the outbox", len(got), want)
		}
		mu.Unlock()
		t.Logf("%d events, each delivered once, with the workers of three instances polling the outbox", want)

		// Three roll-ups at once, beside the instances' own loops.
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(bin, "server", "jobs", "--json", "--data-dir", t.TempDir())
				cmd.Env = d.env
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("jetty server jobs %d: %v\n%s", i+1, err, out)
				}
			}()
		}
		wg.Wait()
		if n := d.count("SELECT count(*) FROM (SELECT account_id, period_start FROM storage_usage GROUP BY 1, 2 HAVING count(*) > 1) AS dup"); n != 0 {
			t.Errorf("%d account-days with more than one usage row", n)
		}
		accts := d.count("SELECT count(*) FROM agentcache_accounts")
		if n := d.count("SELECT count(DISTINCT account_id) FROM storage_usage"); n != accts {
			t.Errorf("usage rows for %d accounts of %d", n, accts)
		}
		var stored int64
		if err := d.db.QueryRow(`SELECT u.storage_bytes FROM storage_usage u JOIN agentcache_accounts a ON a.id = u.account_id
			WHERE a.agentcache_user_id = 'usr_scale' ORDER BY u.period_start DESC LIMIT 1`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != up.bytes {
			t.Errorf("usage roll-up: %d bytes stored, want %d", stored, up.bytes)
		}
	})

	timer.setPhase("after")
	t.Logf("FIGURES: %d uploads, %.1f MiB in %.1fs through 3 instances, HAProxy and 2 relays; failed uploads: %d",
		len(up.done), float64(up.bytes)/(1<<20), elapsed.Seconds(), up.failed.Load())
	for _, ph := range []string{"mixed", "sigkill", "rolling-restart", ""} {
		n, p50, p99 := timer.percentiles(ph)
		fails := 0
		timer.mu.Lock()
		for k, v := range timer.fail {
			if ph == "" || strings.HasPrefix(k, ph+" ") {
				fails += v
			}
		}
		timer.mu.Unlock()
		if ph == "" {
			ph = "all"
		}
		t.Logf("FIGURES: %-15s chunk PUTs answered 2xx: %3d, p50 %v, p99 %v; attempts failed (retried by the client): %d",
			ph, n, p50.Round(time.Millisecond), p99.Round(time.Millisecond), fails)
	}
	t.Logf("FIGURES: failed chunk PUT attempts by phase and status (0: connection cut): %v; %d moved by the client to a faster route", timer.fail, timer.moved)
	if up.failed.Load() != 0 {
		t.Errorf("%d uploads failed", up.failed.Load())
	}
}

// drainReport is the "drained" line a stopping server logs.
type drainReport struct {
	InFlight   int `json:"in_flight_at_drain"`
	Puts       int `json:"puts_in_flight_at_drain"`
	OK         int `json:"ok"`
	Failed     int `json:"failed"`
	Gone       int `json:"client_gone"`
	Unfinished int `json:"unfinished"`
}

func drainedLine(t *testing.T, log string) drainReport {
	t.Helper()
	var last *drainReport
	for _, line := range strings.Split(log, "\n") {
		var m struct {
			Msg string `json:"msg"`
			drainReport
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "drained" {
			r := m.drainReport
			last = &r
		}
	}
	if last == nil {
		t.Fatalf("no \"drained\" line in the log:\n%s", tail(log, 30))
	}
	return *last
}

func partnerCall(t *testing.T, url, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+webhookSecret)
	req.Header.Set("Content-Type", "application/json")
	r, err := plainHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != want {
		b, _ := io.ReadAll(r.Body)
		t.Fatalf("POST %s: %s %s", url, r.Status, b)
	}
}
