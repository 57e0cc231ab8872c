package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jettythunder/jetty/engine"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func lastFrame(b *bytes.Buffer) string {
	s := b.String()
	return s[strings.LastIndex(s, "\r\x1b[K")+4:]
}

func noSI(t *testing.T, s string) {
	t.Helper()
	for _, u := range []string{"MB/s", "kB/s", "GB/s", " MB", " GB", " kB"} {
		if strings.Contains(s, u) {
			t.Errorf("decimal unit %q in %q: sizes and speeds are binary (KiB, MiB, GiB)", u, s)
		}
	}
}

// TestBarCountsConfirmedBytes: the bar moves with the bytes the server
// confirmed, shows what was sent on top as pending, never counts what an
// earlier run stored as speed, and its ETA means something.
func TestBarCountsConfirmedBytes(t *testing.T) {
	const mib = 1 << 20
	clk := newFakeClock()
	var buf bytes.Buffer
	u := newBarUI(&buf, 380*mib, 1, 120, clk.now)
	tr := u.Add("big.bin", 380*mib)

	// A resume: 16 chunks of 10 MiB (160 MiB) were on the server.
	tr.Start(380*mib, 160*mib)
	f := lastFrame(&buf)
	if !strings.Contains(f, " 42% ") || !strings.Contains(f, "160.0 MiB/380.0 MiB") || !strings.Contains(f, "-- MiB/s  ETA --") {
		t.Fatalf("after the start: %q", f)
	}
	// 15 MiB more sent in a second, none confirmed: still 42%, the sent
	// part is pending; the speed is the wire's (not the 160 MiB the
	// server held), and until a chunk is confirmed the ETA comes from it
	// too: 220 MiB at 15 MiB/s.
	clk.add(time.Second / 2)
	tr.Update(380*mib, 160*mib, 5*mib)
	clk.add(time.Second)
	tr.Update(380*mib, 160*mib, 20*mib)
	f = lastFrame(&buf)
	if !strings.Contains(f, " 42% ") || !strings.Contains(f, "▒") || !strings.Contains(f, "15.0 MiB/s") || !strings.Contains(f, "ETA 15s") {
		t.Fatalf("sent but not confirmed counted as done: %q", f)
	}
	// A chunk confirmed 2.5s after the start: the ETA now comes from the
	// confirmed bytes, 4 MiB/s: 210 MiB left is 53s.
	clk.add(time.Second)
	tr.Update(380*mib, 170*mib, 10*mib)
	f = lastFrame(&buf)
	if !strings.Contains(f, " 44% ") || !strings.Contains(f, "7.5 MiB/s") || !strings.Contains(f, "ETA 53s") {
		t.Fatalf("after a chunk: %q", f)
	}
	// Nearly done at a high rate: the ETA never says 0s while bytes remain.
	clk.add(time.Second)
	tr.Update(380*mib, 380*mib-1, 0)
	f = lastFrame(&buf)
	if strings.Contains(f, "ETA 0s") || !strings.Contains(f, "ETA 1s") {
		t.Fatalf("near the end: %q", f)
	}
	noSI(t, buf.String())
	for _, frame := range strings.Split(buf.String(), "\r\x1b[K") {
		if n := utf8.RuneCountInString(frame); n >= 120 {
			t.Errorf("frame of %d columns on a 120-column terminal: %q", n, frame)
		}
		if strings.Contains(frame, "edge") || strings.Contains(frame, "[0s") {
			t.Errorf("frame %q", frame)
		}
	}
	tr.Finish(nil)
	u.Close(true)
	if !strings.HasSuffix(buf.String(), "\r\x1b[K") {
		t.Errorf("the bar stays after success: %q", buf.String())
	}
}

// TestBarInterruptedShowsKeptChunks: stopped after 1 of 38 chunks was
// stored while many more were half sent, the bar left on the screen
// says 2%, not the bytes sent.
func TestBarInterruptedShowsKeptChunks(t *testing.T) {
	const mib = 1 << 20
	clk := newFakeClock()
	var buf bytes.Buffer
	u := newBarUI(&buf, 380*mib, 1, 100, clk.now)
	tr := u.Add("big.bin", 380*mib)
	tr.Start(380*mib, 0)
	clk.add(2 * time.Second)
	tr.Update(380*mib, 10*mib, 130*mib)
	tr.Finish(errors.New("interrupted"))
	u.Close(false)
	out := buf.String()
	last := strings.TrimSuffix(out[strings.LastIndex(out, "\r\x1b[K")+4:], "\n")
	if !strings.Contains(last, "  2% ") || !strings.HasSuffix(last, "10.0 MiB/380.0 MiB  stopped") {
		t.Fatalf("the bar left after an interruption: %q", last)
	}
}

