package engine

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jettythunder/jetty/protocol"
)

// FuzzManifestLayout: the client never builds a manifest the server would
// refuse. For any size and chunk size that checkChunkSize allows, the
// layout newManifest makes (with hashes filled in) validates, its chunks
// tile [0, size), and it survives MarshalJSON and ParseManifest
// unchanged; ChooseChunkSize picks an allowed chunk size for every size
// up to MaxSize; a refused chunk size is refused for a reason Validate
// would also give.
func FuzzManifestLayout(f *testing.F) {
	for _, c := range [][2]int64{
		{0, protocol.DefaultChunkSize}, {1, protocol.MinChunkSize}, {protocol.MinChunkSize, protocol.MinChunkSize}, {protocol.MinChunkSize + 1, protocol.MinChunkSize},
		{protocol.MaxSize, protocol.MaxChunkSize}, {protocol.MaxSize + 1, protocol.MaxChunkSize}, {-1, protocol.MinChunkSize}, {100, protocol.MinChunkSize - 1},
		{100, protocol.MaxChunkSize + 1}, {1 << 62, 1 << 62}, {-1 << 63, -1 << 63}, {protocol.MinChunkSize * protocol.MaxChunks, protocol.MinChunkSize},
		{protocol.MinChunkSize*protocol.MaxChunks + 1, protocol.MinChunkSize},
	} {
		f.Add(c[0], c[1], "f.bin")
	}
	f.Add(int64(3), protocol.MinChunkSize, "../../etc/passwd\x00\xff")
	hash := strings.Repeat("0", 64)
	f.Fuzz(func(t *testing.T, size, chunkSize int64, name string) {
		if size >= 0 && size <= protocol.MaxSize {
			if cs := protocol.ChooseChunkSize(size); protocol.CheckChunkSize(size, cs) != nil {
				t.Fatalf("ChooseChunkSize(%d) = %d, which protocol.CheckChunkSize refuses", size, cs)
			}
		}
		if err := protocol.CheckChunkSize(size, chunkSize); err != nil {
			if size >= 0 && chunkSize >= protocol.MinChunkSize && chunkSize <= protocol.MaxChunkSize && protocol.NumChunks(size, chunkSize) <= protocol.MaxChunks {
				t.Fatalf("checkChunkSize(%d, %d) refused a valid layout: %v", size, chunkSize, err)
			}
			return
		}
		m := protocol.NewManifest(name, size, chunkSize)
		h := hash
		if size == 0 {
			h = protocol.EmptySHA256
		}
		m.SHA256 = h
		for i := range m.Chunks {
			m.Chunks[i].SHA256 = h
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("layout of %d bytes in %d-byte chunks: %v", size, chunkSize, err)
		}
		var off int64
		for i, c := range m.Chunks {
			if c.Index != i || c.Offset != off || c.Size < 0 || c.Size > chunkSize {
				t.Fatalf("chunk %d of %d bytes in %d: %+v", i, size, chunkSize, c)
			}
			off += c.Size
		}
		if off != size {
			t.Fatalf("chunks cover %d of %d bytes", off, size)
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := protocol.ParseManifest(raw)
		if err != nil {
			t.Fatal(err)
		}
		// JSON carries UTF-8: invalid bytes become U+FFFD, the rest stays.
		if !utf8.ValidString(back.Name) || (utf8.ValidString(name) && back.Name != name) {
			t.Fatalf("name %q came back as %q", name, back.Name)
		}
		back.Name = m.Name
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("manifest changed on the wire:\n%+v\n%+v", m, back)
		}
	})
}
