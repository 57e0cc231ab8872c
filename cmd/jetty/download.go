package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/safefile"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// DownloadOptions are the inputs of `jetty download`.
type DownloadOptions struct {
	F          *Factory
	Client     ClientOptions
	AssetID    string
	Output     string
	Force      bool
	Workers    int
	JSON       bool
	Quiet      bool
	NoProgress bool
}

// downloadRangeSize is the size of one ranged request.
const downloadRangeSize = 8 << 20

// defaultDownloadWorkers is the number of parallel ranged requests.
const defaultDownloadWorkers = 8

// NewCmdDownload builds `jetty download`.
func NewCmdDownload(f *Factory, runF func(*DownloadOptions) error) *cobra.Command {
	opts := &DownloadOptions{F: f}
	cmd := &cobra.Command{
		Use:   "download ASSET_ID",
		Short: "Download a stored file",
		Long: `Download a stored file by asset id (see 'jetty ls') with parallel ranged
requests. The bytes go to a hidden .NAME.jetty-part file next to the target;
its SHA-256 is checked against the stored hash before it is renamed into
place, so a finished download is always complete and verified.

An interrupted download resumes when you run the same command again: the
ranges already fetched are recorded in .NAME.jetty-part.json and are not
fetched twice.

Without -o the file is written to the current directory under the stored
name, made safe for the local file system (no path separators, no "..",
no control or reserved characters or device names). -o DIR/ writes into a
directory, -o PATH to that path. An existing file is only replaced with
--force (the name is replaced: a symbolic link there is not followed).

The part file and its record are jetty's own. If something else is at
those names (a symbolic or hard link, a named pipe, a directory, a file of
another user's), jetty neither writes through it nor resumes from it: it
stops and names it. Remove it, or pass --force to have jetty remove it
(the entry itself, never what a link points to) and start over.`,
		Example: `  jetty download 0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11
  jetty download 0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11 -o ~/Downloads/
  jetty download 0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11 -o copy.bin --force`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("jetty download needs exactly one ASSET_ID (see `jetty ls`), got %d arguments", len(args))
			}
			opts.AssetID = args[0]
			if opts.Workers < 1 {
				return usageError("--workers must be at least 1")
			}
			if runF != nil {
				return runF(opts)
			}
			return downloadRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Client.Server, "server", "", "server URL (default: JETTY_SERVER or the one you logged in to)")
	fl.StringVarP(&opts.Output, "output", "o", "", "write to this file, or into this directory when it ends in / or exists (default: the stored name in the current directory)")
	fl.BoolVarP(&opts.Force, "force", "f", false, "overwrite an existing file, and remove a part file jetty did not make")
	fl.IntVarP(&opts.Workers, "workers", "w", defaultDownloadWorkers, "parallel ranged requests")
	fl.BoolVar(&opts.JSON, "json", false, "print the result as a JSON object on stdout")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print nothing but errors (and the JSON with --json)")
	fl.BoolVar(&opts.NoProgress, "no-progress", false, "do not show progress")
	return cmd
}

// downloadResult is the --json output.
type downloadResult struct {
	Asset        protocol.Asset `json:"asset"`
	Path         string         `json:"path"`
	BytesFetched int64          `json:"bytes_fetched"`
	Resumed      bool           `json:"resumed"`
	Verified     bool           `json:"sha256_verified"`
	DurationMS   int64          `json:"duration_ms"`
}

