package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
)

// heldBytes adds up the parts storage holds for a session's upload.
func heldBytes(t *testing.T, e *env, sessionID, accountID string) int64 {
	t.Helper()
	sess, err := e.store.SessionByID(context.Background(), accountID, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := e.blobs.ListParts(context.Background(), sess.ObjectKey, sess.UploadID)
	if err != nil {
		t.Fatalf("list parts: %v", err)
	}
	var n int64
	for _, p := range parts {
		n += p.Size
	}
	return n
}

// TestStreamSessionInsideReservation: a stream session (no manifest)
// reserves what the file may be; every chunk it takes must lie inside
// that reservation, whatever index it claims. Before, chunk PUTs checked
// only size <= chunk_size and index <= 9,999: a starter account wrote
// 100 MiB against a 50 MiB reservation with nothing charged.
func TestStreamSessionInsideReservation(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_streamq", "pro")
		acct := e.account("usr_streamq")
		ctx := context.Background()
		// Leave 12 MiB free: the stream reserves 12 MiB.
		if _, err := e.store.Reserve(ctx, acct.ID, acct.StorageQuotaBytes()-12*mib, time.Hour); err != nil {
			t.Fatal(err)
		}
		o := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "s.tar", "chunk_size": 5 * mib}})
		if o.status != 201 {
			t.Fatalf("open stream: %d %s", o.status, o.raw)
		}
		data := randBytes(21, 12*mib)
		m := plan("s.tar", data, 5*mib) // 5 + 5 + 2 MiB: exactly the reservation
		five := randBytes(22, 5*mib)
		one := []byte{7}
		for _, c := range []struct {
			what   string
			index  int
			body   []byte
			status int
			code   string
		}{
			{"chunk 0", 0, data[:5*mib], 200, ""},
			{"chunk 1", 1, data[5*mib : 10*mib], 200, ""},
			{"a full chunk 2 ends past the reservation", 2, five, 413, server.ETooLarge},
			{"chunk 3 starts past it", 3, one, 413, server.ETooLarge},
			{"the last index", 9999, one, 413, server.ETooLarge},
			{"chunk 2 as it is", 2, data[10*mib:], 200, ""},
			{"chunk 1 again, other bytes (replaces, adds nothing)", 1, five, 200, ""},
		} {
			sum := sha256.Sum256(c.body)
			st, code := putChunk(t, o.Session, o.Session.Token, c.index, hex.EncodeToString(sum[:]), c.body)
			if st != c.status || code != c.code {
				t.Fatalf("%s: %d %q, want %d %q", c.what, st, code, c.status, c.code)
			}
		}
		if n := heldBytes(t, e, o.Session.ID, acct.ID); n > 12*mib {
			t.Fatalf("storage holds %d bytes for a stream that reserved %d", n, 12*mib)
		}
		sendAll(t, o.Session, m, data, []int{1})
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, map[string]any{"manifest": m})
		if c.status != 200 || c.Asset["hash"] != m.SHA256 {
			t.Fatalf("complete: %d %s", c.status, c.raw)
		}
		if a := e.account("usr_streamq"); a.StorageUsedBytes != m.Size {
			t.Fatalf("used %d, want %d", a.StorageUsedBytes, m.Size)
		}
	})
}

// TestSuspendedAccountStopsChunks: suspending or deleting an account stops
// its open sessions with the next chunk; before, the upload token kept
// them taking bytes for up to 15 minutes.
func TestSuspendedAccountStopsChunks(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_susp", "pro")
		data := randBytes(23, 11*mib)
		m := plan("s.bin", data, 5*mib)
		o := e.open(key, secret, m)
		if o.status != 201 {
			t.Fatalf("open: %d %s", o.status, o.raw)
		}
		sendAll(t, o.Session, m, data, []int{0})
		stream := e.jsonCall("POST", "/api/jetty/sessions", key, secret, map[string]any{"stream": map[string]any{"name": "x", "chunk_size": 5 * mib}})
		if stream.status != 201 {
			t.Fatalf("open stream: %d %s", stream.status, stream.raw)
		}
		if r := e.do("POST", "/api/agentcache/suspend", `{"agentcache_user_id":"usr_susp"}`, partnerHeaders()); r.status != 200 {
			t.Fatalf("suspend: %d %s", r.status, r.raw)
		}
		c := m.Chunks[1]
		if st, code := putChunk(t, o.Session, o.Session.Token, 1, c.SHA256, data[c.Offset:c.Offset+c.Size]); st != 403 || code != server.EAccountSuspended {
			t.Fatalf("chunk after suspension: %d %q, want 403 %s", st, code, server.EAccountSuspended)
		}
		if st, code := putChunk(t, stream.Session, stream.Session.Token, 0, hexsum(data[:5*mib]), data[:5*mib]); st != 403 || code != server.EAccountSuspended {
			t.Fatalf("stream chunk after suspension: %d %q", st, code)
		}
		if r := e.do("POST", "/api/agentcache/reactivate", `{"agentcache_user_id":"usr_susp"}`, partnerHeaders()); r.status != 200 {
			t.Fatalf("reactivate: %d %s", r.status, r.raw)
		}
		if st, code := putChunk(t, o.Session, o.Session.Token, 1, c.SHA256, data[c.Offset:c.Offset+c.Size]); st != 200 {
			t.Fatalf("chunk after reactivation: %d %q", st, code)
		}
		if r := e.do("POST", "/api/agentcache/delete", `{"agentcache_user_id":"usr_susp"}`, partnerHeaders()); r.status != 200 {
			t.Fatalf("delete: %d %s", r.status, r.raw)
		}
		c = m.Chunks[2]
		if st, code := putChunk(t, o.Session, o.Session.Token, 2, c.SHA256, data[c.Offset:]); st != 403 || code != server.EAccountDeleted {
			t.Fatalf("chunk after deletion: %d %q, want 403 %s", st, code, server.EAccountDeleted)
		}
	})
}

