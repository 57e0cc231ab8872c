// Command clicaptures records what a person sees when using jetty in a real
// terminal (`make cli-captures`): it builds jetty, starts `jetty server
// --dev` on a free port in a temporary data directory, and in a private
// tmux session (its own socket, a clean shell, a temporary HOME) types the
// commands a newcomer would: an upload (captured mid-way and at the end),
// an upload interrupted with Ctrl-C and resumed, ls, a download, and a few
// errors (a missing file, bad credentials, the server down). Each capture
// is the visible pane (`tmux capture-pane -p`), written to
// docs/cli/captures/NN-name.txt with an index, README.md.
//
// The harness gates on what the terminal shows, never on sleeps: a command
// has finished when the shell's PROMPT_COMMAND signals a tmux channel;
// "mid-way" is the first screen whose progress line shows a percentage in
// a range. It asserts nothing else about the text, so it keeps working
// while the output changes; rerun it to refresh the captures.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.out, "out", "docs/cli/captures", "directory to write the captures and their index to")
	flag.IntVar(&o.sizeMiB, "size-mib", 200, "size of each uploaded file, MiB")
	flag.StringVar(&o.bwlimit, "bwlimit", "25M", "--bwlimit of the uploads (slow enough to capture them mid-way)")
	flag.IntVar(&o.width, "width", 100, "terminal columns")
	flag.IntVar(&o.height, "height", 30, "terminal rows")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "the longest to wait for any one step (a safety net, not a delay)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory and print its path")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "cli-captures:", err)
		os.Exit(1)
	}
}

type options struct {
	out            string
	sizeMiB        int
	bwlimit        string
	width, height  int
	timeout        time.Duration
	keep           bool
	tmp, jetty     string
	server         *exec.Cmd
	serverURL      string
	apiKey, secret string
}

// capture is one file of the set: its name, what it shows and the command
// typed before it was taken, with that command's exit status when it had
// finished.
type capture struct {
	file, what, command string
	status              string // "" while the command still runs
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "cli-captures: "+format+"\n", a...) }

