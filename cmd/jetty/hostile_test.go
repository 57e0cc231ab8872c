package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// hostileDownloadNames are names a server (a hostile or broken one: the
// real server cleans names before storing them) may hand out.
var hostileDownloadNames = []string{
	"../../evil.txt",
	"../../../../../../../../../../tmp/evil.txt",
	`..\..\evil.txt`,
	"/etc/passwd",
	"/",
	`C:\x`,
	`C:\Windows\System32\drivers\etc\hosts`,
	`\\server\share\evil.txt`,
	"C:evil.txt",
	"..",
	".",
	"",
	"...",
	"     ",
	" . .. . ",
	"a\x00b.txt",
	"\x00\x00",
	"line\r\nbreak.txt",
	"\x1b]0;pwned\x07\x1b[2Jname.txt",
	"a\x7fb\u0085c.txt",
	"bad\xff\xfename.bin",
	"caf\xc3",
	strings.Repeat("n", 10<<10),
	strings.Repeat("é", 5<<10) + ".mp4",
	"COM1" + strings.Repeat(" ", 300) + "x",
	"invoice\u202efdp.exe",
	"zero\u200bwidth\ufeff.txt",
	"..\uff0f..\uff0fevil.txt",
	"..\uff3c..\uff3cevil.txt",
	"CON",
	"nul.tar.gz",
	`what?<>:"|*.txt`,
	".bashrc",
	".evil.txt.jetty-part",
	"evil.txt.jetty-part.json",
}

// treeOf lists every path under root (relative, slash-separated, with a
// trailing / for directories) and fails on anything but plain files and
// directories.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			rel += "/"
		case !d.Type().IsRegular():
			t.Errorf("%s is not a regular file (%v)", rel, d.Type())
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkDownloadName fails unless name is one safe path element and no
// Windows device name.
func checkDownloadName(t *testing.T, what, name string) {
	t.Helper()
	if name == "" || len(name) > maxDownloadName || !utf8.ValidString(name) || strings.ContainsAny(name, `/\<>:"|?*`) ||
		strings.Trim(name, " .") != name || filepath.Base(name) != name ||
		strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		t.Errorf("%s: written as %q", what, name)
	}
	if base, _, _ := strings.Cut(name, "."); windowsReserved[strings.ToUpper(strings.TrimRight(base, " "))] {
		t.Errorf("%s: written as %q, a Windows device name", what, name)
	}
}

