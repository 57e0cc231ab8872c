package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
)

// Issue 20, item 4: files given by name wherever an id is accepted, ls
// by prefix or glob, names and ids completed in the shell.

func hexSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestFilesByName drives the built binary against a real server: rm and
// download take a name, a name several files share is refused with the
// candidates listed (unless --latest or --all-versions says which), an
// unknown name says so, ls filters by prefix and glob.
func TestFilesByName(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_names", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	ids := map[string]string{}
	for _, f := range []struct{ name, content string }{
		{"big.bin", "the big file"},
		{"notes.txt", "notes"},
		{"photo_1.jpg", "one"},
		{"photo_2.jpg", "two"},
		{"photos.txt", "list"},
		{"report.pdf", "report, first version"},
		{"report.pdf", "report, second version"},
	} {
		id := rawUpload(t, srv, key, secret, f.name, f.content)
		ids[f.name+"@"+f.content] = id
	}
	oldReport, newReport := ids["report.pdf@report, first version"], ids["report.pdf@report, second version"]
	names := func(args ...string) []string {
		t.Helper()
		r := c.must("", append([]string{"ls", "--json"}, args...)...)
		var as []protocol.Asset
		if err := json.Unmarshal([]byte(r.out), &as); err != nil {
			t.Fatalf("ls --json %v: %v\n%s", args, err, r.out)
		}
		out := []string{}
		for _, a := range as {
			out = append(out, a.Filename)
		}
		return out
	}

	// download NAME -o x.
	out := filepath.Join(c.dir, "x")
	c.must("", "download", "big.bin", "-o", out)
	if b, _ := os.ReadFile(out); string(b) != "the big file" {
		t.Fatalf("download big.bin wrote %q", b)
	}

	// A shared name: refused, the candidates listed, nothing written.
	r := c.run("", "download", "report.pdf", "-o", filepath.Join(c.dir, "r"))
	if r.code != ExitUsage {
		t.Fatalf("download of a shared name: exit %d, want %d\n%s", r.code, ExitUsage, r.err)
	}
	for _, want := range []string{"2 files are named report.pdf", "give the id", "--latest", oldReport, newReport,
		hexSHA256("report, first version")[:12], hexSHA256("report, second version")[:12], "21 B", "22 B", "UPLOADED"} {
		if !strings.Contains(r.err, want) {
			t.Errorf("download of a shared name: stderr lacks %q:\n%s", want, r.err)
		}
	}
	if strings.Index(r.err, newReport) > strings.Index(r.err, oldReport) {
		t.Errorf("candidates not newest first:\n%s", r.err)
	}
	if _, err := os.Lstat(filepath.Join(c.dir, "r")); err == nil {
		t.Error("a refused download wrote a file")
	}
	c.must("", "download", "--latest", "report.pdf", "-o", filepath.Join(c.dir, "r"))
	if b, _ := os.ReadFile(filepath.Join(c.dir, "r")); string(b) != "report, second version" {
		t.Fatalf("download --latest wrote %q", b)
	}
	// The id still picks one.
	c.must("", "download", oldReport, "-o", filepath.Join(c.dir, "old"))
	if b, _ := os.ReadFile(filepath.Join(c.dir, "old")); string(b) != "report, first version" {
		t.Fatalf("download by id wrote %q", b)
	}

	// Names are exact: no such file says so and points at ls.
	for _, name := range []string{"nothing.bin", "BIG.BIN", "big", "photo_*.jpg"} {
		r := c.run("", "download", name)
		if r.code != ExitFailure || !strings.Contains(r.err, "no file named "+name) || !strings.Contains(r.err, "jetty ls") {
			t.Errorf("download %s: exit %d %q", name, r.code, r.err)
		}
	}
	// An id of no file of this account.
	r = c.run("", "download", "00000000-0000-4000-8000-000000000000")
	if r.code != ExitFailure || !strings.Contains(r.err, "no file with id or name 00000000-0000-4000-8000-000000000000") {
		t.Errorf("download of an unknown id: exit %d %q", r.code, r.err)
	}

	// ls: prefix and glob.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"photo"}, []string{"photos.txt", "photo_2.jpg", "photo_1.jpg"}},
		{[]string{"photo_"}, []string{"photo_2.jpg", "photo_1.jpg"}}, // _ is no wildcard
		{[]string{"photo_*"}, []string{"photo_2.jpg", "photo_1.jpg"}},
		{[]string{"*.jpg"}, []string{"photo_2.jpg", "photo_1.jpg"}},
		{[]string{"photo?.txt"}, []string{"photos.txt"}},
		{[]string{"photo[_s]1*"}, []string{"photo_1.jpg"}},
		{[]string{"*.JPG"}, []string{}},
		{[]string{"report.pdf"}, []string{"report.pdf", "report.pdf"}},
		{[]string{"*", "--limit", "2"}, []string{"report.pdf", "report.pdf"}},
		{[]string{"photo", "--limit", "1"}, []string{"photos.txt"}},
	} {
		if got := names(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("jetty ls %v = %v, want %v", c.args, got, c.want)
		}
	}
	if r := c.must("", "ls", "zzz"); !strings.Contains(r.out, "No files match") {
		t.Errorf("ls zzz: %q", r.out)
	}
	if r := c.must("", "ls", "photo_"); !strings.Contains(r.out, "photo_1.jpg") || strings.Contains(r.out, "photos.txt") || !strings.Contains(r.out, "2 files") {
		t.Errorf("ls photo_ table:\n%s", r.out)
	}
	for _, args := range [][]string{{"ls", ""}, {"ls", "[a"}, {"ls", "a", "b"}} {
		if r := c.run("", args...); r.code != ExitUsage {
			t.Errorf("jetty %q: exit %d, want %d (%s)", args, r.code, ExitUsage, r.err)
		}
	}
	if r := c.run("", "ls", "a", "b"); !strings.Contains(r.err, "quote a glob") {
		t.Errorf("ls with two arguments: %q", r.err)
	}

	// rm: a shared name refused (nothing deleted), a name, an id, every
	// version with --all-versions.
	r = c.run("", "rm", "report.pdf")
	if r.code != ExitUsage || !strings.Contains(r.err, "2 files are named report.pdf") || !strings.Contains(r.err, "--all-versions") || !strings.Contains(r.err, oldReport) {
		t.Fatalf("rm of a shared name: exit %d %q", r.code, r.err)
	}
	if got := names("report.pdf"); len(got) != 2 {
		t.Fatalf("a refused rm deleted something: %v", got)
	}
	r = c.must("", "rm", "big.bin", ids["notes.txt@notes"])
	if !strings.Contains(r.out, "deleted "+ids["big.bin@the big file"]+" (big.bin, freed 12 B)") || !strings.Contains(r.out, "deleted "+ids["notes.txt@notes"]+" (notes.txt,") {
		t.Fatalf("rm big.bin ID: %q", r.out)
	}
	if got := names("big.bin"); len(got) != 0 {
		t.Fatalf("big.bin still listed: %v", got)
	}
	if r := c.run("", "rm", "big.bin"); r.code != ExitFailure || !strings.Contains(r.err, "no file named big.bin") {
		t.Fatalf("rm of a deleted name: exit %d %q", r.code, r.err)
	}
	// rm takes names, not patterns: the hint says how to see what a
	// pattern matches.
	if r := c.run("", "rm", "photos/*.jpg"); r.code != ExitFailure || !strings.Contains(r.err, "not as patterns") || !strings.Contains(r.err, "jetty ls 'photos/*.jpg'") {
		t.Fatalf("rm of a pattern: exit %d %q", r.code, r.err)
	}
	// One good name, one shared: partial, the good one deleted.
	r = c.run("", "rm", "photos.txt", "report.pdf")
	if r.code != ExitPartial || !strings.Contains(r.out, "(photos.txt, freed") || !strings.Contains(r.err, "jetty: report.pdf: 2 files are named report.pdf") {
		t.Fatalf("rm photos.txt report.pdf: exit %d %q %q", r.code, r.out, r.err)
	}
	r = c.must("", "rm", "--all-versions", "--json", "report.pdf")
	if strings.Count(r.out, `"filename": "report.pdf"`) != 2 || !strings.Contains(r.out, oldReport) || !strings.Contains(r.out, newReport) {
		t.Fatalf("rm --all-versions --json: %q", r.out)
	}
	if got := names(); !slices.Equal(got, []string{"photo_2.jpg", "photo_1.jpg"}) {
		t.Fatalf("left after rm: %v", got)
	}
}

