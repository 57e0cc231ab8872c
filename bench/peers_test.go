package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "modernc.org/sqlite"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// A link is a way from the client to the server and to MinIO.
type link struct {
	name string
	// latencyMS is added each way, kbps caps each connection each way
	// (toxiproxy's KB is 1000 bytes); both 0 means no proxy (loopback).
	latencyMS, kbps int
	// lossy resets or silences a share of the connections.
	lossy bool
	// aggregate: the clients run in the client network namespace that
	// bench/run.sh builds, behind a veth whose egress (the uplink) a tbf
	// qdisc caps for all connections together; toxiproxy adds the latency.
	aggregate bool
	// sizes (MiB) of the full run; small: the small-files run too.
	sizes []int64
	small bool
	about string
}

func (l link) proxied() bool { return l.latencyMS > 0 || l.kbps > 0 || l.lossy }

// perConn is the per-connection cap in bytes per second (0: none).
func (l link) perConn() float64 { return float64(l.kbps) * 1000 }

func (l link) shape(b *testing.B, p *testenv.Proxy) {
	if l.latencyMS > 0 {
		p.Latency(b, "upstream", l.latencyMS, 0)
		p.Latency(b, "downstream", l.latencyMS, 0)
	}
	if l.kbps > 0 {
		p.Bandwidth(b, "upstream", l.kbps)
		p.Bandwidth(b, "downstream", l.kbps)
	}
	if l.lossy {
		// A share of the connections is reset after a while, another
		// share goes silent and is closed later.
		p.ResetPeer(b, "upstream", 3000, 0.05)
		p.Timeout(b, "downstream", 4000, 0.03)
	}
}

// capWorkers is the number of connections the per-connection targets
// count: the tier's ceiling, what jetty asks for on a slow link.
const capWorkers = 32

var links = []link{
	{name: "loopback", sizes: []int64{1024, 10240}, small: true, about: "no proxy at all: bound by CPU (hashing, copying) on this machine"},
	{name: "wan-2MB", latencyMS: 25, kbps: 2000, sizes: []int64{256, 1024}, small: true, about: "toxiproxy: 25 ms each way, 2 MB/s per connection"},
	{name: "wan-4MB", latencyMS: 25, kbps: 4000, sizes: []int64{256, 1024}, about: "toxiproxy: 25 ms each way, 4 MB/s per connection"},
	{name: "long-100ms", latencyMS: 100, kbps: 4000, sizes: []int64{256, 1024}, about: "toxiproxy: 100 ms each way, 4 MB/s per connection"},
	{name: "lossy", latencyMS: 25, kbps: 2000, lossy: true, sizes: []int64{256}, small: true, about: "wan-2MB, plus 5% of connections reset after 3 s and 3% silenced (closed after 4 s)"},
	{name: "aggregate", latencyMS: 25, aggregate: true, sizes: []int64{256, 1024}, about: "all connections share one uplink: tbf on the client namespace's veth egress, 25 ms each way by toxiproxy (no per-connection cap)"},
}

func linkNamed(name string) link {
	for _, l := range links {
		if l.name == name {
			return l
		}
	}
	panic("bench: no link " + name)
}

// wan is the 2 MB/s, 25 ms link (BenchmarkTimeline's).
func wan(b *testing.B, p *testenv.Proxy) { linkNamed("wan-2MB").shape(b, p) }

// The tools, by the names of the tables and of JETTY_BENCH_TOOLS.
const (
	tJetty       = "jetty"
	tSingle      = "single PUT"
	tAWS         = "aws s3 cp"
	tAWSTuned    = "aws s3 cp (tuned)"
	tRclone      = "rclone"
	tRcloneTuned = "rclone (tuned)"
	tJettyEmb    = "jetty (embedded)"
	tCurlEmb     = "curl -T (embedded)"
	tSmall       = "small"
)

var allTools = []string{tJetty, tSingle, tAWS, tAWSTuned, tRclone, tRcloneTuned, tJettyEmb, tCurlEmb, tSmall}