// forge is a manifest that declares want's whole-file SHA-256 for the
// chunks of data (of the same length).
func forge(name string, data, want []byte, chunk int64) tmanifest {
	m := plan(name, data, chunk)
	m.SHA256 = hexsum(want)
	return m
}

// TestWholeFileHashVerified: the server records no hash it did not
// verify. A session that declared H(A) while carrying other bytes B was
// completed with H(A) as its hash and deduplication key; the next upload
// of the real A then answered "deduplicated" and downloads returned B.
// Now: the file store hashes the file while it assembles it and refuses
// the lie; on S3 (which cannot hash a multipart object whole) the asset
// is identified by its verified chunk list and says its hash is
// unverified, and the real A is stored as itself.
func TestWholeFileHashVerified(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		fs := strings.HasPrefix(t.Name(), "TestWholeFileHashVerified/sqlite")
		key, secret := e.provision("usr_liar", "pro")
		a := randBytes(31, 11*mib)
		b := randBytes(32, 11*mib)
		lie := forge("a.bin", b, a, 5*mib)
		o := e.open(key, secret, lie)
		if o.status != 201 {
			t.Fatalf("open: %d %s", o.status, o.raw)
		}
		sendAll(t, o.Session, lie, b, o.Session.Missing)
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if fs {
			if c.status != 400 || c.Code != server.EChecksumMismatch {
				t.Fatalf("complete of a lying manifest on the file store: %d %s", c.status, c.raw)
			}
			acct := e.account("usr_liar")
			if acct.StorageUsedBytes != 0 || acct.StorageReservedBytes != 0 {
				t.Fatalf("after the refusal: used %d reserved %d", acct.StorageUsedBytes, acct.StorageReservedBytes)
			}
			if objs := e.objects("users/usr_liar/"); len(objs) != 0 {
				t.Fatalf("the refused object is visible: %v", objs)
			}
			if st := e.jsonCall("GET", "/api/jetty/sessions/"+o.Session.ID, key, secret, nil); st.raw == "" || !strings.Contains(st.raw, `"aborted"`) {
				t.Fatalf("session after the refusal: %s", st.raw)
			}
		} else {
			if c.status != 200 || c.Asset["hash_verified"] != false || c.Asset["content_id"] != chunkListID(lie) {
				t.Fatalf("complete on S3: %d %s; want 200, hash_verified false, content_id of the chunks", c.status, c.raw)
			}
			code, h, got, _ := e.download(key, secret, c.Asset["id"].(string), "")
			if code != 200 || got != hexsum(b) || h.Get("X-Content-SHA256") != "" || h.Get("ETag") != `"`+chunkListID(lie)+`"` {
				t.Fatalf("download of the unverified asset: %d sha %s, X-Content-SHA256 %q, ETag %q", code, got, h.Get("X-Content-SHA256"), h.Get("ETag"))
			}
		}
		// The real A: stored as itself, never deduplicated onto B.
		real := plan("a.bin", a, 5*mib)
		ro := e.open(key, secret, real)
		if ro.status != 201 || ro.Deduplicated {
			t.Fatalf("open of the real content: %d %s; want a new session", ro.status, ro.raw)
		}
		sendAll(t, ro.Session, real, a, ro.Session.Missing)
		rc := e.jsonCall("POST", "/api/jetty/sessions/"+ro.Session.ID+"/complete", key, secret, nil)
		if rc.status != 200 || rc.Deduplicated || rc.Asset["hash"] != hexsum(a) {
			t.Fatalf("complete of the real content: %d %s", rc.status, rc.raw)
		}
		wantVerified := fs // the file store hashed it whole; S3 verified its chunks
		if rc.Asset["hash_verified"] != wantVerified {
			t.Fatalf("hash_verified = %v, want %v (%s)", rc.Asset["hash_verified"], wantVerified, rc.raw)
		}
		code, h, got, _ := e.download(key, secret, rc.Asset["id"].(string), "")
		if code != 200 || got != hexsum(a) {
			t.Fatalf("download of the real content: %d %s", code, got)
		}
		if wantVerified && (h.Get("X-Content-SHA256") != hexsum(a) || h.Get("ETag") != `"`+hexsum(a)+`"`) {
			t.Fatalf("verified asset: X-Content-SHA256 %q ETag %q", h.Get("X-Content-SHA256"), h.Get("ETag"))
		}
		// The same file again deduplicates at open, by what was verified.
		if again := e.open(key, secret, real); again.status != 200 || !again.Deduplicated || again.Asset["hash_verified"] != wantVerified {
			t.Fatalf("the same content again: %d %s", again.status, again.raw)
		}

		// One-chunk and empty files: the whole-file hash is the chunk's,
		// verified with it; a manifest claiming otherwise is refused.
		small := randBytes(33, 3*mib)
		sm := plan("small.bin", small, 5*mib)
		bad := sm
		bad.SHA256 = hexsum(a)
		if r := e.open(key, secret, bad); r.status != 400 || r.Code != server.EInvalidManifest {
			t.Fatalf("one chunk, two hashes: %d %s", r.status, r.raw)
		}
		empty := plan("empty", nil, 5*mib)
		anyHash := empty
		anyHash.SHA256, anyHash.Chunks = hexsum(a), []tchunk{{Index: 0, SHA256: hexsum(a)}}
		if r := e.open(key, secret, anyHash); r.status != 400 || r.Code != server.EInvalidManifest {
			t.Fatalf("empty file claiming a hash: %d %s", r.status, r.raw)
		}
		so := e.open(key, secret, sm)
		sendAll(t, so.Session, sm, small, so.Session.Missing)
		if sc := e.jsonCall("POST", "/api/jetty/sessions/"+so.Session.ID+"/complete", key, secret, nil); sc.status != 200 || sc.Asset["hash_verified"] != true || sc.Asset["content_id"] != hexsum(small) {
			t.Fatalf("one-chunk file: %d %s", sc.status, sc.raw)
		}
		eo := e.open(key, secret, empty)
		if eo.status != 201 {
			t.Fatalf("empty open: %d %s", eo.status, eo.raw)
		}
		if ec := e.jsonCall("POST", "/api/jetty/sessions/"+eo.Session.ID+"/complete", key, secret, nil); ec.status != 200 || ec.Asset["hash_verified"] != true || ec.Asset["hash"] != hexsum(nil) {
			t.Fatalf("empty file: %d %s", ec.status, ec.raw)
		}
		// Single-request uploads are hashed as they stream.
		u := e.upload(key, secret, "one.txt", strings.NewReader("hello"), 5, nil)
		if u.status != 201 || u.asset["hash_verified"] != true {
			t.Fatalf("single request: %d %s", u.status, u.raw)
		}
	})
}

