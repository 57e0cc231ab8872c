//go:build unix

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
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/keychain"
)

// Files the CLI writes, with something planted at their names (see
// docs/RELIABILITY.md section 17): what each planted kind is.
var plantedKinds = []string{
	"symlink",  // a symbolic link to a victim file outside the directory
	"dangling", // a symbolic link to a file that does not exist yet
	"hardlink", // another name of the victim file
	"fifo",     // a named pipe: opening it blocks
	"dir",      // an empty directory
	"foreign",  // a regular file owned by uid 65534 (with content)
}

// plantAt puts kind at path; links lead to victim ("dangling": to
// victim+".new"). content is what a "foreign" file holds.
func plantAt(t *testing.T, kind, path, victim string, content []byte) {
	t.Helper()
	var err error
	switch kind {
	case "symlink":
		err = os.Symlink(victim, path)
	case "dangling":
		err = os.Symlink(victim+".new", path)
	case "hardlink":
		err = os.Link(victim, path)
	case "fifo":
		err = syscall.Mkfifo(path, 0o600)
	case "dir":
		err = os.Mkdir(path, 0o700)
	case "foreign":
		if os.Getuid() != 0 {
			t.Skip("giving a file to uid 65534 needs root")
		}
		if err = os.WriteFile(path, content, 0o644); err == nil {
			err = os.Chown(path, 65534, 65534)
		}
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// victimFile writes content to a file in a directory of its own and
// returns its path.
func victimFile(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkVictim fails unless the victim still holds content and nothing
// was created at the dangling link's target.
func checkVictim(t *testing.T, victim string, content []byte) {
	t.Helper()
	if b, err := os.ReadFile(victim); err != nil || string(b) != string(content) {
		t.Errorf("the victim %s was written through the planted entry: %q %v", victim, b, err)
	}
	if _, err := os.Lstat(victim + ".new"); err == nil {
		t.Errorf("a file was created through the dangling link at %s.new", victim)
	}
}

// within runs f and fails the test when f has not returned after
// blockedAfter: jetty waiting on the entry at fifo (opening a named pipe
// blocks until its other end is opened) waits forever, so any bound tells
// it from a slow run; the bound is far above the slowest run seen (a
// 12 MiB upload under -race on a loaded 2-core machine took over 20 s,
// and the 20 s bound this replaces called that blocked). On failure the
// test opens and closes the pipe at fifo to let f go on.
func within(t *testing.T, fifo string, f func()) {
	t.Helper()
	const blockedAfter = 2 * time.Minute
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return
	case <-time.After(blockedAfter):
	}
	if p, err := os.OpenFile(fifo, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
		p.Close()
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
	}
	t.Fatalf("jetty blocked for %s on %s", blockedAfter, fifo)
}

// TestDownloadPlantedPartFiles: a symbolic link (to a victim outside the
// directory, or dangling), a hard link to the victim, a named pipe, a
// directory or another user's file at the part file's or the sidecar's
// name is never written through, read or resumed from: the download
// stops with an error that names it and says what to do (exit 2); with
// --force the entry itself is removed, with a warning, and the download
// starts over. The victim is untouched either way. Something at the old
// fixed temporary name (.json.tmp) is no longer used at all.
func TestDownloadPlantedPartFiles(t *testing.T) {
	content := strings.Repeat("jetty download bytes\n", 2000)
	srv := fakeAssets(t, map[string]struct{ name, content string }{"p1": {"file.bin", content}})
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": "jt_x", "JETTY_API_SECRET": "jts_x", "XDG_STATE_HOME": t.TempDir()}
	precious := []byte("precious, not to be overwritten\n")
	for _, at := range []string{".file.bin.jetty-part", ".file.bin.jetty-part.json", ".file.bin.jetty-part.json.tmp"} {
		for _, kind := range plantedKinds {
			t.Run(at+"/"+kind, func(t *testing.T) {
				victim := victimFile(t, precious)
				dst := t.TempDir()
				planted := filepath.Join(dst, at)
				plantAt(t, kind, planted, victim, []byte(`{"version":1,"asset_id":"p1","done":[0]}`))
				target := filepath.Join(dst, "file.bin")
				run := func(args ...string) transferRun {
					var r transferRun
					within(t, planted, func() {
						r = runTransfer(t, context.Background(), env, "", false, append([]string{"download", "p1", "-o", dst + "/", "--workers", "2"}, args...)...)
					})
					return r
				}
				if strings.HasSuffix(at, ".tmp") {
					// Not a name jetty uses any more: the sidecar's
					// temporary file has a random name.
					if r := run(); r.code != 0 {
						t.Fatalf("exit %d\n%s", r.code, r.err)
					}
					if b, _ := os.ReadFile(target); string(b) != content {
						t.Fatal("the download differs")
					}
					checkVictim(t, victim, precious)
					return
				}
				r := run()
				checkVictim(t, victim, precious)
				if r.code != ExitUsage || !strings.Contains(r.err, "refusing to use "+planted+": it ") ||
					!strings.Contains(r.err, "remove it, or pass --force") {
					t.Fatalf("want a refusal naming %s (exit 2), got exit %d\n%s", planted, r.code, r.err)
				}
				if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a refused download left %s: %v", target, err)
				}
				if _, err := os.Lstat(planted); err != nil {
					t.Fatalf("the planted entry was removed without --force: %v", err)
				}

				r = run("--force")
				checkVictim(t, victim, precious)
				if r.code != 0 || !strings.Contains(r.err, "warning: --force: removed "+planted+", which ") {
					t.Fatalf("--force: exit %d\n%s", r.code, r.err)
				}
				if b, _ := os.ReadFile(target); string(b) != content {
					t.Fatal("the download differs")
				}
				if tree := treeOf(t, dst); strings.Join(tree, " ") != "file.bin" {
					t.Fatalf("left in the directory: %v", tree)
				}
			})
		}
	}
}

// TestDownloadOwnPartFileResumes: a part file and sidecar of the user's
// own (as an interrupted run leaves them) are reused: nothing is fetched
// again.
func TestDownloadOwnPartFileResumes(t *testing.T) {
	content := strings.Repeat("resumable bytes\n", 4000)
	srv := fakeAssets(t, map[string]struct{ name, content string }{"r1": {"file.bin", content}})
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": "jt_x", "JETTY_API_SECRET": "jts_x", "XDG_STATE_HOME": t.TempDir()}
	dst := t.TempDir()
	part := filepath.Join(dst, ".file.bin.jetty-part")
	os.WriteFile(part, []byte(content), 0o644)
	side := fmt.Sprintf(`{"version":1,"asset_id":"r1","size":%d,"sha256":%q,"range_size":%d,"done":[0]}`, len(content), sha256Hex(content), engine.DownloadRangeSize)
	os.WriteFile(part+".json", []byte(side), 0o600)
	r := runTransfer(t, context.Background(), env, "", false, "download", "r1", "-o", dst, "--json")
	var res downloadResult
	if r.code != 0 || json.Unmarshal([]byte(r.out), &res) != nil || !res.Resumed || res.BytesFetched != 0 {
		t.Fatalf("resume from the user's own part file: exit %d %+v\n%s", r.code, res, r.err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "file.bin")); string(b) != content {
		t.Fatal("the download differs")
	}
}

// TestDownloadPartSwappedBeforeRename: when the part file is replaced by
// another file between its check and the rename (someone who can write
// the directory), the download fails and says the target is not the
// download, instead of reporting the other file as verified.
func TestDownloadPartSwappedBeforeRename(t *testing.T) {
	content := strings.Repeat("verified bytes\n", 1000)
	srv := fakeAssets(t, map[string]struct{ name, content string }{"s1": {"file.bin", content}})
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": "jt_x", "JETTY_API_SECRET": "jts_x", "XDG_STATE_HOME": t.TempDir()}
	dst := t.TempDir()
	downloadBeforeRename = func(part string) {
		os.Remove(part)
		os.WriteFile(part, []byte("attacker bytes"), 0o644)
	}
	t.Cleanup(func() { downloadBeforeRename = nil })
	r := runTransfer(t, context.Background(), env, "", false, "download", "s1", "-o", dst, "--json")
	target := filepath.Join(dst, "file.bin")
	if r.code == 0 || r.out != "" || !strings.Contains(r.err, "was replaced by another file after jetty verified it") || !strings.Contains(r.err, "delete "+target) {
		t.Fatalf("swapped part file: exit %d\n%s%s", r.code, r.out, r.err)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestUploadPlantedJournal: the upload journal (in the user's state
// directory) is the engine's own cache. A genuine journal resumes; in
// its place a symbolic link (to a copy of the genuine journal outside),
// a hard link to that copy, a named pipe, a directory or a copy owned by
// another user is never read or followed: it is removed (the entry
// itself) with a warning that names it, the file is hashed again and the
// upload succeeds; the copy outside is untouched.
func TestUploadPlantedJournal(t *testing.T) {
	srv := testServer(t)
	env := account(t, srv, "usr_journal", "enterprise")
	jdir := filepath.Join(env["XDG_STATE_HOME"], "jetty", "journal")
	for i, kind := range append([]string{"own"}, plantedKinds...) {
		t.Run(kind, func(t *testing.T) {
			if kind == "foreign" && os.Getuid() != 0 {
				t.Skip("giving a file to uid 65534 needs root")
			}
			file, _ := randomFile(t, t.TempDir(), "j.bin", byte(60+i), 12<<20)
			jpath := engine.JournalPath(jdir, strings.TrimRight(srv, "/"), file)

			// A genuine journal: an upload interrupted once it is written.
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				defer cancel()
				// Interrupted once the journal names its session (a
				// pipelined upload writes its journal before the open, with
				// its ref only).
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					var j struct {
						SessionID string `json:"session_id"`
					}
					if b, err := os.ReadFile(jpath); err == nil && json.Unmarshal(b, &j) == nil && j.SessionID != "" {
						return
					}
				}
			}()
			r := runTransfer(t, ctx, env, "", false, "upload", file, "--bwlimit", "1MiB", "--workers", "1", "--chunk-size", "5MiB")
			if r.code != ExitInterrupted {
				t.Fatalf("interrupted upload: exit %d\n%s", r.code, r.err)
			}
			journal, err := os.ReadFile(jpath)
			if err != nil {
				t.Fatal(err)
			}
			victim := victimFile(t, journal)
			if kind != "own" {
				os.Remove(jpath)
				plantAt(t, kind, jpath, victim, journal)
			}

			within(t, jpath, func() {
				r = runTransfer(t, context.Background(), env, "", false, "upload", file, "--json", "--chunk-size", "5MiB")
			})
			var res struct{ Resumed bool }
			if r.code != 0 || json.Unmarshal([]byte(r.out), &res) != nil {
				t.Fatalf("upload: exit %d\n%s%s", r.code, r.out, r.err)
			}
			checkVictim(t, victim, journal)
			if kind == "own" {
				if !res.Resumed || strings.Contains(r.err, "journal") {
					t.Fatalf("the user's own journal was not used: resumed %v\n%s", res.Resumed, r.err)
				}
				return
			}
			if res.Resumed || !strings.Contains(r.err, "journal: "+jpath+" ") || !strings.Contains(r.err, "not a journal jetty wrote: removed it") {
				t.Fatalf("planted journal: resumed %v\n%s", res.Resumed, r.err)
			}
			if _, err := os.Lstat(jpath); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("after a finished upload %s is still there: %v", jpath, err)
			}
		})
	}
}

// TestCredentialFilesPlanted: in place of the plain-file credentials
// (credentials.json) or the current server (config.json), a symbolic
// link to another account's file, a hard link to it, a named pipe, a
// directory or a file another user owns is never read or followed:
// whoami, login and logout stop with an error that names the file and
// says to remove it; the other file is untouched and its credentials are
// never used.
func TestCredentialFilesPlanted(t *testing.T) {
	e := newAuthEnv(t, "usr_owner")
	akey, asecret := testenv.Provision(t, e.srv, cmdSecret, "usr_attacker", "pro")
	norm, _ := keychain.NormalizeServer(e.srv)
	attacker := map[string][]byte{
		keychain.CredentialsFile: []byte(`{"version":1,"servers":{"` + norm + `":{"api_key":"` + akey + `","api_secret":"` + asecret + `"}}}`),
		keychain.ConfigFile:      []byte(`{"current_server":"http://127.0.0.1:9"}`),
	}
	for _, name := range []string{keychain.CredentialsFile, keychain.ConfigFile} {
		for _, kind := range plantedKinds {
			t.Run(name+"/"+kind, func(t *testing.T) {
				e.store.Dir = filepath.Join(t.TempDir(), "jetty")
				if r := e.run(e.login(nil), false, e.key+":"+e.secret, "--server", e.srv, "--with-token", "--insecure-storage"); r.code != 0 {
					t.Fatalf("login: %d %s", r.code, r.err)
				}
				if r := e.run(whoamiCmd, false, ""); r.code != 0 || !strings.Contains(r.out, "usr_owner") {
					t.Fatalf("whoami before: %d %s %s", r.code, r.out, r.err)
				}
				path := filepath.Join(e.store.Dir, name)
				victim := victimFile(t, attacker[name])
				os.Remove(path)
				plantAt(t, kind, path, victim, attacker[name])
				before, _ := os.Lstat(path)

				for _, c := range []struct {
					what  string
					run   func() result
					write bool
				}{
					{"whoami", func() result { return e.run(whoamiCmd, false, "") }, false},
					{"login", func() result {
						return e.run(e.login(nil), false, e.key+":"+e.secret, "--server", e.srv, "--with-token", "--insecure-storage")
					}, true},
					{"logout", func() result { return e.run(e.logout, false, "", "--server", e.srv) }, true},
				} {
					var r result
					within(t, path, func() { r = c.run() })
					if r.code == 0 || !strings.Contains(r.err, "refusing to read") || !strings.Contains(r.err, path+": it ") || !strings.Contains(r.err, "remove it, then run `jetty login` again") {
						t.Errorf("%s: exit %d\n%s%s", c.what, r.code, r.out, r.err)
					}
					if strings.Contains(r.out+r.err, "usr_attacker") {
						t.Errorf("%s used the planted credentials:\n%s%s", c.what, r.out, r.err)
					}
				}
				checkVictim(t, victim, attacker[name])
				if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) || after.Mode().Type() != before.Mode().Type() {
					t.Errorf("the planted entry was replaced or removed: %v", err)
				}
			})
		}
	}
}

