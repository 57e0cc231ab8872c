package api_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestAssetLookupByName (issue 20, item 4): GET /api/storage/assets?name=
// is an exact, account-scoped lookup of a file name, newest first and
// paginated like the list; ?prefix= lists the names that begin with it
// (byte for byte: no case folding, no wildcards); empty and malformed
// values are refused like cache_key's.
func TestAssetLookupByName(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		ka, sa := e.provision("usr_names_a", "pro")
		kb, sb := e.provision("usr_names_b", "pro")
		names := []string{"big.bin", "photo_1.jpg", "big.bin", "Big.bin", "photo%2.jpg", "big.bin.bak", "photos.txt"}
		byName := map[string][]string{} // newest first
		for i, name := range names {
			r := e.upload(ka, sa, name, strings.NewReader(fmt.Sprintf("content %d", i)), -1, nil)
			if r.status != 201 || r.asset["filename"] != name {
				t.Fatalf("upload %s: %d %s", name, r.status, r.raw)
			}
			byName[name] = append([]string{r.asset["id"].(string)}, byName[name]...)
		}
		if r := e.upload(kb, sb, "big.bin", strings.NewReader("theirs"), -1, nil); r.status != 201 {
			t.Fatalf("upload b: %d %s", r.status, r.raw)
		}
		ids := func(as []map[string]any) []string {
			out := []string{}
			for _, a := range as {
				out = append(out, a["id"].(string))
			}
			return out
		}
		r, as := e.list(ka, sa, url.Values{"name": {"big.bin"}})
		if r.status != 200 || fmt.Sprint(ids(as)) != fmt.Sprint(byName["big.bin"]) {
			t.Fatalf("name lookup: %d %s; want %v", r.status, r.raw, byName["big.bin"])
		}
		var paged []string
		q := url.Values{"name": {"big.bin"}, "limit": {"1"}}
		for range 10 {
			r, as := e.list(ka, sa, q)
			if r.status != 200 || len(as) > 1 {
				t.Fatalf("page: %d %s", r.status, r.raw)
			}
			paged = append(paged, ids(as)...)
			next, _ := r.body["next_cursor"].(string)
			if next == "" {
				break
			}
			q.Set("cursor", next)
		}
		if fmt.Sprint(paged) != fmt.Sprint(byName["big.bin"]) {
			t.Fatalf("paged name lookup %v, want %v", paged, byName["big.bin"])
		}
		for _, other := range []string{"BIG.BIN", "big", "big.bi_", "big.bin ", "photo%"} {
			if r, as := e.list(ka, sa, url.Values{"name": {other}}); r.status != 200 || len(as) != 0 || !strings.Contains(r.raw, `"assets":[]`) {
				t.Fatalf("name lookup of %q: %d %s", other, r.status, r.raw)
			}
		}
		if r, as := e.list(kb, sb, url.Values{"name": {"big.bin"}}); r.status != 200 || len(as) != 1 {
			t.Fatalf("name lookup of b: %d %s", r.status, r.raw)
		}
		// Prefixes.
		for prefix, want := range map[string][]string{
			"big.bin": {byName["big.bin.bak"][0], byName["big.bin"][0], byName["big.bin"][1]},
			"photo":   {byName["photos.txt"][0], byName["photo%2.jpg"][0], byName["photo_1.jpg"][0]},
			"photo%":  {byName["photo%2.jpg"][0]},
			"photo_":  {byName["photo_1.jpg"][0]},
			"B":       {byName["Big.bin"][0]},
			"x":       {},
		} {
			if r, as := e.list(ka, sa, url.Values{"prefix": {prefix}}); r.status != 200 || fmt.Sprint(ids(as)) != fmt.Sprint(want) {
				t.Fatalf("prefix %q: %d %s; want %v", prefix, r.status, r.raw, want)
			}
		}
		if r, as := e.list(ka, sa, url.Values{"prefix": {"big"}, "name": {"big.bin.bak"}}); r.status != 200 || len(as) != 1 {
			t.Fatalf("prefix and name: %d %s", r.status, r.raw)
		}
		for _, q := range []string{"name=", "prefix=", "name=a&name=b", "prefix=a&prefix=b", "name=" + strings.Repeat("n", 1025), "prefix=a%0Ab", "name=%FF"} {
			r := e.do("GET", "/api/storage/assets?"+q, "", userHeaders(ka, sa))
			wantError(t, r, 400, "invalid_request")
		}
	})
}
