package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/semaphore"

	"github.com/jettythunder/jetty/edges"
	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/engine/upindex"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// UploadOptions are the inputs of `jetty upload`.
type UploadOptions struct {
	F      *Factory
	Client ClientOptions
	Paths  []string

	Workers   int
	ChunkSize int64 // 0: chosen from the file size
	BWLimit   int64 // bytes per second for the whole command; 0: none

	JSON       bool
	Quiet      bool
	NoProgress bool

	// Edges is "auto" (probe the edges the server offers and spread the
	// chunks over the best) or "origin" (send every chunk to the server).
	Edges string

	Name        string
	ContentType string
	CacheKey    string
	TTL         time.Duration
	PipelineID  string

	// HashFirst hashes each file before sending (the manifest-first path);
	// NoIndex neither uses nor updates the local upload index.
	HashFirst bool
	NoIndex   bool

	chunkSizeFlag, bwLimitFlag string
}

// NewCmdUpload builds `jetty upload`.
func NewCmdUpload(f *Factory, runF func(*UploadOptions) error) *cobra.Command {
	opts := &UploadOptions{F: f}
	cmd := &cobra.Command{
		Use:   "upload PATH...",
		Short: "Upload files, directories or stdin",
		Long: `Upload files with JettySpeed: each file is read once, cut into chunks, and
every chunk is hashed (SHA-256) and sent as soon as it is read, in parallel
through the best edges; the first bytes leave within a round trip.

What is verified: whoever takes a chunk (the server, a relay or the object
store) checks its size and SHA-256 while it streams and keeps nothing that
differs, and the file becomes visible only once every chunk is stored and
verified. The whole file's SHA-256 is verified by the server too when it
reads the file in order: files of one chunk, small files sent in one
request, and servers that keep files on their own disk. On S3 storage a file
of several chunks is verified chunk by chunk only: its --json result says
"hash_verified": false. jetty download checks the whole file either way.

PATH may be a file, a directory (uploaded recursively: regular files only,
symbolic links inside it are skipped, not followed) or - for stdin (needs
--name). A file found in a directory keeps its folders: it is stored under
its path from the directory's parent, with / on every OS (jetty upload
./photos stores photos/sub/q.jpg); a file named on the command line is
stored under its base name, or --name. All the files of one command share one budget of --workers chunk
uploads: small files go several at a time, a big file gets all the workers.

An interrupted upload (Ctrl-C, crash, network loss) resumes where it
stopped when you run the same command again: only the missing chunks are
sent. Content the account already holds is stored once (deduplicated): a
file uploaded from this machine before and unchanged since is recognised
by a local index without reading it, and nothing is sent; other content is
found when the upload completes (the copy sent is dropped), or before any
byte is sent with --hash-first. --json says which ("dedup_at": "open" or
"complete", "index": "hit", "miss", ...).

The same file uploaded again (same name, content, --cache-key and
--pipeline-id) is the same entry: jetty ls shows one row, the existing id
is returned and --json says "deduplicated": true. Other content under the
same name is a new version: a new row, the older ones marked in jetty ls.

A file larger than your tier takes, or than your storage quota has left,
is refused before any byte of it is read (exit code 4; jetty quota shows
your tier and its limits).

Progress goes to stderr: a bar when it is a terminal, otherwise a plain
line every few seconds. It counts the bytes the server confirmed (whole
chunks stored); on the bar, bytes sent but not confirmed yet show as ▒.
Chunks an interrupted run left on the server are announced when the upload
starts ("resuming: 16 of 38 chunks (160.0 MiB) already on the server") and
count as done, but never toward the speed or the ETA. Sizes and speeds are
in binary (IEC) units: KiB, MiB, GiB (1 MiB = 1,048,576 bytes) and MiB/s.
Each file ends with a summary line (size, time, speed, id; the storage key
and the SHA-256 are in --json) and the routes that took its chunks ("via
origin", "via 2 edges: fra 60%, origin 40%"). --json prints one JSON
object per file on stdout.`,
		Example: `  jetty upload big.mp4
  jetty upload ./photos --workers 32
  tar c dir | jetty upload - --name dir.tar
  jetty upload data.bin --json --bwlimit 20MiB/s`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("jetty upload needs at least one PATH (a file, a directory, or - for stdin)\nRun 'jetty upload --help' for usage.")
			}
			opts.Paths = args
			if err := opts.parseFlags(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return uploadRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	fl.IntVarP(&opts.Workers, "workers", "w", 0, "parallel chunk uploads for the whole command (default: the server's suggestion, 16 at most across files)")
	fl.StringVar(&opts.chunkSizeFlag, "chunk-size", "", "chunk size, 5MiB to 512MiB, e.g. 64MiB or 8M (default: chosen from the file size)")
	fl.StringVar(&opts.bwLimitFlag, "bwlimit", "", "limit the upload rate of the whole command, e.g. 20MiB/s or 10M (M = MiB = 2^20 bytes; MB = 10^6 bytes)")
	fl.BoolVar(&opts.JSON, "json", false, "print one JSON object per file on stdout")
	fl.StringVar(&opts.Edges, "edges", "auto", "auto: send chunks through the best edges the server offers (see jetty edges); origin: to the server only")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print nothing but errors (and the JSON with --json)")
	fl.BoolVar(&opts.NoProgress, "no-progress", false, "do not show progress")
	fl.StringVar(&opts.Name, "name", "", "file name to store (required for -, stdin; allowed with a single file)")
	fl.StringVar(&opts.ContentType, "content-type", "", "content type to record, e.g. video/mp4")
	fl.StringVar(&opts.CacheKey, "cache-key", "", "cache key to record with the file")
	fl.StringVar(&opts.PipelineID, "pipeline-id", "", "AgentCache pipeline (a UUID) to record with the file; find its files with jetty ls --pipeline-id")
	fl.BoolVar(&opts.HashFirst, "hash-first", false, "hash each file whole before sending any byte, so the server can skip content it already holds (default: hash while sending)")
	fl.BoolVar(&opts.NoIndex, "no-index", false, "neither use nor update the local index of files uploaded from this machine (JETTY_INDEX_DIR sets where it lives)")
	fl.DurationVar(&opts.TTL, "ttl", 0, "delete the file after this long, e.g. 24h (default: never)")
	return cmd
}

func (o *UploadOptions) parseFlags() error {
	if o.PipelineID != "" {
		p, ok := protocol.NormalizePipelineID(o.PipelineID)
		if !ok {
			return usageError("--pipeline-id %q is not a UUID (e.g. 123e4567-e89b-12d3-a456-426614174000)", o.PipelineID)
		}
		o.PipelineID = p
	}
	if o.chunkSizeFlag != "" {
		n, err := parseSize(o.chunkSizeFlag)
		if err != nil {
			return usageError("--chunk-size: %v", err)
		}
		if n < protocol.MinChunkSize || n > protocol.MaxChunkSize {
			return usageError("--chunk-size %s is outside 5MiB..512MiB", o.chunkSizeFlag)
		}
		o.ChunkSize = n
	}
	if o.bwLimitFlag != "" {
		n, err := parseRate(o.bwLimitFlag)
		if err != nil {
			return usageError("--bwlimit: %v", err)
		}
		if n <= 0 {
			return usageError("--bwlimit must be more than 0 (leave it out for no limit)")
		}
		o.BWLimit = n
	}
	if o.Workers < 0 {
		return usageError("--workers must be 0 (let the server suggest) or more")
	}
	switch o.Edges {
	case "", "auto", "origin":
	default:
		return usageError("--edges must be auto or origin, not %q", o.Edges)
	}
	if o.TTL < 0 {
		return usageError("--ttl must be positive")
	}
	stdin := 0
	for _, p := range o.Paths {
		if p == "-" {
			stdin++
		}
	}
	switch {
	case stdin > 1:
		return usageError("- (stdin) can be given only once")
	case stdin == 1 && o.Name == "":
		return usageError("uploading stdin (-) needs --name NAME, the file name to store")
	case o.Name != "" && len(o.Paths) > 1:
		return usageError("--name names a single file; it cannot be used with %d paths", len(o.Paths))
	}
	return nil
}

// uploadJob is one file (or stdin) to upload.
type uploadJob struct {
	path  string // as given or found by the walk; "-" for stdin
	name  string // the name to store, for a file found in a directory ("" otherwise: its base name)
	size  int64  // -1 for stdin
	err   error  // the walk could not read it
	stdin bool
}

// uploadBudgetDefault is the shared worker budget across files when
// --workers is not given.
const uploadBudgetDefault = engine.DefaultWorkers

// advisedWorkersMax is the most workers one upload may be advised to use
// (the highest tier ceiling), for the memory limit.
const advisedWorkersMax = 32

func uploadRun(ctx context.Context, opts *UploadOptions) error {
	ios := opts.F.IO
	notef := func(format string, args ...any) {
		if !opts.Quiet {
			fmt.Fprintf(ios.ErrOut, "jetty: "+format+"\n", args...)
		}
	}
	jobs, notes := collectUploads(opts.Paths)
	for _, n := range notes {
		notef("%s", n)
	}
	if len(jobs) == 0 {
		return &ExitError{Code: ExitFailure, Err: errors.New("nothing to upload: the directories hold no regular files")}
	}
	if opts.Name != "" && len(jobs) > 1 {
		return usageError("--name names a single file, but %s is a directory", opts.Paths[0])
	}

	ec, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	checkLimits(ctx, ec, jobs)
	var selector engine.EdgeSelector
	if opts.Edges != "origin" {
		// One probe for the whole command: later files reuse its scores.
		// The workers start on the best edge of the last upload to this
		// server (when still fresh) while the selection runs.
		// (no memory when neither XDG_STATE_HOME nor HOME is set).
		memory, _ := edges.MemoryPath(opts.F.Getenv)
		selector = &edges.Selector{Client: ec, Reuse: 10 * time.Minute, Memory: memory}
	}

	budget := opts.Workers
	if budget == 0 {
		budget = uploadBudgetDefault
	}
	var total int64
	var maxChunk int64 = protocol.DefaultChunkSize
	for _, j := range jobs {
		switch {
		case j.stdin || total < 0:
			total = -1
		case j.err == nil:
			total += j.size
		}
		if j.err == nil {
			maxChunk = max(maxChunk, chunkSizeFor(opts.ChunkSize, j.size))
		}
	}
	memWorkers := budget
	if opts.Workers == 0 {
		// A big file may get the tier's ceiling instead of the server's
		// suggestion (on a slow path: edges.Selector.AdviseWorkers).
		memWorkers = max(budget, advisedWorkersMax)
	}
	engine.LimitMemory(memWorkers, maxChunk)

	journalDir := ""
	if x := opts.F.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		journalDir = filepath.Join(x, "jetty", "journal")
	}

	ix := openUploadIndex(opts)

	ready := 0 // the files that can start (not refused already)
	for _, j := range jobs {
		if j.err == nil {
			ready++
		}
	}
	ui := newProgressUI(ios, opts.Quiet, opts.NoProgress, total, ready, "stored")
	sem := semaphore.NewWeighted(int64(budget))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failed  int
		lastErr error
		okCount int
	)
	var full atomic.Bool // the server's storage is full: start no more files
	fail := func(j uploadJob, err error) {
		if engine.IsStorageFull(err) {
			full.Store(true)
		}
		mu.Lock()
		defer mu.Unlock()
		failed++
		lastErr = uploadFailure(j, err)
		if len(jobs) > 1 && ctx.Err() == nil {
			ui.Print(func() { fmt.Fprintf(ios.ErrOut, "jetty: %v\n", lastErr) })
		}
	}
	for _, j := range jobs {
		if j.err != nil {
			fail(j, j.err)
			continue
		}
		// A file takes one worker slot per chunk, up to the whole budget:
		// single-chunk files go up to budget at a time, a big file gets
		// all the workers. The semaphore is FIFO, so files start in order.
		weight := int64(budget)
		if !j.stdin {
			cs := chunkSizeFor(opts.ChunkSize, j.size)
			weight = min(max((j.size+cs-1)/cs, 1), int64(budget))
		}
		if err := sem.Acquire(ctx, weight); err != nil {
			break // interrupted: no new file starts
		}
		if full.Load() {
			sem.Release(weight)
			fail(j, fmt.Errorf("not sent: %w", engine.ErrStorageFull))
			continue
		}
		wg.Add(1)
		go func(j uploadJob, weight int64) {
			defer wg.Done()
			defer sem.Release(weight)
			res, st, err := uploadOne(ctx, ec, selector, j, opts, int(weight), budget, journalDir, ix, ui)
			if err != nil {
				fail(j, err)
				return
			}
			mu.Lock()
			okCount++
			mu.Unlock()
			ui.Print(func() { printUploadResult(opts, j, res, st) })
		}(j, weight)
	}
	wg.Wait()
	if ix != nil {
		if _, err := ix.Prune(indexMaxAge, indexMaxEntries); err != nil && !opts.Quiet {
			fmt.Fprintf(ios.ErrOut, "jetty: warning: pruning the local upload index: %v\n", err)
		}
	}
	ui.Close(failed == 0 && ctx.Err() == nil)

	switch {
	case ctx.Err() != nil:
		msg := "interrupted; run the same command again to resume"
		if len(jobs) == 1 && jobs[0].stdin {
			msg = "interrupted; stdin cannot resume: run the command again to upload the stream from the start"
		}
		return &ExitError{Code: ExitInterrupted, Err: errors.New(msg)}
	case failed == 0:
		return nil
	case len(jobs) == 1:
		return lastErr
	default:
		fmt.Fprintf(ios.ErrOut, "jetty: %d of %d files failed, %d uploaded; fix the errors above and run the same command again (finished files are not sent twice)\n", failed, len(jobs), okCount)
		if okCount == 0 {
			return &SilentError{Code: ExitCodeFor(lastErr)}
		}
		return &SilentError{Code: ExitPartial}
	}
}