func run(o options) error {
	if _, err := exec.LookPath("tmux"); err != nil {
		return fmt.Errorf("tmux is not installed (apt-get install tmux, or make test-deps): %w", err)
	}
	tmp, err := os.MkdirTemp("", "jetty-captures-")
	if err != nil {
		return err
	}
	o.tmp = tmp
	if o.keep {
		logf("keeping %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	for _, d := range []string{"bin", "home", "work", "data", "cache", "config"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			return err
		}
	}
	o.jetty = filepath.Join(tmp, "bin", "jetty")
	logf("building jetty")
	build := exec.Command("go", "build", "-o", o.jetty, "./cmd/jetty")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/jetty (run from the repository's root): %w", err)
	}
	if err := o.startServer(); err != nil {
		return err
	}
	defer o.stopServer()

	work := filepath.Join(tmp, "work")
	for _, f := range []string{"big.bin", "video.bin"} {
		if err := writeRandom(filepath.Join(work, f), int64(o.sizeMiB)<<20); err != nil {
			return err
		}
	}

	t, err := newTerm(o)
	if err != nil {
		return err
	}
	defer t.close()

	var caps []capture
	shot := func(c capture, screen string) error {
		caps = append(caps, c)
		return os.WriteFile(filepath.Join(o.out, c.file), []byte(screen), 0o644)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	// The previous set goes: a capture no longer made must not linger.
	old, _ := filepath.Glob(filepath.Join(o.out, "[0-9][0-9]-*.txt"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	// finished types cmd on a clear screen, waits for the prompt and
	// captures the screen.
	finished := func(file, what, cmd string) error {
		logf("%s: %s", file, cmd)
		if err := t.clear(); err != nil {
			return err
		}
		t.send(cmd)
		status, err := t.waitPrompt()
		if err != nil {
			return err
		}
		return shot(capture{file, what, cmd, status}, t.screen())
	}
	// midway types cmd on a clear screen and captures the first screen
	// whose progress shows between lo and hi percent; the command goes on.
	midway := func(file, what, cmd string, lo, hi int) error {
		logf("%s: %s (at %d%% or more)", file, cmd, lo)
		if err := t.clear(); err != nil {
			return err
		}
		t.send(cmd)
		s, err := t.waitScreen(func(s string) bool { p := progress(after(s, cmd)); return p >= lo && p <= hi })
		if err != nil {
			return err
		}
		return shot(capture{file, what, cmd, ""}, s)
	}
	// rest waits for the command midway typed and captures its end.
	rest := func(file, what, cmd string) error {
		status, err := t.waitPrompt()
		if err != nil {
			return err
		}
		return shot(capture{file, what, cmd, status}, t.screen())
	}

	if err := finished("00-whoami.txt", "who jetty is logged in as (credentials from the environment)", "jetty whoami"); err != nil {
		return err
	}
	up := "jetty upload big.bin --bwlimit " + o.bwlimit
	if err := midway("01-upload-midway.txt", "an upload on a slow link, part way", up, 25, 75); err != nil {
		return err
	}
	if err := rest("02-upload-done.txt", "the same upload when it ends", up); err != nil {
		return err
	}

	// A few workers, so that chunks are complete (kept by the server)
	// when Ctrl-C comes; the percentage gates it.
	slow := "jetty upload video.bin --bwlimit " + o.bwlimit + " --workers 4"
	logf("03-upload-interrupted.txt: %s, Ctrl-C at 40%% or more", slow)
	if err := t.clear(); err != nil {
		return err
	}
	t.send(slow)
	if _, err := t.waitScreen(func(s string) bool { return progress(after(s, slow)) >= 40 }); err != nil {
		return err
	}
	t.keys("C-c")
	status, err := t.waitPrompt()
	if err != nil {
		return err
	}
	if err := shot(capture{"03-upload-interrupted.txt", "an upload interrupted with Ctrl-C", slow + "   # then Ctrl-C", status}, t.screen()); err != nil {
		return err
	}
	if err := midway("04-resume-midway.txt", "the same command again: the upload resumes", slow, 1, 99); err != nil {
		return err
	}
	if err := rest("05-resume-done.txt", "the resumed upload when it ends", slow); err != nil {
		return err
	}

	if err := finished("06-ls.txt", "the files on the server", "jetty ls"); err != nil {
		return err
	}
	if err := finished("07-quota.txt", "the account's quota after the uploads", "jetty quota"); err != nil {
		return err
	}
	if err := finished("08-download.txt", "a download by name, verified", "jetty download big.bin -o copy.bin"); err != nil {
		return err
	}
	if err := finished("09-error-missing-file.txt", "an upload of a file that is not there", "jetty upload nope.bin"); err != nil {
		return err
	}
	wrong := "jts_" + randomSecretBody()
	if err := finished("10-error-bad-credentials.txt", "a wrong API secret (a made-up one, in the environment)",
		"JETTY_API_SECRET="+wrong+" jetty ls"); err != nil {
		return err
	}
	logf("stopping the server")
	o.stopServer()
	if err := finished("11-error-server-down.txt", "the server is not running", "jetty ls"); err != nil {
		return err
	}
	return writeIndex(o, caps)
}

// startServer starts `jetty server --dev` on a free port and reads the
// server's URL and the demo account's key and secret from its banner.
func (o *options) startServer() error {
	logf("starting jetty server --dev")
	cmd := exec.Command(o.jetty, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(o.tmp, "data"))
	cmd.Env = append(cleanEnv(o.tmp), "PATH="+os.Getenv("PATH"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(o.tmp, "server.log"))
	if err != nil {
		return err
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	o.server = cmd
	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+`)
	keyRE := regexp.MustCompile(`\bjt_(?:test|live)_[0-9A-Za-z]+`)
	secretRE := regexp.MustCompile(`\bjts_[0-9A-Za-z_-]+`)
	found := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		done := false
		for sc.Scan() {
			line := sc.Text()
			if o.serverURL == "" {
				o.serverURL = urlRE.FindString(line)
			}
			if o.apiKey == "" {
				o.apiKey = keyRE.FindString(line)
			}
			if o.secret == "" {
				o.secret = secretRE.FindString(line)
			}
			if !done && o.serverURL != "" && o.apiKey != "" && o.secret != "" {
				done = true
				found <- nil
			}
		}
		if !done {
			found <- fmt.Errorf("the dev server's banner ended without a URL, an API key and a secret (see its log, -keep)")
		}
	}()
	select {
	case err := <-found:
		return err
	case <-time.After(o.timeout):
		return fmt.Errorf("the dev server printed no banner within %v", o.timeout)
	}
}

func (o *options) stopServer() {
	if o.server == nil {
		return
	}
	_ = o.server.Process.Signal(os.Interrupt)
	_ = o.server.Wait()
	o.server = nil
}

func (o *options) credentials() []string {
	return []string{"JETTY_SERVER=" + o.serverURL, "JETTY_API_KEY=" + o.apiKey, "JETTY_API_SECRET=" + o.secret}
}

// cleanEnv is an environment that keeps jetty off the real user's files:
// a temporary HOME, config and cache directories, no session bus.
func cleanEnv(tmp string) []string {
	return []string{
		"HOME=" + filepath.Join(tmp, "home"),
		"XDG_CONFIG_HOME=" + filepath.Join(tmp, "config"),
		"XDG_CACHE_HOME=" + filepath.Join(tmp, "cache"),
		"XDG_DATA_HOME=" + filepath.Join(tmp, "data"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
	}
}

// term is a private tmux server (its own socket) with one pane running a
// clean bash whose PROMPT_COMMAND records the last status and signals the
// channel "prompt".
type term struct {
	sock, status string
	timeout      time.Duration
}

func newTerm(o options) (*term, error) {
	t := &term{sock: filepath.Join(o.tmp, "tmux.sock"), status: filepath.Join(o.tmp, "status"), timeout: o.timeout}
	env := append(cleanEnv(o.tmp), o.credentials()...)
	env = append(env,
		"PATH="+filepath.Join(o.tmp, "bin")+":/usr/local/bin:/usr/bin:/bin",
		"PS1=$ ",
		"PROMPT_COMMAND=echo $? > "+t.status+"; tmux -S "+t.sock+" wait-for -S prompt",
		"JETTY_INDEX_DIR="+filepath.Join(o.tmp, "cache", "index"),
	)
	// TERM as tmux sets it for the pane; nothing else of the caller's.
	shell := "cd " + filepath.Join(o.tmp, "work") + ` && exec env -i TERM="$TERM"`
	for _, kv := range env {
		shell += " " + shellQuote(kv)
	}
	shell += " bash --norc --noprofile -i"
	// -f /dev/null: none of the user's tmux settings.
	args := []string{"-f", "/dev/null", "new-session", "-d", "-s", "captures",
		"-x", strconv.Itoa(o.width), "-y", strconv.Itoa(o.height), shell}
	if _, err := t.tmux(args...); err != nil {
		return nil, err
	}
	if _, err := t.tmux("set-option", "-g", "status", "off"); err != nil {
		t.close()
		return nil, err
	}
	// The first prompt.
	if _, err := t.waitPrompt(); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *term) tmux(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tmux", append([]string{"-u", "-S", t.sock}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tmux %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (t *term) close() { _, _ = t.tmux("kill-server") }

// send types line and Enter.
func (t *term) send(line string) {
	_, _ = t.tmux("send-keys", "-t", "captures", "-l", line)
	t.keys("Enter")
}

func (t *term) keys(k string) { _, _ = t.tmux("send-keys", "-t", "captures", k) }

// waitPrompt waits until the shell shows its prompt again and returns the
// status of the command that ended.
func (t *term) waitPrompt() (string, error) {
	if _, err := t.tmux("wait-for", "prompt"); err != nil {
		return "", fmt.Errorf("waiting for the prompt: %w\nthe screen:\n%s", err, t.screen())
	}
	// PROMPT_COMMAND runs just before the prompt is drawn: wait for it.
	if _, err := t.waitScreen(func(s string) bool {
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		return strings.TrimSpace(lines[len(lines)-1]) == "$"
	}); err != nil {
		return "", err
	}
	b, err := os.ReadFile(t.status)
	return strings.TrimSpace(string(b)), err
}

// clear clears the screen and the pane's history, so that a capture
// shows one command.
func (t *term) clear() error {
	t.send("clear")
	if _, err := t.waitPrompt(); err != nil {
		return err
	}
	_, err := t.tmux("clear-history", "-t", "captures")
	return err
}

// screen is the visible pane, trailing blank lines dropped.
func (t *term) screen() string {
	s, err := t.tmux("capture-pane", "-p", "-t", "captures")
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
}

// waitScreen polls the pane until ok accepts it (the terminal has no
// event to wait on; the poll is the gate, the timeout a safety net).
func (t *term) waitScreen(ok func(string) bool) (string, error) {
	deadline := time.Now().Add(t.timeout)
	for {
		s := t.screen()
		if ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the screen did not show what was awaited within %v:\n%s", t.timeout, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// after is what s shows after the last line where cmd was typed.
func after(s, cmd string) string {
	if i := strings.LastIndex(s, "$ "+cmd); i >= 0 {
		return s[i+len("$ "+cmd):]
	}
	return ""
}

var percentRE = regexp.MustCompile(`([0-9]{1,3})(?:\.[0-9]+)?%`)

// progress is where the upload's progress stands on screen s, whatever
// the bar looks like: the lowest percentage on the last line that shows
// one (when a line shows two, say hashed and sent, sending is the one
// behind), or -1 when no line does.
func progress(s string) int {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		low := -1
		for _, m := range percentRE.FindAllStringSubmatch(lines[i], -1) {
			if v, err := strconv.Atoi(m[1]); err == nil && (low < 0 || v < low) {
				low = v
			}
		}
		if low >= 0 {
			return low
		}
	}
	return -1
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeRandom writes size bytes of pseudo-random data (so that neither
// compression nor deduplication shortens the upload).
func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	if _, err := io.CopyN(f, mrand.NewChaCha8(seed), size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// randomSecretBody is the body of a well-formed API secret that no server
// issued.
func randomSecretBody() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeIndex(o options, caps []capture) error {
	var b strings.Builder
	b.WriteString(`# What a person sees: terminal captures

These files are the screens of a real terminal (tmux, ` + strconv.Itoa(o.width) + `×` + strconv.Itoa(o.height) + `,
UTF-8) while a newcomer uses jetty against a local dev server. They are
made by a program, not by hand:

` + "```sh\nmake cli-captures        # go run ./scripts/clicaptures\n```" + `

It builds jetty, starts ` + "`jetty server --dev`" + ` on a free port with a
fresh data directory, gives a clean shell the dev account's credentials in
the environment (` + "`JETTY_SERVER`, `JETTY_API_KEY`, `JETTY_API_SECRET`" + `),
makes two ` + strconv.Itoa(o.sizeMiB) + ` MiB files of random bytes and types the commands below
in a private tmux session, capturing the pane (` + "`tmux capture-pane -p`" + `).
Uploads use ` + "`--bwlimit " + o.bwlimit + "`" + ` to behave like a slow link, so the
bar can be caught part way: a "mid-way" capture is the first screen whose
progress line shows a percentage in a range; Ctrl-C is sent once the
interrupted upload shows 40% or more. The harness waits on the shell's
prompt (a tmux channel signalled by PROMPT_COMMAND) and watches the screen
for what it awaits, never a fixed sleep. It checks nothing else, so rerun
it after changing the output: the captures and this index are rewritten. Flags: ` + "`-size-mib`, `-bwlimit`, `-width`, `-height`, `-keep`" + `.

| capture | what it shows | command typed | exit status |
| --- | --- | --- | --- |
`)
	for _, c := range caps {
		st := c.status
		if st == "" {
			st = "(still running)"
		}
		fmt.Fprintf(&b, "| [%s](%s) | %s | `%s` | %s |\n", c.file, c.file, c.what, strings.ReplaceAll(c.command, "|", `\|`), st)
	}
	b.WriteString("\nThe ids, the made-up secret and the speeds differ from run to run.\n")
	return os.WriteFile(filepath.Join(o.out, "README.md"), []byte(b.String()), 0o644)
}