// TestBarHashingOnePercentage: while a file is hashed before sending,
// the bar shows one percentage, the hashing's.
func TestBarHashingOnePercentage(t *testing.T) {
	clk := newFakeClock()
	var buf bytes.Buffer
	u := newBarUI(&buf, 100<<20, 1, 100, clk.now)
	tr := u.Add("h.bin", 100<<20)
	tr.Hashing(34<<20, 100<<20)
	f := lastFrame(&buf)
	if strings.Count(f, "%") != 1 || !strings.Contains(f, "hashing  34%") {
		t.Fatalf("hashing frame %q", f)
	}
}

// TestBarSeveralFilesDedup: a deduplicated file counts as done but not
// as speed.
func TestBarSeveralFilesDedup(t *testing.T) {
	clk := newFakeClock()
	var buf bytes.Buffer
	u := newBarUI(&buf, 200<<20, 2, 100, clk.now)
	a := u.Add("a.bin", 100<<20)
	a.Finish(nil) // deduplicated: no start, nothing sent
	b := u.Add("b.bin", 100<<20)
	b.Start(100<<20, 0)
	clk.add(time.Second / 2)
	b.Update(100<<20, 0, 2<<20)
	clk.add(time.Second / 2)
	b.Update(100<<20, 5<<20, 0)
	f := lastFrame(&buf)
	if !strings.Contains(f, "[2/2] b.bin") || !strings.Contains(f, " 52% ") || !strings.Contains(f, "6.0 MiB/s") || !strings.Contains(f, "ETA 19s") {
		t.Fatalf("frame %q", f)
	}
}

func TestHumanETA(t *testing.T) {
	for _, tc := range []struct {
		left int64
		bps  float64
		want string
	}{
		{100, 0, "ETA --"},
		{1, 1e9, "ETA 1s"},
		{0, 10, "ETA 0s"},
		{83 << 20, 1 << 20, "ETA 1m23s"},
		{2 * 3600 << 20, 1 << 20, "ETA 2h00m"},
	} {
		if got := humanETA(tc.left, tc.bps); got != tc.want {
			t.Errorf("humanETA(%d, %g) = %q, want %q", tc.left, tc.bps, got, tc.want)
		}
	}
	if got := humanRate(1.5 * (1 << 30)); got != "1.5 GiB/s" {
		t.Errorf("humanRate = %q", got)
	}
}

// TestLinesCountLikeTheBar: the plain lines (no terminal) count the same
// way: confirmed bytes, binary units, speed without the resumed bytes.
func TestLinesCountLikeTheBar(t *testing.T) {
	clk := newFakeClock()
	var buf bytes.Buffer
	u := newLineUI(&buf, time.Hour)
	u.now = clk.now
	defer u.Close(true)
	tr := u.Add("data.bin", 40<<20)
	tr.Start(40<<20, 20<<20)
	clk.add(time.Second)
	tr.Update(40<<20, 20<<20, 8<<20)
	clk.add(time.Second)
	tr.Update(40<<20, 30<<20, 0)
	u.tick()
	line := buf.String()
	if !strings.Contains(line, "data.bin: 75% 30.0 MiB of 40.0 MiB stored") || !strings.Contains(line, "MiB/s") || !strings.Contains(line, "ETA ") {
		t.Fatalf("plain line %q", line)
	}
	tr.Update(40<<20, 40<<20, 0)
	tr.Finish(nil)
	final := strings.Split(strings.TrimSpace(buf.String()), "\n")[1]
	// 20 MiB moved in 2 s: 10 MiB/s, not 20 (the resumed half is not speed).
	if final != "data.bin: 100% 40.0 MiB of 40.0 MiB stored, 10.0 MiB/s" {
		t.Fatalf("final line %q", final)
	}
	// Hashed, then found on the server: nothing to send.
	d := u.Add("dup.bin", 10<<20)
	d.Hashing(10<<20, 10<<20)
	d.Finish(nil)
	if !strings.HasSuffix(buf.String(), "\ndup.bin: 10.0 MiB already on the server\n") {
		t.Fatalf("deduplicated file's line:\n%s", buf.String())
	}
	assertNoControl(t, "plain lines", buf.String())
	noSI(t, buf.String())
}

// recTransfer records what uploadProgress reports.
type recTransfer struct {
	nopTransfer
	starts  [][2]int64
	updates [][3]int64
}

func (r *recTransfer) Start(total, held int64) { r.starts = append(r.starts, [2]int64{total, held}) }
func (r *recTransfer) Update(total, confirmed, inflight int64) {
	r.updates = append(r.updates, [3]int64{total, confirmed, inflight})
}