// Bounds of the local upload index, applied after each upload command.
const (
	indexMaxAge     = 90 * 24 * time.Hour
	indexMaxEntries = 10000
)

// openUploadIndex opens the local upload index (nil with --no-index, or
// with a warning when it cannot be opened: the upload goes on reading
// every file). JETTY_INDEX_DIR names its directory; the default is the
// user's cache directory.
func openUploadIndex(opts *UploadOptions) *upindex.Index {
	if opts.NoIndex {
		return nil
	}
	dir := opts.F.Getenv("JETTY_INDEX_DIR")
	switch {
	case dir != "":
		if !filepath.IsAbs(dir) {
			fmt.Fprintf(opts.F.IO.ErrOut, "jetty: warning: JETTY_INDEX_DIR=%q is not an absolute path: uploading without the local index\n", dir)
			return nil
		}
	case opts.F.Getenv("XDG_CACHE_HOME") != "" && filepath.IsAbs(opts.F.Getenv("XDG_CACHE_HOME")):
		dir = filepath.Join(opts.F.Getenv("XDG_CACHE_HOME"), "jetty", "index")
	default:
		var err error
		if dir, err = upindex.DefaultDir(); err != nil {
			fmt.Fprintf(opts.F.IO.ErrOut, "jetty: warning: %v: uploading without the local index\n", err)
			return nil
		}
	}
	ix, err := upindex.Open(dir)
	if err != nil {
		fmt.Fprintf(opts.F.IO.ErrOut, "jetty: warning: %v: uploading without the local index\n", err)
		return nil
	}
	return ix
}