// completions runs `jetty __complete ARGS` through the built binary and
// returns the candidates (without their descriptions) and the directive
// line.
func completions(t *testing.T, c *cli, args ...string) ([]string, string, cliResult) {
	t.Helper()
	r := c.must("", append([]string{"__complete"}, args...)...)
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	var got []string
	for _, l := range lines[:len(lines)-1] {
		name, _, _ := strings.Cut(l, "\t")
		got = append(got, name)
	}
	return got, lines[len(lines)-1], r
}

// TestCompleteFiles: `jetty rm`, `jetty download` and `jetty ls`
// complete the names (and ids) of the account's files, through cobra's
// __complete as the shells call it; without credentials or with the
// server down they complete nothing and print no error.
func TestCompleteFiles(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_complete", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	for _, name := range []string{"photo_1.jpg", "photo_2.jpg", "photos.txt", "big.bin", "photo_1.jpg"} {
		rawUpload(t, srv, key, secret, name, "content of "+name+" "+time.Now().String())
	}
	id := rawUpload(t, srv, key, secret, "other.bin", "other")

	got, directive, r := completions(t, c, "rm", "ph")
	slices.Sort(got)
	if !slices.Equal(got, []string{"photo_1.jpg", "photo_2.jpg", "photos.txt"}) || directive != ":4" {
		t.Fatalf("__complete rm ph = %v %s\n%s", got, directive, r.out)
	}
	if !strings.Contains(r.out, "photos.txt\t") {
		t.Errorf("no description (size) with the candidates:\n%s", r.out)
	}
	// rm takes several: the second completes too.
	if got, _, _ := completions(t, c, "rm", "big.bin", "bi"); !slices.Equal(got, []string{"big.bin"}) {
		t.Errorf("__complete rm big.bin bi = %v", got)
	}
	got, _, _ = completions(t, c, "download", "")
	slices.Sort(got)
	if !slices.Equal(got, []string{"big.bin", "other.bin", "photo_1.jpg", "photo_2.jpg", "photos.txt"}) {
		t.Errorf("__complete download '' = %v", got)
	}
	// The start of an id completes the id.
	if got, _, _ := completions(t, c, "download", id[:6]); !slices.Contains(got, id) {
		t.Errorf("__complete download %s = %v, want %s", id[:6], got, id)
	}
	// download takes one file: nothing after it.
	if got, _, _ := completions(t, c, "download", "big.bin", ""); len(got) != 0 {
		t.Errorf("__complete download big.bin '' = %v", got)
	}
	if got, _, _ := completions(t, c, "ls", "photo_"); len(got) != 2 {
		t.Errorf("__complete ls photo_ = %v", got)
	}

	// Not logged in, a server refusing connections, a server that never
	// answers: nothing, no error, no prompt.
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + closed.Addr().String()
	closed.Close()
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	defer silent.Close()
	for what, env := range map[string][]string{
		"not logged in": nil,
		"server down":   {"JETTY_SERVER=" + down, "JETTY_API_KEY=" + key, "JETTY_API_SECRET=" + secret},
		"server silent": {"JETTY_SERVER=http://" + silent.Addr().String(), "JETTY_API_KEY=" + key, "JETTY_API_SECRET=" + secret},
		"bad secret":    {"JETTY_SERVER=" + srv, "JETTY_API_KEY=" + key, "JETTY_API_SECRET=" + otherSecret(secret)},
	} {
		got, directive, r := completions(t, newCLI(t, env...), "rm", "ph")
		if len(got) != 0 || directive != ":4" {
			t.Errorf("%s: __complete rm ph = %v %s", what, got, directive)
		}
		for _, l := range strings.Split(strings.TrimSpace(r.err), "\n") {
			if l != "" && !strings.HasPrefix(l, "Completion ended with directive:") {
				t.Errorf("%s: __complete printed %q", what, l)
			}
		}
	}
}