// chunkListID is the content id of a manifest's chunk list
// (protocol.Manifest.ChunkListID), computed here from its definition.
func chunkListID(m tmanifest) string {
	h := sha256.New()
	for _, c := range m.Chunks {
		var b [8]byte
		for i := range 8 {
			b[7-i] = byte(c.Size >> (8 * i))
		}
		h.Write(b[:])
		d, _ := hex.DecodeString(c.SHA256)
		h.Write(d)
	}
	return "m1-" + hex.EncodeToString(h.Sum(nil))
}

// TestCompletionTakeover: a server killed inside complete left the session
// "completing" for 24 hours; the resumed upload opened a new session and
// sent the whole file again while the first reservation stayed held (two
// such kills left 400 MiB reserved and an orphan object). Now the dead
// completion's lease runs out, the resumed open finds the same session,
// and its complete takes the completion over, before and after the store
// assembled the object.
func TestCompletionTakeover(t *testing.T) {
	for _, assembled := range []bool{false, true} {
		name := "killed before assembly"
		if assembled {
			name = "killed after assembly"
		}
		t.Run(name, func(t *testing.T) {
			eachStorageWith(t, func(c *api.Config) { c.CompletionLease = 2 * time.Second }, func(t *testing.T, e *env) {
				ctx := context.Background()
				key, secret := e.provision("usr_lease", "pro")
				acct := e.account("usr_lease")
				data := randBytes(41, 11*mib)
				m := plan("lease.bin", data, 5*mib)
				o := e.open(key, secret, m)
				sendAll(t, o.Session, m, data, o.Session.Missing)

				// The completion a dying server began: claimed with a
				// short lease, the object maybe assembled, nothing recorded.
				sess, ok, err := e.store.BeginCompletion(ctx, acct.ID, o.Session.ID, time.Now(), 300*time.Millisecond)
				if err != nil || !ok {
					t.Fatalf("BeginCompletion: %v %v", ok, err)
				}
				if assembled {
					parts, err := e.blobs.ListParts(ctx, sess.ObjectKey, sess.UploadID)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := e.blobs.CompleteUpload(ctx, sess.ObjectKey, sess.UploadID, parts); err != nil {
						t.Fatal(err)
					}
				}
				// The resume, at once (the lease still holds): the same
				// session, nothing left to send; its complete waits for the
				// lease to run out, then takes the completion over.
				r := e.open(key, secret, m)
				if r.status != 200 || r.Session == nil || r.Session.ID != o.Session.ID || len(r.Session.Missing) != 0 {
					t.Fatalf("resumed open: %d %s; want session %s with nothing missing", r.status, r.raw, o.Session.ID)
				}
				if st := e.jsonCall("GET", "/api/jetty/sessions/"+o.Session.ID, key, secret, nil); !strings.Contains(st.raw, `"missing":[]`) {
					t.Fatalf("status of the dead completion: %s", st.raw)
				}
				c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
				if c.status != 200 || c.Asset["hash"] != m.SHA256 || c.Deduplicated {
					t.Fatalf("complete after the takeover: %d %s", c.status, c.raw)
				}
				code, _, got, _ := e.download(key, secret, c.Asset["id"].(string), "")
				if code != 200 || got != m.SHA256 {
					t.Fatalf("download: %d %s", code, got)
				}
				a := e.account("usr_lease")
				if a.StorageUsedBytes != m.Size || a.StorageReservedBytes != 0 {
					t.Fatalf("used %d reserved %d; want %d, 0", a.StorageUsedBytes, a.StorageReservedBytes, m.Size)
				}
				if objs := e.objects("users/usr_lease/"); len(objs) != 1 {
					t.Fatalf("%d objects, want 1: %v", len(objs), objs)
				}
				if ups, err := e.blobs.ListUploads(ctx, "users/usr_lease/", time.Time{}); err != nil || len(ups) != 0 {
					t.Fatalf("multipart uploads left: %v %v", ups, err)
				}
			})
		})
	}
}