// chunkSizeFor is the chunk size a file of size bytes is cut into.
func chunkSizeFor(flag, size int64) int64 {
	if flag > 0 {
		return flag
	}
	return protocol.ChooseChunkSize(size)
}

// uploadOne uploads one job with workers chunk uploads and its share of
// the bandwidth limit.
func uploadOne(ctx context.Context, ec *engine.Client, sel engine.EdgeSelector, j uploadJob, opts *UploadOptions, workers, budget int, journalDir string, ix *upindex.Index, ui progressUI) (*engine.Result, uploadStart, error) {
	eo := engine.Options{
		HashFirst:   opts.HashFirst,
		Index:       ix,
		Workers:     workers,
		ChunkSize:   opts.ChunkSize,
		JournalDir:  journalDir,
		Name:        opts.Name,
		ContentType: opts.ContentType,
		CacheKey:    opts.CacheKey,
		TTL:         opts.TTL,
		PipelineID:  opts.PipelineID,
		Edges:       sel,
	}
	if opts.Workers == 0 && workers == budget {
		eo.Workers = 0 // a big file: the server suggests (within the tier's ceiling)
	}
	if opts.BWLimit > 0 {
		eo.BandwidthLimit = max(opts.BWLimit*int64(workers)/int64(budget), 1)
	}
	if eo.Name == "" {
		eo.Name = j.name
	}
	name := j.path
	if j.stdin {
		name = opts.Name
	}
	t := ui.Add(name, j.size)
	var st uploadStart
	eo.Progress = uploadProgress(t, func(err error) {
		if !opts.Quiet {
			ui.Print(func() { fmt.Fprintf(opts.F.IO.ErrOut, "jetty: warning: %s: %v\n", safeName(name), err) })
		}
	}, func(e engine.Event) {
		st = uploadStart{chunks: e.ChunksDone, bytes: e.Done}
		if e.ChunksDone > 0 && !opts.Quiet {
			ui.Print(func() {
				fmt.Fprintf(opts.F.IO.ErrOut, "jetty: resuming %s: %d of %d chunks (%s) already on the server\n", safeName(name), e.ChunksDone, e.Chunks, units.HumanBytes(e.Done))
			})
		}
	})
	var res *engine.Result
	var err error
	if j.stdin {
		res, err = engine.UploadStream(ctx, ec, opts.F.IO.In, opts.Name, eo)
	} else {
		res, err = engine.Upload(ctx, ec, j.path, eo)
	}
	t.Finish(err)
	return res, st, err
}

