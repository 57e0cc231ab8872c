package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// Tests of issue 20, items 3 (directory uploads keep the folder path)
// and 5 (the same file uploaded again is the same entry; ls and quota
// agree), through the built binary against a real server.

// uploadResult is the part of one `jetty upload --json` line these tests
// read.
type uploadResult struct {
	Path         string         `json:"path"`
	Asset        protocol.Asset `json:"asset"`
	Deduplicated bool           `json:"deduplicated"`
	DedupAt      string         `json:"dedup_at"`
	BytesSent    int64          `json:"bytes_sent"`
}

// uploadJSON runs `jetty upload ARGS --json` and returns its results by
// the path each was given or found under.
func (c *cli) uploadJSON(args ...string) map[string]uploadResult {
	c.t.Helper()
	r := c.must("", append(append([]string{"upload"}, args...), "--json")...)
	out := map[string]uploadResult{}
	dec := json.NewDecoder(strings.NewReader(r.out))
	for dec.More() {
		var u uploadResult
		if err := dec.Decode(&u); err != nil {
			c.t.Fatalf("upload --json: %v\n%s", err, r.out)
		}
		out[u.Path] = u
	}
	return out
}

// lsJSON runs `jetty ls --json`.
func (c *cli) lsJSON() []listedAsset {
	c.t.Helper()
	var out []listedAsset
	if err := json.Unmarshal([]byte(c.must("", "ls", "--json").out), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// quotaStorage runs `jetty quota --json` and returns the storage figures.
func (c *cli) quotaStorage() protocol.Usage {
	c.t.Helper()
	var q protocol.Quota
	if err := json.Unmarshal([]byte(c.must("", "quota", "--json").out), &q); err != nil {
		c.t.Fatal(err)
	}
	return q.Storage
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randBytes(t *testing.T, seed byte, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(testenv.NewRandReader(seed, n), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func names(assets []listedAsset) []string {
	var out []string
	for _, a := range assets {
		out = append(out, a.Filename)
	}
	slices.Sort(out)
	return out
}

// TestBinaryDirectoryKeepsPaths: `jetty upload ./photos/` stores each
// file under its path from the directory's parent (photos/sub/q.jpg),
// small files (one request) and big ones (a pipelined session) alike; ls
// shows the paths; a file named on the command line keeps its base name
// and --name overrides it; download without -o writes the base name in
// the current directory and creates no folder.
func TestBinaryDirectoryKeepsPaths(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_paths", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret)
	writeFile(t, filepath.Join(c.dir, "photos", "a.txt"), []byte("alpha"))
	writeFile(t, filepath.Join(c.dir, "photos", "sub", "q.jpg"), []byte("not really a jpeg"))
	writeFile(t, filepath.Join(c.dir, "photos", "sub", "deep", "big.bin"), randBytes(t, 7, 7<<20)) // 2 chunks

	res := c.uploadJSON("./photos/")
	if len(res) != 3 {
		t.Fatalf("%d files uploaded, want 3: %v", len(res), res)
	}
	want := []string{"photos/a.txt", "photos/sub/deep/big.bin", "photos/sub/q.jpg"}
	if got := names(c.lsJSON()); !slices.Equal(got, want) {
		t.Fatalf("ls --json names = %q, want %q", got, want)
	}
	if out := c.must("", "ls").out; !strings.Contains(out, "photos/sub/q.jpg") || !strings.Contains(out, "photos/sub/deep/big.bin") {
		t.Fatalf("ls does not show the paths:\n%s", out)
	}
	// The same tree by another spelling of its path: the same entries.
	again := c.uploadJSON(filepath.Join(c.dir, "photos"))
	for _, u := range again {
		if !u.Deduplicated {
			t.Errorf("%s uploaded again by an absolute path: not deduplicated (stored as %q)", u.Path, u.Asset.Filename)
		}
	}
	if got := names(c.lsJSON()); !slices.Equal(got, want) {
		t.Fatalf("after the same tree again: ls names = %q, want %q", got, want)
	}

	// A single file: its base name; --name overrides (cleaned the same way).
	if u := c.uploadJSON("photos/sub/q.jpg")["photos/sub/q.jpg"]; u.Asset.Filename != "q.jpg" {
		t.Fatalf("single file stored as %q, want q.jpg", u.Asset.Filename)
	}
	if u := c.uploadJSON("photos/a.txt", "--name", "../renamed//x.txt")["photos/a.txt"]; u.Asset.Filename != "renamed/x.txt" {
		t.Fatalf("--name stored as %q, want renamed/x.txt", u.Asset.Filename)
	}

	// Download without -o: the base name, in the current directory.
	q := res[filepath.Join("photos", "sub", "q.jpg")]
	if q.Asset.ID == "" {
		t.Fatalf("no result for photos/sub/q.jpg: %v", res)
	}
	d := *c
	d.dir = t.TempDir()
	d.must("", "download", q.Asset.ID)
	if b, err := os.ReadFile(filepath.Join(d.dir, "q.jpg")); err != nil || string(b) != "not really a jpeg" {
		t.Fatalf("download wrote q.jpg: %v %q", err, b)
	}
	if ents, _ := os.ReadDir(d.dir); len(ents) != 1 {
		t.Fatalf("download left %d entries in the directory, want only q.jpg", len(ents))
	}
}

// TestBinaryUploadTwiceSameEntry: the same file uploaded again (from the
// local index, by a pipelined session with --no-index, by a manifest
// open with --hash-first, and in one request for a small file) is one
// row with the same id and "deduplicated": true; the same content under
// another name is a row of its own; other content under the same name is
// a new version that ls marks; ls's summary agrees with quota; nothing
// stays reserved.
func TestBinaryUploadTwiceSameEntry(t *testing.T) {
	srv := testServer(t)
	key, secret := testenv.Provision(t, srv, cmdSecret, "usr_twice", "pro")
	c := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+key, "JETTY_API_SECRET="+secret,
		"JETTY_INDEX_DIR="+filepath.Join(t.TempDir(), "index"))
	big := randBytes(t, 11, 12<<20) // 3 chunks
	writeFile(t, filepath.Join(c.dir, "big.bin"), big)
	writeFile(t, filepath.Join(c.dir, "small.txt"), []byte("small file, version 1"))

	first := c.uploadJSON("big.bin", "small.txt")
	if first["big.bin"].Deduplicated || first["small.txt"].Deduplicated {
		t.Fatalf("first upload deduplicated: %+v", first)
	}
	for _, flags := range [][]string{nil, {"--no-index"}, {"--no-index", "--hash-first"}} {
		again := c.uploadJSON(append([]string{"big.bin", "small.txt"}, flags...)...)
		for _, p := range []string{"big.bin", "small.txt"} {
			if u := again[p]; !u.Deduplicated || u.Asset.ID != first[p].Asset.ID {
				t.Fatalf("%s uploaded again %v: deduplicated %v, id %s; want true and %s", p, flags, u.Deduplicated, u.Asset.ID, first[p].Asset.ID)
			}
		}
		if n := len(c.lsJSON()); n != 2 {
			t.Fatalf("after uploading the same two files again %v: ls lists %d files, want 2", flags, n)
		}
	}
	st := c.quotaStorage()
	if size := int64(len(big)) + int64(len("small file, version 1")); st.UsedBytes != size || st.ReservedBytes != 0 {
		t.Fatalf("quota: used %d, reserved %d; want %d, 0", st.UsedBytes, st.ReservedBytes, size)
	}

	// Another name, the same content: a file of its own, stored once.
	writeFile(t, filepath.Join(c.dir, "copy.bin"), big)
	if u := c.uploadJSON("copy.bin")["copy.bin"]; !u.Deduplicated || u.Asset.ID == first["big.bin"].Asset.ID {
		t.Fatalf("copy.bin: deduplicated %v, id %s (big.bin's is %s)", u.Deduplicated, u.Asset.ID, first["big.bin"].Asset.ID)
	}
	// The same name, other content: a new version.
	writeFile(t, filepath.Join(c.dir, "small.txt"), []byte("small file, version 2!"))
	v2 := c.uploadJSON("small.txt")["small.txt"]
	if v2.Deduplicated || v2.Asset.ID == first["small.txt"].Asset.ID {
		t.Fatalf("new version: deduplicated %v, id %s", v2.Deduplicated, v2.Asset.ID)
	}

	listed := c.lsJSON()
	if len(listed) != 4 {
		t.Fatalf("ls lists %d files, want 4 (big.bin, copy.bin, small.txt twice)", len(listed))
	}
	var total int64
	for _, a := range listed {
		total += a.Size
		if older := a.ID == first["small.txt"].Asset.ID; a.OlderVersion != older {
			t.Errorf("%s %s: older_version %v, want %v", a.ID, a.Filename, a.OlderVersion, older)
		}
	}
	st = c.quotaStorage()
	if stored := storedBytes(protocolAssets(listed)); stored != st.UsedBytes || st.ReservedBytes != 0 {
		t.Fatalf("ls counts %d bytes stored, quota says %d used (%d reserved)", stored, st.UsedBytes, st.ReservedBytes)
	}
	out := c.must("", "ls").out
	summary := "4 files (1 older version), " + units.HumanBytes(total) + " (" + units.HumanBytes(st.UsedBytes) + " stored after deduplication)"
	if !strings.Contains(out, summary) {
		t.Fatalf("ls summary: want %q in\n%s", summary, out)
	}
	if !strings.Contains(out, "small.txt (older)") || strings.Count(out, "(older)") != 1 {
		t.Fatalf("ls does not mark the one older version:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) >= 100 {
			t.Errorf("ls line of %d columns: %q", len(line), line)
		}
	}
}

func protocolAssets(l []listedAsset) []protocol.Asset {
	out := make([]protocol.Asset, len(l))
	for i, a := range l {
		out[i] = a.Asset
	}
	return out
}
