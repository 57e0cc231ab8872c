package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// A link is a way from the client to the server and to MinIO.
type link struct {
	name string
	// shape adds toxics to a proxy; nil means no proxy at all (loopback).
	shape func(b *testing.B, p *testenv.Proxy)
	// perConn is the per-connection cap in bytes per second (0: none).
	perConn float64
}

const (
	wanLatencyMS = 25
	wanKBps      = 2000 // toxiproxy's KB is 1000 bytes: 2 MB/s per connection
)

func wan(b *testing.B, p *testenv.Proxy) {
	p.Latency(b, "upstream", wanLatencyMS, 0)
	p.Latency(b, "downstream", wanLatencyMS, 0)
	p.Bandwidth(b, "upstream", wanKBps)
	p.Bandwidth(b, "downstream", wanKBps)
}

func lossy(b *testing.B, p *testenv.Proxy) {
	wan(b, p)
	// A share of the connections is reset after a while, another share
	// goes silent and is closed later.
	p.ResetPeer(b, "upstream", 3000, 0.05)
	p.Timeout(b, "downstream", 4000, 0.03)
}

var links = []link{
	{name: "loopback"},
	{name: "wan", shape: wan, perConn: wanKBps * 1000},
	{name: "lossy", shape: lossy, perConn: wanKBps * 1000},
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
}

func (r result) mbps() float64 {
	if r.err != nil || r.dur <= 0 {
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

// BenchmarkPeers runs every tool over every link (JETTY_BENCH_LINKS, a
// comma list, picks links; JETTY_BENCH_TOOLS tools; JETTY_BENCH_MIB the
// file size, default 256; JETTY_BENCH_SMALL the number of 1 MiB files of
// the small-files run, default 1000, 0 to skip) and prints one table per
// link; JETTY_BENCH_OUT names a file to write the tables to.
func BenchmarkPeers(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement: use -benchtime 1x")
	}
	for _, tool := range []string{awsBin(), "rclone"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is not installed: run bench/run.sh (it installs awscli and rclone from Debian)", tool)
		}
	}
	size := envInt("JETTY_BENCH_MIB", 256) << 20
	small := envInt("JETTY_BENCH_SMALL", 1000)
	wantLinks := os.Getenv("JETTY_BENCH_LINKS")
	wantTools := os.Getenv("JETTY_BENCH_TOOLS")

	work := b.TempDir()
	jetty := filepath.Join(work, "jetty")
	if out, err := exec.Command("go", "build", "-o", jetty, "../cmd/jetty").CombinedOutput(); err != nil {
		b.Fatalf("build jetty: %v\n%s", err, out)
	}
	file := filepath.Join(work, "big.bin")
	testenv.WriteRandFile(b, file, 77, size)
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
	fmt.Fprintf(&report, "Machine: %s/%s, %d cores; file %d MiB; small files %d × 1 MiB.\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), size>>20, small)

	for _, l := range links {
		if wantLinks != "" && !strings.Contains(","+wantLinks+",", ","+l.name+",") {
			continue
		}
		s3URL, s := m.Endpoint, ""
		var srvProxy *testenv.Proxy
		if l.shape != nil {
			p := tx.Proxy(b, strings.TrimPrefix(m.Endpoint, "http://"))
			l.shape(b, p)
			s3URL = p.URL()
		}
		srv := startServer(b, m, s3URL)
		s = srv.url
		if l.shape != nil {
			srvProxy = tx.Proxy(b, strings.TrimPrefix(srv.url, "http://"))
			l.shape(b, srvProxy)
			s = srvProxy.URL()
		}
		tools := []struct {
			name string
			fn   func() result
		}{
			{"jetty", func() result { return srv.jetty(b, jetty, s, file, size, work) }},
			{"single PUT", func() result {
				return awsRun(m, s3URL, size, "single PUT", "s3api", "put-object", "--bucket", m.Bucket, "--key", "bench/"+l.name+"/single", "--body", file)
			}},
			{"aws s3 cp", func() result {
				return awsRun(m, s3URL, size, "aws s3 cp", "s3", "cp", "--only-show-errors", file, "s3://"+m.Bucket+"/bench/"+l.name+"/aws")
			}},
			{"rclone", func() result {
				return rcloneRun(m, s3URL, size, "rclone", "copyto", file, "minio:"+m.Bucket+"/bench/"+l.name+"/rclone")
			}},
		}
		var rs []result
		for _, tl := range tools {
			if wantTools != "" && !strings.Contains(","+wantTools+",", ","+tl.name+",") {
				continue
			}
			r := tl.fn()
			b.Logf("%s %s: %.1f MB/s in %v (rss %d MiB, cpu %v) %v %s", l.name, r.tool, r.mbps(), r.dur.Round(time.Millisecond), r.rssKiB>>10, r.cpu.Round(time.Millisecond), r.err, r.note)
			rs = append(rs, r)
		}
		table(&report, l, rs)

		if small > 0 && (wantTools == "" || strings.Contains(wantTools, "small")) {
			total := small << 20
			var sr []result
			sr = append(sr, srv.jettyDir(b, jetty, s, smallDir, total, work))
			sr = append(sr, awsRun(m, s3URL, total, "aws s3 cp", "s3", "cp", "--recursive", "--only-show-errors", smallDir, "s3://"+m.Bucket+"/small/"+l.name+"/aws/"))
			sr = append(sr, rcloneRun(m, s3URL, total, "rclone", "copy", smallDir, "minio:"+m.Bucket+"/small/"+l.name+"/rclone"))
			for _, r := range sr {
				b.Logf("%s small %s: %.1f MB/s in %v %v", l.name, r.tool, r.mbps(), r.dur.Round(time.Millisecond), r.err)
			}
			l.name += fmt.Sprintf(", %d × 1 MiB files", small)
			table(&report, l, sr)
		}
	}
	fmt.Print("\n" + report.String())
	if out := os.Getenv("JETTY_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
			b.Error(err)
		}
	}
}