// uploadStart is what the server held of a file when its session opened
// (an earlier run's chunks).
type uploadStart struct {
	chunks int
	bytes  int64
}

// uploadProgress turns engine events into transfer updates: progress
// is the bytes the server confirmed (whole chunks stored), with the bytes
// sent and not confirmed yet as a secondary figure; what the server held
// before this run counts as done from the start, never as speed. started
// is called once the session is open (EventStart).
func uploadProgress(t transfer, warn func(error), started func(engine.Event)) engine.Progress {
	var held int64
	return engine.ProgressFunc(func(e engine.Event) {
		switch e.Kind {
		case engine.EventPlan:
			t.Hashing(e.Done, e.Total)
		case engine.EventStart:
			held = e.Done
			t.Start(e.Total, e.Done)
			if started != nil {
				started(e)
			}
		case engine.EventSent, engine.EventChunkDone:
			// Sent counts this run's payload (retries included); Done
			// less held is what of it the server confirmed.
			t.Update(e.Total, e.Done, e.Sent-(e.Done-held))
		case engine.EventWarning:
			warn(e.Err)
		}
	})
}

// uploadFailure adds the path and what to do next to an upload error.
func uploadFailure(j uploadJob, err error) error {
	name := j.path
	if j.stdin {
		name = "stdin"
	} else if pf := pathFailure(j.path, err); pf != nil {
		return pf
	}
	err = apiFailure(fmt.Errorf("%s: %w", name, err))
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w\n(check the path and its permissions)", err)}
	case errors.Is(err, engine.ErrFileChanged):
		return err
	case j.stdin:
		return fmt.Errorf("%w\n(a stream cannot resume: run the command again to upload it from the start)", err)
	default:
		return fmt.Errorf("%w\n(run the same command again to resume; only missing chunks are sent)", err)
	}
}

