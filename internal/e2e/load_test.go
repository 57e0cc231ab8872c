package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"golang.org/x/time/rate"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// TestLoad (reliability scenario 8): many clients, each with its own
// account, upload a mix of sizes at once to one server on PostgreSQL +
// MinIO + Redis for a bounded time. None is lost: every upload succeeds
// (the engine retries what the protocol calls retryable), every asset
// downloads with the SHA-256 that was uploaded, each account lists
// exactly the assets its uploads returned, each account's usage is the
// sum of its distinct contents (duplicates counted once) with nothing
// left reserved, no session, reservation, pending object or multipart
// upload is left open, and the server answered no request with a 5xx.
// It asserts nothing about speed: throughput and p50/p99 latency per
// call class are reported (t.Logf, and JETTY_LOAD_OUT).
//
// The mix, per client and upload: tiny files (0 to 1 MiB, the
// single-request path), one-chunk sessions (1–5 MiB), chunked sessions
// (5–20 MiB, 5 or 8 MiB chunks), the client's own earlier content again
// (deduplicated), content every client may upload (the same bytes in
// other accounts: never deduplicated across accounts), and now and then
// one new content uploaded twice at once by the same client (concurrent
// identical uploads share a session or deduplicate). Tiers cycle over
// enterprise, business and pro, with one client in ten on starter (one
// chunk stream, 60 requests a minute); each client paces its rate-limited
// calls to three quarters of its tier's limit, as a well-behaved client
// does, so a 429 is a finding (reported, and retried by the engine).
//
// Scale, by environment (defaults keep `go test -race` under about a
// minute on a loaded 2-core machine):
//
//	JETTY_LOAD_CLIENTS    concurrent clients (default 50)
//	JETTY_LOAD_DURATION   how long clients start new uploads (default 20s)
//	JETTY_LOAD_MAX_BYTES  cap on the payload bytes of all uploads, e.g.
//	                      4GiB or 1500MiB (default 64 MiB per second of
//	                      JETTY_LOAD_DURATION); clients stop at the cap
//	JETTY_LOAD_SEED       seed of the mix (default: random, logged)
//	JETTY_LOAD_OUT        file to write the figures to
//
// A longer run by hand:
//
//	JETTY_LOAD_DURATION=60s JETTY_LOAD_MAX_BYTES=8GiB JETTY_LOAD_OUT=/tmp/load.txt \
//	  go test -count=1 -run 'TestLoad$' -v ./internal/e2e
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	lc := loadConfigFromEnv(t)
	mio := testenv.MinIO(t)
	dbURL := testenv.PostgresURL(t)
	wl := &warnLog{}
	s := startServerLog(t, app.Config{
		DataDir:     t.TempDir(),
		DatabaseURL: dbURL,
		RedisURL:    testenv.RedisURL(t),
		S3:          &s3blob.Config{Endpoint: mio.Endpoint, Region: mio.Region, AccessKeyID: mio.AccessKey, SecretAccessKey: mio.SecretKey, Bucket: mio.Bucket},
	}, slog.New(wl))
	t.Logf("load: %d clients for %v, at most %s of payload, seed %d", lc.clients, lc.duration, mib(lc.maxBytes), lc.seed)

	loadRec, verifyRec := newRecorder(), newRecorder()
	shared := sharedContents()
	clients := make([]*loadClient, lc.clients)
	for i := range clients {
		clients[i] = newLoadClient(t, s, i, lc.seed, loadRec, verifyRec)
	}

	// Load: every client uploads until the time is up or the byte budget
	// is spent. The hard deadline only turns a hang into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), lc.duration+3*time.Minute)
	defer cancel()
	var budget atomic.Int64
	deadline := time.Now().Add(lc.duration)
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.run(ctx, t, deadline, &budget, lc.maxBytes, shared) })
	}
	wg.Wait()
	loadTime := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the load phase did not end within %v of its duration: a hang", 3*time.Minute)
	}

	// Verify every account: listing, bytes, usage.
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vstart := time.Now()
	var downloaded atomic.Int64
	for _, c := range clients {
		wg.Go(func() { downloaded.Add(c.verify(ctx, t)) })
	}
	wg.Wait()
	verifyTime := time.Since(vstart)
	if ctx.Err() != nil {
		t.Fatal("verification did not end in time")
	}

	// Nothing left open: sessions, reservations, pending objects,
	// multipart uploads; one stored object per distinct content.
	distinct := 0
	for _, c := range clients {
		distinct += len(c.held)
	}
	checkNothingLeft(t, s, dbURL, len(clients)+1 /* and usr_e2e */, distinct)

	// No 5xx, seen by the clients or by the server itself.
	for _, rec := range []*recorder{loadRec, verifyRec} {
		if n := rec.count("", func(st int) bool { return st >= 500 }); n > 0 {
			t.Errorf("the server answered %d requests with 5xx", n)
		}
	}
	metrics := scrapeMetrics(t, s.url)
	server5xx := 0.0
	for k, v := range metrics {
		if strings.HasPrefix(k, "jetty_http_requests_total{") && strings.Contains(k, `code="5`) {
			server5xx += v
			t.Errorf("server metrics: %s = %v", k, v)
		}
	}
	warns, errs, first := wl.counts()
	if errs > 0 {
		t.Errorf("the server logged %d errors", errs)
	}

	// Figures.
	var sum loadSum
	for _, c := range clients {
		sum.add(c)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "TestLoad: %d clients (%s), duration %v, payload cap %s, seed %d, GOMAXPROCS %d, race %v\n",
		lc.clients, tierMix(clients), lc.duration, mib(lc.maxBytes), lc.seed, runtime.GOMAXPROCS(0), raceEnabled)
	fmt.Fprintf(&out, "load phase: %v; %d uploads ok, %d failed (%s); %.1f uploads/s\n",
		loadTime.Round(time.Millisecond), sum.ok, sum.failed, sum.kinds(), float64(sum.ok)/loadTime.Seconds())
	fmt.Fprintf(&out, "payload: %s in uploads, %s sent (%.1f MB/s sent), %d deduplicated uploads, %d engine retries; client-side pacing waited %v in all\n",
		mib(sum.payload), mib(sum.sent), float64(sum.sent)/1e6/loadTime.Seconds(), sum.dedup, sum.retries, time.Duration(loadRec.paced.Load()).Round(time.Millisecond))
	fmt.Fprintf(&out, "verify phase: %v; %d assets, %s downloaded (%.1f MB/s)\n",
		verifyTime.Round(time.Millisecond), sum.assets, mib(downloaded.Load()), float64(downloaded.Load())/1e6/verifyTime.Seconds())
	fmt.Fprintf(&out, "retryable refusals seen (Retry-After): %s; server: 5xx %v, rate limited %v, request log dropped %v; warnings logged %d, errors %d\n",
		retryAfterSummary(loadRec, verifyRec), server5xx, metrics["jetty_rate_limited_total"], metrics["jetty_request_log_dropped_total"], warns, errs)
	for _, l := range first {
		fmt.Fprintf(&out, "  server log: %s\n", l)
	}
	fmt.Fprintf(&out, "\nlatency under load, per call (request sent to end of answer):\n")
	var rows []latencyRow
	for _, c := range controlClasses {
		if loadRec.seen(c) {
			rows = append(rows, loadRec.row(c, c))
		}
	}
	rows = append(rows,
		loadRec.row("ALL CONTROL CALLS", controlClasses...),
		loadRec.row(classSmall, classSmall),
		loadRec.row("ALL BUT CHUNK PUTS", slices.Concat(controlClasses, []string{classSmall})...),
		loadRec.row(classChunk, classChunk))
	out.WriteString(latencyTable(rows))
	fmt.Fprintf(&out, "\nserver side, whole run (jetty_http_request_duration_seconds): mean per route\n")
	out.WriteString(serverMeans(metrics))
	fmt.Fprintf(&out, "\nverification, after the load:\n")
	out.WriteString(latencyTable([]latencyRow{
		verifyRec.row(classList, classList),
		verifyRec.row(classQuota, classQuota),
		verifyRec.row(classDownload, classDownload),
	}))
	t.Log("\n" + out.String())
	if p := os.Getenv("JETTY_LOAD_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
			t.Errorf("JETTY_LOAD_OUT: %v", err)
		}
	}
	if sum.failed > 0 {
		t.Errorf("%d uploads failed", sum.failed)
	}
	if sum.ok == 0 {
		t.Error("no upload finished")
	}
}

