package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/jettythunder/jetty/internal/iostreams"
	"github.com/jettythunder/jetty/internal/units"
)

// progressUI shows the progress of a command's transfers on stderr. Three
// renderers implement it (chosen by newProgressUI):
//
//   - barUI: one bar for all the transfers together, redrawn in place,
//     when stderr is a terminal;
//   - lineUI: a plain line per running transfer every few seconds and one
//     when it ends, with no control characters, for CI logs;
//   - nopUI: nothing, for --quiet and --no-progress.
//
// Both renderers count the same way (docs/decisions.md, "Issue 20:
// progress"): progress is the bytes the receiver confirmed (whole chunks
// stored), never bytes merely sent; bytes it held before this run (a
// resume, deduplicated content) count toward the total but never toward
// the speed; the speed and the ETA come from a smoothed rate of the bytes
// confirmed in this run. Sizes and speeds are in binary units (KiB, MiB,
// GiB; MiB/s).
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
	// Hashing reports done of total bytes read to hash the file before
	// any is sent (--hash-first, a file sent whole).
	Hashing(done, total int64)
	// Start says the transfer of total bytes (-1: unknown) begins, with
	// held bytes already at the receiver (an earlier run's): they count
	// as done, never toward the speed.
	Start(total, held int64)
	// Update reports the bytes the receiver confirmed (held ones
	// included) and those sent in this run and not confirmed yet, of
	// total (-1: unknown; a stream's total grows).
	Update(total, confirmed, inflight int64)
	// Finish ends the transfer. On success what was not confirmed (the
	// server found the content it already held) counts as held.
	Finish(err error)
}

// progressInterval is how often lineUI prints.
const progressInterval = 5 * time.Second

// newProgressUI picks the renderer: nothing with quiet or noProgress, a
// bar when stderr is a terminal, plain lines otherwise. total is the sum
// of the sizes to move (-1: unknown), count the number of transfers,
// verb what happened to the bytes counted ("stored", "fetched").
func newProgressUI(ios *iostreams.IOStreams, quiet, noProgress bool, total int64, count int, verb string) progressUI {
	switch {
	case quiet || noProgress:
		return nopUI{}
	case ios.StderrTTY:
		u := newBarUI(ios.ErrOut, total, count, termWidth(ios.ErrOut), time.Now)
		u.verb = verb
		return u
	default:
		u := newLineUI(ios.ErrOut, progressInterval)
		u.verb = verb
		return u
	}
}

// termWidth is the width of the terminal w writes to (80 when unknown).
func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// nopUI shows nothing.
type nopUI struct{}

func (nopUI) Add(string, int64) transfer { return nopTransfer{} }
func (nopUI) Print(fn func())            { fn() }
func (nopUI) Close(bool)                 {}

type nopTransfer struct{}

func (nopTransfer) Hashing(int64, int64)       {}
func (nopTransfer) Start(int64, int64)         {}
func (nopTransfer) Update(int64, int64, int64) {}
func (nopTransfer) Finish(error)               {}

// tally is the figures of one transfer, as both renderers count them.
type tally struct {
	hashing   bool
	hashed    int64
	total     int64 // -1: unknown
	held      int64 // at the receiver before this run, or found there (dedup)
	confirmed int64 // held included
	inflight  int64
	done      bool
}

// moved is the bytes confirmed in this run: what the speed counts.
func (t *tally) moved() int64 { return t.confirmed - t.held }

func (t *tally) start(total, held int64) {
	t.hashing = false
	t.total, t.held, t.confirmed, t.inflight = total, held, held, 0
}

func (t *tally) update(total, confirmed, inflight int64) {
	t.hashing = false
	t.total = total
	if total >= 0 {
		confirmed = min(confirmed, total)
		inflight = min(inflight, total-confirmed)
	}
	t.confirmed, t.inflight = max(confirmed, t.held), max(inflight, 0)
}

func (t *tally) finish(err error) {
	t.done, t.inflight, t.hashing = true, 0, false
	if err == nil && t.total > t.confirmed {
		t.held += t.total - t.confirmed
		t.confirmed = t.total
	}
}

// windowRate estimates a speed from running totals, smoothed over the
// last rateWindow: the bytes moved since the oldest sample in it, over
// the time since. A stall shows as a falling rate, and a rate is there
// as soon as bytes moved (confirmations come a whole chunk at a time:
// the first is measured from the start).
type windowRate struct {
	samples []rateSample // oldest first; the last is the latest figure
}