// table writes one markdown table: MB/s, ratios to the single PUT and to
// each peer, peak RSS, CPU.
func table(w io.Writer, l link, rs []result) {
	by := map[string]result{}
	for _, r := range rs {
		by[r.tool] = r
	}
	ratio := func(r result, to string) string {
		o, ok := by[to]
		if !ok || o.mbps() == 0 || r.mbps() == 0 || o.tool == r.tool {
			return "–"
		}
		return fmt.Sprintf("%.2f×", r.mbps()/o.mbps())
	}
	fmt.Fprintf(w, "### %s\n\n", l.name)
	fmt.Fprintln(w, "| tool | MB/s | time | vs single PUT | vs aws s3 cp | vs rclone | peak RSS | CPU | notes |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range rs {
		mb := fmt.Sprintf("%.1f", r.mbps())
		note := r.note
		if r.err != nil {
			mb = "failed"
			note = strings.ReplaceAll(r.err.Error(), "|", "/")
			if len(note) > 120 {
				note = note[:120] + "…"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %.1f s | %s | %s | %s | %d MiB | %.1f s | %s |\n", r.tool, mb, r.dur.Seconds(),
			ratio(r, "single PUT"), ratio(r, "aws s3 cp"), ratio(r, "rclone"), r.rssKiB>>10, r.cpu.Seconds(), note)
	}
	if l.perConn > 0 {
		if j, ok := by["jetty"]; ok && j.workers > 0 && j.err == nil {
			limit := float64(j.workers) * l.perConn / 1e6
			fmt.Fprintf(w, "\njetty: %d workers × %.0f MB/s per connection = %.0f MB/s; reached %.0f%%.\n", j.workers, l.perConn/1e6, limit, 100*j.mbps()/limit)
		}
	}
	fmt.Fprintln(w)
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

func awsRun(m testenv.S3, endpoint string, bytes int64, tool string, args ...string) result {
	cmd := exec.Command(awsBin(), append([]string{"--endpoint-url", endpoint}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+m.AccessKey, "AWS_SECRET_ACCESS_KEY="+m.SecretKey,
		"AWS_DEFAULT_REGION="+m.Region, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=")
	return run(cmd, bytes, tool)
}

func rcloneRun(m testenv.S3, endpoint string, bytes int64, tool string, args ...string) result {
	cmd := exec.Command("rclone", args...)
	// rclone's S3 client refuses its own transport when AWS_CA_BUNDLE is
	// set (LoadCustomCABundleError), and MinIO is plain HTTP here.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_MINIO_TYPE=s3", "RCLONE_CONFIG_MINIO_PROVIDER=Minio", "RCLONE_CONFIG_MINIO_ENDPOINT="+endpoint,
		"RCLONE_CONFIG_MINIO_ACCESS_KEY_ID="+m.AccessKey, "RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY="+m.SecretKey,
		"RCLONE_CONFIG_MINIO_REGION="+m.Region)
	return run(cmd, bytes, tool)
}

// server is a jetty server on PostgreSQL-free embedded parts (SQLite)
// with objects in MinIO, reached by the server directly and by clients
// (presigned parts) at publicS3.
type server struct {
	url, key, secret string
}

const webhook = "whsec_bench_deaf3163be50b713613e6c4d97cb636b"

func startServer(b *testing.B, m testenv.S3, publicS3 string) *server {
	b.Helper()
	cfg := app.Config{
		Listen: "127.0.0.1:0", DataDir: b.TempDir(), WebhookSecret: webhook, TokenSecret: "bench_token_b8b6c6080591a0a1afa128d476bad708", LiveKeys: true,
		DirectUploads: true,
		S3:            &s3blob.Config{Endpoint: m.Endpoint, PublicEndpoint: publicS3, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket},
	}
	a, stop, err := app.Start(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stop() })
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

// jetty uploads file with `jetty upload` at its defaults, then deletes the
// asset so that the next run is not deduplicated.
func (s *server) jetty(b *testing.B, bin, base, file string, size int64, work string) result {
	cmd := exec.Command(bin, "upload", file, "--json", "--quiet")
	cmd.Env = s.env(work, base)
	var out strings.Builder
	cmd.Stdout = &out
	r := run(cmd, size, "jetty")
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

// jettyDir uploads a directory.
func (s *server) jettyDir(b *testing.B, bin, base, dir string, total int64, work string) result {
	cmd := exec.Command(bin, "upload", dir, "--json", "--quiet")
	cmd.Env = s.env(work, base)
	var out strings.Builder
	cmd.Stdout = &out
	r := run(cmd, total, "jetty")
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
	req, _ := http.NewRequest(http.MethodDelete, s.url+"/api/storage/assets/"+id, nil)
	req.SetBasicAuth(s.key, s.secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Logf("delete %s: %v", id, err)
		return
	}
	res.Body.Close()
}