// loadConfig is the scale of TestLoad.
type loadConfig struct {
	clients  int
	duration time.Duration
	maxBytes int64
	seed     uint64
}

func loadConfigFromEnv(t *testing.T) loadConfig {
	lc := loadConfig{clients: 50, duration: 20 * time.Second, seed: rand.Uint64() >> 1}
	if v := os.Getenv("JETTY_LOAD_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			t.Fatalf("JETTY_LOAD_CLIENTS=%q: want 1..1000", v)
		}
		lc.clients = n
	}
	if v := os.Getenv("JETTY_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("JETTY_LOAD_DURATION=%q: want a Go duration such as 20s", v)
		}
		lc.duration = d
	}
	lc.maxBytes = int64(lc.duration.Seconds() * (64 << 20))
	if v := os.Getenv("JETTY_LOAD_MAX_BYTES"); v != "" {
		n, err := parseBytes(v)
		if err != nil || n <= 0 {
			t.Fatalf("JETTY_LOAD_MAX_BYTES=%q: want bytes, e.g. 4GiB or 1500MiB", v)
		}
		lc.maxBytes = n
	}
	if v := os.Getenv("JETTY_LOAD_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			t.Fatalf("JETTY_LOAD_SEED=%q: %v", v, err)
		}
		lc.seed = n
	}
	return lc
}