type rateSample struct {
	t time.Time
	n int64
}

// rateWindow is the time a rate is measured over; rateStep the least
// time between two kept samples (later figures replace the last one).
const (
	rateWindow = 5 * time.Second
	rateStep   = 50 * time.Millisecond
)

// reset starts measuring at t, with nothing moved.
func (r *windowRate) reset(t time.Time) { r.samples = append(r.samples[:0], rateSample{t, 0}) }

// observe records that n bytes had been moved at t.
func (r *windowRate) observe(t time.Time, n int64) {
	k := len(r.samples)
	switch {
	case k == 0:
		r.samples = append(r.samples, rateSample{t, n})
		return
	case !t.After(r.samples[k-1].t):
		r.samples[k-1].n = n
		return
	case k >= 2 && t.Sub(r.samples[k-2].t) < rateStep:
		r.samples[k-1] = rateSample{t, n}
	default:
		r.samples = append(r.samples, rateSample{t, n})
	}
	for len(r.samples) > 2 && !r.samples[1].t.After(t.Add(-rateWindow)) {
		r.samples = r.samples[1:]
	}
}

// bytesPerSecond is the estimate; has says whether there is one (bytes
// moved within the window's time).
func (r *windowRate) bytesPerSecond() (bps float64, has bool) {
	if len(r.samples) < 2 {
		return 0, false
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	dt := last.t.Sub(first.t).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return max(float64(last.n-first.n), 0) / dt, true
}

// speeds are the two rates a display shows, of this run's bytes only
// (never those the server held before it): the speed on the wire (bytes
// sent, measured from the first byte) and the speed of the bytes
// confirmed (measured from the start), which the ETA comes from (from
// the wire's until the first chunk is confirmed: with big chunks the
// first round takes a while).
type speeds struct {
	sent, confirmed windowRate
	sending         bool // the first byte was sent
}

func (s *speeds) reset(t time.Time) {
	s.sent.reset(t)
	s.confirmed.reset(t)
	s.sending = false
}

// observe records the bytes confirmed (moved) and sent in this run at t.
func (s *speeds) observe(t time.Time, moved, sent int64) {
	sent = max(sent, moved)
	if !s.sending {
		if sent <= 0 {
			return
		}
		// The time before the first byte (opening the session) is not
		// the wire's.
		s.sending = true
		s.sent.samples = s.sent.samples[:0]
	}
	s.sent.observe(t, sent)
	s.confirmed.observe(t, moved)
}

// speed is the wire's speed for people: "45.2 MiB/s", "-- MiB/s" before
// there is one.
func (s *speeds) speed() string {
	bps, ok := s.sent.bytesPerSecond()
	if !ok {
		return "-- MiB/s"
	}
	return humanRate(bps)
}

// eta is the time left for remaining unconfirmed bytes.
func (s *speeds) eta(remaining int64) string {
	bps, ok := s.confirmed.bytesPerSecond()
	if !ok || bps == 0 {
		bps, _ = s.sent.bytesPerSecond()
	}
	return humanETA(remaining, bps)
}

// humanETA formats the time left: "ETA 1m23s", "ETA --" without a rate;
// never 0s while bytes remain.
func humanETA(remaining int64, bps float64) string {
	if remaining <= 0 {
		return "ETA 0s"
	}
	if bps <= 0 {
		return "ETA --"
	}
	secs := math.Ceil(float64(remaining) / bps)
	if secs > 99*3600 {
		return "ETA --"
	}
	d := time.Duration(max(secs, 1)) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("ETA %ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("ETA %dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("ETA %dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// lineUI prints plain progress lines.
type lineUI struct {
	w        io.Writer
	mu       sync.Mutex
	active   []*lineTransfer
	stop     chan struct{}
	stopped  chan struct{}
	interval time.Duration
	now      func() time.Time
	verb     string // what the counted bytes are: "stored", "fetched"
	closed   bool
}

func newLineUI(w io.Writer, interval time.Duration) *lineUI {
	u := &lineUI{w: w, stop: make(chan struct{}), stopped: make(chan struct{}), interval: interval, now: time.Now, verb: "stored"}
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
			u.tick()
		}
	}
}

// tick prints a line for every running transfer.
func (u *lineUI) tick() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, lt := range u.active {
		fmt.Fprintln(u.w, lt.lineLocked(false))
	}
}

func (u *lineUI) Add(name string, total int64) transfer {
	lt := &lineTransfer{u: u, name: name, t: tally{total: total}, start: u.now()}
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
	t       tally
	rate    speeds
	start   time.Time // of the transfer (Start), for the final average
	began   bool      // hashing or sending began
	sending bool      // sending began (Start)
}

func (t *lineTransfer) Hashing(done, total int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.t.hashing, t.t.hashed, t.t.total = true, done, total
	t.began = true
}

func (t *lineTransfer) Start(total, held int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.t.start(total, held)
	t.began, t.sending = true, true
	t.start = t.u.now()
	t.rate.reset(t.start)
}

func (t *lineTransfer) Update(total, confirmed, inflight int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.t.update(total, confirmed, inflight)
	t.rate.observe(t.u.now(), t.t.moved(), t.t.moved()+t.t.inflight)
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
	if err != nil && !t.began {
		return // refused before it began: the error says it all
	}
	t.t.finish(err)
	line := t.lineLocked(true)
	if err == nil && !t.sending && t.t.total >= 0 {
		// Nothing to send: the server held the content.
		line = fmt.Sprintf("%s: %s already on the server", safeName(t.name), units.HumanBytes(t.t.total))
	}
	if err != nil {
		line += " (stopped)"
	}
	fmt.Fprintln(u.w, line)
}

// lineLocked is "name: 34% 120.0 MiB of 350.0 MiB stored, 45.2 MiB/s,
// ETA 5s"; the final line gives the average speed of this run.
func (t *lineTransfer) lineLocked(final bool) string {
	name := safeName(t.name)
	c := &t.t
	if c.hashing {
		return fmt.Sprintf("%s: hashing %d%% (%s of %s)", name, percent(c.hashed, c.total), units.HumanBytes(c.hashed), units.HumanBytes(c.total))
	}
	if final {
		bps := rateOf(c.moved(), t.u.now().Sub(t.start))
		if c.total < 0 {
			return fmt.Sprintf("%s: %s %s, %s", name, units.HumanBytes(c.confirmed), t.u.verb, humanRate(bps))
		}
		return fmt.Sprintf("%s: %d%% %s of %s %s, %s", name, percent(c.confirmed, c.total), units.HumanBytes(c.confirmed), units.HumanBytes(c.total), t.u.verb, humanRate(bps))
	}
	if c.total < 0 {
		return fmt.Sprintf("%s: %s %s, %s", name, units.HumanBytes(c.confirmed), t.u.verb, t.rate.speed())
	}
	return fmt.Sprintf("%s: %d%% %s of %s %s, %s, %s", name, percent(c.confirmed, c.total), units.HumanBytes(c.confirmed), units.HumanBytes(c.total), t.u.verb, t.rate.speed(), t.rate.eta(c.total-c.confirmed))
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

// elide shortens s to at most n runes, keeping its end ("…" first).
func elide(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[len(r)-max(n, 0):])
	}
	return "…" + string(r[len(r)-n+1:])
}

