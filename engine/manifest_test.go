package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden manifests in testdata/manifests")

const MiB = 1 << 20

func TestChooseChunkSize(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
	}{
		{0, 8 * MiB},
		{1, 8 * MiB},
		{5*MiB - 1, 8 * MiB},
		{1 << 30, 8 * MiB},
		{10000 * 8 * MiB, 8 * MiB},         // exactly 10,000 chunks
		{10000*8*MiB + 1, 16 * MiB},        // one byte more
		{100 << 30, 16 * MiB},              // 100 GiB: 6,400 chunks
		{200 << 30, 32 * MiB},              // 200 GiB
		{1 << 40, 128 * MiB},               // 1 TiB: 8,192 chunks
		{protocol.MaxSize, 512 * MiB},      // the largest file
		{protocol.MaxSize + 1, 512 * MiB},  // too large: Plan refuses it
		{10000*256*MiB + 1, 512 * MiB},     // just past 256 MiB chunks
		{10000 * 256 * MiB, 256 * MiB},     // exactly 10,000 of 256 MiB
		{10000*16*MiB - 1, 16 * MiB},       // 16 MiB
		{10000*32*MiB + 1, 64 * MiB},       // 64 MiB
		{10000*128*MiB + 12345, 256 * MiB}, // 256 MiB
	} {
		got := protocol.ChooseChunkSize(tc.size)
		if got != tc.want {
			t.Errorf("ChooseChunkSize(%d) = %d MiB, want %d MiB", tc.size, got/MiB, tc.want/MiB)
		}
		if got < protocol.MinChunkSize || got > protocol.MaxChunkSize || got&(got-1) != 0 {
			t.Errorf("ChooseChunkSize(%d) = %d: not a power of two in range", tc.size, got)
		}
		if tc.size <= protocol.MaxSize && protocol.NumChunks(tc.size, got) > protocol.MaxChunks {
			t.Errorf("ChooseChunkSize(%d) = %d gives %d chunks", tc.size, got, protocol.NumChunks(tc.size, got))
		}
	}
}

// goldenFiles are the seeded files the golden manifests describe.
var goldenFiles = []struct {
	name      string
	seed      byte
	size      int64
	chunkSize int64
}{
	{"empty", 1, 0, 8 * MiB},
	{"one-byte", 2, 1, 8 * MiB},
	{"5MiB-minus-1", 3, 5*MiB - 1, 8 * MiB},
	{"5MiB-plus-1", 4, 5*MiB + 1, 8 * MiB},
	{"20MiB", 5, 20 * MiB, 8 * MiB},
	{"5MiB-plus-1-in-5MiB-chunks", 4, 5*MiB + 1, 5 * MiB}, // a last chunk of one byte
}

func TestGoldenManifests(t *testing.T) {
	for _, gf := range goldenFiles {
		t.Run(gf.name, func(t *testing.T) {
			data := genBytes(gf.seed, gf.size)
			m, err := Plan(context.Background(), bytes.NewReader(data), gf.size, gf.chunkSize, PlanOptions{Name: gf.name + ".bin"})
			if err != nil {
				t.Fatal(err)
			}
			if want := testenv.RandHash(gf.seed, gf.size); m.SHA256 != want {
				t.Fatalf("whole-file hash %s, want %s", m.SHA256, want)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			json.Indent(&pretty, raw, "", "  ")
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "manifests", gf.name+".json")
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./engine -run TestGoldenManifests -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("Plan differs from %s:\n%s\nwant:\n%s", path, pretty.Bytes(), want)
			}
			// The golden file parses back to the same manifest.
			back, err := protocol.ParseManifest(want)
			if err != nil {
				t.Fatal(err)
			}
			if raw2, _ := json.Marshal(back); !bytes.Equal(raw, raw2) {
				t.Errorf("round trip differs:\n%s\n%s", raw, raw2)
			}
		})
	}
}

func TestPlanMatchesSequential(t *testing.T) {
	for _, size := range []int64{0, 1, 5*MiB - 1, 5 * MiB, 5*MiB + 1, 17*MiB + 12345, 24 * MiB} {
		data := genBytes(byte(size), size)
		for _, cs := range []int64{5 * MiB, 8 * MiB, 16 * MiB} {
			want := sequentialManifest("f", data, cs)
			for _, workers := range []int{0, 1, 2, 3, 7} {
				var last int64
				got, err := Plan(context.Background(), bytes.NewReader(data), size, cs, PlanOptions{
					Name: "f", Workers: workers, Progress: func(n int64) {
						if n < last {
							t.Errorf("progress went back from %d to %d", last, n)
						}
						last = n
					}})
				if err != nil {
					t.Fatal(err)
				}
				a, _ := json.Marshal(got)
				b, _ := json.Marshal(want)
				if !bytes.Equal(a, b) {
					t.Fatalf("size %d chunk %d workers %d: Plan\n%s\nsequential\n%s", size, cs, workers, a, b)
				}
				if last != size {
					t.Errorf("size %d: last progress %d", size, last)
				}
			}
		}
	}
}