func downloadRun(ctx context.Context, opts *DownloadOptions) error {
	ios := opts.F.IO
	started := time.Now()
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	a, err := c.Asset(ctx, opts.AssetID)
	if err != nil {
		return downloadFailure(ctx, opts.AssetID, err)
	}
	dir, name, err := downloadTarget(opts.Output, a)
	if err != nil {
		return err
	}
	target := filepath.Join(dir, name)
	if filepath.Dir(target) != filepath.Clean(dir) { // cannot happen: name has no separator
		return fmt.Errorf("refusing to write %q outside %s", name, dir)
	}
	if st, err := os.Lstat(target); err == nil {
		if st.IsDir() {
			return usageError("%s is a directory: use -o %s%c to write into it", target, target, filepath.Separator)
		}
		if !opts.Force {
			return usageError("%s already exists: pass --force to overwrite it, or -o PATH to write elsewhere", target)
		}
	}

	part := filepath.Join(dir, "."+name+".jetty-part")
	d, err := openPart(part, a, opts.Force, func(msg string) {
		if !opts.Quiet {
			fmt.Fprintf(ios.ErrOut, "jetty: warning: %s\n", msg)
		}
	})
	var ue *safefile.UnsafeError
	switch {
	case errors.As(err, &ue):
		return usageError("refusing to use %s: it %s. jetty only writes and resumes part files it made itself (someone else may have put this one there): remove it, or pass --force to have jetty remove it and start over%s", ue.Path, ue.Reason, ue.Hint())
	case err != nil:
		return fmt.Errorf("%w\n(check that %s is writable)", err, dir)
	}
	defer d.f.Close()

	ui := newProgressUI(ios, opts.Quiet, opts.NoProgress, a.Size, 1)
	t := ui.Add(name, a.Size)
	t.Update(d.doneBytes(), a.Size, 1)
	fetched, err := d.fetch(ctx, c, opts.Workers, func(done int64) { t.Update(done, a.Size, 1) })
	t.Finish(err)
	ui.Close(err == nil)
	if err != nil {
		if serr := d.save(); serr != nil && !opts.Quiet {
			fmt.Fprintf(ios.ErrOut, "jetty: warning: cannot record the progress of %s (%v): the next run starts over\n", part, serr)
		}
		return downloadFailure(ctx, a.ID, err)
	}
	if err := d.finish(target); err != nil {
		return err
	}
	res := downloadResult{Asset: a, Path: target, BytesFetched: fetched, Resumed: d.resumed, Verified: a.Hash != "", DurationMS: time.Since(started).Milliseconds()}
	switch {
	case opts.JSON:
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintf(ios.Out, "%s\n", b)
	case !opts.Quiet:
		el := time.Since(started)
		how := fmt.Sprintf("%s in %s (%s)", units.HumanBytes(a.Size), humanDuration(el), humanRate(rateOf(fetched, el)))
		if d.resumed {
			how += fmt.Sprintf(", resumed: fetched %s", units.HumanBytes(fetched))
		}
		fmt.Fprintf(ios.Out, "downloaded %s to %s: %s, sha256 %s verified\n", a.ID, safeName(target), how, a.Hash)
	}
	return nil
}

// downloadFailure maps a download error to its exit code and says what
// to do next.
func downloadFailure(ctx context.Context, id string, err error) error {
	if ctx.Err() != nil {
		return &ExitError{Code: ExitInterrupted, Err: errors.New("interrupted; run the same command again to resume")}
	}
	var ae *engine.APIError
	if errors.As(err, &ae) && ae.Status == 404 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("asset %s not found: %w\n(see `jetty ls` for your files' ids)", id, err)}
	}
	err = apiFailure(err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	if errors.Is(err, engine.ErrRangeIgnored) {
		return fmt.Errorf("download %s: %w (a proxy in between may strip Range headers)", id, err)
	}
	return fmt.Errorf("download %s: %w\n(run the same command again to resume)", id, err)
}