// A profile is what one run measures.
type profile struct {
	name  string
	links []string
	tools []string
	// sizes, when set, replace every link's sizes (MiB).
	sizes []int64
	small bool
}

var profiles = map[string]profile{
	"full": {name: "full", links: []string{"loopback", "wan-2MB", "wan-4MB", "long-100ms", "lossy", "aggregate"}, tools: allTools, small: true},
	// short: a few minutes, for CI-sized checks.
	"short": {name: "short", links: []string{"loopback", "wan-4MB", "aggregate"}, tools: []string{tJetty, tAWSTuned, tSingle, tJettyEmb, tCurlEmb}, sizes: []int64{256}},
}

// result is one tool's run.
type result struct {
	tool    string
	bytes   int64
	dur     time.Duration
	rssKiB  int64
	cpu     time.Duration
	err     error
	workers int
	note    string
	skipped string
}

func (r result) mbps() float64 {
	if r.err != nil || r.skipped != "" || r.dur <= 0 {
		return 0
	}
	return float64(r.bytes) / 1e6 / r.dur.Seconds()
}

// run times cmd and reads its peak RSS and CPU time.
func run(cmd *exec.Cmd, bytes int64, tool string) result {
	var out, errOut strings.Builder
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errOut
	start := time.Now()
	err := cmd.Run()
	res := result{tool: tool, bytes: bytes, dur: time.Since(start)}
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			res.rssKiB = ru.Maxrss
			res.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		e := errOut.String()
		if len(e) > 400 {
			e = e[len(e)-400:]
		}
		res.err = fmt.Errorf("%v: %s", err, strings.TrimSpace(e))
	}
	return res
}

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

// listed reports whether name is in the comma list (an empty list holds
// everything).
func listed(list, name string) bool {
	return list == "" || strings.Contains(","+list+",", ","+name+",")
}

// linkEnv is what the tools of one link reach.
type linkEnv struct {
	l        link
	m        testenv.S3
	s3URL    string  // MinIO as the clients reach it
	srv      *server // jetty server with objects in MinIO
	srvURL   string  // srv as the clients reach it
	emb      *server // the embedded default (SQLite + local files), loopback only
	ns       string  // client network namespace ("": this one)
	jettyBin string
	work     string
}

// command runs name in the clients' network namespace.
// jettyArgs is args plus JETTY_BENCH_JETTY_FLAGS (space-separated, e.g.
// "--workers 32"): jetty as a user tunes it, beside its defaults.
func jettyArgs(args ...string) []string {
	return append(args, strings.Fields(os.Getenv("JETTY_BENCH_JETTY_FLAGS"))...)
}

func (e *linkEnv) command(name string, args ...string) *exec.Cmd {
	if e.ns != "" {
		return exec.Command("ip", append([]string{"netns", "exec", e.ns, name}, args...)...)
	}
	return exec.Command(name, args...)
}