// parseBytes reads 123, 10KiB, 1500MiB or 4GiB.
func parseBytes(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	return int64(n * float64(mult)), err
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Rate limits per minute of the seeded tiers (tier_configs).
var tierRateLimits = map[string]int{"starter": 60, "pro": 300, "business": 1000, "enterprise": 10000}

func tierFor(i int) string {
	if i%10 == 9 {
		return "starter"
	}
	return []string{"enterprise", "business", "pro"}[i%3]
}

// Upload kinds of the mix.
const (
	kindTiny   = "tiny"   // 0..1 MiB: single request
	kindOne    = "1chunk" // 1..5 MiB: a session of one chunk
	kindMedium = "medium" // 5..20 MiB: a session of 1..4 chunks
	kindDupOwn = "dup"    // this client's earlier content again
	kindShared = "shared" // content any client may upload
	kindBurst  = "burst"  // new content uploaded twice at once
)

var uploadKinds = []string{kindTiny, kindOne, kindMedium, kindDupOwn, kindShared, kindBurst}

// sharedContents are the contents every client may upload: the same
// bytes in several accounts.
func sharedContents() []seededContent {
	sizes := []int64{3 << 10, 100 << 10, 700 << 10, 1 << 20, 2<<20 + 17, 6 << 20, 12 << 20, 17<<20 + 123}
	out := make([]seededContent, len(sizes))
	for k, n := range sizes {
		out[k] = seededContent{seed: 1<<40 | uint64(k), n: n}
	}
	return out
}

// loadClient is one client: its account, its engine clients (one per
// phase, both behind the same pacer) and what it expects the server to
// hold.
type loadClient struct {
	i        int
	tier     string
	userID   string
	load     *engine.Client
	check    *engine.Client
	transfer *http.Client // verification downloads
	rng      *rand.Rand

	mu      sync.Mutex
	seq     uint64
	uploads []loadUpload
	assets  map[string]seededContent // asset id → content
	held    map[string]int64         // content SHA-256 → size
	own     []seededContent          // contents stored, for duplicates
	sums    map[uint64]string        // seed → SHA-256
}

type loadUpload struct {
	kind    string
	size    int64
	dedup   bool
	sent    int64
	retries int
	err     error
}

func newLoadClient(t *testing.T, s *server, i int, seed uint64, loadRec, verifyRec *recorder) *loadClient {
	c := &loadClient{
		i: i, tier: tierFor(i), userID: fmt.Sprintf("usr_load_%03d", i),
		rng:    rand.New(rand.NewPCG(seed, uint64(i))),
		assets: map[string]seededContent{}, held: map[string]int64{}, sums: map[uint64]string{},
	}
	key, secret := testenv.Provision(t, s.url, webhookSecret, c.userID, c.tier)
	limit := float64(tierRateLimits[c.tier])
	pace := rate.NewLimiter(rate.Limit(0.75*limit/60), max(1, int(limit/5)))
	base := loadTransport()
	c.load = &engine.Client{BaseURL: s.url, APIKey: key, APISecret: secret,
		HTTP: &http.Client{Transport: &recordingTransport{base: base, rec: loadRec, pace: pace}}}
	vt := &recordingTransport{base: base, rec: verifyRec, pace: pace}
	c.check = &engine.Client{BaseURL: s.url, APIKey: key, APISecret: secret, HTTP: &http.Client{Transport: vt}}
	c.transfer = &http.Client{Transport: vt}
	return c
}

// sum is the SHA-256 of g, computed once.
func (c *loadClient) sum(g seededContent) string {
	c.mu.Lock()
	s, ok := c.sums[g.seed]
	c.mu.Unlock()
	if !ok {
		s = g.sha256Hex()
		c.mu.Lock()
		c.sums[g.seed] = s
		c.mu.Unlock()
	}
	return s
}

// fresh is a new content of this client, of size between lo and hi.
func (c *loadClient) fresh(lo, hi int64) seededContent {
	c.seq++
	n := lo
	if hi > lo {
		n += c.rng.Int64N(hi - lo + 1)
	}
	return seededContent{seed: uint64(c.i+1)<<20 | c.seq, n: n}
}

// pick chooses the next upload.
func (c *loadClient) pick(shared []seededContent) (string, seededContent) {
	switch r := c.rng.IntN(100); {
	case r < 50:
		if c.rng.IntN(25) == 0 {
			return kindTiny, c.fresh(0, 0)
		}
		// Log-uniform over 1 KiB..1 MiB.
		n := int64(math.Round(1024 * math.Pow(2, 10*c.rng.Float64())))
		return kindTiny, c.fresh(n, n)
	case r < 62:
		return kindOne, c.fresh(1<<20+1, 5<<20)
	case r < 80:
		return kindMedium, c.fresh(5<<20, 20<<20)
	case r < 90 && len(c.own) > 0:
		return kindDupOwn, c.own[c.rng.IntN(len(c.own))]
	case r < 97:
		return kindShared, shared[c.rng.IntN(len(shared))]
	default:
		if c.rng.IntN(2) == 0 {
			return kindBurst, c.fresh(64<<10, 1<<20)
		}
		return kindBurst, c.fresh(5<<20, 16<<20)
	}
}

// run uploads until deadline or until the byte budget is spent.
func (c *loadClient) run(ctx context.Context, t *testing.T, deadline time.Time, budget *atomic.Int64, maxBytes int64, shared []seededContent) {
	for n := 1; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
		kind, g := c.pick(shared)
		copies := 1
		if kind == kindBurst {
			copies = 2
		}
		if budget.Add(g.n*int64(copies)) > maxBytes {
			return
		}
		sum := c.sum(g)
		c.mu.Lock()
		_, wasHeld := c.held[sum]
		c.mu.Unlock()
		// Half the contents are cut in 5 MiB chunks, half at the engine's
		// choice; a content is always cut the same way, as jetty cuts a
		// file. On S3 a chunked upload is identified by its chunk list
		// (the whole-file hash is not verified there: docs/protocol.md,
		// "What the server verifies"), so deduplication is promised for
		// the same file cut the same way.
		opts := engine.Options{JournalDir: "-"}
		if g.seed%2 == 0 {
			opts.ChunkSize = protocol.MinChunkSize
		}
		results := make([]*engine.Result, copies)
		errs := make([]error, copies)
		retries := make([]atomic.Int32, copies)
		var wg sync.WaitGroup
		// A client that uploaded the content before knows its manifest
		// (jetty's local index does): it opens with it, and the server
		// deduplicates before a byte moves. New content is pipelined.
		opts.HashFirst = wasHeld
		for k := range copies {
			o := opts
			o.Progress = engine.ProgressFunc(func(e engine.Event) {
				if e.Kind == engine.EventRetry {
					retries[k].Add(1)
				}
			})
			// The second copy of a burst starts a little later, so that it
			// finds the first one's session open, at any stage.
			delay := time.Duration(0)
			if k > 0 {
				delay = time.Duration(c.rng.Int64N(int64(1500 * time.Millisecond)))
			}
			wg.Go(func() {
				time.Sleep(delay)
				results[k], errs[k] = engine.UploadReader(ctx, c.load, g, g.n, fmt.Sprintf("c%03d-%04d-%d.bin", c.i, n, k), o)
			})
		}
		wg.Wait()
		dedups := 0
		for k := range copies {
			u := loadUpload{kind: kind, size: g.n, err: errs[k], retries: int(retries[k].Load())}
			res := results[k]
			if res != nil {
				u.sent, u.dedup = res.BytesSent, res.Deduplicated
			}
			if u.err == nil {
				switch {
				case res.Asset.ID == "" || res.Asset.Hash != sum || res.Asset.Size != g.n:
					u.err = fmt.Errorf("the server recorded asset %q with SHA-256 %s and %d bytes; uploaded %s, %d bytes", res.Asset.ID, res.Asset.Hash, res.Asset.Size, sum, g.n)
				case kind != kindBurst && res.Deduplicated != wasHeld:
					u.err = fmt.Errorf("deduplicated = %v, but the account held the content before: %v", res.Deduplicated, wasHeld)
				case wasHeld && g.n > engine.DefaultSmallFileMax && res.BytesSent != 0:
					u.err = fmt.Errorf("content the account holds was sent again through a session (%d bytes)", res.BytesSent)
				}
			}
			if u.err != nil {
				t.Errorf("client %d (%s) upload %d (%s, %d bytes, copy %d): %v", c.i, c.tier, n, kind, g.n, k, u.err)
			} else {
				if u.dedup {
					dedups++
				}
				c.mu.Lock()
				c.assets[res.Asset.ID] = g
				c.held[sum] = g.n
				if !wasHeld && k == 0 && kind != kindShared {
					c.own = append(c.own, g)
				}
				c.mu.Unlock()
			}
			c.uploads = append(c.uploads, u)
		}
		if kind == kindBurst && dedups == 2 {
			t.Errorf("client %d: both concurrent uploads of new content were answered as duplicates", c.i)
		}
		// A client with nothing in flight sees its own usage exactly.
		if n%5 == 0 {
			c.checkQuota(ctx, t, c.load, fmt.Sprintf("after upload %d", n))
		}
		if n%10 == 0 {
			c.checkFirstPage(ctx, t)
		}
	}
}