// downloadTarget resolves -o into a directory and a file name. A name
// from the server is cleaned (cleanFilename); a name the user typed is
// taken as it is, but both are a single path element.
func downloadTarget(output string, a protocol.Asset) (dir, name string, err error) {
	stored := cleanFilename(a.Filename)
	if stored == "" {
		stored = cleanFilename(a.ID)
	}
	if stored == "" {
		stored = "download"
	}
	if output == "" {
		return ".", stored, nil
	}
	if strings.HasSuffix(output, "/") || strings.HasSuffix(output, string(filepath.Separator)) {
		st, err := os.Stat(output)
		if err != nil || !st.IsDir() {
			return "", "", usageError("-o %s: no such directory (create it first, or give a file path)", output)
		}
		return filepath.Clean(output), stored, nil
	}
	if st, err := os.Stat(output); err == nil && st.IsDir() {
		return filepath.Clean(output), stored, nil
	}
	dir, name = filepath.Split(output)
	if dir == "" {
		dir = "."
	}
	if name == "" || name == "." || name == ".." {
		return "", "", usageError("-o %s: not a file name", output)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", "", usageError("-o %s: directory %s does not exist (create it first)", output, dir)
	}
	return filepath.Clean(dir), name, nil
}

// windowsReserved are device names Windows refuses as file names, with or
// without an extension. They are refused on every OS, so a file
// downloaded on Linux can be copied to Windows.
var windowsReserved = map[string]bool{"CON": true, "PRN": true, "AUX": true, "NUL": true, "CONIN$": true, "CONOUT$": true}

func init() {
	for i := '0'; i <= '9'; i++ {
		windowsReserved["COM"+string(i)] = true
		windowsReserved["LPT"+string(i)] = true
	}
	for _, r := range "¹²³" {
		windowsReserved["COM"+string(r)] = true
		windowsReserved["LPT"+string(r)] = true
	}
}

// maxDownloadName bounds a cleaned name so that ".NAME.jetty-part.json"
// and its temporary file (".tmp-" and up to 12 digits more) still fit the
// usual 255-byte limit.
const maxDownloadName = 200

// cleanFilename makes a stored file name safe to create in a directory on
// any OS: the last path element only (/ and \ both separate), invalid
// UTF-8 and the characters Windows reserves (<>:"/\|?*) replaced by _,
// control and format characters (such as right-to-left overrides)
// removed, spaces and dots trimmed from both ends (so no "..", no hidden
// dotfile, no name Windows would silently change), device names such as
// CON or nul.txt prefixed with _, at most 200 bytes (cut on a rune
// boundary, keeping a short extension). It returns "" when nothing is
// left.
func cleanFilename(name string) string {
	name = strings.ToValidUTF8(name, "_")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if name == "" {
		return ""
	}
	name = unreserved(name)
	if len(name) > maxDownloadName {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		n := maxDownloadName - len(ext)
		for n > 0 && !utf8.RuneStart(name[n]) {
			n--
		}
		// The cut can leave a device name ("COM1" and spaces, then more):
		// check again (such a name is short, so the "_" fits).
		name = unreserved(strings.TrimRight(name[:n], " .") + ext)
	}
	return name
}

// unreserved prefixes a Windows device name (CON, nul.txt, …) with _.
func unreserved(name string) string {
	base := name
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	if windowsReserved[strings.ToUpper(strings.TrimRight(base, " "))] {
		return "_" + name
	}
	return name
}