// BenchmarkPeers runs every tool over every link of a profile and prints
// one table per link and file size, with the targets beside.
//
// Knobs: JETTY_BENCH_PROFILE (full, the default, or short);
// JETTY_BENCH_LINKS and JETTY_BENCH_TOOLS (comma lists) narrow the
// profile's links and tools; JETTY_BENCH_MIB (a comma list of MiB)
// replaces every link's file sizes; JETTY_BENCH_SMALL the number of 1 MiB
// files of the small-files run (full profile, default 1000, 0 to skip);
// JETTY_BENCH_OUT names a file to write the tables to. The aggregate link
// needs JETTY_BENCH_NETNS and JETTY_BENCH_NETNS_ADDR (bench/run.sh builds
// the namespace and sets them) and JETTY_BENCH_UPLINK_MBIT (default 100).
func BenchmarkPeers(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement: use -benchtime 1x")
	}
	pname := os.Getenv("JETTY_BENCH_PROFILE")
	if pname == "" {
		pname = "full"
	}
	prof, ok := profiles[pname]
	if !ok {
		b.Fatalf("JETTY_BENCH_PROFILE=%s: want full or short", pname)
	}
	if v := os.Getenv("JETTY_BENCH_MIB"); v != "" {
		prof.sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || n <= 0 {
				b.Fatalf("JETTY_BENCH_MIB=%s: want a comma list of MiB", v)
			}
			prof.sizes = append(prof.sizes, n)
		}
	}
	wantLinks, wantTools := os.Getenv("JETTY_BENCH_LINKS"), os.Getenv("JETTY_BENCH_TOOLS")
	toolOn := func(t string) bool { return slices.Contains(prof.tools, t) && listed(wantTools, t) }
	linkOn := func(l link) bool { return slices.Contains(prof.links, l.name) && listed(wantLinks, l.name) }
	small := int64(0)
	if prof.small && toolOn(tSmall) && slices.ContainsFunc(links, func(l link) bool { return l.small && linkOn(l) }) {
		small = envInt("JETTY_BENCH_SMALL", 1000)
	}
	for _, tool := range []string{awsBin(), "rclone", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is not installed: run bench/run.sh (it installs awscli, rclone and curl from Debian)", tool)
		}
	}

	work := b.TempDir()
	jetty := filepath.Join(work, "jetty")
	if out, err := exec.Command("go", "build", "-o", jetty, "../cmd/jetty").CombinedOutput(); err != nil {
		b.Fatalf("build jetty: %v\n%s", err, out)
	}
	files := map[int64]string{}
	fileOf := func(mib int64) string {
		if f, ok := files[mib]; ok {
			return f
		}
		f := filepath.Join(work, fmt.Sprintf("big-%d.bin", mib))
		testenv.WriteRandFile(b, f, byte(70+len(files)), mib<<20)
		files[mib] = f
		return f
	}
	smallDir := filepath.Join(work, "small")
	if small > 0 {
		os.MkdirAll(smallDir, 0o755)
		// Distinct contents (seeds repeat every 256 files: the index is
		// written over the start), so that nothing is deduplicated.
		for i := range small {
			p := filepath.Join(smallDir, fmt.Sprintf("f%04d.bin", i))
			testenv.WriteRandFile(b, p, byte(i), 1<<20)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(f, "file %08d", i)
			f.Close()
		}
	}

	m := testenv.MinIO(b)
	tx := testenv.Toxiproxy(b)
	var report strings.Builder
	fmt.Fprintf(&report, "Profile %s; machine: %s/%s, %d cores; %s; small files %d × 1 MiB.\n\n", prof.name, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), small)
	flush := func() {
		if out := os.Getenv("JETTY_BENCH_OUT"); out != "" {
			if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
				b.Error(err)
			}
		}
	}

	for _, l := range links {
		if !linkOn(l) {
			continue
		}
		sizes := l.sizes
		if prof.sizes != nil {
			sizes = prof.sizes
		}
		e := &linkEnv{l: l, m: m, s3URL: m.Endpoint, jettyBin: jetty, work: work}
		var ex extras
		listen := "127.0.0.1"
		if l.aggregate {
			ns, addr := os.Getenv("JETTY_BENCH_NETNS"), os.Getenv("JETTY_BENCH_NETNS_ADDR")
			if ns == "" || addr == "" {
				why := os.Getenv("JETTY_BENCH_NETNS_SKIP")
				if why == "" {
					why = "no client network namespace (JETTY_BENCH_NETNS, JETTY_BENCH_NETNS_ADDR): run through bench/run.sh, which builds one (root or CAP_NET_ADMIN, iproute2)"
				}
				b.Logf("SKIPPED link %s: %s", l.name, why)
				fmt.Fprintf(&report, "### %s — SKIPPED\n\n%s\n\n", l.name, why)
				flush()
				continue
			}
			e.ns, listen = ns, addr
			ex.uplink = float64(envInt("JETTY_BENCH_UPLINK_MBIT", 100)) * 1e6 / 8
			check, got, err := checkUplink(b, e, addr, filepath.Join(work, "probe.bin"), ex.uplink)
			if err != nil {
				b.Logf("SKIPPED link %s: %v", l.name, err)
				fmt.Fprintf(&report, "### %s — SKIPPED\n\n%v\n\n", l.name, err)
				flush()
				continue
			}
			ex.uplinkCheck, ex.uplinkMeasured = check, got
			b.Log(ex.uplinkCheck)
		}
		if l.name == "loopback" {
			ex.openssl, ex.opensslNote = opensslSHA256()
			b.Logf("openssl sha256, one core: %.0f MB/s %s", ex.openssl, ex.opensslNote)
		}
		if l.proxied() {
			p := tx.ProxyOn(b, listen, strings.TrimPrefix(m.Endpoint, "http://"))
			l.shape(b, p)
			e.s3URL = p.URL()
		}
		e.srv = startServer(b, m, e.s3URL)
		e.srvURL = e.srv.url
		if l.proxied() {
			sp := tx.ProxyOn(b, listen, strings.TrimPrefix(e.srv.url, "http://"))
			l.shape(b, sp)
			e.srvURL = sp.URL()
		}
		if l.name == "loopback" && (toolOn(tJettyEmb) || toolOn(tCurlEmb)) {
			e.emb = startEmbedded(b)
		}
		for _, mib := range sizes {
			size := mib << 20
			file := fileOf(mib)
			var rs []result
			for _, t := range []string{tJetty, tSingle, tAWS, tAWSTuned, tRclone, tRcloneTuned, tJettyEmb, tCurlEmb} {
				if !toolOn(t) || ((t == tJettyEmb || t == tCurlEmb) && e.emb == nil) {
					continue
				}
				r := e.runTool(b, t, file, size, mib)
				b.Logf("%s %d MiB %s: %.1f MB/s in %v (rss %d MiB, cpu %v) %v %s%s", l.name, mib, r.tool, r.mbps(), r.dur.Round(time.Millisecond), r.rssKiB>>10, r.cpu.Round(time.Millisecond), r.err, r.note, r.skipped)
				rs = append(rs, r)
			}
			ex.runs = append(ex.runs, sizedRun{mib: mib, rs: rs})
			table(&report, l, fmt.Sprintf("%s, %d MiB", l.name, mib), rs, ex)
			flush()
		}
		if small > 0 && l.small {
			total := small << 20
			var sr []result
			sr = append(sr, e.srv.jettyDir(b, e.command(jetty, "upload", smallDir, "--json", "--quiet"), e.srvURL, total, work))
			sr = append(sr, e.aws(total, tAWS, "", "s3", "cp", "--recursive", "--only-show-errors", smallDir, "s3://"+m.Bucket+"/small/"+l.name+"/aws/"))
			sr = append(sr, e.rclone(total, tRclone, "copy", smallDir, "minio:"+m.Bucket+"/small/"+l.name+"/rclone"))
			for _, r := range sr {
				b.Logf("%s small %s: %.1f MB/s in %v %v", l.name, r.tool, r.mbps(), r.dur.Round(time.Millisecond), r.err)
			}
			table(&report, l, fmt.Sprintf("%s, %d × 1 MiB files", l.name, small), sr, extras{})
		}
		targetTable(&report, l, ex)
		flush()
	}
	fmt.Print("\n" + report.String())
	flush()
}