// fakeAssets serves assets as they are given (names not cleaned), with
// ranged downloads.
func fakeAssets(t *testing.T, assets map[string]struct{ name, content string }) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/storage/assets" { // the name lookup: names are not ids here
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"assets":[]}`))
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/api/storage/assets/")
		id, download := strings.CutSuffix(rest, "/download")
		a, found := assets[id]
		if !ok || !found {
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(map[string]any{"error": "no such asset", "code": "not_found"})
			return
		}
		if download {
			http.ServeContent(w, r, "", time.Time{}, strings.NewReader(a.content))
			return
		}
		sum := sha256.Sum256([]byte(a.content))
		b, _ := json.Marshal(map[string]any{"asset": map[string]any{"id": id, "filename": "NAME", "size": len(a.content), "hash": hex.EncodeToString(sum[:])}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(bytes.Replace(b, []byte(`"NAME"`), nameLiteral(a.name), 1))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// nameLiteral is name as a JSON string with bytes that are not UTF-8
// left raw (json.Marshal would replace them), as a broken server might
// send it.
func nameLiteral(name string) []byte {
	if utf8.ValidString(name) {
		b, _ := json.Marshal(name)
		return b
	}
	return []byte(`"` + strings.NewReplacer("\\", `\\`, `"`, `\"`).Replace(name) + `"`)
}

// clientName is the name the client reads from nameLiteral(name).
func clientName(t *testing.T, name string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(nameLiteral(name), &s); err != nil {
		t.Fatalf("%q: %v", name, err)
	}
	return s
}

// TestDownloadHostileNamesStayInside: `jetty download` of assets whose
// stored names are hostile, from a server that hands the names out as
// they are, writes exactly one file, directly inside the target
// directory (given as DIR/, as DIR, or the current directory), under a
// safe name (the asset id when nothing of the name is left), and
// nothing anywhere else: no part or sidecar file left, nothing in the
// parents.
func TestDownloadHostileNamesStayInside(t *testing.T) {
	assets := map[string]struct{ name, content string }{}
	ids := []string{}
	for i, n := range hostileDownloadNames {
		id := "h" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		assets[id] = struct{ name, content string }{n, "hostile content " + id}
		ids = append(ids, id)
	}
	// An id that cleans to nothing either: "download".
	assets["...."] = struct{ name, content string }{"..", "dots"}
	ids = append(ids, "....")
	srv := fakeAssets(t, assets)
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": "jt_x", "JETTY_API_SECRET": "jts_x", "XDG_STATE_HOME": t.TempDir()}

	for i, id := range ids {
		a := assets[id]
		want := cleanFilename(clientName(t, a.name))
		if want == "" {
			want = cleanFilename(id)
		}
		if want == "" {
			want = "download"
		}
		checkDownloadName(t, id, want)
		for _, form := range []string{"DIR/", "DIR", "cwd"} {
			base := t.TempDir()
			dst := filepath.Join(base, "a", "b")
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			args := []string{"download", id, "--json", "--quiet", "--workers", "2"}
			switch form {
			case "DIR/":
				args = append(args, "-o", dst+string(filepath.Separator))
			case "DIR":
				args = append(args, "-o", dst)
			case "cwd":
				if i%4 != 0 { // every fourth name is enough for the cwd form
					continue
				}
				t.Chdir(dst)
			}
			r := runTransfer(t, context.Background(), env, "", false, args...)
			if r.code != 0 {
				t.Errorf("%q (%s): exit %d\n%s", a.name, form, r.code, r.err)
				continue
			}
			var res downloadResult
			if err := json.Unmarshal([]byte(r.out), &res); err != nil {
				t.Errorf("%q (%s): --json: %v\n%s", a.name, form, err, r.out)
				continue
			}
			if got := filepath.Base(res.Path); got != want || (form != "cwd" && filepath.Dir(res.Path) != dst) {
				t.Errorf("%q (%s): written to %q, want %q in %s", a.name, form, res.Path, want, dst)
			}
			tree := treeOf(t, base)
			if wantTree := []string{"a/", "a/b/", "a/b/" + want}; strings.Join(tree, "\n") != strings.Join(wantTree, "\n") {
				t.Errorf("%q (%s): tree under the target's grandparent:\n%s\nwant:\n%s", a.name, form, strings.Join(tree, "\n"), strings.Join(wantTree, "\n"))
			}
			if b, err := os.ReadFile(filepath.Join(dst, want)); err != nil || string(b) != a.content {
				t.Errorf("%q (%s): content %q, %v", a.name, form, b, err)
			}
			assertNoControl(t, "stderr", r.err)
		}
	}
}

// TestDownloadHostileNameSymlink: a symbolic link already at the cleaned
// name is not followed: without --force the download refuses, with it
// the link itself is replaced by the file and what it pointed at is
// untouched.
func TestDownloadHostileNameSymlink(t *testing.T) {
	srv := fakeAssets(t, map[string]struct{ name, content string }{"s1": {"../../victim.txt", "attacker bytes"}})
	env := map[string]string{"JETTY_SERVER": srv, "JETTY_API_KEY": "jt_x", "JETTY_API_SECRET": "jts_x", "XDG_STATE_HOME": t.TempDir()}
	base := t.TempDir()
	dst := filepath.Join(base, "dst")
	victim := filepath.Join(base, "victim.txt")
	os.MkdirAll(dst, 0o755)
	os.WriteFile(victim, []byte("precious"), 0o644)
	if err := os.Symlink(victim, filepath.Join(dst, "victim.txt")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	if r := runTransfer(t, context.Background(), env, "", false, "download", "s1", "-o", dst); r.code != ExitUsage || !strings.Contains(r.err, "--force") {
		t.Fatalf("over a symlink without --force: exit %d %q", r.code, r.err)
	}
	if r := runTransfer(t, context.Background(), env, "", false, "download", "s1", "-o", dst, "--force", "--quiet"); r.code != 0 {
		t.Fatalf("--force: exit %d %s", r.code, r.err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the link's target was overwritten: %q", b)
	}
	st, err := os.Lstat(filepath.Join(dst, "victim.txt"))
	if err != nil || !st.Mode().IsRegular() {
		t.Fatalf("victim.txt in the target directory: %v %v", st, err)
	}
	if tree := treeOf(t, base); strings.Join(tree, " ") != "dst/ dst/victim.txt victim.txt" {
		t.Fatalf("tree: %v", tree)
	}
}

// TestHostileNamesRealServer: names uploaded to the real server are
// cleaned there; downloading each writes one safe file inside the
// target directory and nothing else.
func TestHostileNamesRealServer(t *testing.T) {
	srv := testServer(t)
	env := account(t, srv, "usr_cli_hostile", "enterprise")
	for i, n := range hostileDownloadNames {
		if n == "" {
			continue // no X-Filename at all: 400
		}
		content := "real server " + string(rune('A'+i%26)) + strings.Repeat("!", i)
		id := rawUpload(t, srv, env["JETTY_API_KEY"], env["JETTY_API_SECRET"], url.PathEscape(n), content)
		base := t.TempDir()
		dst := filepath.Join(base, "out")
		os.MkdirAll(dst, 0o755)
		r := runTransfer(t, context.Background(), env, "", false, "download", id, "-o", dst+"/", "--json", "--quiet")
		if r.code != 0 {
			t.Errorf("%q: exit %d\n%s", n, r.code, r.err)
			continue
		}
		var res downloadResult
		if err := json.Unmarshal([]byte(r.out), &res); err != nil {
			t.Fatalf("%q: --json: %v", n, err)
		}
		name := filepath.Base(res.Path)
		checkDownloadName(t, n, name)
		if filepath.Dir(res.Path) != dst || name != cleanFilename(res.Asset.Filename) {
			t.Errorf("%q: stored as %q, written to %q", n, res.Asset.Filename, res.Path)
		}
		if tree := treeOf(t, base); len(tree) != 2 || tree[0] != "out/" || tree[1] != "out/"+name {
			t.Errorf("%q: tree %q", n, tree)
		}
		if b, _ := os.ReadFile(res.Path); string(b) != content {
			t.Errorf("%q: content differs", n)
		}
	}
}