// TestCompleteFolders: names that keep a folder path complete a folder
// at a time, with no space after a folder (injected IO, a server holding
// such names).
func TestCompleteFolders(t *testing.T) {
	stored := []string{"photos/a.jpg", "photos/sub/q.jpg", "photos/sub/r.jpg", "photos.txt", "docs/x.md"}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.PathAssets {
			http.NotFound(w, r)
			return
		}
		p := r.URL.Query().Get("prefix")
		asked = append(asked, p)
		out := protocol.AssetList{Assets: []protocol.Asset{}}
		for i, n := range stored {
			if strings.HasPrefix(n, p) {
				out.Assets = append(out.Assets, protocol.Asset{ID: "00000000-0000-4000-8000-00000000000" + string(rune('0'+i)), Filename: n, Size: 1})
			}
		}
		json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()
	env := map[string]string{"JETTY_SERVER": srv.URL, "JETTY_API_KEY": "jt_test_x", "JETTY_API_SECRET": "jts_x"}
	for _, c := range []struct {
		typed, want, directive string
	}{
		{"ph", "photos.txt photos/", ":6"},
		{"photos/", "photos/a.jpg photos/sub/", ":6"},
		{"photos/sub/", "photos/sub/q.jpg photos/sub/r.jpg", ":4"},
		{"", "docs/ photos.txt photos/", ":6"},
	} {
		out, errOut, code := runJetty(t, env, "", "__complete", "download", c.typed)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var got []string
		for _, l := range lines[:len(lines)-1] {
			name, _, _ := strings.Cut(l, "\t")
			got = append(got, name)
		}
		slices.Sort(got)
		if code != 0 || strings.Join(got, " ") != c.want || lines[len(lines)-1] != c.directive {
			t.Errorf("__complete download %q = %v %s (exit %d, %s), want %s %s", c.typed, got, lines[len(lines)-1], code, errOut, c.want, c.directive)
		}
	}
	if !slices.Contains(asked, "photos/sub/") {
		t.Errorf("the server was not asked for the prefix: %q", asked)
	}
}