// runTool runs one tool over the link, or says why it was skipped.
func (e *linkEnv) runTool(b *testing.B, tool, file string, size, mib int64) result {
	key := fmt.Sprintf("bench/%s/%d/%s", e.l.name, mib, strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(tool))
	switch tool {
	case tJetty:
		return e.srv.jetty(b, e.command(e.jettyBin, jettyArgs("upload", file, "--json", "--quiet")...), e.srvURL, size, e.work, tool)
	case tJettyEmb:
		return e.emb.jetty(b, e.command(e.jettyBin, jettyArgs("upload", file, "--json", "--quiet")...), e.emb.url, size, e.work, tool)
	case tCurlEmb:
		return e.emb.curl(b, e.command("curl", "-sS", "-f", "-X", "POST", "-T", file, "-H", "X-Filename: "+filepath.Base(file),
			"-H", "Content-Type: application/octet-stream", "-u", e.emb.key+":"+e.emb.secret, e.emb.url+"/api/storage/upload"), size, tool)
	case tSingle:
		if size > 5<<30 {
			return result{tool: tool, bytes: size, skipped: "S3 takes at most 5 GiB in one PUT"}
		}
		if e.l.perConn() > 0 && mib > 256 {
			return result{tool: tool, bytes: size, skipped: fmt.Sprintf("one connection at the cap (%.0f MB/s, see the 256 MiB table): %.0f s", e.l.perConn()/1e6, float64(size)/e.l.perConn())}
		}
		defer e.remove(b, key)
		return e.aws(size, tool, "", "s3api", "put-object", "--bucket", e.m.Bucket, "--key", key, "--body", file)
	case tAWS:
		defer e.remove(b, key)
		return e.aws(size, tool, "", "s3", "cp", "--only-show-errors", file, "s3://"+e.m.Bucket+"/"+key)
	case tAWSTuned:
		defer e.remove(b, key)
		return e.aws(size, tool, awsTunedConfig(b, e.work), "s3", "cp", "--only-show-errors", file, "s3://"+e.m.Bucket+"/"+key)
	case tRclone:
		defer e.remove(b, key)
		return e.rclone(size, tool, "copyto", file, "minio:"+e.m.Bucket+"/"+key)
	case tRcloneTuned:
		defer e.remove(b, key)
		return e.rclone(size, tool, "copyto", "--s3-upload-concurrency", "32", "--s3-chunk-size", "8M", file, "minio:"+e.m.Bucket+"/"+key)
	}
	b.Fatalf("no tool %q", tool)
	return result{}
}

