package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/safefile"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// DownloadOptions are the inputs of `jetty download`.
type DownloadOptions struct {
	F      *Factory
	Client ClientOptions
	// File is an id or a name (resolveFiles).
	File string
	// Latest picks the newest of the files that share File's name.
	Latest     bool
	Output     string
	Force      bool
	Workers    int
	JSON       bool
	Quiet      bool
	NoProgress bool
}

// NewCmdDownload builds `jetty download`.
func NewCmdDownload(f *Factory, runF func(*DownloadOptions) error) *cobra.Command {
	opts := &DownloadOptions{F: f}
	cmd := &cobra.Command{
		Use:   "download FILE",
		Short: "Download a stored file",
		Long: `Download a stored file, given by name or by id (see 'jetty ls'), with
parallel ranged requests.

A FILE that is the id of one of your files is that file; anything else is
a file name, matched exactly (case and all) with its folder path as 'jetty
ls' shows it (photos/sub/q.jpg). When several files share the name (the
same name uploaded again with other content), jetty lists them and stops:
give the id of the one you mean, or --latest for the newest. Names and ids
complete in the shell (see 'jetty completion --help').

The bytes go to a hidden .NAME.jetty-part file next to the target; its
SHA-256 is checked against the stored hash before it is renamed into
place, so a finished download is always complete and verified.

An interrupted download resumes when you run the same command again: the
ranges already fetched are recorded in .NAME.jetty-part.json and are not
fetched twice.

Without -o the file is written to the current directory under the stored
name, made safe for the local file system (no path separators, no "..",
no control or reserved characters or device names): a file stored as
photos/sub/q.jpg is written as q.jpg, and no folder is created. -o DIR/ writes into a
directory, -o PATH to that path. An existing file is only replaced with
--force (the name is replaced: a symbolic link there is not followed).

-o - writes the bytes to stdout instead (for a pipe: jetty download ID -o - |
tar x); progress and the summary then go to stderr. Ranges are still
fetched in parallel and written in order, and the SHA-256 is still
checked: the end of the file is held back until it matches, so a
mismatch leaves the output short and the command fails. A download to
stdout does not resume, and cannot be combined with --json.

The part file and its record are jetty's own. If something else is at
those names (a symbolic or hard link, a named pipe, a directory, a file of
another user's), jetty neither writes through it nor resumes from it: it
stops and names it. Remove it, or pass --force to have jetty remove it
(the entry itself, never what a link points to) and start over.`,
		Example: `  jetty download big.bin
  jetty download photos/sub/q.jpg -o ~/Downloads/
  jetty download --latest report.pdf
  jetty download 0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11 -o copy.bin --force
  jetty download big.bin -o - | sha256sum`,
		ValidArgsFunction: completeFiles(f, &opts.Client, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("jetty download needs exactly one FILE: a name or an id (see `jetty ls`), got %d arguments", len(args))
			}
			opts.File = args[0]
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
	fl.StringVarP(&opts.Output, "output", "o", "", "write to this file, or into this directory when it ends in / or exists, or - for stdout (default: the stored name in the current directory)")
	fl.BoolVarP(&opts.Force, "force", "f", false, "overwrite an existing file, and remove a part file jetty did not make")
	fl.IntVarP(&opts.Workers, "workers", "w", engine.DefaultDownloadWorkers, "parallel ranged requests")
	fl.BoolVar(&opts.JSON, "json", false, "print the result as a JSON object on stdout")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print nothing but errors (and the JSON with --json)")
	fl.BoolVar(&opts.NoProgress, "no-progress", false, "do not show progress")
	fl.BoolVar(&opts.Latest, "latest", false, "when several files share the name, download the newest")
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
	toStdout := opts.Output == "-"
	if toStdout {
		if err := checkStdoutOutput(opts); err != nil {
			return err
		}
	}
	c, _, err := opts.F.Client(opts.Client)
	if err != nil {
		return err
	}
	v := oneVersion
	if opts.Latest {
		v = newestVersion
	}
	as, err := resolveFiles(ctx, c, opts.File, v, "--latest for the newest")
	if err != nil {
		return downloadFailure(ctx, opts.File, err)
	}
	a := as[0]
	if toStdout {
		return downloadToStdout(ctx, opts, c, a, started)
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

	p := newDownloadProgress(opts, name, a.Size)
	res, err := engine.Download(ctx, c, a, target, engine.DownloadOptions{
		Workers:      opts.Workers,
		Force:        opts.Force,
		Progress:     p.update,
		Warn:         p.warn,
		BeforeRename: downloadBeforeRename,
	})
	p.finish(err)
	if err != nil {
		return downloadFailure(ctx, a.ID, err)
	}
	out := downloadResult{Asset: a, Path: target, BytesFetched: res.Fetched, Resumed: res.Resumed, Verified: res.Verified, DurationMS: time.Since(started).Milliseconds()}
	switch {
	case opts.JSON:
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		fmt.Fprintf(ios.Out, "%s\n", b)
	case !opts.Quiet:
		el := time.Since(started)
		how := fmt.Sprintf("%s in %s (%s)", units.HumanBytes(a.Size), humanDuration(el), humanRate(rateOf(res.Fetched, el)))
		if res.Resumed {
			how += fmt.Sprintf(", resumed: fetched %s", units.HumanBytes(res.Fetched))
		}
		fmt.Fprintf(ios.Out, "downloaded %s to %s: %s, SHA-256 verified\n", quoteName(a.Filename), safeName(target), how) // the id and the hash: --json
	}
	return nil
}

// downloadBeforeRename, when set (by tests), runs between the check of
// the part file and its rename onto the target.
var downloadBeforeRename func(part string)

// downloadProgress shows a download's progress and warnings. The display
// starts with the first update, once the part file is open (a refused
// part file shows none); warnings that come while it runs are printed
// when it ends.
type downloadProgress struct {
	opts  *DownloadOptions
	name  string
	size  int64
	once  sync.Once
	ui    progressUI
	t     transfer
	later []string
}

func newDownloadProgress(opts *DownloadOptions, name string, size int64) *downloadProgress {
	return &downloadProgress{opts: opts, name: name, size: size}
}

// update is engine.DownloadOptions.Progress: first from the download's
// goroutine, then from its workers.
func (p *downloadProgress) update(done int64) {
	p.once.Do(func() {
		p.ui = newProgressUI(p.opts.F.IO, p.opts.Quiet, p.opts.NoProgress, p.size, 1, "fetched")
		p.t = p.ui.Add(p.name, p.size)
		p.t.Start(p.size, done) // what an earlier run fetched: not speed
	})
	p.t.Update(p.size, done, 0)
}

// warn is engine.DownloadOptions.Warn (the download's goroutine only).
func (p *downloadProgress) warn(msg string) {
	if p.opts.Quiet {
		return
	}
	if p.ui != nil {
		p.later = append(p.later, msg)
		return
	}
	fmt.Fprintf(p.opts.F.IO.ErrOut, "jetty: warning: %s\n", msg)
}

// finish ends the display, then prints the warnings held back.
func (p *downloadProgress) finish(err error) {
	if p.ui != nil {
		p.t.Finish(err)
		p.ui.Close(err == nil)
	}
	for _, msg := range p.later {
		fmt.Fprintf(p.opts.F.IO.ErrOut, "jetty: warning: %s\n", msg)
	}
}

// downloadFailure maps a download error to its exit code and says what
// to do next.
func downloadFailure(ctx context.Context, id string, err error) error {
	var ue *safefile.UnsafeError
	if errors.As(err, &ue) {
		return usageError("refusing to use %s: it %s. jetty only writes and resumes part files it made itself (someone else may have put this one there): remove it, or pass --force to have jetty remove it and start over%s", ue.Path, ue.Reason, ue.Hint())
	}
	var fe *engine.DownloadFileError
	if errors.As(err, &fe) { // it says what to do
		return err
	}
	if ctx.Err() != nil {
		return &ExitError{Code: ExitInterrupted, Err: errors.New("interrupted; run the same command again to resume")}
	}
	if fe := fileNotFound(err); fe != err {
		return apiFailure(fmt.Errorf("download %s: %w", id, fe))
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
