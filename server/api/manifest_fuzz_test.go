package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// decodeBody decodes b as a request body the way the handlers do.
func decodeBody(b []byte, v any) error {
	r := httptest.NewRequest(http.MethodPost, "/api/jetty/sessions", bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	return decodeJSONLimit(httptest.NewRecorder(), r, v, protocol.MaxManifestBody)
}

// FuzzServerManifest: the server's reading of a manifest body
// (decodeJSONLimit then validateManifest) agrees with the engine's
// (ParseManifest then Validate): the same bodies pass, with the same
// manifest; a manifest that passes is stored (jsonMarshal) and read back
// (parseStoredManifest) unchanged, its chunks tile [0, size) within the
// protocol's limits, a session with nothing held misses every chunk (an
// empty file none), and its name cleans to a safe filename. Refusals are
// EInvalid, ETooLarge or EInvalidManifest, never a panic.
func FuzzServerManifest(f *testing.F) {
	if files, _ := filepath.Glob(filepath.Join("..", "..", "engine", "testdata", "manifests", "*.json")); len(files) > 0 {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	h := strings.Repeat("a", 64)
	for _, s := range []string{
		`{"version":1,"name":"../../etc/passwd","size":0,"chunk_size":5242880,"sha256":"` + h + `","chunks":[{"index":0,"offset":0,"size":0,"sha256":"` + h + `"}]}`,
		`{"version":1,"name":"a\u0000b\u202e.txt","size":3,"chunk_size":5242880,"sha256":"` + h + `","chunks":[{"index":0,"offset":0,"size":3,"sha256":"` + h + `"}]}`,
		`{"version":1,"name":"x","size":9223372036854775807,"chunk_size":536870912,"sha256":"` + h + `","chunks":[{"index":0,"offset":0,"size":9223372036854775807,"sha256":"` + h + `"}]}`,
		`{"version":1,"size":-1,"chunk_size":5242880,"sha256":"` + h + `","chunks":[{"index":0,"offset":0,"size":-1,"sha256":"` + h + `"}]}`,
		`{"version":1,"VERSION":2,"sha256":"` + h + `"}`, `{"version":1} {}`, `{"version":1.0}`, `{"version":1e0}`, `null`, `[]`, ``,
		`{"version":1,"size":1,"chunk_size":5242880,"sha256":"` + strings.ToUpper(h) + `","chunks":[{"index":0,"offset":0,"size":1,"sha256":"` + h + `"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m protocol.Manifest
		serr := decodeBody(b, &m)
		if serr == nil {
			serr = validateManifest(&m)
		}
		em, eerr := protocol.ParseManifest(b)
		if eerr == nil {
			eerr = em.Validate()
		}
		if (serr == nil) != (eerr == nil) {
			t.Fatalf("server says %v, engine says %v, for %q", serr, eerr, b)
		}
		if serr != nil {
			switch server.ErrorCode(serr) {
			case server.EInvalid, server.ETooLarge, server.EInvalidManifest:
			default:
				t.Fatalf("refused with %q: %v", server.ErrorCode(serr), serr)
			}
			return
		}
		if !reflect.DeepEqual(&m, em) {
			t.Fatalf("server and engine read %q differently:\n%+v\n%+v", b, m, *em)
		}
		raw, err := jsonMarshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := protocol.ParseManifest(raw)
		if err != nil || stored.Validate() != nil {
			t.Fatalf("stored manifest %s does not read back: %v", raw, err)
		}
		if utf8.ValidString(m.Name) && !reflect.DeepEqual(stored, &m) {
			t.Fatalf("stored manifest changed:\n%+v\n%+v", m, *stored)
		}
		if m.Size < 0 || m.Size > protocol.MaxSize || len(m.Chunks) < 1 || len(m.Chunks) > protocol.MaxChunks {
			t.Fatalf("valid manifest out of limits: size %d, %d chunks", m.Size, len(m.Chunks))
		}
		var off int64
		for i, c := range m.Chunks {
			if c.Index != i || c.Offset != off || c.Size < 0 || c.Size > protocol.MaxChunkSize || !protocol.IsHex64(c.SHA256) {
				t.Fatalf("chunk %d: %+v", i, c)
			}
			off += c.Size
		}
		if off != m.Size {
			t.Fatalf("chunks cover %d of %d bytes", off, m.Size)
		}
		missing := missingChunks(&m, nil)
		if m.Size == 0 {
			if len(missing) != 0 {
				t.Fatalf("empty file misses %v", missing)
			}
		} else if len(missing) != len(m.Chunks) {
			t.Fatalf("nothing held, %d of %d chunks missing", len(missing), len(m.Chunks))
		}
		if name := server.CleanPath(m.Name); name == "" || len(name) > server.MaxPathLen || strings.ContainsAny(name, "\\\x00") ||
			strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
			t.Fatalf("manifest name %q cleaned to %q", m.Name, name)
		}
	})
}