// summaryWidth bounds an upload's summary line (columns).
const summaryWidth = 99

// printUploadResult prints one finished file: a JSON object with --json,
// otherwise (unless --quiet) a summary line under 100 columns, a line of
// what an earlier run had sent when it resumed, and the routes that took
// the chunks. st is what the server held when the session opened.
func printUploadResult(opts *UploadOptions, j uploadJob, res *engine.Result, st uploadStart) {
	out := opts.F.IO.Out
	path := j.path
	if j.stdin {
		path = "-"
	}
	if opts.JSON {
		b, err := json.Marshal(res)
		if err != nil {
			return
		}
		p, _ := json.Marshal(path)
		fmt.Fprintf(out, "{\"path\":%s,%s\n", p, b[1:])
		return
	}
	if opts.Quiet {
		return
	}
	for _, l := range uploadSummary(j, opts.Name, res, st) {
		fmt.Fprintln(out, l)
	}
}

// uploadSummary is the lines printUploadResult prints for a file:
//
//	uploaded big.bin: 380.0 MiB in 8.1s (26.9 MiB/s), id 0b5e8a7c-…
//	  resumed: sent 22 of 38 chunks (220.0 MiB), 16 (160.0 MiB) were already on the server
//	  via 2 edges: fra 60%, origin 40%
func uploadSummary(j uploadJob, storedName string, res *engine.Result, st uploadStart) []string {
	a := res.Asset
	name := safeName(j.path)
	if j.stdin {
		name = safeName(storedName) + " (stdin)"
	}
	var stored int64 // bytes the routes stored in this run
	for _, e := range res.Edges {
		stored += e.Bytes
	}
	var how string
	switch {
	case res.Deduplicated && res.BytesSent == 0:
		how = fmt.Sprintf("%s deduplicated", units.HumanBytes(a.Size))
	default:
		how = fmt.Sprintf("%s in %s (%s)", units.HumanBytes(a.Size), humanDuration(res.Duration), humanRate(rateOf(stored, res.Duration)))
	}
	tail := fmt.Sprintf(": %s, id %s", how, a.ID)
	lines := []string{"uploaded " + elide(name, max(summaryWidth-len("uploaded ")-len([]rune(tail)), 8)) + tail}
	if res.Deduplicated {
		if res.BytesSent > 0 {
			lines = append(lines, "  the server already held this content: the copy sent was dropped")
		} else {
			lines = append(lines, "  nothing sent: the server already held this content")
		}
	}
	if st.chunks > 0 && res.ChunksTotal > 0 {
		lines = append(lines, fmt.Sprintf("  resumed: sent %d of %d chunks (%s), %d (%s) were already on the server",
			res.ChunksSent, res.ChunksTotal, units.HumanBytes(stored), st.chunks, units.HumanBytes(st.bytes)))
	}
	if via := routesLine(res.Edges); via != "" {
		lines = append(lines, "  "+via)
	}
	return lines
}

