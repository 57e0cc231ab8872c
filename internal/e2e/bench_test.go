package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/server/app"
)

// BenchmarkClientRSS uploads a generated 10 GiB file (generated on the
// fly, no disk) from a child process to a local embedded server and
// reports the client's peak RSS against the bound workers × chunk size +
// 64 MiB. Run it with `make bench-client` (it writes about 20 GiB of
// server data to a temporary directory).
func BenchmarkClientRSS(b *testing.B) {
	const (
		size    = 10 << 30
		workers = 16
		chunk   = 8 << 20
	)
	dir := b.TempDir()
	s := startServer(b, app.Config{DataDir: dir})
	// Tiers are data: let enterprise take 10 GiB files (its seed row says
	// 5000 MB), as an operator would.
	db, err := sql.Open("sqlite", dir+"/jetty.db")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE tier_configs SET max_file_size_mb = 20000 WHERE tier = 'enterprise'`); err != nil {
		b.Fatal(err)
	}
	db.Close()
	for i := 0; i < b.N; i++ {
		cmd := runChild(b, "JETTY_E2E_SERVER="+s.url, "JETTY_E2E_KEY="+s.key, "JETTY_E2E_SECRET="+s.secret,
			fmt.Sprintf("JETTY_E2E_GEN=%d", size), "JETTY_E2E_JOURNAL=-", "JETTY_E2E_MEMLIMIT="+memLimit(),
			fmt.Sprintf("JETTY_E2E_WORKERS=%d", workers), fmt.Sprintf("JETTY_E2E_CHUNK=%d", chunk))
		var out strings.Builder
		cmd.Stdout = &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		var res engine.Result
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
			b.Fatalf("result %q: %v", out.String(), err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		peak := float64(ru.Maxrss) / 1024 // KiB → MiB
		b.ReportMetric(peak, "client-peak-rss-MiB")
		b.ReportMetric(float64(workers*chunk>>20+64), "bound-MiB")
		b.ReportMetric(float64(size)/1e6/time.Since(start).Seconds(), "MB/s")
		if res.Asset.Size != size {
			b.Fatalf("asset size %d", res.Asset.Size)
		}
	}
}

// BenchmarkPipelineLocal measures the whole pipeline (plan, open, 16
// workers, complete) against a local server in this process, on the
// embedded default: 512 MiB of generated data per iteration, each
// iteration different content so nothing deduplicates.
func BenchmarkPipelineLocal(b *testing.B) {
	const size = 512 << 20
	s := startServer(b, app.Config{DataDir: b.TempDir()})
	c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		r := &offsetReaderAt{ReaderAt: newGenReaderAt(size + int64(i)), off: int64(i)}
		res, err := engine.UploadReader(context.Background(), c, r, size, fmt.Sprintf("p%d.bin", i), engine.Options{Workers: 16, JournalDir: "-"})
		if err != nil {
			b.Fatal(err)
		}
		if res.Deduplicated || res.Asset.Size != size {
			b.Fatalf("result %+v", res)
		}
	}
}

// offsetReaderAt shifts a ReaderAt so each iteration reads other bytes.
type offsetReaderAt struct {
	io.ReaderAt
	off int64
}

func (o *offsetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return o.ReaderAt.ReadAt(p, off+o.off)
}

// memLimit is "1" unless JETTY_E2E_MEMLIMIT=0 asks to measure without
// engine.LimitMemory.
func memLimit() string {
	if os.Getenv("JETTY_E2E_MEMLIMIT") == "0" {
		return "0"
	}
	return "1"
}