// remove deletes a peer's object so that big runs do not fill the disk.
func (e *linkEnv) remove(b *testing.B, key string) {
	_, err := e.m.S3Client().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(e.m.Bucket), Key: aws.String(key)})
	if err != nil {
		b.Logf("remove %s: %v", key, err)
	}
}

// extras are a link's figures beside the tools' rows.
type extras struct {
	runs           []sizedRun
	uplink         float64 // aggregate: the tbf rate, bytes per second
	uplinkMeasured float64 // one curl PUT straight through the veth
	uplinkCheck    string
	openssl        float64 // loopback: openssl sha256 on one core, MB/s
	opensslNote    string
}

type sizedRun struct {
	mib int64
	rs  []result
}

// awsBin is the Debian package's aws (the one the issue names), else
// the first on PATH; JETTY_BENCH_AWS overrides.
func awsBin() string {
	if p := os.Getenv("JETTY_BENCH_AWS"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		return "/usr/bin/aws"
	}
	return "aws"
}

// awsTunedConfig writes the tuned AWS config (32 requests at once, 8 MB
// parts) with `aws configure set` into a file of its own, once.
func awsTunedConfig(b *testing.B, work string) string {
	p := filepath.Join(work, "aws-tuned.config")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	for _, kv := range [][2]string{{"default.s3.max_concurrent_requests", "32"}, {"default.s3.multipart_chunksize", "8MB"}} {
		cmd := exec.Command(awsBin(), "configure", "set", kv[0], kv[1])
		cmd.Env = append(os.Environ(), "AWS_CONFIG_FILE="+p, "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("aws configure set %s: %v: %s", kv[0], err, out)
		}
	}
	return p
}

