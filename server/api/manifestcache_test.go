package api_test

import (
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server"
)

// TestStreamManifestReplaced: a stream session's manifest is replaced
// when a failed completion is tried again with another one; chunks are
// then admitted against the new manifest, not one an instance parsed
// and cached before.
func TestStreamManifestReplaced(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_remanifest", "pro")
		data := randBytes(11, 12*mib+5)
		m := plan("tail.tar", data, 5*mib)
		o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "tail.tar", "chunk_size": 5 * mib}})
		if o.status != 201 {
			t.Fatalf("open stream: %d %s", o.status, o.raw)
		}
		sendAll(t, o.Session, m, data, []int{0, 1})
		complete := func(man tmanifest) openResult {
			return e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, map[string]any{"manifest": man})
		}
		// A first manifest with another last chunk: recorded, incomplete.
		wrong := m
		wrong.Chunks = append([]tchunk(nil), m.Chunks...)
		wrong.Chunks[2].SHA256 = strings.Repeat("e", 64)
		if r := complete(wrong); r.Code != server.EChunksMissing {
			t.Fatalf("complete with the first manifest: %d %s", r.status, r.raw)
		}
		last := data[m.Chunks[2].Offset:]
		if st, code := putChunk(t, o.Session, o.Session.Token, 2, m.Chunks[2].SHA256, last); st != 400 || code != server.EChecksumMismatch {
			t.Fatalf("chunk 2 against the first manifest: %d %s, want 400 %s", st, code, server.EChecksumMismatch)
		}
		// The right manifest replaces it; chunk 2 is still missing.
		if r := complete(m); r.Code != server.EChunksMissing {
			t.Fatalf("complete with the second manifest: %d %s", r.status, r.raw)
		}
		if st, code := putChunk(t, o.Session, o.Session.Token, 2, m.Chunks[2].SHA256, last); st != 200 {
			t.Fatalf("chunk 2 against the second manifest: %d %s, want 200", st, code)
		}
		if r := complete(m); r.status != 200 || r.Asset["hash"] != m.SHA256 {
			t.Fatalf("complete: %d %s", r.status, r.raw)
		}
	})
}