// routesLine says which routes stored the chunks of this run and their
// shares of the bytes: "via origin", "via fra", "via 2 edges: fra 60%,
// origin 40%" (a relay by the location it serves, else by its id; ""
// when nothing was stored).
func routesLine(edges []engine.EdgeStat) string {
	type share struct {
		name  string
		bytes int64
		pct   int
		rem   int64
	}
	var total int64
	var list []share
	for _, e := range edges {
		if e.Bytes <= 0 && e.Chunks <= 0 {
			continue
		}
		total += e.Bytes
		name := e.ID
		if e.Location != "" {
			name = e.Location // "fra", not the relay's id
		}
		list = append(list, share{name: safeName(name), bytes: e.Bytes})
	}
	switch {
	case len(list) == 0:
		return ""
	case len(list) == 1:
		return "via " + list[0].name
	}
	// Whole percents adding up to 100 (largest remainder).
	sum := 0
	for i := range list {
		if total > 0 {
			list[i].pct = int(list[i].bytes * 100 / total)
			list[i].rem = list[i].bytes * 100 % total
		}
		sum += list[i].pct
	}
	order := make([]int, len(list))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return list[order[a]].rem > list[order[b]].rem })
	for k := 0; sum < 100 && total > 0 && k < len(order); k++ {
		list[order[k]].pct++
		sum++
	}
	sort.SliceStable(list, func(a, b int) bool { return list[a].bytes > list[b].bytes })
	parts := make([]string, len(list))
	for i, sh := range list {
		parts[i] = fmt.Sprintf("%s %d%%", sh.name, sh.pct)
	}
	return fmt.Sprintf("via %d edges: %s", len(list), strings.Join(parts, ", "))
}