// partState is the sidecar .NAME.jetty-part.json: which ranges of the
// part file hold the asset's bytes.
type partState struct {
	Version   int    `json:"version"`
	AssetID   string `json:"asset_id"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	RangeSize int64  `json:"range_size"`
	Done      []int  `json:"done"`
}

const partStateVersion = 1

// partFile is a download in progress.
type partFile struct {
	a       protocol.Asset
	path    string
	f       *os.File
	resumed bool

	mu        sync.Mutex
	done      map[int]bool
	lastSaved time.Time
}

// openPart opens (or creates) the part file of a; a sidecar that matches
// the asset (id, size, hash, range size) and the part file's size lets
// the download go on from where it stopped.
//
// The part file and the sidecar are created without following a link
// and reused only when each is a regular file of the user's with one
// link (internal/safefile); anything else at either name is a
// *safefile.UnsafeError, or, with force, removed (the entry itself, with
// a warning) so that the download starts over.
func openPart(partPath string, a protocol.Asset, force bool, warn func(string)) (*partFile, error) {
	side := partPath + ".json"
	for _, p := range []string{partPath, side} {
		if !force {
			if err := safefile.Check(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			continue
		}
		ue, err := safefile.RemoveUnsafe(p)
		if err != nil {
			return nil, fmt.Errorf("%w (remove it yourself)", err)
		}
		if ue != nil {
			warn(fmt.Sprintf("--force: removed %s, which %s, and started the download over", ue.Path, ue.Reason))
		}
	}
	f, created, err := safefile.OpenOrCreate(partPath, 0o666)
	if err != nil {
		return nil, err
	}
	d := &partFile{a: a, path: partPath, f: f, done: map[int]bool{}}
	var st partState
	b, err := safefile.ReadFile(side)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.Close()
		return nil, err
	}
	fi, ferr := f.Stat()
	if !created && err == nil && json.Unmarshal(b, &st) == nil && ferr == nil &&
		st.Version == partStateVersion && st.AssetID == a.ID && st.Size == a.Size && st.SHA256 == a.Hash &&
		st.RangeSize == downloadRangeSize && fi.Size() == a.Size {
		for _, i := range st.Done {
			if i >= 0 && i < d.ranges() {
				d.done[i] = true
			}
		}
		d.resumed = len(d.done) > 0
		return d, nil
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(a.Size); err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func (d *partFile) ranges() int {
	return int((d.a.Size + downloadRangeSize - 1) / downloadRangeSize)
}

func (d *partFile) rangeOf(i int) (off, n int64) {
	off = int64(i) * downloadRangeSize
	return off, min(downloadRangeSize, d.a.Size-off)
}

func (d *partFile) doneBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for i := range d.done {
		_, l := d.rangeOf(i)
		n += l
	}
	return n
}

// save syncs the part file, then records the finished ranges (written to
// a new temporary file, never through a link, and renamed, so the
// sidecar is never half written and never claims bytes that are not on
// disk).
func (d *partFile) save() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.saveLocked()
}

func (d *partFile) saveLocked() error {
	d.lastSaved = time.Now()
	if err := d.f.Sync(); err != nil {
		return err
	}
	st := partState{Version: partStateVersion, AssetID: d.a.ID, Size: d.a.Size, SHA256: d.a.Hash, RangeSize: downloadRangeSize, Done: []int{}}
	for i := range d.done {
		st.Done = append(st.Done, i)
	}
	slices.Sort(st.Done)
	b, _ := json.Marshal(st)
	return safefile.WriteFile(d.path+".json", b, 0o600)
}

// sidecarEvery is how often finished ranges are recorded while a
// download runs (and always when it stops).
const sidecarEvery = time.Second

// fetch downloads the missing ranges with workers parallel requests and
// returns the bytes fetched in this run. progress gets the bytes on disk.
func (d *partFile) fetch(ctx context.Context, c *engine.Client, workers int, progress func(int64)) (int64, error) {
	var todo []int
	for i := 0; i < d.ranges(); i++ {
		if !d.done[i] {
			todo = append(todo, i)
		}
	}
	base := d.doneBytes()
	var fetched atomic.Int64
	report := func(n int64) { progress(base + fetched.Add(n)) }

	g, gctx := errgroup.WithContext(ctx)
	queue := make(chan int)
	g.Go(func() error {
		defer close(queue)
		for _, i := range todo {
			select {
			case queue <- i:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for range min(workers, max(len(todo), 1)) {
		g.Go(func() error {
			buf := make([]byte, 256<<10)
			for i := range queue {
				if err := d.fetchRange(gctx, c, i, buf, report); err != nil {
					return err
				}
				d.mu.Lock()
				d.done[i] = true
				var err error
				if time.Since(d.lastSaved) >= sidecarEvery {
					err = d.saveLocked()
				}
				d.mu.Unlock()
				if err != nil {
					return fmt.Errorf("record progress in %s.json: %w", d.path, err)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return fetched.Load(), err
}

// fetchRange writes range i into the part file, retrying a few times on
// network and server errors (from the start of the range).
func (d *partFile) fetchRange(ctx context.Context, c *engine.Client, i int, buf []byte, report func(int64)) error {
	off, n := d.rangeOf(i)
	const attempts = 5
	var err error
	for attempt := 1; ; attempt++ {
		var got int64
		got, err = d.copyRange(ctx, c, off, n, buf, report)
		if err == nil {
			return nil
		}
		report(-got) // those bytes are fetched again
		if ctx.Err() != nil || attempt == attempts || !(engine.Retryable(err) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return err
		}
		delay := time.Duration(attempt*attempt) * 250 * time.Millisecond
		var ae *engine.APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			delay = ae.RetryAfter
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

func (d *partFile) copyRange(ctx context.Context, c *engine.Client, off, n int64, buf []byte, report func(int64)) (int64, error) {
	body, err := c.OpenRange(ctx, d.a.ID, off, n)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	var got int64
	for got < n {
		m, rerr := body.Read(buf[:min(int64(len(buf)), n-got)])
		if m > 0 {
			if _, werr := d.f.WriteAt(buf[:m], off+got); werr != nil {
				return got, fmt.Errorf("write %s: %w", d.path, werr)
			}
			got += int64(m)
			report(int64(m))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return got, rerr
		}
	}
	if got != n {
		return got, fmt.Errorf("range at %d: got %d of %d bytes: %w", off, got, n, io.ErrUnexpectedEOF)
	}
	return got, nil
}

// downloadBeforeRename, when set (by tests), runs between the check of
// the part file and its rename onto the target.
var downloadBeforeRename func(part string)

// finish verifies the whole part file against the asset's SHA-256, syncs
// it and renames it to target (then syncs the directory). A file that
// does not match is removed with its sidecar. The rename replaces the
// entry at target (a link itself, never what it points to); afterwards
// target must be the very file that was verified, not one put at the
// part file's name in between.
func (d *partFile) finish(target string) error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", d.path, err)
	}
	verified, err := d.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", d.path, err)
	}
	if d.a.Hash != "" {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(d.f, 0, d.a.Size)); err != nil {
			return fmt.Errorf("verify %s: %w", d.path, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(sum, d.a.Hash) {
			d.f.Close()
			os.Remove(d.path)
			os.Remove(d.path + ".json")
			return fmt.Errorf("the downloaded bytes hash to %s, not the stored SHA-256 %s; the partial file was removed: run the same command again to download it afresh", sum, d.a.Hash)
		}
	}
	// The verified file stays open across the rename, so that its inode
	// number cannot be given to a file put at the part's name in between
	// (the check below compares inodes). Windows cannot rename a file
	// jetty holds open; there it is closed first (file ids are not reused
	// at once).
	keepOpen := runtime.GOOS != "windows"
	if !keepOpen {
		if err := d.f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", d.path, err)
		}
	}
	if downloadBeforeRename != nil {
		downloadBeforeRename(d.path)
	}
	if err := os.Rename(d.path, target); err != nil {
		return fmt.Errorf("%w\n(the verified download is kept in %s)", err, d.path)
	}
	st, err := os.Lstat(target)
	if err != nil || !os.SameFile(verified, st) {
		return fmt.Errorf("%s was replaced by another file after jetty verified it, so %s is not the download: delete %s and download again into a directory only you can write to", d.path, target, target)
	}
	if keepOpen {
		if err := d.f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", target, err)
		}
	}
	os.Remove(d.path + ".json")
	if df, err := os.Open(filepath.Dir(target)); err == nil {
		df.Sync()
		df.Close()
	}
	return nil
}