// TestUploadProgressEventsConfirmed: engine events become confirmed
// bytes (chunks stored) plus what is sent on top; the resumed chunks are
// announced once the session is open.
func TestUploadProgressEventsConfirmed(t *testing.T) {
	rec := &recTransfer{}
	var started []engine.Event
	p := uploadProgress(rec, func(error) {}, func(e engine.Event) { started = append(started, e) })
	p.Event(engine.Event{Kind: engine.EventStart, Total: 380, Done: 160, Chunks: 38, ChunksDone: 16})
	p.Event(engine.Event{Kind: engine.EventSent, Total: 380, Done: 160, Sent: 25})
	p.Event(engine.Event{Kind: engine.EventChunkDone, Total: 380, Done: 170, Sent: 30})
	if len(started) != 1 || started[0].ChunksDone != 16 {
		t.Fatalf("started %+v", started)
	}
	want := [][3]int64{{380, 160, 25}, {380, 170, 20}}
	if len(rec.updates) != 2 || rec.updates[0] != want[0] || rec.updates[1] != want[1] || rec.starts[0] != [2]int64{380, 160} {
		t.Fatalf("updates %v starts %v, want %v", rec.updates, rec.starts, want)
	}
}

// TestUploadSummaryShort: the summary line is under 100 columns, names
// no storage key, and its counts add up on a resume; the routes line
// gives the shares.
func TestUploadSummaryShort(t *testing.T) {
	res := &engine.Result{
		ChunksTotal: 38, ChunksSent: 22, BytesSent: 230 << 20, Duration: 8 * time.Second, Resumed: true,
		Edges: []engine.EdgeStat{{ID: "origin", Chunks: 9, Bytes: 88 << 20}, {ID: "fra1", Chunks: 13, Bytes: 132 << 20}},
	}
	res.Asset.ID, res.Asset.Size = "0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11", 380<<20
	res.Asset.Key = "accounts/acc_123/objects/0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11"
	res.Asset.Hash = strings.Repeat("ab", 32)
	j := uploadJob{path: "/home/someone/videos/" + strings.Repeat("very-long-name-", 8) + "final.mp4", size: 380 << 20}
	lines := uploadSummary(j, "", res, uploadStart{chunks: 16, bytes: 160 << 20})
	if len(lines) != 3 {
		t.Fatalf("lines %q", lines)
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n >= 100 {
			t.Errorf("%d columns: %q", n, l)
		}
		if strings.Contains(l, res.Asset.Key) || strings.Contains(l, "key ") {
			t.Errorf("the storage key belongs in --json: %q", l)
		}
		noSI(t, l)
	}
	if !strings.HasPrefix(lines[0], "uploaded …") || !strings.HasSuffix(lines[0], "final.mp4: 380.0 MiB in 8.0s (27.5 MiB/s), id "+res.Asset.ID) {
		t.Errorf("summary %q", lines[0])
	}
	if lines[1] != "  resumed: sent 22 of 38 chunks (220.0 MiB), 16 (160.0 MiB) were already on the server" {
		t.Errorf("resume line %q", lines[1])
	}
	if lines[2] != "  via 2 edges: fra1 60%, origin 40%" {
		t.Errorf("routes line %q", lines[2])
	}
}

func TestRoutesLine(t *testing.T) {
	for _, tc := range []struct {
		edges []engine.EdgeStat
		want  string
	}{
		{nil, ""},
		{[]engine.EdgeStat{{ID: "origin", Chunks: 3, Bytes: 30}}, "via origin"},
		{[]engine.EdgeStat{{ID: "fra1", Chunks: 1, Bytes: 1}, {ID: "origin", Chunks: 1, Bytes: 1}, {ID: "direct", Chunks: 1, Bytes: 1}}, "via 3 edges: fra1 34%, origin 33%, direct 33%"},
		{[]engine.EdgeStat{{ID: "origin", Chunks: 1, Bytes: 1}, {ID: "ams1", Chunks: 199, Bytes: 199}}, "via 2 edges: ams1 99%, origin 1%"},
		{[]engine.EdgeStat{{ID: "edge_3fa9", Location: "fra", Chunks: 6, Bytes: 60}, {ID: "origin", Chunks: 4, Bytes: 40}}, "via 2 edges: fra 60%, origin 40%"},
	} {
		if got := routesLine(tc.edges); got != tc.want {
			t.Errorf("routesLine(%v) = %q, want %q", tc.edges, got, tc.want)
		}
	}
}

// TestSpeedsStall: the speed is measured over the last seconds, so a
// stall shows (the ETA goes back to --) instead of an old average.
func TestSpeedsStall(t *testing.T) {
	clk := newFakeClock()
	var s speeds
	s.reset(clk.now())
	var n int64
	for range 20 { // 10 MiB/s for 10 s
		clk.add(500 * time.Millisecond)
		n += 5 << 20
		s.observe(clk.now(), n, n)
	}
	if got := s.speed(); got != "10.0 MiB/s" {
		t.Fatalf("steady speed %q", got)
	}
	for range 12 { // then nothing for 6 s
		clk.add(500 * time.Millisecond)
		s.observe(clk.now(), n, n)
	}
	if got, eta := s.speed(), s.eta(1<<20); got != "0 B/s" || eta != "ETA --" {
		t.Fatalf("after a stall: %q %q", got, eta)
	}
}