// TestNamePatterns: which ls arguments are globs, the prefix the server
// is asked for, and what a glob matches (* never crosses a /).
func TestNamePatterns(t *testing.T) {
	for _, c := range []struct{ pattern, prefix string }{
		{"photos/", "photos/"},
		{"photos/*.jpg", "photos/"},
		{"*.jpg", ""},
		{"ph?tos", "ph"},
		{"a[bc]", "a"},
		{`a\*b*`, "a*b"},
		{"a_b%", "a_b%"},
	} {
		if got := patternPrefix(c.pattern); got != c.prefix {
			t.Errorf("patternPrefix(%q) = %q, want %q", c.pattern, got, c.prefix)
		}
	}
	as := []protocol.Asset{{Filename: "photos/a.jpg"}, {Filename: "photos/sub/q.jpg"}, {Filename: "photos/b.png"}, {Filename: "a.jpg"}, {Filename: "photos/c.jpg"}}
	for _, c := range []struct {
		pattern string
		limit   int
		want    string
	}{
		{"photos/*.jpg", 0, "photos/a.jpg photos/c.jpg"},
		{"photos/*.jpg", 1, "photos/a.jpg"},
		{"photos/*/*.jpg", 0, "photos/sub/q.jpg"},
		{"photos/**", 0, "photos/a.jpg photos/b.png photos/c.jpg"},
		{"*.jpg", 0, "a.jpg"},
	} {
		var got []string
		for _, a := range matchGlob(as, c.pattern, c.limit) {
			got = append(got, a.Filename)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("matchGlob(%q, %d) = %v, want %s", c.pattern, c.limit, got, c.want)
		}
	}
}