func TestPlanErrors(t *testing.T) {
	ctx := context.Background()
	r := bytes.NewReader(make([]byte, 10))
	if _, err := Plan(ctx, r, 10, 4*MiB, PlanOptions{}); err == nil {
		t.Error("chunk size under 5 MiB accepted")
	}
	if _, err := Plan(ctx, r, 10, 1<<30, PlanOptions{}); err == nil {
		t.Error("chunk size over 512 MiB accepted")
	}
	if _, err := Plan(ctx, r, 10001*5*MiB, 5*MiB, PlanOptions{}); err == nil || !strings.Contains(err.Error(), "10000") {
		t.Errorf("too many chunks: %v", err)
	}
	// The reader is shorter than the size given.
	if _, err := Plan(ctx, r, 11, 0, PlanOptions{}); err == nil {
		t.Error("short reader accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Plan(cctx, bytes.NewReader(make([]byte, 20*MiB)), 20*MiB, 0, PlanOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func validManifest() *protocol.Manifest {
	return sequentialManifest("v.bin", genBytes(9, 12*MiB+5), 5*MiB)
}

func TestValidate(t *testing.T) {
	if err := validManifest().Validate(); err != nil {
		t.Fatal(err)
	}
	h := strings.Repeat("a", 64)
	for name, tc := range map[string]struct {
		mutate func(m *protocol.Manifest)
		want   string
	}{
		"version":            {func(m *protocol.Manifest) { m.Version = 2 }, "version"},
		"whole hash short":   {func(m *protocol.Manifest) { m.SHA256 = "abc" }, "sha256"},
		"whole hash upper":   {func(m *protocol.Manifest) { m.SHA256 = strings.ToUpper(m.SHA256) }, "sha256"},
		"chunk hash":         {func(m *protocol.Manifest) { m.Chunks[1].SHA256 = strings.Repeat("g", 64) }, "chunk 1: sha256"},
		"no chunks":          {func(m *protocol.Manifest) { m.Chunks = nil }, "0 chunks"},
		"negative size":      {func(m *protocol.Manifest) { m.Size = -1 }, "negative"},
		"chunk size small":   {func(m *protocol.Manifest) { m.ChunkSize = 4 * MiB }, "chunk_size"},
		"chunk size big":     {func(m *protocol.Manifest) { m.ChunkSize = 1 << 30 }, "chunk_size"},
		"index order":        {func(m *protocol.Manifest) { m.Chunks[1].Index, m.Chunks[2].Index = 2, 1 }, "index"},
		"gap":                {func(m *protocol.Manifest) { m.Chunks[2].Offset++ }, "contiguous"},
		"middle chunk short": {func(m *protocol.Manifest) { m.Chunks[1].Size--; m.Chunks[2].Offset--; m.Size-- }, "every chunk but the last"},
		"last too big": {func(m *protocol.Manifest) {
			m.Chunks[2].Size = m.ChunkSize + 1
			m.Size = 3*m.ChunkSize + 1
		}, "last chunk"},
		"last empty": {func(m *protocol.Manifest) {
			m.Chunks[2].Size = 0
			m.Size = 2 * m.ChunkSize
		}, "last chunk"},
		"sum": {func(m *protocol.Manifest) { m.Size++ }, "add up"},
		"too many chunks": {func(m *protocol.Manifest) {
			m.Chunks = make([]protocol.Chunk, protocol.MaxChunks+1)
		}, "10001 chunks"},
		"one chunk too small": {func(m *protocol.Manifest) {
			*m = protocol.Manifest{Version: 1, Size: 10, ChunkSize: 9, SHA256: h, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 10, SHA256: h}}}
		}, "does not fit"},
		// A one-chunk file's hash is its chunk's: a manifest claiming
		// another whole-file hash claims something the server cannot check.
		"one chunk, two hashes": {func(m *protocol.Manifest) {
			*m = protocol.Manifest{Version: 1, Size: 10, ChunkSize: 10, SHA256: h, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 10, SHA256: strings.Repeat("b", 64)}}}
		}, "one-chunk file's sha256 is its chunk's"},
		// An empty file has one possible hash.
		"empty file, any hash": {func(m *protocol.Manifest) {
			*m = protocol.Manifest{Version: 1, Size: 0, ChunkSize: 8 * MiB, SHA256: h, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 0, SHA256: h}}}
		}, "SHA-256 of nothing"},
	} {
		t.Run(name, func(t *testing.T) {
			m := validManifest()
			tc.mutate(m)
			err := m.Validate()
			var me *protocol.ManifestError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want a protocol.ManifestError with %q", err, tc.want)
			}
		})
	}
	// Accepted edge cases.
	for name, m := range map[string]*protocol.Manifest{
		"empty file":          {Version: 1, Size: 0, ChunkSize: 8 * MiB, SHA256: protocol.EmptySHA256, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 0, SHA256: protocol.EmptySHA256}}},
		"one chunk own size":  {Version: 1, Size: 10, ChunkSize: 10, SHA256: h, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 10, SHA256: h}}},
		"last chunk full":     {Version: 1, Size: 10 * MiB, ChunkSize: 5 * MiB, SHA256: h, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 5 * MiB, SHA256: h}, {Index: 1, Offset: 5 * MiB, Size: 5 * MiB, SHA256: h}}},
		"last chunk one byte": {Version: 1, Size: 5*MiB + 1, ChunkSize: 5 * MiB, SHA256: h, Chunks: []protocol.Chunk{{Index: 0, Offset: 0, Size: 5 * MiB, SHA256: h}, {Index: 1, Offset: 5 * MiB, Size: 1, SHA256: h}}},
	} {
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var nilM *protocol.Manifest
	if nilM.Validate() == nil {
		t.Error("nil manifest valid")
	}
}

