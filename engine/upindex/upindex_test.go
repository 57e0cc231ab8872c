package upindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

const server = "https://jetty.example"

func newIndex(t *testing.T) *Index {
	t.Helper()
	ix, err := Open(filepath.Join(t.TempDir(), "cache", "index"))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func keyOf(path string) Key { return Key{Server: server, Account: "acct-1", Path: path} }

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeFile writes data at dir/name with mtime (when not zero) and
// returns its path and Stat.
func writeFile(t *testing.T, dir, name string, data []byte, mtime time.Time) (string, Stat) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return p, statFile(t, p)
}

func statFile(t *testing.T, p string) Stat {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return StatOf(fi)
}

// entryOf is the entry of a one-chunk file holding data.
func entryOf(k Key, st Stat, data []byte) Entry {
	h := hexSum(data)
	return Entry{Key: k, Stat: st, SHA256: h, ChunkSize: protocol.DefaultChunkSize, Chunks: []string{h}}
}

// bigEntry is the entry of a size-byte file in chunks of chunkSize with
// made-up hashes.
func bigEntry(k Key, size, chunkSize int64) Entry {
	n := protocol.NumChunks(size, chunkSize)
	e := Entry{Key: k, Stat: Stat{Size: size, MTime: 1e18, CTime: 1e18 + 5, Inode: 42, Dev: 7},
		SHA256: hexSum([]byte("whole")), ChunkSize: chunkSize, Chunks: make([]string, n)}
	for i := range e.Chunks {
		e.Chunks[i] = hexSum(fmt.Appendf(nil, "chunk %d", i))
	}
	return e
}

func mustLen(t *testing.T, ix *Index, want int) {
	t.Helper()
	if n, err := ix.Len(); err != nil || n != want {
		t.Fatalf("Len = %d, %v; want %d", n, err, want)
	}
}

// mustMiss asserts that Lookup misses without error and that the entry
// file is gone.
func mustMiss(t *testing.T, ix *Index, k Key, st Stat) {
	t.Helper()
	e, doubt, err := ix.Lookup(k, st)
	if err != nil || e != nil || doubt {
		t.Fatalf("Lookup = %v, %v, %v; want a miss", e, doubt, err)
	}
	if _, err := os.Lstat(ix.path(k)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the entry file is still there after a miss: %v", err)
	}
}

func TestHitOnUnchangedFile(t *testing.T) {
	ix := newIndex(t)
	data := []byte("hello, index")
	p, st := writeFile(t, t.TempDir(), "a.txt", data, time.Now().Add(-time.Hour))
	k := keyOf(p)
	before := time.Now()
	if err := ix.Put(entryOf(k, st, data)); err != nil {
		t.Fatal(err)
	}
	mustLen(t, ix, 1)
	e, doubt, err := ix.Lookup(k, statFile(t, p))
	if err != nil || e == nil {
		t.Fatalf("Lookup = %v, %v; want a hit", e, err)
	}
	if doubt {
		t.Error("doubt on a file an hour older than its entry")
	}
	if e.Key != k || e.Stat != st || e.SHA256 != hexSum(data) || !reflect.DeepEqual(e.Chunks, []string{hexSum(data)}) || e.ChunkSize != protocol.DefaultChunkSize {
		t.Errorf("entry = %+v", e)
	}
	if e.Recorded.Before(before.Add(-time.Millisecond)) || e.Recorded.After(time.Now()) {
		t.Errorf("Recorded = %v, want set by Put (after %v)", e.Recorded, before)
	}
	if runtime.GOOS != "windows" && (st.Inode == 0 || st.CTime == 0) {
		t.Errorf("StatOf on unix has no inode or ctime: %+v", st)
	}
	// Another account, server or path is another entry.
	for _, other := range []Key{{server, "acct-2", p}, {"https://other.example", "acct-1", p}, {server, "acct-1", p + "x"}} {
		if e, _, err := ix.Lookup(other, st); e != nil || err != nil {
			t.Errorf("Lookup(%+v) = %v, %v; want a miss", other, e, err)
		}
	}
	mustLen(t, ix, 1)
}