// collectUploads expands the paths: files as given (a symbolic link on
// the command line is followed), directories walked recursively for
// regular files (symbolic links and special files inside are skipped,
// with a note). A path that cannot be read becomes a job with an error.
func collectUploads(paths []string) ([]uploadJob, []string) {
	var jobs []uploadJob
	var notes []string
	for _, p := range paths {
		if p == "-" {
			jobs = append(jobs, uploadJob{path: "-", size: -1, stdin: true})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			jobs = append(jobs, uploadJob{path: p, err: err})
			continue
		}
		if st.Mode().IsRegular() {
			jobs = append(jobs, uploadJob{path: p, size: st.Size()})
			continue
		}
		if !st.IsDir() {
			jobs = append(jobs, uploadJob{path: p, err: fmt.Errorf("not a regular file or directory (use - to upload a stream: jetty upload - --name NAME < %s)", p)})
			continue
		}
		root := p
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				jobs = append(jobs, uploadJob{path: path, err: err})
				if d != nil && d.IsDir() && path != root {
					return fs.SkipDir
				}
				return nil
			}
			switch {
			case d.IsDir():
				return nil
			case d.Type()&fs.ModeSymlink != 0:
				notes = append(notes, fmt.Sprintf("skipping symbolic link %s (links inside directories are not followed; name it on the command line to upload its target)", safeName(path)))
				return nil
			case !d.Type().IsRegular():
				notes = append(notes, fmt.Sprintf("skipping %s: not a regular file", safeName(path)))
				return nil
			}
			info, err := d.Info()
			if err != nil {
				jobs = append(jobs, uploadJob{path: path, err: err})
				return nil
			}
			jobs = append(jobs, uploadJob{path: path, name: dirUploadName(root, path), size: info.Size()})
			return nil
		})
		if err != nil {
			jobs = append(jobs, uploadJob{path: p, err: err})
		}
	}
	return jobs, notes
}

// dirUploadName is the name a file found in the directory root is stored
// under: its path from root's parent, the directory's own name included,
// with / between the elements on every OS (photos/sub/q.jpg for
// photos/sub/q.jpg found in ./photos or ./photos/; for ".", the current
// directory's name). A root with no name of its own (/) adds none.
func dirUploadName(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return "" // stored under its base name
	}
	if abs, err := filepath.Abs(root); err == nil {
		if top := filepath.Base(abs); top != "." && top != "/" && top != string(filepath.Separator) {
			rel = filepath.Join(top, rel)
		}
	}
	return filepath.ToSlash(rel)
}