func TestParseManifest(t *testing.T) {
	for _, bad := range []string{``, `null`, `[]`, `{}`, `{"version":2}`, `{"version":"1"}`, `{"version":1}{}`, `{"version":1,"chunks":{}}`} {
		if _, err := protocol.ParseManifest([]byte(bad)); err == nil {
			t.Errorf("ParseManifest(%q) succeeded", bad)
		}
	}
	m := validManifest()
	raw, _ := json.Marshal(m)
	got, err := protocol.ParseManifest(raw)
	if err != nil || got.Validate() != nil {
		t.Fatal(err)
	}
	// Stable encoding: field order, no chunks as [].
	empty, _ := json.Marshal(protocol.Manifest{Version: 1})
	if want := `{"version":1,"name":"","size":0,"chunk_size":0,"sha256":"","chunks":[]}`; string(empty) != want {
		t.Errorf("got %s, want %s", empty, want)
	}
	if !strings.HasPrefix(string(raw), `{"version":1,"name":"v.bin","size":12582917,"chunk_size":5242880,"sha256":"`) {
		t.Errorf("field order: %s", raw[:80])
	}
}

// FuzzParseManifest: nothing panics, and whatever parses and validates
// encodes to bytes that parse and validate to the same encoding.
func FuzzParseManifest(f *testing.F) {
	for _, gf := range goldenFiles {
		if b, err := os.ReadFile(filepath.Join("testdata", "manifests", gf.name+".json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"version":1,"name":"x","size":0,"chunk_size":0,"sha256":"","chunks":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := protocol.ParseManifest(b)
		if err != nil {
			return
		}
		if m.Version != protocol.ManifestVersion {
			t.Fatalf("parsed version %d", m.Version)
		}
		if m.Validate() != nil {
			return
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := protocol.ParseManifest(raw)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if err := m2.Validate(); err != nil {
			t.Fatalf("re-validate: %v", err)
		}
		raw2, _ := json.Marshal(m2)
		if !bytes.Equal(raw, raw2) {
			t.Fatalf("unstable encoding:\n%s\n%s", raw, raw2)
		}
		var sum int64
		for _, c := range m.Chunks {
			sum += c.Size
		}
		if sum != m.Size || len(m.Chunks) < 1 || len(m.Chunks) > protocol.MaxChunks {
			t.Fatalf("valid manifest breaks the rules: %s", raw)
		}
	})
}

func ExampleChooseChunkSize() {
	for _, size := range []int64{100 << 20, 100 << 30, 1 << 40} {
		fmt.Println(protocol.ChooseChunkSize(size) >> 20)
	}
	// Output:
	// 8
	// 16
	// 128
}

// TestChunkListID pins the content id of a chunk list (docs/protocol.md):
// a fixed encoding other implementations must reproduce, which changes
// with every size and hash and never equals a whole-file SHA-256.
func TestChunkListID(t *testing.T) {
	m := validManifest() // 12 MiB + 5 in chunks of 5 MiB
	var enc []byte
	for _, c := range m.Chunks {
		var size [8]byte
		binary.BigEndian.PutUint64(size[:], uint64(c.Size))
		d, _ := hex.DecodeString(c.SHA256)
		enc = append(append(enc, size[:]...), d...)
	}
	sum := sha256.Sum256(enc)
	want := "m1-" + hex.EncodeToString(sum[:])
	if got := m.ChunkListID(); got != want {
		t.Fatalf("ChunkListID = %s, want %s", got, want)
	}
	if m.ChunkListID() == m.SHA256 || !strings.HasPrefix(m.ChunkListID(), protocol.ChunkListPrefix) {
		t.Errorf("ChunkListID %s must carry its prefix and differ from the whole-file hash", m.ChunkListID())
	}
	renamed := *m
	renamed.Name = "other.bin"
	if renamed.ChunkListID() != want {
		t.Error("the name changed the content id")
	}
	for i := range m.Chunks {
		other := validManifest()
		other.Chunks[i].SHA256 = strings.Repeat("f", 64)
		if other.ChunkListID() == want {
			t.Errorf("changing chunk %d's hash kept the id", i)
		}
	}
	// The same bytes cut differently are different chunk lists.
	recut := sequentialManifest("v.bin", genBytes(9, 12*MiB+5), 6*MiB)
	if recut.ChunkListID() == want {
		t.Error("another chunk size gave the same id")
	}
}