// TestStaleOnStatChange: a difference in any field of Stat is a miss
// that removes the entry.
func TestStaleOnStatChange(t *testing.T) {
	st := Stat{Size: 100, MTime: 1e18, CTime: 1e18 + 1, Inode: 9, Dev: 3}
	for name, change := range map[string]func(*Stat){
		"size":  func(s *Stat) { s.Size++ },
		"mtime": func(s *Stat) { s.MTime++ },
		"ctime": func(s *Stat) { s.CTime++ },
		"inode": func(s *Stat) { s.Inode++ },
		"dev":   func(s *Stat) { s.Dev++ },
	} {
		t.Run(name, func(t *testing.T) {
			ix := newIndex(t)
			k := keyOf("/data/f.bin")
			if err := ix.Put(entryOf(k, st, make([]byte, 100))); err != nil {
				t.Fatal(err)
			}
			st2 := st
			change(&st2)
			mustMiss(t, ix, k, st2)
			mustLen(t, ix, 0)
		})
	}
}

// TestStaleOnFileChanges changes real files the ways that must show in
// their Stat.
func TestStaleOnFileChanges(t *testing.T) {
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	data := []byte("0123456789")
	for name, change := range map[string]func(t *testing.T, p string){
		"size": func(t *testing.T, p string) {
			writeFile(t, filepath.Dir(p), filepath.Base(p), append(data, '!'), old)
		},
		"mtime": func(t *testing.T, p string) {
			if err := os.Chtimes(p, old, old.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		},
		"inode (replaced by rename)": func(t *testing.T, p string) {
			if runtime.GOOS == "windows" {
				t.Skip("no file id in os.FileInfo on Windows")
			}
			before := statFile(t, p)
			q, st := writeFile(t, filepath.Dir(p), "new", data, old)
			if err := os.Rename(q, p); err != nil {
				t.Fatal(err)
			}
			if st.Inode == before.Inode || st.Size != before.Size || st.MTime != before.MTime {
				t.Fatalf("the replacement is not a same-size, same-mtime new inode: %+v, %+v", before, st)
			}
		},
		"ctime": func(t *testing.T, p string) {
			if runtime.GOOS == "windows" {
				t.Skip("no ctime on Windows")
			}
			before := statFile(t, p)
			// ctime has the kernel clock's tick: chmod until it moves.
			for i := 0; statFile(t, p).CTime == before.CTime; i++ {
				if i == 200 {
					t.Skip("ctime does not move on this filesystem")
				}
				time.Sleep(10 * time.Millisecond)
				if err := os.Chmod(p, fs.FileMode(0o600+i%2*0o40)); err != nil {
					t.Fatal(err)
				}
			}
			if st := statFile(t, p); st.MTime != before.MTime || st.Size != before.Size {
				t.Fatalf("chmod changed more than ctime: %+v, %+v", before, st)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			ix := newIndex(t)
			p, st := writeFile(t, t.TempDir(), "f", data, old)
			k := keyOf(p)
			if err := ix.Put(entryOf(k, st, data)); err != nil {
				t.Fatal(err)
			}
			change(t, p)
			st2 := statFile(t, p)
			if st2 == st {
				t.Fatal("the change did not show in the Stat")
			}
			mustMiss(t, ix, k, st2)
		})
	}
}

// TestRacyClean: a file rewritten with the same size within the second
// its entry was recorded, its mtime put back, is never a clean hit.
func TestRacyClean(t *testing.T) {
	ix := newIndex(t)
	dir := t.TempDir()
	a, b := []byte("first content"), []byte("other content")
	p, st := writeFile(t, dir, "f", a, time.Time{})
	mtime := time.Unix(0, st.MTime)
	k := keyOf(p)
	rewrite := func() Stat {
		t.Helper()
		writeFile(t, dir, "f", b, mtime)
		return statFile(t, p)
	}

	t.Run("real stat", func(t *testing.T) {
		if err := ix.Put(Entry{Key: k, Stat: st, SHA256: hexSum(a), ChunkSize: protocol.DefaultChunkSize, Chunks: []string{hexSum(a)}, Recorded: time.Now()}); err != nil {
			t.Fatal(err)
		}
		st2 := rewrite()
		e, doubt, err := ix.Lookup(k, st2)
		if err != nil {
			t.Fatal(err)
		}
		if e != nil && !doubt {
			t.Fatalf("a clean hit on a rewritten file (stat %+v, was %+v)", st2, st)
		}
	})

	// Without ctime (an OS or filesystem that has none), only the racy
	// rule tells: same size, same mtime, same inode.
	t.Run("no ctime", func(t *testing.T) {
		p, st := writeFile(t, dir, "f", a, mtime)
		st.CTime = 0
		if err := ix.Put(Entry{Key: k, Stat: st, SHA256: hexSum(a), ChunkSize: protocol.DefaultChunkSize, Chunks: []string{hexSum(a)}, Recorded: time.Now()}); err != nil {
			t.Fatal(err)
		}
		st2 := rewrite()
		st2.CTime = 0
		if st2 != st {
			t.Fatalf("rewritten in place, the stat without ctime differs: %+v, %+v (%s)", st2, st, p)
		}
		e, doubt, err := ix.Lookup(k, st2)
		if err != nil || e == nil {
			t.Fatalf("Lookup = %v, %v; want a doubtful hit", e, err)
		}
		if !doubt {
			t.Fatal("doubt = false for a file whose mtime is not before Recorded - RacyWindow")
		}
	})

	t.Run("old file", func(t *testing.T) {
		hourAgo := time.Now().Add(-time.Hour)
		_, st := writeFile(t, dir, "f", a, hourAgo)
		if err := ix.Put(Entry{Key: k, Stat: st, SHA256: hexSum(a), ChunkSize: protocol.DefaultChunkSize, Chunks: []string{hexSum(a)}, Recorded: hourAgo.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		e, doubt, err := ix.Lookup(k, st)
		if err != nil || e == nil || doubt {
			t.Fatalf("Lookup = %v, %v, %v; want a clean hit", e, doubt, err)
		}
	})
}

// TestRacyWindowBoundary: doubt is mtime >= Recorded - RacyWindow, to
// the nanosecond.
func TestRacyWindowBoundary(t *testing.T) {
	ix := newIndex(t)
	rec := time.Unix(1_700_000_000, 500)
	for _, tc := range []struct {
		mtime time.Time
		doubt bool
	}{
		{rec.Add(-RacyWindow - 1), false},
		{rec.Add(-RacyWindow), true},
		{rec, true},
		{rec.Add(time.Hour), true}, // from the future: a clock went back
		{rec.Add(-time.Hour), false},
	} {
		e := bigEntry(keyOf("/f"), 10, protocol.DefaultChunkSize)
		e.SHA256 = e.Chunks[0]
		e.MTime, e.Recorded = tc.mtime.UnixNano(), rec
		if err := ix.Put(e); err != nil {
			t.Fatal(err)
		}
		got, doubt, err := ix.Lookup(e.Key, e.Stat)
		if err != nil || got == nil || doubt != tc.doubt {
			t.Errorf("mtime Recorded%+v: Lookup = %v, doubt %v, %v; want doubt %v", tc.mtime.Sub(rec), got != nil, doubt, err, tc.doubt)
		}
	}
}

func TestConfirmClearsDoubt(t *testing.T) {
	ix := newIndex(t)
	data := []byte("confirm me")
	mtime := time.Now().Add(-10 * time.Second)
	p, st := writeFile(t, t.TempDir(), "f", data, mtime)
	k := keyOf(p)
	e := entryOf(k, st, data)
	e.Recorded = mtime.Add(time.Second) // recorded the second it was written
	if err := ix.Put(e); err != nil {
		t.Fatal(err)
	}
	got, doubt, err := ix.Lookup(k, st)
	if err != nil || got == nil || !doubt {
		t.Fatalf("Lookup = %v, doubt %v, %v; want a doubtful hit", got, doubt, err)
	}
	if err := ix.Confirm(*got, time.Now()); err != nil {
		t.Fatal(err)
	}
	again, doubt, err := ix.Lookup(k, st)
	if err != nil || again == nil || doubt {
		t.Fatalf("after Confirm: Lookup = %v, doubt %v, %v; want a clean hit", again, doubt, err)
	}
	if !again.Recorded.After(got.Recorded.Add(5 * time.Second)) {
		t.Errorf("Confirm did not renew Recorded: %v, was %v", again.Recorded, got.Recorded)
	}
}

// TestCorruptEntry: whatever is at an entry's name that is not an entry
// of its Key is a miss, without error, and is removed.
func TestCorruptEntry(t *testing.T) {
	k := keyOf("/data/movie.mkv")
	e := bigEntry(k, 3*protocol.MinChunkSize+1, protocol.MinChunkSize)
	e.Recorded = time.Now()
	good := encode(&e)
	if _, err := decode(good); err != nil {
		t.Fatalf("the good entry does not decode: %v", err)
	}
	resum := func(b []byte) []byte { // a valid checksum over b's body
		b = bytes.Clone(b[:len(b)-4])
		return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	}
	other := e
	other.Path = "/data/other.mkv"
	for name, b := range map[string][]byte{
		"empty":            {},
		"garbage":          []byte("this is not an entry at all, but it is long enough"),
		"torn":             good[:len(good)/2],
		"one byte short":   good[:len(good)-1],
		"trailing bytes":   append(bytes.Clone(good), 0),
		"flipped bit":      func() []byte { b := bytes.Clone(good); b[40] ^= 1; return b }(),
		"version 2":        func() []byte { b := bytes.Clone(good); b[4] = 2; return resum(b) }(),
		"other magic":      func() []byte { b := bytes.Clone(good); b[0] = 'J'; return resum(b) }(),
		"another key's":    encode(&other),
		"json":             []byte(`{"server":"` + server + `","path":"/data/movie.mkv"}`),
		"chunk count lies": func() []byte { b := bytes.Clone(good); b[len(b)-4-4*hashLen-1]++; return resum(b) }(),
	} {
		t.Run(name, func(t *testing.T) {
			ix := newIndex(t)
			if err := os.WriteFile(ix.path(k), b, 0o600); err != nil {
				t.Fatal(err)
			}
			mustMiss(t, ix, k, e.Stat)
		})
	}
	// The good bytes, for contrast, are a hit.
	ix := newIndex(t)
	if err := os.WriteFile(ix.path(k), good, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _, err := ix.Lookup(k, e.Stat); err != nil || got == nil || !reflect.DeepEqual(got.Chunks, e.Chunks) {
		t.Fatalf("good entry: %v, %v", got, err)
	}
}

func TestPutValidates(t *testing.T) {
	ix := newIndex(t)
	k := keyOf("/data/f")
	h := hexSum([]byte("x"))
	valid := func() Entry { return bigEntry(k, 2*protocol.MinChunkSize+1, protocol.MinChunkSize) }
	for name, change := range map[string]func(*Entry){
		"relative path":      func(e *Entry) { e.Path = "data/f" },
		"no server":          func(e *Entry) { e.Server = "" },
		"NUL in account":     func(e *Entry) { e.Account = "a\x00b" },
		"uppercase hex":      func(e *Entry) { e.SHA256 = strings.ToUpper(e.SHA256) },
		"short file hash":    func(e *Entry) { e.SHA256 = e.SHA256[:62] },
		"short chunk hash":   func(e *Entry) { e.Chunks[1] = e.Chunks[1][:63] },
		"one chunk too few":  func(e *Entry) { e.Chunks = e.Chunks[:2] },
		"one chunk too many": func(e *Entry) { e.Chunks = append(e.Chunks, h) },
		"no chunk size":      func(e *Entry) { e.ChunkSize = 0 },
		"chunk size too big": func(e *Entry) { e.ChunkSize = protocol.MaxChunkSize + 1; e.Chunks = e.Chunks[:1] },
		"chunk under 5 MiB":  func(e *Entry) { e.Size, e.ChunkSize, e.Chunks = 2<<20, 1<<20, []string{h, h} },
		"negative size":      func(e *Entry) { e.Size = -1 },
		"empty, no chunk":    func(e *Entry) { e.Size, e.Chunks, e.SHA256 = 0, nil, protocol.EmptySHA256 },
		"empty, wrong hash":  func(e *Entry) { e.Size, e.Chunks, e.SHA256 = 0, []string{h}, h },
		"one chunk, two hashes": func(e *Entry) {
			e.Size, e.Chunks = 10, []string{hexSum([]byte("other"))}
		},
	} {
		e := valid()
		change(&e)
		if err := ix.Put(e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Put = %v, want ErrInvalid", name, err)
		}
	}
	mustLen(t, ix, 0)
	if err := ix.Put(valid()); err != nil {
		t.Fatalf("valid entry: %v", err)
	}
	empty := Entry{Key: keyOf("/data/empty"), SHA256: protocol.EmptySHA256, ChunkSize: protocol.DefaultChunkSize, Chunks: []string{protocol.EmptySHA256}}
	if err := ix.Put(empty); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if e, _, err := ix.Lookup(empty.Key, Stat{}); err != nil || e == nil || len(e.Chunks) != 1 {
		t.Fatalf("empty file: Lookup = %v, %v", e, err)
	}
	if _, _, err := ix.Lookup(Key{Server: server, Path: "rel"}, Stat{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Lookup of a relative path: %v, want ErrInvalid", err)
	}
	if err := ix.Remove(Key{Path: "/x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove without server: %v, want ErrInvalid", err)
	}
}

// TestTenGiBEntry: a 10 GiB file in 8 MiB chunks is a small entry that
// comes back whole.
func TestTenGiBEntry(t *testing.T) {
	ix := newIndex(t)
	e := bigEntry(keyOf("/data/"+strings.Repeat("long-directory-name/", 10)+"disk.img"), 10<<30, protocol.DefaultChunkSize)
	if len(e.Chunks) != 1280 {
		t.Fatalf("%d chunks", len(e.Chunks))
	}
	e.Recorded = time.Unix(0, time.Now().UnixNano())
	if err := ix.Put(e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(ix.path(e.Key))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 50_000 {
		t.Errorf("the entry of a 10 GiB file is %d bytes, want under 50 KB", fi.Size())
	}
	got, _, err := ix.Lookup(e.Key, e.Stat)
	if err != nil || got == nil {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if !got.Recorded.Equal(e.Recorded) {
		t.Errorf("Recorded = %v, want %v", got.Recorded, e.Recorded)
	}
	got.Recorded = e.Recorded
	if !reflect.DeepEqual(*got, e) {
		t.Error("the entry read back differs from the one written")
	}
}

func TestManifestRoundTrip(t *testing.T) {
	e := bigEntry(keyOf("/data/f"), 2*protocol.DefaultChunkSize+12345, protocol.DefaultChunkSize)
	m := e.Manifest("f.bin")
	if m == nil {
		t.Fatal("Manifest = nil for a valid entry")
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.Version != protocol.ManifestVersion || m.Name != "f.bin" || m.Size != e.Size || m.ChunkSize != e.ChunkSize || m.SHA256 != e.SHA256 || len(m.Chunks) != 3 {
		t.Fatalf("manifest = %+v", m)
	}
	for i, c := range m.Chunks {
		want := protocol.Chunk{Index: i, Offset: int64(i) * e.ChunkSize, Size: min(e.ChunkSize, e.Size-int64(i)*e.ChunkSize), SHA256: e.Chunks[i]}
		if c != want {
			t.Errorf("chunk %d = %+v, want %+v", i, c, want)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := protocol.ParseManifest(b)
	if err != nil || back.Validate() != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("JSON round trip: %+v, %v", back, err)
	}
	// A real one-chunk file: the manifest's hashes are the file's.
	data := []byte("a small file")
	one := entryOf(keyOf("/data/small"), Stat{Size: int64(len(data))}, data)
	if m := one.Manifest("small"); m == nil || m.SHA256 != hexSum(data) || m.Chunks[0].Size != int64(len(data)) {
		t.Fatalf("one-chunk manifest = %+v", m)
	}
	e.Chunks = e.Chunks[:2]
	if m := e.Manifest("f.bin"); m != nil {
		t.Errorf("Manifest of an entry with a chunk hash missing = %+v, want nil", m)
	}
}

// TestPlantedLinks: a symbolic or hard link at an entry's name is
// neither read nor written through; it is removed, the file it leads to
// left as it was.
func TestPlantedLinks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges on Windows")
	}
	data := []byte("linked")
	p, st := writeFile(t, t.TempDir(), "f", data, time.Now().Add(-time.Hour))
	k := keyOf(p)
	e := entryOf(k, st, data)
	e.Recorded = time.Now()
	valid := encode(&e) // a victim holding a valid entry: still not read
	plant := func(t *testing.T, ix *Index, link func(victim, at string) error) string {
		t.Helper()
		victim := filepath.Join(t.TempDir(), "victim")
		if err := os.WriteFile(victim, valid, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := link(victim, ix.path(k)); err != nil {
			t.Fatal(err)
		}
		return victim
	}
	victimIntact := func(t *testing.T, victim string) {
		t.Helper()
		if b, err := os.ReadFile(victim); err != nil || !bytes.Equal(b, valid) {
			t.Fatalf("the link's target changed: %v", err)
		}
	}
	for name, link := range map[string]func(victim, at string) error{"symlink": os.Symlink, "hard link": os.Link} {
		t.Run(name+" read", func(t *testing.T) {
			ix := newIndex(t)
			victim := plant(t, ix, link)
			mustMiss(t, ix, k, st)
			victimIntact(t, victim)
		})
		t.Run(name+" write", func(t *testing.T) {
			ix := newIndex(t)
			victim := plant(t, ix, link)
			other := e
			other.Recorded = time.Now().Add(time.Minute)
			if err := ix.Put(other); err != nil {
				t.Fatal(err)
			}
			victimIntact(t, victim)
			fi, err := os.Lstat(ix.path(k))
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Fatalf("entry after Put over a link: %v, %v", fi, err)
			}
			if got, _, err := ix.Lookup(k, st); err != nil || got == nil || !got.Recorded.Equal(other.Recorded) {
				t.Fatalf("Lookup after Put over a link = %v, %v", got, err)
			}
		})
	}
	t.Run("dangling symlink", func(t *testing.T) {
		ix := newIndex(t)
		target := filepath.Join(t.TempDir(), "would-be-created")
		if err := os.Symlink(target, ix.path(k)); err != nil {
			t.Fatal(err)
		}
		mustMiss(t, ix, k, st)
		if err := os.Symlink(target, ix.path(k)); err != nil {
			t.Fatal(err)
		}
		if err := ix.Put(e); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Put created the dangling link's target: %v", err)
		}
	})
}

func TestPrune(t *testing.T) {
	now := time.Now()
	old := now.Add(-time.Hour)
	put := func(t *testing.T, ix *Index, dir, name string, recorded time.Time) Key {
		t.Helper()
		data := []byte(name)
		p, st := writeFile(t, dir, name, data, old)
		e := entryOf(keyOf(p), st, data)
		e.Recorded = recorded
		if err := ix.Put(e); err != nil {
			t.Fatal(err)
		}
		return e.Key
	}
	present := func(t *testing.T, ix *Index, k Key) bool {
		t.Helper()
		_, err := os.Lstat(ix.path(k))
		return err == nil
	}

	t.Run("by age", func(t *testing.T) {
		ix, dir := newIndex(t), t.TempDir()
		a := put(t, ix, dir, "a", now.Add(-48*time.Hour))
		b := put(t, ix, dir, "b", now.Add(-time.Hour))
		c := put(t, ix, dir, "c", now)
		n, err := ix.Prune(24*time.Hour, 0)
		if err != nil || n != 1 {
			t.Fatalf("Prune = %d, %v; want 1", n, err)
		}
		if present(t, ix, a) || !present(t, ix, b) || !present(t, ix, c) {
			t.Fatal("Prune by age removed the wrong entries")
		}
	})

	t.Run("by count, oldest first", func(t *testing.T) {
		ix, dir := newIndex(t), t.TempDir()
		var keys []Key
		for i, name := range []string{"e", "b", "d", "a", "c"} { // Put order is not age order
			keys = append(keys, put(t, ix, dir, name, now.Add(-time.Duration(10-i)*time.Minute)))
		}
		// Recorded: e oldest ... c newest.
		n, err := ix.Prune(0, 2)
		if err != nil || n != 3 {
			t.Fatalf("Prune = %d, %v; want 3", n, err)
		}
		for i, k := range keys {
			if present(t, ix, k) != (i >= 3) {
				t.Errorf("entry %d (%s): present %v", i, filepath.Base(k.Path), present(t, ix, k))
			}
		}
		mustLen(t, ix, 2)
	})

	t.Run("missing and changed files, garbage, temporaries", func(t *testing.T) {
		ix, dir := newIndex(t), t.TempDir()
		gone := put(t, ix, dir, "gone", now)
		changed := put(t, ix, dir, "changed", now)
		kept := put(t, ix, dir, "kept", now)
		if err := os.Remove(gone.Path); err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, "changed", []byte("changed, longer"), old)
		garbage := filepath.Join(ix.dir, keyOf("/nowhere").Name())
		other := filepath.Join(ix.dir, "README")
		oldTmp := filepath.Join(ix.dir, "."+kept.Name()+".tmp-123")
		newTmp := filepath.Join(ix.dir, "."+kept.Name()+".tmp-456")
		for _, f := range []string{garbage, other, oldTmp, newTmp} {
			if err := os.WriteFile(f, []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(oldTmp, now.Add(-2*time.Hour), now.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// A valid entry at a name that is not its Key's.
		b, err := os.ReadFile(ix.path(kept))
		if err != nil {
			t.Fatal(err)
		}
		misplaced := filepath.Join(ix.dir, keyOf("/elsewhere").Name())
		if err := os.WriteFile(misplaced, b, 0o600); err != nil {
			t.Fatal(err)
		}
		mustLen(t, ix, 5)
		n, err := ix.Prune(0, 0)
		if err != nil || n != 4 {
			t.Fatalf("Prune = %d, %v; want 4 (gone, changed, garbage, misplaced)", n, err)
		}
		if _, err := os.Lstat(misplaced); err == nil {
			t.Error("Prune kept an entry at another key's name")
		}
		if present(t, ix, gone) || present(t, ix, changed) || !present(t, ix, kept) {
			t.Error("Prune kept an entry of a missing or changed file, or dropped a good one")
		}
		for f, want := range map[string]bool{garbage: false, other: true, oldTmp: false, newTmp: true} {
			if _, err := os.Lstat(f); (err == nil) != want {
				t.Errorf("%s: present %v, want %v", filepath.Base(f), err == nil, want)
			}
		}
		mustLen(t, ix, 1)
	})
}

func TestDefaultDir(t *testing.T) {
	d := t.TempDir()
	t.Setenv("JETTY_INDEX_DIR", d)
	if got, err := DefaultDir(); err != nil || got != d {
		t.Errorf("DefaultDir with JETTY_INDEX_DIR = %q, %v; want %q", got, err, d)
	}
	t.Setenv("JETTY_INDEX_DIR", "")
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skip(err)
	}
	if got, err := DefaultDir(); err != nil || got != filepath.Join(cache, "jetty", "index") {
		t.Errorf("DefaultDir = %q, %v", got, err)
	}
}

func TestOpenModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	ix := newIndex(t)
	fi, err := os.Stat(ix.Dir())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("index directory: %v, %v; want 0700", fi.Mode(), err)
	}
	e := bigEntry(keyOf("/f"), 1, protocol.DefaultChunkSize)
	e.SHA256 = e.Chunks[0]
	if err := ix.Put(e); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ix.path(e.Key)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("entry file: %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func BenchmarkLookupTenGiB(b *testing.B) {
	ix, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	e := bigEntry(keyOf("/data/disk.img"), 10<<30, protocol.DefaultChunkSize)
	if err := ix.Put(e); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if got, _, err := ix.Lookup(e.Key, e.Stat); err != nil || got == nil {
			b.Fatal(got, err)
		}
	}
}