// barUI draws one bar for all transfers together, redrawn in place:
//
//	big.bin  37% |███████▒▒░░░░░░░░░░░| 140.0 MiB/380.0 MiB  45.2 MiB/s  ETA 5s
//
// █ is confirmed by the receiver, ▒ sent and not confirmed yet.
type barUI struct {
	mu       sync.Mutex
	w        io.Writer
	width    int
	now      func() time.Time
	total    int64 // all transfers' sizes, -1: unknown
	count    int   // transfers expected
	list     []*barTransfer
	cur      *barTransfer // the transfer last heard of, named on the bar
	finished int
	rate     speeds // of the bytes of this run, all transfers
	lastDraw time.Time
	drawn    bool   // the bar is on the screen
	stopped  bool   // the last frame: no speed, no ETA
	verb     string // what the counted bytes are: "stored", "fetched"
	closed   bool
}

// barThrottle is the least time between two redraws.
const barThrottle = 100 * time.Millisecond

// barCells is the bar's width in cells.
const barCells = 20

func newBarUI(w io.Writer, total int64, count, width int, now func() time.Time) *barUI {
	u := &barUI{w: w, width: max(width, 40), now: now, total: total, count: max(count, 1), verb: "stored"}
	u.rate.reset(now())
	return u
}

func (u *barUI) Add(name string, total int64) transfer {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := &barTransfer{u: u, name: name, t: tally{total: total}}
	u.list = append(u.list, t)
	return t
}

func (u *barUI) Print(fn func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLocked()
	fn()
	u.drawLocked(true)
}

