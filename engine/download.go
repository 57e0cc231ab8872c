package engine

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
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jettythunder/jetty/internal/safefile"
	"github.com/jettythunder/jetty/protocol"
)

// DownloadRangeSize is the size of one ranged request of Download, and
// the unit in which its part file's record counts what is done.
const DownloadRangeSize = 8 << 20

// DefaultDownloadWorkers is DownloadOptions.Workers' default.
const DefaultDownloadWorkers = 8

// downloadAttempts bounds the attempts of one range.
const downloadAttempts = 5

// sidecarEvery is how often finished ranges are recorded while a
// download runs (and always when it stops).
const sidecarEvery = time.Second

// DownloadOptions tune Download. The zero value is a download with the
// default workers that refuses part files it did not make.
type DownloadOptions struct {
	// Workers is the number of parallel ranged requests
	// (DefaultDownloadWorkers when < 1).
	Workers int
	// Force removes what is at the part file's or its record's name when
	// it is not a file jetty would use (a symbolic or hard link, a named
	// pipe, a directory, another user's file): the entry itself, never
	// what a link points to, with a Warn; the download then starts over.
	// Without Force such an entry is an error (a *safefile.UnsafeError
	// inside a *DownloadFileError).
	Force bool
	// Progress, when set, gets the bytes of the asset on disk: first once
	// from Download's goroutine, before any range is fetched, with what a
	// resumed download already holds; then from the fetching goroutines as
	// bytes arrive (a range fetched again counts down first).
	Progress func(done int64)
	// Warn, when set, gets what the user should know that does not stop
	// the download, from Download's goroutine: a part file removed by
	// Force, progress that could not be recorded when the download
	// stopped.
	Warn func(msg string)
	// BeforeRename, when set (tests), runs between the verification of
	// the part file and its rename onto the target.
	BeforeRename func(part string)
}

// DownloadResult says what a download did.
type DownloadResult struct {
	// Fetched is the bytes fetched by this run (less than the size when
	// it resumed).
	Fetched int64
	// Resumed is true when a part file of an earlier run was used.
	Resumed bool
	// Verified is true when the bytes were checked against the asset's
	// SHA-256 (it has one).
	Verified bool
}

// DownloadFileError is a download that failed at its local files rather
// than at the server or on the way: the part file or its record could
// not be opened or made (a *safefile.UnsafeError inside when something
// jetty did not make is at their names), the bytes did not hash to the
// asset's SHA-256, or the rename onto the target failed or was
// subverted. Its message says what to do.
type DownloadFileError struct{ Err error }

func (e *DownloadFileError) Error() string { return e.Err.Error() }
func (e *DownloadFileError) Unwrap() error { return e.Err }

// PartPath is the part file of a download to target: the hidden
// ".NAME.jetty-part" next to it. Its record is PartPath(target)+".json".
func PartPath(target string) string {
	dir, name := filepath.Split(target)
	return filepath.Join(dir, "."+name+".jetty-part")
}

// Download fetches asset a into the file target with parallel ranged
// requests (DownloadRangeSize each, OpenRange), resumably: the bytes go
// to the part file (PartPath) and the ranges finished are recorded in
// its record (".json", a new file renamed into place, written after the
// part file's data is synced), so that a later Download of the same
// asset to the same target fetches only the ranges not done. A range is
// tried up to 5 times on network and server errors (Retryable, a cut
// body), waiting Retry-After when the server sent one. When every range
// is there the whole part file is checked against a's SHA-256 (a
// mismatch removes the part file and its record) and renamed onto
// target, replacing whatever entry is there (a link itself, never what
// it points to): the caller decides beforehand whether target may be
// replaced.
//
// The part file and its record are created without following a link and
// reused only when each is a regular file of the user's with one link
// (internal/safefile); see DownloadOptions.Force. Errors of the local
// files are *DownloadFileError; others are the server's (*APIError,
// ErrRangeIgnored), the network's or ctx's, after which the progress is
// recorded and the same call resumes.
func Download(ctx context.Context, c *Client, a protocol.Asset, target string, opts DownloadOptions) (DownloadResult, error) {
	opts = opts.withDefaults()
	warn, progress, workers := opts.Warn, opts.Progress, opts.Workers
	part := PartPath(target)
	d, err := openPart(part, a, opts.Force, warn)
	if err != nil {
		var ue *safefile.UnsafeError
		if !errors.As(err, &ue) {
			err = fmt.Errorf("%w\n(check that %s is writable)", err, filepath.Dir(target))
		}
		return DownloadResult{}, &DownloadFileError{Err: err}
	}
	defer d.f.Close()

	progress(d.doneBytes())
	fetched, err := d.fetch(ctx, c, workers, progress)
	res := DownloadResult{Fetched: fetched, Resumed: d.resumed}
	if err != nil {
		if serr := d.save(); serr != nil {
			warn(fmt.Sprintf("cannot record the progress of %s (%v): the next run starts over", part, serr))
		}
		return res, err
	}
	if err := d.finish(target, opts.BeforeRename); err != nil {
		return res, &DownloadFileError{Err: err}
	}
	res.Verified = a.Hash != ""
	return res, nil
}

