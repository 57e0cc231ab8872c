package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/internal/units"
)

// progressUI shows the progress of a command's transfers on stderr. Three
// renderers implement it (chosen by newProgressUI):
//
//   - barUI: one schollz/progressbar bar for all the transfers together
//     (bytes, rate, ETA, the file and the edges in use), when stderr is a
//     terminal;
//   - lineUI: a plain line per running transfer every few seconds and one
//     when it ends ("name: 34% 120.0 MiB/350.0 MiB 45.2 MB/s"), with no
//     control characters, for CI logs;
//   - nopUI: nothing, for --quiet and --no-progress.
//
// All methods are safe for concurrent use.
type progressUI interface {
	// Add starts tracking a transfer of total bytes (-1: unknown).
	Add(name string, total int64) transfer
	// Print runs fn, which writes a line to stdout or stderr, without
	// tearing the display.
	Print(fn func())
	// Close ends the display; ok says whether everything finished.
	Close(ok bool)
}

// transfer is the progress of one file.
type transfer interface {
	// Hashing reports done of total bytes hashed before an upload.
	Hashing(done, total int64)
	// Update reports done of total bytes moved (total -1: unknown) and
	// how many edges are in use.
	Update(done, total int64, edges int)
	// Finish ends the transfer.
	Finish(err error)
}

// progressInterval is how often lineUI prints.
const progressInterval = 5 * time.Second

// newProgressUI picks the renderer: nothing with quiet or noProgress, a
// bar when stderr is a terminal, plain lines otherwise. total is the sum
// of the sizes to move (-1: unknown), count the number of transfers.
func newProgressUI(ios *iostreams.IOStreams, quiet, noProgress bool, total int64, count int) progressUI {
	switch {
	case quiet || noProgress:
		return nopUI{}
	case ios.StderrTTY:
		return newBarUI(ios.ErrOut, total, count)
	default:
		return newLineUI(ios.ErrOut, progressInterval)
	}
}

// nopUI shows nothing.
type nopUI struct{}

func (nopUI) Add(string, int64) transfer { return nopTransfer{} }
func (nopUI) Print(fn func())            { fn() }
func (nopUI) Close(bool)                 {}

type nopTransfer struct{}

func (nopTransfer) Hashing(int64, int64)     {}
func (nopTransfer) Update(int64, int64, int) {}
func (nopTransfer) Finish(error)             {}

// lineUI prints plain progress lines.
type lineUI struct {
	w        io.Writer
	mu       sync.Mutex
	active   []*lineTransfer
	stop     chan struct{}
	stopped  chan struct{}
	interval time.Duration
	closed   bool
}

func newLineUI(w io.Writer, interval time.Duration) *lineUI {
	u := &lineUI{w: w, stop: make(chan struct{}), stopped: make(chan struct{}), interval: interval}
	go u.loop()
	return u
}

func (u *lineUI) loop() {
	defer close(u.stopped)
	t := time.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
			u.mu.Lock()
			for _, lt := range u.active {
				fmt.Fprintln(u.w, lt.lineLocked(false))
			}
			u.mu.Unlock()
		}
	}
}

func (u *lineUI) Add(name string, total int64) transfer {
	lt := &lineTransfer{u: u, name: name, total: total, start: time.Now()}
	u.mu.Lock()
	u.active = append(u.active, lt)
	u.mu.Unlock()
	return lt
}

func (u *lineUI) Print(fn func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn()
}

func (u *lineUI) Close(bool) {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	u.mu.Unlock()
	close(u.stop)
	<-u.stopped
}

type lineTransfer struct {
	u       *lineUI
	name    string
	hashing bool
	done    int64
	total   int64
	rate    engine.Rate
	start   time.Time
	first   int64 // done at the first update: bytes from an earlier run
	seen    bool
}

func (t *lineTransfer) Hashing(done, total int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.hashing, t.done, t.total = true, done, total
}

func (t *lineTransfer) Update(done, total int64, _ int) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	if !t.seen {
		t.seen, t.first, t.start = true, done, time.Now()
	}
	t.hashing, t.done, t.total = false, done, total
	t.rate.Update(time.Now(), done)
}

func (t *lineTransfer) Finish(err error) {
	u := t.u
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, lt := range u.active {
		if lt == t {
			u.active = append(u.active[:i], u.active[i+1:]...)
			break
		}
	}
	if err == nil && t.total >= 0 {
		t.hashing, t.done = false, t.total
	}
	line := t.lineLocked(true)
	if err != nil {
		line += " (stopped)"
	}
	fmt.Fprintln(u.w, line)
}