func (u *barUI) Close(ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	if ok {
		// The summary lines tell the outcome: the bar goes away.
		u.clearLocked()
	} else if u.drawn {
		// Stopped: leave the bar where it was, so the user sees how far
		// it got (confirmed bytes only).
		u.stopped = true
		u.drawLocked(true)
		fmt.Fprintln(u.w)
		u.drawn = false
	}
	u.closed = true
}

func (u *barUI) clearLocked() {
	if u.drawn {
		fmt.Fprint(u.w, "\r\x1b[K")
		u.drawn = false
	}
}

// sumsLocked adds up the transfers.
func (u *barUI) sumsLocked() (confirmed, inflight, moved int64) {
	for _, t := range u.list {
		confirmed += t.t.confirmed
		inflight += t.t.inflight
		moved += t.t.moved()
	}
	return
}

// changedLocked records the figures and redraws (at most every
// barThrottle unless force).
func (u *barUI) changedLocked(t *barTransfer, force bool) {
	if u.closed {
		return
	}
	u.cur = t
	_, inflight, moved := u.sumsLocked()
	u.rate.observe(u.now(), moved, moved+inflight)
	u.drawLocked(force)
}

func (u *barUI) drawLocked(force bool) {
	if u.closed || u.cur == nil {
		return
	}
	now := u.now()
	if !force && u.drawn && now.Sub(u.lastDraw) < barThrottle {
		return
	}
	u.lastDraw = now
	fmt.Fprint(u.w, "\r\x1b[K"+u.lineLocked())
	u.drawn = true
}

// lineLocked is the bar's text, at most u.width-1 columns.
func (u *barUI) lineLocked() string {
	c := u.cur
	name := safeName(filepath.Base(c.name))
	if u.count > 1 {
		name = fmt.Sprintf("[%d/%d] %s", min(u.finished+1, u.count), u.count, name)
	}
	if u.count == 1 && c.t.hashing {
		// The one file is being read to hash it: that is the bar.
		rest := fmt.Sprintf(" hashing %3d%% %s %s/%s", percent(c.t.hashed, c.t.total), bar(c.t.hashed, 0, c.t.total), units.HumanBytes(c.t.hashed), units.HumanBytes(c.t.total))
		return elide(name, max(u.width-1-len([]rune(rest)), 8)) + rest
	}
	if c.t.hashing {
		name += " (hashing)"
	}
	confirmed, inflight, _ := u.sumsLocked()
	total := u.total
	if total >= 0 {
		total = 0
		for _, t := range u.list {
			if t.t.total < 0 {
				total = -1
				break
			}
			total += t.t.total
		}
		// Files not started yet count with their sizes from the walk.
		total = max(total, u.total)
	}
	speed, eta := u.rate.speed(), "  "+u.rate.eta(total-confirmed)
	if u.stopped {
		speed, eta = "stopped", ""
	}
	var rest string
	if total < 0 {
		rest = fmt.Sprintf("  %s %s  %s", units.HumanBytes(confirmed), u.verb, speed)
	} else {
		rest = fmt.Sprintf(" %3d%% %s %s/%s  %s%s", percent(confirmed, total), bar(confirmed, inflight, total),
			units.HumanBytes(confirmed), units.HumanBytes(total), speed, eta)
	}
	return elide(name, max(u.width-1-len([]rune(rest)), 8)) + rest
}

// bar draws done (█) and then pending (▒) of total in barCells cells.
func bar(done, pending, total int64) string {
	full, part := barCells, 0
	if total > 0 {
		full = int(min(done, total) * barCells / total)
		part = int(min(done+pending, total)*barCells/total) - full
	}
	return "|" + strings.Repeat("█", full) + strings.Repeat("▒", part) + strings.Repeat("░", barCells-full-part) + "|"
}

type barTransfer struct {
	u    *barUI
	name string
	t    tally
}

func (t *barTransfer) Hashing(done, total int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.t.hashing, t.t.hashed, t.t.total = true, done, total
	t.u.changedLocked(t, false)
}

func (t *barTransfer) Start(total, held int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	// held is not speed: the rate's baseline moves with it (moved does
	// not include it).
	t.t.start(total, held)
	t.u.changedLocked(t, true)
}

func (t *barTransfer) Update(total, confirmed, inflight int64) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.t.update(total, confirmed, inflight)
	t.u.changedLocked(t, false)
}

func (t *barTransfer) Finish(err error) {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	t.u.finished++
	t.t.finish(err)
	t.u.changedLocked(t, true)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
