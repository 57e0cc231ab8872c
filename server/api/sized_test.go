package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob"
)

// presignCall asks for presigned parts of session s with its token.
func presignCall(t *testing.T, e *env, s *session, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.url+"/api/jetty/sessions/"+s.ID+"/presign", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(raw)
}

// TestSizedSession: a session opened with the file's size and no
// manifest (the pipelined path) reserves exactly the size, refuses what
// the tier or the quota cannot take before a byte moves, takes no chunk
// beyond the size, tells a resuming client where its chunks go, presigns
// parts with the hashes the client names (S3), and completes with the
// manifest, the whole-file hash verified where the store reads it.
func TestSizedSession(t *testing.T) {
	eachStorageWith(t, func(c *api.Config) { c.DirectURL = "http://storage.invalid" }, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_sized", "pro")
		before := e.account("usr_sized")
		data := randBytes(51, 12*mib)
		m := plan("sized.bin", data, 5*mib)
		spec := func(size int64) map[string]any {
			return map[string]any{"stream": map[string]any{"name": "sized.bin", "chunk_size": 5 * mib, "size": size}}
		}

		// Refused before any byte: larger than the tier's file limit, more
		// than the free quota, a negative size. Nothing stays reserved.
		if o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(before.StorageQuotaBytes()+1)); o.status != 413 {
			t.Errorf("larger than the quota: %d %s", o.status, o.raw)
		}
		if o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(-5)); o.status != 400 || o.Code != server.EInvalidManifest {
			t.Errorf("negative size: %d %s", o.status, o.raw)
		}
		if a := e.account("usr_sized"); a.StorageReservedBytes != before.StorageReservedBytes {
			t.Fatalf("refused opens left %d bytes reserved", a.StorageReservedBytes-before.StorageReservedBytes)
		}

		o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(m.Size))
		if o.status != 201 || o.Session == nil {
			t.Fatalf("open sized: %d %s", o.status, o.raw)
		}
		var echo struct {
			Session struct {
				Size int64 `json:"size"`
			} `json:"session"`
		}
		json.Unmarshal([]byte(o.raw), &echo)
		if echo.Session.Size != m.Size {
			t.Errorf("session size echoed %d, want %d", echo.Session.Size, m.Size)
		}
		if a := e.account("usr_sized"); a.StorageReservedBytes-before.StorageReservedBytes != m.Size {
			t.Errorf("reserved %d bytes for a %d-byte file", a.StorageReservedBytes-before.StorageReservedBytes, m.Size)
		}
		// Past the size: a full last chunk, an index after the last.
		if st, code := putChunk(t, o.Session, o.Session.Token, 2, hexsum(data[:5*mib]), data[:5*mib]); st != 413 || code != server.ETooLarge {
			t.Errorf("full chunk 2 of a 12 MiB file: %d %q", st, code)
		}
		if st, code := putChunk(t, o.Session, o.Session.Token, 3, hexsum(data[:1]), data[:1]); st != 413 || code != server.ETooLarge {
			t.Errorf("chunk 3 of a 3-chunk file: %d %q", st, code)
		}
		sendAll(t, o.Session, m, data, []int{0})

		// What a resuming client needs.
		st := e.jsonCall("GET", "/api/jetty/sessions/"+o.Session.ID, key, secret, nil)
		var status struct {
			State    string `json:"state"`
			Held     []int  `json:"held"`
			ChunkURL string `json:"chunk_url"`
			Strategy *struct {
				ChunkSize int64 `json:"chunk_size"`
			} `json:"strategy"`
		}
		json.Unmarshal([]byte(st.raw), &status)
		if status.State != "open" || fmt.Sprint(status.Held) != "[0]" || status.ChunkURL != o.Session.ChunkURL || status.Strategy == nil || status.Strategy.ChunkSize != 5*mib {
			t.Errorf("status %s", st.raw)
		}

		// Presigned parts: with one hash per chunk, inside the size.
		if _, ok := e.blobs.(blob.Presigner); ok {
			c1 := m.Chunks[1]
			if code, raw := presignCall(t, e, o.Session, map[string]any{"chunks": []int{1}}); code != 400 {
				t.Errorf("presign without hashes: %d %s", code, raw)
			}
			if code, raw := presignCall(t, e, o.Session, map[string]any{"chunks": []int{3}, "sha256": []string{c1.SHA256}}); code != 413 {
				t.Errorf("presign past the size: %d %s", code, raw)
			}
			code, raw := presignCall(t, e, o.Session, map[string]any{"chunks": []int{1}, "sha256": []string{c1.SHA256}})
			if code != 200 {
				t.Fatalf("presign: %d %s", code, raw)
			}
			var pr struct {
				Parts []struct {
					URL     string            `json:"url"`
					Method  string            `json:"method"`
					Headers map[string]string `json:"headers"`
				} `json:"parts"`
			}
			json.Unmarshal([]byte(raw), &pr)
			if len(pr.Parts) != 1 {
				t.Fatalf("presign answer %s", raw)
			}
			// The store holds the part to the hash signed into its URL:
			// other bytes are refused.
			put := func(body []byte) int {
				req, _ := http.NewRequest(pr.Parts[0].Method, pr.Parts[0].URL, bytes.NewReader(body))
				for k, v := range pr.Parts[0].Headers {
					req.Header.Set(k, v)
				}
				req.ContentLength = int64(len(body))
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode
			}
			if code := put(data[:c1.Size]); code/100 == 2 {
				t.Errorf("the store took other bytes than the presigned hash: %d", code)
			}
			if code := put(data[c1.Offset : c1.Offset+c1.Size]); code/100 != 2 {
				t.Fatalf("presigned part PUT: %d", code)
			}
			sendAll(t, o.Session, m, data, []int{2})
		} else {
			if code, raw := presignCall(t, e, o.Session, map[string]any{"chunks": []int{1}, "sha256": []string{m.Chunks[1].SHA256}}); code != 404 {
				t.Errorf("presign on a store without it: %d %s", code, raw)
			}
			sendAll(t, o.Session, m, data, []int{1, 2})
		}
		// A manifest session takes no hashes in a presign call.
		mo := e.open(key, secret, plan("other.bin", randBytes(52, 6*mib), 5*mib))
		if mo.status != 201 {
			t.Fatalf("open: %d %s", mo.status, mo.raw)
		}
		if _, ok := e.blobs.(blob.Presigner); ok {
			if code, raw := presignCall(t, e, mo.Session, map[string]any{"chunks": []int{0}, "sha256": []string{m.Chunks[0].SHA256}}); code != 400 {
				t.Errorf("presign with hashes on a manifest session: %d %s", code, raw)
			}
		}

		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, map[string]any{"manifest": m})
		if c.status != 200 || c.Asset["hash"] != m.SHA256 {
			t.Fatalf("complete: %d %s", c.status, c.raw)
		}
		if _, isS3 := e.blobs.(blob.Presigner); !isS3 && c.Asset["hash_verified"] != true {
			t.Errorf("the file store read the whole file but did not verify its hash: %s", c.raw)
		}
		a := e.account("usr_sized")
		if a.StorageUsedBytes-before.StorageUsedBytes != m.Size {
			t.Errorf("used %d, want %d", a.StorageUsedBytes-before.StorageUsedBytes, m.Size)
		}
	})
}