// aws runs the aws CLI against MinIO; config is an AWS_CONFIG_FILE ("":
// none, the defaults).
func (e *linkEnv) aws(bytes int64, tool, config string, args ...string) result {
	if config == "" {
		config = "/dev/null"
	}
	cmd := e.command(awsBin(), append([]string{"--endpoint-url", e.s3URL}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+e.m.AccessKey, "AWS_SECRET_ACCESS_KEY="+e.m.SecretKey,
		"AWS_DEFAULT_REGION="+e.m.Region, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+config,
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=")
	return run(cmd, bytes, tool)
}

func (e *linkEnv) rclone(bytes int64, tool string, args ...string) result {
	cmd := e.command("rclone", args...)
	// rclone's S3 client refuses its own transport when AWS_CA_BUNDLE is
	// set (LoadCustomCABundleError), and MinIO is plain HTTP here.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_MINIO_TYPE=s3", "RCLONE_CONFIG_MINIO_PROVIDER=Minio", "RCLONE_CONFIG_MINIO_ENDPOINT="+e.s3URL,
		"RCLONE_CONFIG_MINIO_ACCESS_KEY_ID="+e.m.AccessKey, "RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY="+e.m.SecretKey,
		"RCLONE_CONFIG_MINIO_REGION="+e.m.Region)
	return run(cmd, bytes, tool)
}

// checkUplink PUTs 64 MiB with one curl straight through the veth (no
// toxiproxy) to a sink in this namespace: the figure the tbf cap lets
// through, measured before the tools run.
func checkUplink(b *testing.B, e *linkEnv, addr, file string, uplink float64) (string, float64, error) {
	const n = 64 << 20
	testenv.WriteRandFile(b, file, 3, n)
	defer os.Remove(file)
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return "", 0, fmt.Errorf("the uplink check cannot listen on the veth's address %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1<<20)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	r := run(e.command("curl", "-sS", "-f", "-T", file, "-o", "/dev/null", "http://"+ln.Addr().String()+"/sink"), n, "curl")
	if r.err != nil {
		return "", 0, fmt.Errorf("the uplink check's curl PUT from the client namespace failed: %v", r.err)
	}
	got := r.mbps() * 1e6
	verdict := "the cap holds"
	switch {
	case got > 1.05*uplink:
		verdict = "THE CAP DOES NOT HOLD: the aggregate figures below are not of a capped link"
	case got < 0.8*uplink:
		verdict = "the cap holds, but one connection does not come near it here (a busy machine?)"
	}
	return fmt.Sprintf("Uplink check: one `curl -T` of 64 MiB straight through the veth (no proxy): %.2f MB/s, %.0f%% of the %.2f MB/s cap (%.0f Mbit/s): %s.",
		got/1e6, 100*got/uplink, uplink/1e6, uplink*8/1e6, verdict), got, nil
}

// server is a jetty server on its embedded parts (SQLite), with objects
// in MinIO (startServer) or local files (startEmbedded).
type server struct {
	url, key, secret string
}

const webhook = "whsec_bench_deaf3163be50b713613e6c4d97cb636b"

func startServer(b *testing.B, m testenv.S3, publicS3 string) *server {
	b.Helper()
	return startApp(b, &s3blob.Config{Endpoint: m.Endpoint, PublicEndpoint: publicS3, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket})
}

// startEmbedded is `jetty server` at its default: SQLite and local files.
func startEmbedded(b *testing.B) *server {
	b.Helper()
	return startApp(b, nil)
}

func startApp(b *testing.B, s3cfg *s3blob.Config) *server {
	dir := b.TempDir()
	cfg := app.Config{
		Listen: "127.0.0.1:0", DataDir: dir, WebhookSecret: webhook, TokenSecret: "bench_token_b8b6c6080591a0a1afa128d476bad708", LiveKeys: true,
		DirectUploads: s3cfg != nil, S3: s3cfg,
	}
	a, stop, err := app.Start(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stop() })
	// Tiers are data: let enterprise take 10 GiB files (its seed row says
	// 5000 MB), as an operator would (internal/e2e's BenchmarkClientRSS).
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "jetty.db")+"?_pragma=busy_timeout(30000)")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE tier_configs SET max_file_size_mb = 20000 WHERE tier = 'enterprise'`); err != nil {
		b.Fatal(err)
	}
	db.Close()
	s := &server{url: a.URL()}
	s.key, s.secret = testenv.Provision(b, s.url, webhook, testenv.RandomName("bench"), "enterprise")
	return s
}

type uploadJSON struct {
	Asset struct {
		ID   string `json:"id"`
		Size int64  `json:"size"`
	} `json:"asset"`
	BytesSent int64 `json:"bytes_sent"`
	Workers   int   `json:"workers"`
	Edges     []struct {
		ID     string `json:"id"`
		Chunks int    `json:"chunks"`
	} `json:"edges"`
}

func (s *server) env(work, base string) []string {
	state := filepath.Join(work, "state-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	return append(os.Environ(), "JETTY_SERVER="+base, "JETTY_API_KEY="+s.key, "JETTY_API_SECRET="+s.secret,
		"XDG_STATE_HOME="+state, "XDG_CONFIG_HOME="+state)
}

// jetty runs cmd, a `jetty upload FILE --json` at its defaults, against
// base, then deletes the asset so that the next run is not deduplicated.
func (s *server) jetty(b *testing.B, cmd *exec.Cmd, base string, size int64, work, tool string) result {
	cmd.Env = s.env(work, base)
	var out strings.Builder
	cmd.Stdout = &out
	r := run(cmd, size, tool)
	var u uploadJSON
	if r.err == nil {
		if err := json.Unmarshal([]byte(out.String()), &u); err != nil || u.Asset.Size != size || u.BytesSent < size {
			r.err = fmt.Errorf("bad result %v: %s", err, out.String())
		}
		r.workers = u.Workers
		var parts []string
		for _, e := range u.Edges {
			parts = append(parts, fmt.Sprintf("%s %d", e.ID, e.Chunks))
		}
		r.note = fmt.Sprintf("%d workers; chunks: %s", u.Workers, strings.Join(parts, ", "))
		if extra := u.BytesSent - size; extra > 0 {
			r.note += fmt.Sprintf("; %.0f MiB sent again after failures", float64(extra)/(1<<20))
		}
		s.delete(b, u.Asset.ID)
	}
	return r
}

// curl runs cmd, one `curl -T` request to the single-request upload, and
// deletes the asset it made.
func (s *server) curl(b *testing.B, cmd *exec.Cmd, size int64, tool string) result {
	var out strings.Builder
	cmd.Stdout = &out
	r := run(cmd, size, tool)
	if r.err == nil {
		var u uploadJSON
		if err := json.Unmarshal([]byte(out.String()), &u); err != nil || u.Asset.Size != size {
			r.err = fmt.Errorf("bad answer %v: %.300s", err, out.String())
		}
		r.note = "one request"
		s.delete(b, u.Asset.ID)
	}
	return r
}

// jettyDir runs cmd, a `jetty upload DIR`.
func (s *server) jettyDir(b *testing.B, cmd *exec.Cmd, base string, total int64, work string) result {
	cmd.Env = s.env(work, base)
	var out strings.Builder
	cmd.Stdout = &out
	r := run(cmd, total, tJetty)
	if r.err == nil {
		var sum int64
		dec := json.NewDecoder(strings.NewReader(out.String()))
		for {
			var u uploadJSON
			if err := dec.Decode(&u); err != nil {
				break
			}
			sum += u.BytesSent
			s.delete(b, u.Asset.ID)
		}
		if sum < total {
			r.err = fmt.Errorf("sent %d bytes of %d", sum, total)
		}
	}
	return r
}

func (s *server) delete(b *testing.B, id string) {
	if id == "" {
		return
	}
	req, _ := http.NewRequest(http.MethodDelete, s.url+"/api/storage/assets/"+id, nil)
	req.SetBasicAuth(s.key, s.secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Logf("delete %s: %v", id, err)
		return
	}
	res.Body.Close()
}