// withDefaults fills in what was left unset: no-op Warn and Progress,
// DefaultDownloadWorkers.
func (o DownloadOptions) withDefaults() DownloadOptions {
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	if o.Progress == nil {
		o.Progress = func(int64) {}
	}
	if o.Workers < 1 {
		o.Workers = DefaultDownloadWorkers
	}
	return o
}

// partState is the record .NAME.jetty-part.json: which ranges of the
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

// openPart opens (or creates) the part file of a; a record that matches
// the asset (id, size, hash, range size) and the part file's size lets
// the download go on from where it stopped.
//
// The part file and the record are created without following a link
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
		st.RangeSize == DownloadRangeSize && fi.Size() == a.Size {
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
	return int((d.a.Size + DownloadRangeSize - 1) / DownloadRangeSize)
}

func (d *partFile) rangeOf(i int) (off, n int64) {
	off = int64(i) * DownloadRangeSize
	return off, min(DownloadRangeSize, d.a.Size-off)
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
// record is never half written and never claims bytes that are not on
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
	st := partState{Version: partStateVersion, AssetID: d.a.ID, Size: d.a.Size, SHA256: d.a.Hash, RangeSize: DownloadRangeSize, Done: []int{}}
	for i := range d.done {
		st.Done = append(st.Done, i)
	}
	slices.Sort(st.Done)
	b, _ := json.Marshal(st)
	return safefile.WriteFile(d.path+".json", b, 0o600)
}

// fetch downloads the missing ranges with workers parallel requests and
// returns the bytes fetched in this run. progress gets the bytes on disk.
func (d *partFile) fetch(ctx context.Context, c *Client, workers int, progress func(int64)) (int64, error) {
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
// network and server errors (from the start of the range): after the
// attempt-th failure it waits attempt² × 250 ms, or the Retry-After the
// server sent.
func (d *partFile) fetchRange(ctx context.Context, c *Client, i int, buf []byte, report func(int64)) error {
	off, n := d.rangeOf(i)
	return retryRange(ctx, func() (int64, error) { return d.copyRange(ctx, c, off, n, buf, report) }, report)
}

// retryRange runs one range's attempt until it succeeds, up to
// downloadAttempts times on network and server errors; the bytes a
// failed attempt got are reported back (-got): they are fetched again.
func retryRange(ctx context.Context, attemptOnce func() (int64, error), report func(int64)) error {
	var err error
	for attempt := 1; ; attempt++ {
		var got int64
		got, err = attemptOnce()
		if err == nil {
			return nil
		}
		report(-got) // those bytes are fetched again
		if ctx.Err() != nil || attempt == downloadAttempts || !(Retryable(err) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return err
		}
		delay := time.Duration(attempt*attempt) * 250 * time.Millisecond
		var ae *APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			delay = ae.RetryAfter
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return err
		}
	}
}

func (d *partFile) copyRange(ctx context.Context, c *Client, off, n int64, buf []byte, report func(int64)) (int64, error) {
	return copyRange(ctx, c, d.a.ID, off, n, buf, report, func(b []byte, at int64) error {
		if _, err := d.f.WriteAt(b, at); err != nil {
			return fmt.Errorf("write %s: %w", d.path, err)
		}
		return nil
	})
}

// copyRange fetches n bytes of asset id from off, through buf, handing
// each piece to put with its offset in the asset; report gets the bytes
// as they arrive. A body shorter than n is io.ErrUnexpectedEOF.
func copyRange(ctx context.Context, c *Client, id string, off, n int64, buf []byte, report func(int64), put func(b []byte, at int64) error) (int64, error) {
	body, err := c.OpenRange(ctx, id, off, n)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	var got int64
	for got < n {
		m, rerr := body.Read(buf[:min(int64(len(buf)), n-got)])
		if m > 0 {
			if werr := put(buf[:m], off+got); werr != nil {
				return got, werr
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

// finish verifies the whole part file against the asset's SHA-256, syncs
// it and renames it to target (then syncs the directory). A file that
// does not match is removed with its record. The rename replaces the
// entry at target (a link itself, never what it points to); afterwards
// target must be the very file that was verified, not one put at the
// part file's name in between. beforeRename (tests) runs just before the
// rename.
func (d *partFile) finish(target string, beforeRename func(string)) error {
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
	if beforeRename != nil {
		beforeRename(d.path)
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