// lineLocked is "name: 34% 120.0 MiB/350.0 MiB 45.2 MB/s"; final lines
// give the average rate of this run.
func (t *lineTransfer) lineLocked(final bool) string {
	name := safeName(t.name)
	if t.hashing {
		return fmt.Sprintf("%s: hashing %d%% of %s", name, percent(t.done, t.total), units.HumanBytes(t.total))
	}
	bps := t.rate.BytesPerSecond()
	if final {
		bps = rateOf(t.done-t.first, time.Since(t.start))
	}
	if t.total < 0 {
		return fmt.Sprintf("%s: %s %s", name, units.HumanBytes(t.done), humanRate(bps))
	}
	return fmt.Sprintf("%s: %d%% %s/%s %s", name, percent(t.done, t.total), units.HumanBytes(t.done), units.HumanBytes(t.total), humanRate(bps))
}

func percent(done, total int64) int {
	if total <= 0 {
		return 100
	}
	return int(done * 100 / total)
}

// safeName replaces control characters so a file name cannot move the
// cursor or clear the screen of whoever reads the log.
func safeName(s string) string {
	b := []rune(s)
	for i, r := range b {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			b[i] = '?'
		}
	}
	return string(b)
}

// barUI draws one bar for all transfers together.
type barUI struct {
	mu       sync.Mutex
	w        io.Writer
	bar      *progressbar.ProgressBar
	max      int64 // the bar's maximum, -1 for a spinner
	shown    int64 // the value last given to the bar
	count    int   // transfers expected
	started  int
	finished int
	closed   bool
	rendered bool
}

func newBarUI(w io.Writer, total int64, count int) *barUI {
	limit := total
	if limit <= 0 {
		limit = -1
	}
	bar := progressbar.NewOptions64(limit,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetRenderBlankState(false),
		progressbar.OptionUseIECUnits(true),
	)
	return &barUI{w: w, bar: bar, max: limit, count: max(count, 1)}
}

func (u *barUI) Add(name string, total int64) transfer {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.started++
	return &barTransfer{u: u, name: name, total: total, index: u.started}
}

func (u *barUI) Print(fn func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.bar.Clear()
	}
	fn()
}

func (u *barUI) Close(ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	u.closed = true
	if !u.rendered {
		return
	}
	if ok {
		// The summary lines tell the outcome: the bar goes away.
		u.bar.Clear()
		u.bar.Exit()
		return
	}
	// Stopped: leave the bar where it was, so the user sees how far it got.
	u.bar.Exit()
	fmt.Fprintln(u.w)
}

// setLocked moves the bar by delta and describes it.
func (u *barUI) setLocked(delta int64, desc string) {
	if u.closed {
		return
	}
	u.rendered = true
	u.shown += delta
	v := u.shown
	if u.max > 0 {
		v = min(max(v, 0), u.max)
	}
	u.bar.Describe(desc)
	u.bar.Set64(v)
}

type barTransfer struct {
	u     *barUI
	name  string
	index int
	total int64
	done  int64 // what this transfer added to the bar
}

func (t *barTransfer) prefix() string {
	name := []rune(safeName(filepath.Base(t.name)))
	if len(name) > 40 {
		name = append([]rune("…"), name[len(name)-39:]...)
	}
	if t.u.count > 1 {
		return fmt.Sprintf("[%d/%d] %s", t.u.finished+1, t.u.count, string(name))
	}
	return string(name)
}

func (t *barTransfer) Hashing(done, total int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.u.setLocked(0, fmt.Sprintf("%s hashing %d%%", t.prefix(), percent(done, total)))
}

func (t *barTransfer) Update(done, total int64, edges int) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	if total >= 0 {
		done = min(done, total)
	}
	delta := done - t.done
	t.done = done
	desc := t.prefix()
	if edges > 0 {
		desc += fmt.Sprintf(" (%d edge%s)", edges, plural(edges))
	}
	t.u.setLocked(delta, desc)
}

func (t *barTransfer) Finish(err error) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.u.finished++
	if err == nil && t.total > t.done {
		// Counts a deduplicated file, or the chunks an earlier run sent.
		delta := t.total - t.done
		t.done = t.total
		t.u.setLocked(delta, t.prefix())
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
