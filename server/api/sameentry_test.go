package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestSameFileAgain (issue 20, item 5): the same file uploaded again
// under the same name, by every upload path (one raw request, multipart,
// a manifest session answered at open, a pipelined stream session
// completed), is the same asset: "deduplicated": true, the first asset's
// id, no new row, the quota counting the content once and nothing left
// reserved. Another cache key is an entry of its own, found by that key;
// other content under the same name is a new row.
func TestSameFileAgain(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		const user = "usr_same_again"
		key, secret := e.provision(user, "pro")
		rows := func() []any {
			t.Helper()
			l := e.do("GET", "/api/storage/assets?limit=1000", "", userHeaders(key, secret))
			if l.status != 200 {
				t.Fatalf("list: %d %s", l.status, l.raw)
			}
			return l.body["assets"].([]any)
		}
		settled := func(what string, used int64) {
			t.Helper()
			if a := e.account(user); a.StorageUsedBytes != used || a.StorageReservedBytes != 0 {
				t.Fatalf("%s: used %d, reserved %d; want %d, 0", what, a.StorageUsedBytes, a.StorageReservedBytes, used)
			}
		}

		// Small files in one request: raw, then multipart, same name.
		small := "a small file in a folder"
		first := e.upload(key, secret, "docs/a.txt", strings.NewReader(small), int64(len(small)), nil)
		if first.status != 201 || first.body["deduplicated"] != false {
			t.Fatalf("first upload: %d %s", first.status, first.raw)
		}
		id := first.asset["id"]
		again := e.upload(key, secret, "docs/a.txt", strings.NewReader(small), int64(len(small)), nil)
		if again.status != 201 || again.body["deduplicated"] != true || again.asset["id"] != id {
			t.Fatalf("raw upload again: %d %s", again.status, again.raw)
		}
		st, raw, asset := e.multipartUpload(key, secret, nil, `filename="docs/a.txt"`, small)
		var mb struct{ Deduplicated bool }
		json.Unmarshal([]byte(raw), &mb)
		if st != 201 || !mb.Deduplicated || asset["id"] != id {
			t.Fatalf("multipart upload again: %d %s", st, raw)
		}
		if n := len(rows()); n != 1 {
			t.Fatalf("%d rows after one file uploaded three times, want 1", n)
		}
		used := int64(len(small))
		settled("small file again", used)

		// A file of two chunks: a manifest session, then the same file at
		// open and by a pipelined stream session.
		data := randBytes(21, 6*mib)
		m := plan("docs/big.bin", data, 5*mib)
		o := e.open(key, secret, m)
		if o.status != 201 {
			t.Fatalf("open: %d %s", o.status, o.raw)
		}
		sendAll(t, o.Session, m, data, o.Session.Missing)
		c := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
		if c.status != 200 || c.Deduplicated {
			t.Fatalf("complete: %d %s", c.status, c.raw)
		}
		bigID := c.Asset["id"]
		used += m.Size
		if d := e.open(key, secret, m); d.status != 200 || !d.Deduplicated || d.Asset["id"] != bigID {
			t.Fatalf("open of the same file: %d %s", d.status, d.raw)
		}
		so := e.rawJSON("POST", "/api/jetty/sessions", key, secret, fmt.Sprintf(`{"stream":{"name":"docs/big.bin","chunk_size":%d,"size":%d}}`, 5*mib, m.Size))
		if so.status != 201 {
			t.Fatalf("stream open: %d %s", so.status, so.raw)
		}
		sendAll(t, so.Session, m, data, []int{0, 1})
		sc := e.jsonCall("POST", "/api/jetty/sessions/"+so.Session.ID+"/complete", key, secret, map[string]any{"manifest": m})
		if sc.status != 200 || !sc.Deduplicated || sc.Asset["id"] != bigID {
			t.Fatalf("stream session of the same file: %d %s", sc.status, sc.raw)
		}
		if n := len(rows()); n != 2 {
			t.Fatalf("%d rows, want 2", n)
		}
		settled("big file again", used)

		// Another cache key: an entry of its own, found by its key.
		ck := e.upload(key, secret, "docs/a.txt", strings.NewReader(small), int64(len(small)), map[string]string{"X-Cache-Key": "ck-new"})
		if ck.status != 201 || ck.body["deduplicated"] != true || ck.asset["id"] == id {
			t.Fatalf("another cache key: %d %s", ck.status, ck.raw)
		}
		l := e.do("GET", "/api/storage/assets?cache_key=ck-new", "", userHeaders(key, secret))
		if got := l.body["assets"].([]any); l.status != 200 || len(got) != 1 || got[0].(map[string]any)["id"] != ck.asset["id"] {
			t.Fatalf("by cache key: %d %s", l.status, l.raw)
		}
		// Other content under the same name: a new row.
		v2 := e.upload(key, secret, "docs/a.txt", strings.NewReader(small+" v2"), int64(len(small)+3), nil)
		if v2.status != 201 || v2.body["deduplicated"] != false || v2.asset["id"] == id {
			t.Fatalf("new version: %d %s", v2.status, v2.raw)
		}
		used += int64(len(small) + 3)
		if n := len(rows()); n != 4 {
			t.Fatalf("%d rows, want 4", n)
		}
		settled("new version", used)
	})
}