// expectedUsed is the sum of the sizes of the distinct contents held.
func (c *loadClient) expectedUsed() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, size := range c.held {
		n += size
	}
	return n
}

type quotaAnswer struct {
	Storage struct {
		UsedBytes     int64 `json:"used_bytes"`
		ReservedBytes int64 `json:"reserved_bytes"`
	} `json:"storage"`
}

func (c *loadClient) checkQuota(ctx context.Context, t *testing.T, ec *engine.Client, when string) {
	var q quotaAnswer
	if err := ec.Call(ctx, http.MethodGet, "/api/agentcache/quota", nil, &q); err != nil {
		t.Errorf("client %d: quota %s: %v", c.i, when, err)
		return
	}
	if want := c.expectedUsed(); q.Storage.UsedBytes != want || q.Storage.ReservedBytes != 0 {
		t.Errorf("client %d (%s): quota %s: used %d reserved %d, want used %d (distinct contents) reserved 0",
			c.i, c.tier, when, q.Storage.UsedBytes, q.Storage.ReservedBytes, want)
	}
}

type listAnswer struct {
	Assets     []protocol.Asset `json:"assets"`
	NextCursor string           `json:"next_cursor"`
}

// checkFirstPage lists the newest 100 assets mid-run: as many as the
// client stored, up to 100.
func (c *loadClient) checkFirstPage(ctx context.Context, t *testing.T) {
	var page listAnswer
	if err := c.load.Call(ctx, http.MethodGet, "/api/storage/assets?limit=100", nil, &page); err != nil {
		t.Errorf("client %d: list: %v", c.i, err)
		return
	}
	c.mu.Lock()
	want := min(len(c.assets), 100)
	c.mu.Unlock()
	if len(page.Assets) != want {
		t.Errorf("client %d: the first page lists %d assets, want %d", c.i, len(page.Assets), want)
	}
}