// TestCompletionWaitsThenTakesOver: a complete that finds another
// completion under way waits for it; when that one's lease runs out (its
// server died), the waiting complete takes over and finishes.
func TestCompletionWaitsThenTakesOver(t *testing.T) {
	eachStorageWith(t, func(c *api.Config) { c.CompletionLease = 2 * time.Second }, func(t *testing.T, e *env) {
		ctx := context.Background()
		key, secret := e.provision("usr_wait", "pro")
		acct := e.account("usr_wait")
		data := randBytes(42, 6*mib)
		m := plan("w.bin", data, 5*mib)
		o := e.open(key, secret, m)
		sendAll(t, o.Session, m, data, o.Session.Missing)
		if _, ok, err := e.store.BeginCompletion(ctx, acct.ID, o.Session.ID, time.Now(), 500*time.Millisecond); err != nil || !ok {
			t.Fatalf("BeginCompletion: %v %v", ok, err)
		}
		start := time.Now()
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if c.status != 200 || c.Asset["hash"] != m.SHA256 {
			t.Fatalf("complete: %d %s", c.status, c.raw)
		}
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Fatalf("complete answered after %v, before the other completion's lease ran out", waited)
		}
		// A dead completion can also be aborted.
		o2 := e.open(key, secret, plan("x.bin", randBytes(43, 1*mib), 5*mib))
		sess2, _, err := e.store.BeginCompletion(ctx, acct.ID, o2.Session.ID, time.Now(), 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if r := e.jsonCall("DELETE", "/api/jetty/sessions/"+sess2.ID, key, secret, nil); r.status != 409 {
			t.Fatalf("abort under a live lease: %d %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
		if r := e.jsonCall("DELETE", "/api/jetty/sessions/"+sess2.ID, key, secret, nil); r.status != 200 {
			t.Fatalf("abort of a dead completion: %d %s", r.status, r.raw)
		}
		if a := e.account("usr_wait"); a.StorageReservedBytes != 0 {
			t.Fatalf("reserved %d after the abort", a.StorageReservedBytes)
		}
	})
}