// TestGenDocsPlantedPages: gen-docs replaces each page as a new file: a
// symbolic link (also a dangling one), a hard link, a named pipe or
// another user's file at a page's name is replaced, never written
// through (the other user's file keeps its bytes); a directory there
// stops it with an error that names it.
func TestGenDocsPlantedPages(t *testing.T) {
	clean := t.TempDir()
	if _, errOut, code := runJetty(t, nil, "", "gen-docs", "--markdown", clean); code != 0 {
		t.Fatalf("gen-docs: %d %s", code, errOut)
	}
	want, _ := readDir(clean)
	precious := []byte("precious, not to be overwritten\n")
	pages := map[string]string{"symlink": "jetty_download.md", "dangling": "jetty_upload.md", "hardlink": "jetty_ls.md", "fifo": "jetty.md", "foreign": "jetty_quota.md"}
	dir := filepath.Join(t.TempDir(), "cli")
	os.Mkdir(dir, 0o755)
	victim := victimFile(t, precious)
	var foreign *os.File
	for kind, page := range pages {
		p := filepath.Join(dir, page)
		plantAt(t, kind, p, victim, precious)
		if kind == "foreign" {
			foreign, _ = os.Open(p)
			defer foreign.Close()
		}
	}
	within(t, filepath.Join(dir, pages["fifo"]), func() {
		if _, errOut, code := runJetty(t, nil, "", "gen-docs", "--markdown", dir); code != 0 {
			t.Errorf("gen-docs: %d %s", code, errOut)
		}
	})
	checkVictim(t, victim, precious)
	if foreign != nil {
		if b, _ := io.ReadAll(foreign); string(b) != string(precious) {
			t.Errorf("the other user's file was written: %q", b)
		}
	}
	for name, w := range want {
		p := filepath.Join(dir, name)
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			t.Errorf("%s after gen-docs: %v %v", name, st, err)
			continue
		}
		if b, _ := os.ReadFile(p); string(b) != string(w) {
			t.Errorf("%s differs from a clean run", name)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != len(want) {
		t.Errorf("%d entries in the directory, want %d", len(ents), len(want))
	}

	// A directory at a page's name: an error that names it.
	os.Remove(filepath.Join(dir, "jetty_rm.md"))
	os.Mkdir(filepath.Join(dir, "jetty_rm.md"), 0o755)
	if _, errOut, code := runJetty(t, nil, "", "gen-docs", "--markdown", dir); code == 0 || !strings.Contains(errOut, filepath.Join(dir, "jetty_rm.md")+": it is a directory (remove it)") {
		t.Errorf("directory at a page: %d %s", code, errOut)
	}
}