// verify lists every asset of the account, downloads each and checks
// usage; it returns the bytes downloaded.
func (c *loadClient) verify(ctx context.Context, t *testing.T) int64 {
	listed := map[string]protocol.Asset{}
	cursor := ""
	for {
		path := "/api/storage/assets?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page listAnswer
		if err := c.check.Call(ctx, http.MethodGet, path, nil, &page); err != nil {
			t.Errorf("client %d: list: %v", c.i, err)
			return 0
		}
		for _, a := range page.Assets {
			if _, dup := listed[a.ID]; dup {
				t.Errorf("client %d: asset %s listed twice", c.i, a.ID)
			}
			listed[a.ID] = a
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(listed) != len(c.assets) {
		t.Errorf("client %d (%s): %d assets listed, %d uploaded", c.i, c.tier, len(listed), len(c.assets))
	}
	for id, g := range c.assets {
		a, ok := listed[id]
		if !ok {
			t.Errorf("client %d: asset %s (%d bytes) is not listed: lost", c.i, id, g.n)
			continue
		}
		if a.Hash != c.sum(g) || a.Size != g.n {
			t.Errorf("client %d: asset %s is listed with SHA-256 %s and %d bytes, uploaded %s and %d", c.i, id, a.Hash, a.Size, c.sum(g), g.n)
		}
	}
	for id := range listed {
		if _, ok := c.assets[id]; !ok {
			t.Errorf("client %d: asset %s is listed but no upload returned it", c.i, id)
		}
	}
	var total int64
	for id, g := range c.assets {
		sum, n, err := c.download(ctx, id)
		total += n
		if err != nil {
			t.Errorf("client %d: download %s: %v", c.i, id, err)
		} else if sum != c.sum(g) || n != g.n {
			t.Errorf("client %d: asset %s downloads as %d bytes with SHA-256 %s, uploaded %d bytes with %s", c.i, id, n, sum, g.n, c.sum(g))
		}
	}
	c.checkQuota(ctx, t, c.check, "after the load")
	return total
}

func (c *loadClient) download(ctx context.Context, id string) (string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.check.BaseURL+"/api/storage/assets/"+url.PathEscape(id)+"/download", nil)
	if err != nil {
		return "", 0, err
	}
	req.SetBasicAuth(c.check.APIKey, c.check.APISecret)
	res, err := c.transfer.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return "", 0, fmt.Errorf("%s: %s", res.Status, b)
	}
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// checkNothingLeft looks at the database and the bucket: no open or
// completing session, no reservation, nothing reserved, no pending
// object, no multipart upload; as many stored objects (rows and bytes in
// the bucket) as distinct contents, accounting for garbage not yet
// collected.
func checkNothingLeft(t *testing.T, s *server, dbURL string, accounts, distinct int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int64 {
		var n sql.NullInt64
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n.Int64
	}
	for q, what := range map[string]string{
		`SELECT count(*) FROM upload_sessions WHERE state IN ('open', 'completing')`: "upload sessions left open or completing",
		`SELECT count(*) FROM quota_reservations`:                                    "quota reservations left",
		`SELECT coalesce(sum(storage_reserved_bytes), 0) FROM agentcache_accounts`:   "bytes left reserved",
		`SELECT count(*) FROM blob_garbage WHERE state = 'pending'`:                  "pending objects left",
	} {
		if n := count(q); n != 0 {
			t.Errorf("%d %s", n, what)
		}
	}
	if n := count(`SELECT count(*) FROM agentcache_accounts`); n != int64(accounts) {
		t.Errorf("%d accounts, want %d", n, accounts)
	}
	objects := count(`SELECT count(*) FROM stored_objects`)
	if objects != int64(distinct) {
		t.Errorf("%d stored objects, want %d (the distinct contents of every account)", objects, distinct)
	}
	garbage := count(`SELECT count(*) FROM blob_garbage WHERE state = 'garbage'`)
	if sessions := count(`SELECT count(*) FROM upload_sessions WHERE state = 'completed' AND asset_id = ''`); sessions != 0 {
		t.Errorf("%d completed sessions name no asset", sessions)
	}
	var usedMismatch int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM agentcache_accounts a
WHERE a.storage_used_bytes <> coalesce((SELECT sum(size_bytes) FROM stored_objects o WHERE o.account_id = a.id), 0)`).Scan(&usedMismatch); err != nil {
		t.Fatal(err)
	}
	if usedMismatch != 0 {
		t.Errorf("%d accounts whose storage_used_bytes is not the sum of their stored objects", usedMismatch)
	}
	if garbage != 0 {
		t.Logf("%d garbage objects not collected yet (deduplicated copies whose delete failed)", garbage)
	}
	infos, err := s.app.Blobs().List(ctx, "users/")
	if err != nil {
		t.Fatal(err)
	}
	// Every garbage row may or may not still have its bytes.
	if n := int64(len(infos)); n < objects || n > objects+garbage {
		t.Errorf("the bucket holds %d objects, the database %d stored objects (+%d garbage)", n, objects, garbage)
	}
	ups, err := s.app.Blobs().ListUploads(ctx, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 0 {
		t.Errorf("%d multipart uploads left in the bucket (first %s)", len(ups), ups[0].Key)
	}
}

// scrapeMetrics reads the server's Prometheus text into name{labels} →
// value.
func scrapeMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] += v
		}
	}
	return out
}

// loadSum adds up the clients' uploads.
type loadSum struct {
	ok, failed, dedup, retries, assets int
	payload, sent                      int64
	byKind                             map[string]int
}

func (s *loadSum) add(c *loadClient) {
	if s.byKind == nil {
		s.byKind = map[string]int{}
	}
	for _, u := range c.uploads {
		s.retries += u.retries
		s.sent += u.sent
		if u.err != nil {
			s.failed++
			continue
		}
		s.ok++
		s.byKind[u.kind]++
		s.payload += u.size
		if u.dedup {
			s.dedup++
		}
	}
	s.assets += len(c.assets)
}

func (s *loadSum) kinds() string {
	var parts []string
	for _, k := range uploadKinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.byKind[k]))
	}
	return strings.Join(parts, ", ")
}

func tierMix(clients []*loadClient) string {
	n := map[string]int{}
	for _, c := range clients {
		n[c.tier]++
	}
	var parts []string
	for _, tier := range []string{"enterprise", "business", "pro", "starter"} {
		if n[tier] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[tier], tier))
		}
	}
	return strings.Join(parts, ", ")
}

func retryAfterSummary(recs ...*recorder) string {
	var parts []string
	for _, r := range recs {
		r.mu.Lock()
		for class, m := range r.retryAfter {
			for st, k := range m {
				parts = append(parts, fmt.Sprintf("%s %d×%d", class, st, k))
			}
		}
		r.mu.Unlock()
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// serverMeans renders the server's own mean duration per route, from its
// histogram's _sum and _count.
func serverMeans(metrics map[string]float64) string {
	const prefix = "jetty_http_request_duration_seconds_sum{"
	var routes []string
	for k := range metrics {
		if strings.HasPrefix(k, prefix) {
			routes = append(routes, k)
		}
	}
	sort.Strings(routes)
	var b strings.Builder
	for _, k := range routes {
		n := metrics[strings.Replace(k, "_sum{", "_count{", 1)]
		route := strings.TrimSuffix(strings.TrimPrefix(k, prefix+`route="`), `"}`)
		if n > 0 && !strings.Contains(route, "provision") && !strings.Contains(route, "metrics") {
			fmt.Fprintf(&b, "%-52s %7.0f %9s\n", route, n, ms(time.Duration(metrics[k]/n*float64(time.Second))))
		}
	}
	return b.String()
}