// TestSizedSessionRef: an open naming the ref of the account's open
// session answers that session (200) and reserves nothing more; another
// chunking under the same ref is 409; a malformed ref is 400.
func TestSizedSessionRef(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_ref", "pro")
		before := e.account("usr_ref")
		const ref = "rTestRef_0123456789"
		spec := func(cs, size int64, ref string) map[string]any {
			return map[string]any{"stream": map[string]any{"name": "r.bin", "chunk_size": cs, "size": size, "ref": ref}}
		}
		first := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(5*mib, 12*mib, ref))
		if first.status != 201 {
			t.Fatalf("open: %d %s", first.status, first.raw)
		}
		again := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(5*mib, 12*mib, ref))
		if again.status != 200 || again.Session == nil || again.Session.ID != first.Session.ID {
			t.Fatalf("open again with the ref: %d %s", again.status, again.raw)
		}
		if a := e.account("usr_ref"); a.StorageReservedBytes-before.StorageReservedBytes != 12*mib {
			t.Errorf("reserved %d after two opens of one ref, want %d", a.StorageReservedBytes-before.StorageReservedBytes, 12*mib)
		}
		if o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(6*mib, 12*mib, ref)); o.status != 409 {
			t.Errorf("the ref with another chunk size: %d %s", o.status, o.raw)
		}
		if o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, spec(5*mib, 12*mib, "bad ref!")); o.status != 400 {
			t.Errorf("malformed ref: %d %s", o.status, o.raw)
		}
		// Another account's ref is not this one's.
		k2, s2 := e.provision("usr_ref2", "pro")
		if o := e.jsonCall("POST", "/api/jetty/sessions", k2, s2, spec(5*mib, 12*mib, ref)); o.status != 201 || o.Session.ID == first.Session.ID {
			t.Errorf("another account with the same ref: %d %s", o.status, o.raw)
		}
	})
}
