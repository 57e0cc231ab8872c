package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
)

// hostileNames are file names a client may send. want, when set, is the
// name the server must store; otherwise it is whatever CleanPath makes of
// what the server received (CleanPath itself is fuzzed in package
// server), and the stored name must be safe either way: a relative path
// whose folders are kept, without "..", "." or empty elements.
var hostileNames = []struct{ desc, name, want string }{
	{"unix traversal", "../../etc/passwd", "etc/passwd"},
	{"windows traversal", `..\..\x`, "x"},
	{"mixed traversal", `../..\..\boot.ini`, "boot.ini"},
	{"absolute unix path", "/etc/passwd", "etc/passwd"},
	{"absolute path", "/abs/x", "abs/x"},
	{"windows traversal inside", `a\..\b`, "a/b"},
	{"double slash", "a//b", "a/b"},
	{"dot slash", "./a", "a"},
	{"folders kept", "photos/sub/q.jpg", "photos/sub/q.jpg"},
	{"only traversal", "../../..", "upload"},
	{"dots as folders", ". /.. /.../x", "x"},
	{"windows drive", `C:\x`, "x"},
	{"windows system path", `C:\Windows\System32\drivers\etc\hosts`, "Windows/System32/drivers/etc/hosts"},
	{"UNC path", `\\server\share\f.txt`, "server/share/f.txt"},
	{"trailing separator", "dir/", "dir"},
	{"NUL", "a\x00b.txt", "ab.txt"},
	{"NUL before extension", "movie.mp4\x00.exe", "movie.mp4.exe"},
	{"CR LF", "line\r\nbreak.txt", "linebreak.txt"},
	{"ESC sequences", "\x1b[31mred\x1b[0m.txt", "[31mred[0m.txt"},
	{"DEL and C1 controls", "a\x7fb\u0085c\u009b.txt", "abc.txt"},
	{"invalid UTF-8", "bad\xff\xfename.bin", ""},
	{"truncated UTF-8", "caf\xc3", ""},
	{"overlong UTF-8 slash", "a\xc0\xafb", ""},
	{"10 KB", strings.Repeat("n", 10<<10), strings.Repeat("n", server.MaxFilenameLen)},
	{"10 KB multibyte with extension", strings.Repeat("é", 5<<10) + ".mp4", strings.Repeat("é", 125) + ".mp4"},
	{"10 KB cut at spaces", "x" + strings.Repeat(" ", 10<<10) + "y", "x"},
	{"only dots", "....", "upload"},
	{"only spaces", "     ", "upload"},
	{"dots and spaces", " . .. . ", "upload"},
	{"dot dot", "..", "upload"},
	{"RTL override", "invoice\u202efdp.exe", "invoicefdp.exe"},
	{"zero-width and BOM", "zero\u200bwidth\ufeff.txt", "zerowidth.txt"},
	{"fullwidth solidus", "..\uff0f..\uff0fetc\uff0fpasswd", "\uff0f..\uff0fetc\uff0fpasswd"},
	{"fullwidth reverse solidus", "..\uff3c..\uff3cx", "\uff3c..\uff3cx"},
	{"line and paragraph separators", "a\u2028b\u2029c", ""},
}

var storedKey = regexp.MustCompile(`^users/([A-Za-z0-9_.-]+)/\d{13}-[a-z2-7]{12}(\.[a-z0-9]{1,10})?$`)

// checkSafeName fails unless name is a safe stored file name: a relative
// path of valid UTF-8, at most MaxPathLen bytes, of at most
// MaxPathSegments '/'-separated elements, each non-empty, at most
// MaxFilenameLen bytes, not "." or "..", without '\', control or format
// characters, leading or trailing spaces or dots.
func checkSafeName(t *testing.T, what, name string) {
	t.Helper()
	switch {
	case name == "" || len(name) > server.MaxPathLen:
		t.Errorf("%s: stored name %q has %d bytes", what, name, len(name))
	case !utf8.ValidString(name):
		t.Errorf("%s: stored name %q is not UTF-8", what, name)
	case path.IsAbs(name) || path.Clean(name) != name || !filepath.IsLocal(name) || strings.Contains(name, `\`):
		t.Errorf("%s: stored name %q is not a clean relative path", what, name)
	case strings.Count(name, "/") >= server.MaxPathSegments:
		t.Errorf("%s: stored name %q has too many folders", what, name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		t.Errorf("%s: stored name %q has control or format characters", what, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." || len(el) > server.MaxFilenameLen || strings.Trim(el, " .") != el {
			t.Errorf("%s: stored name %q has the element %q", what, name, el)
		}
	}
}

// checkAsset checks an asset the API returned for userID: the stored
// name is want (and safe), the object key is users/{userID}/{ms}-{rand}
// {.ext} and valid for the blob store; the asset reads back the same by
// id, and downloads with a Content-Disposition that carries the file
// name (the last element, never a folder) percent-encoded.
func (e *env) checkAsset(t *testing.T, what, userID, key, secret string, asset map[string]any, want, content string) {
	t.Helper()
	name, _ := asset["filename"].(string)
	if name != want {
		t.Errorf("%s: stored as %q, want %q", what, name, want)
	}
	checkSafeName(t, what, name)
	k, _ := asset["key"].(string)
	if m := storedKey.FindStringSubmatch(k); m == nil || m[1] != userID || !strings.HasPrefix(k, server.AccountPrefix(userID)) || !blob.ValidKey(k) || path.Clean(k) != k {
		t.Errorf("%s: object key %q is not inside %s", what, k, server.AccountPrefix(userID))
	}
	id, _ := asset["id"].(string)
	g := e.do("GET", "/api/storage/assets/"+url.PathEscape(id), "", userHeaders(key, secret))
	if ga, _ := g.body["asset"].(map[string]any); g.status != 200 || ga["filename"] != name || ga["key"] != k {
		t.Errorf("%s: GET asset: %d %s", what, g.status, g.raw)
	}
	st, h, sum, n := e.download(key, secret, id, "")
	if st != 200 || sum != hexsum([]byte(content)) || n != int64(len(content)) {
		t.Errorf("%s: download: %d, %d bytes", what, st, n)
	}
	cd := h.Get("Content-Disposition")
	if cd != "attachment; filename*=UTF-8''"+url.PathEscape(path.Base(name)) || strings.Contains(cd, "/") || strings.ContainsFunc(cd, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
		t.Errorf("%s: Content-Disposition %q", what, cd)
	}
}

// checkRefused fails unless r is a 400 with a JSON error body.
func checkRefused(t *testing.T, what string, status int, raw string) {
	t.Helper()
	var b struct{ Error, Code string }
	if status != 400 || json.Unmarshal([]byte(raw), &b) != nil || b.Error == "" || b.Code == "" {
		t.Errorf("%s: %d %s, want 400 with a JSON error", what, status, raw)
	}
}

// checkInside fails unless every object the blob store lists is inside
// the prefix of userID and n of them are there, and the account has
// nothing reserved.
func (e *env) checkInside(t *testing.T, userID string, n int) {
	t.Helper()
	objs := e.objects("")
	for _, o := range objs {
		if !strings.HasPrefix(o.Key, server.AccountPrefix(userID)) || !storedKey.MatchString(o.Key) {
			t.Errorf("object %q is outside %s", o.Key, server.AccountPrefix(userID))
		}
	}
	if len(objs) != n {
		t.Errorf("%d objects stored, want %d", len(objs), n)
	}
	if a := e.account(userID); a.StorageReservedBytes != 0 {
		t.Errorf("%d bytes still reserved", a.StorageReservedBytes)
	}
}

// headerSafe reports whether s can travel as a header value as it is
// (net/http refuses control characters; the server trims spaces; a '%'
// would be decoded).
func headerSafe(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) &&
		strings.TrimSpace(s) == s && !strings.Contains(s, "%")
}

// pctAll percent-encodes every byte but letters and digits (for RFC 2231
// filename* parameters).
func pctAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// multipartUpload sends a multipart/form-data upload whose parts are
// written as given: fields first (name, raw value), then the file with
// the Content-Disposition parameters disposition.
func (e *env) multipartUpload(key, secret string, fields [][2]string, disposition, content string) (int, string, map[string]any) {
	e.t.Helper()
	const boundary = "hostile-boundary-7f3a"
	var b bytes.Buffer
	for _, f := range fields {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, f[0], f[1])
	}
	fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"file\"; %s\r\nContent-Type: application/octet-stream\r\n\r\n%s\r\n--%s--\r\n", boundary, disposition, content, boundary)
	req, _ := http.NewRequest("POST", e.url+"/api/storage/upload", &b)
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var body map[string]any
	json.Unmarshal(raw, &body)
	asset, _ := body["asset"].(map[string]any)
	return res.StatusCode, string(raw), asset
}

// TestHostileNamesSingleRequest: hostile X-Filename values (as they are
// when a header can carry them, and percent-encoded, which the server
// decodes) and multipart filenames (quoted, and RFC 2231 filename*
// carrying any byte) are either refused with a 400 and a JSON error or
// stored under a clean name in an object inside the account's prefix.
func TestHostileNamesSingleRequest(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		const user = "usr_hostile_single"
		key, secret := e.provision(user, "enterprise") // 10,000 requests a minute
		stored, refused := 0, 0
		for i, c := range hostileNames {
			sends := map[string]string{"percent-encoded": url.PathEscape(c.name)}
			if headerSafe(c.name) {
				sends["raw"] = c.name
			}
			for how, h := range sends {
				what := fmt.Sprintf("X-Filename %s (%s)", c.desc, how)
				content := fmt.Sprintf("single %d %s", i, how)
				r := e.upload(key, secret, h, strings.NewReader(content), int64(len(content)), nil)
				if r.status != 201 {
					checkRefused(t, what, r.status, r.raw)
					refused++
					continue
				}
				want := c.want
				if want == "" {
					want = server.CleanPath(c.name)
				}
				e.checkAsset(t, what, user, key, secret, r.asset, want, content)
				stored++
			}

			// Multipart: the RFC 2231 form carries every byte.
			content := fmt.Sprintf("multipart %d", i)
			st, raw, asset := e.multipartUpload(key, secret, nil, "filename*=UTF-8''"+pctAll(c.name), content)
			what := "multipart filename* " + c.desc
			if st != 201 {
				checkRefused(t, what, st, raw)
				refused++
			} else {
				// The name as sent, folders kept (an empty name is
				// "upload").
				want := c.want
				if want == "" {
					want = server.CleanPath(c.name)
				}
				e.checkAsset(t, what, user, key, secret, asset, want, content)
				stored++
			}
		}
		// Quoted filename parameters, as browsers send them (a backslash
		// not before a special character stays literal).
		for i, q := range []struct{ param, want string }{
			{`filename="../../etc/passwd"`, "etc/passwd"},
			{`filename="..\..\windows\win.ini"`, "windows/win.ini"},
			{`filename="C:\Users\x\evil.txt"`, "Users/x/evil.txt"},
			{`filename="photos/sub/q.jpg"`, "photos/sub/q.jpg"},
			{`filename="a//b/./c"`, "a/b/c"},
			{`filename="\"quoted\".txt"`, `"quoted".txt`},
			{`filename=""`, "upload"},
			{`filename="..."`, "upload"},
			{`filename="a` + "\u202e" + `b.txt"`, "ab.txt"},
		} {
			content := fmt.Sprintf("quoted %d", i)
			st, raw, asset := e.multipartUpload(key, secret, nil, q.param, content)
			if st != 201 {
				checkRefused(t, "multipart "+q.param, st, raw)
				refused++
				continue
			}
			e.checkAsset(t, "multipart "+q.param, user, key, secret, asset, q.want, content)
			stored++
		}
		// Control characters as raw header bytes never reach the handler:
		// net/http answers 400 itself (a text body, not JSON).
		for i, raw := range []string{"a\x00b.txt", "a\x1b[2Jb.txt", "a\rb.txt", "a\x7fb.txt"} {
			st := rawRequest(t, e.url, fmt.Sprintf("POST /api/storage/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-API-Secret: %s\r\nX-Filename: %s\r\nContent-Length: 1\r\nConnection: close\r\n\r\n%d", key, secret, raw, i%10))
			if st != 400 {
				t.Errorf("raw X-Filename %q: status %d, want 400", raw, st)
			}
		}
		e.checkInside(t, user, stored)
		t.Logf("%d hostile names stored clean, %d refused", stored, refused)
		l := e.do("GET", "/api/storage/assets?limit=1000", "", userHeaders(key, secret))
		if l.status != 200 || len(l.body["assets"].([]any)) != stored {
			t.Fatalf("list: %d, want %d assets (%d bytes of JSON)", l.status, stored, len(l.raw))
		}
		for _, a := range l.body["assets"].([]any) {
			checkSafeName(t, "listed", a.(map[string]any)["filename"].(string))
		}
	})
}

// rawRequest writes req to a new connection to the server at base and
// returns the response status.
func rawRequest(t *testing.T, base, req string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// jsonString encodes s as a JSON string literal, leaving bytes that are
// not valid UTF-8 as they are (json.Marshal would replace them), so the
// server's decoder sees them raw.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// rawJSON posts body as it is.
func (e *env) rawJSON(method, path, key, secret, body string) openResult {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := openResult{status: res.StatusCode, raw: string(raw)}
	json.Unmarshal(raw, &out)
	return out
}

// decodedName is the name the server reads from a JSON string literal.
func decodedName(t *testing.T, lit string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal([]byte(lit), &s); err != nil {
		t.Fatalf("%s: %v", lit, err)
	}
	return s
}

// TestHostileNamesSessions: the manifest name of a session, of a stream
// session, and of an upload answered by deduplication is stored clean,
// in an object inside the account's prefix.
func TestHostileNamesSessions(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		const user = "usr_hostile_sess"
		key, secret := e.provision(user, "enterprise") // 10,000 requests a minute
		stored, refused := 0, 0
		for i, c := range hostileNames {
			lit := jsonString(c.name)
			want := server.CleanPath(decodedName(t, lit))
			if c.want != "" && utf8.ValidString(c.name) {
				want = c.want
			}

			// A manifest session.
			data := []byte(fmt.Sprintf("session %d", i))
			m := plan("PLACEHOLDER", data, 5*mib)
			mb, _ := json.Marshal(map[string]any{"manifest": m})
			o := e.rawJSON("POST", "/api/jetty/sessions", key, secret, strings.Replace(string(mb), `"PLACEHOLDER"`, lit, 1))
			what := "manifest name " + c.desc
			if o.status != 201 {
				checkRefused(t, what, o.status, o.raw)
				refused++
				continue
			}
			sendAll(t, o.Session, m, data, o.Session.Missing)
			done := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
			if done.status != 200 {
				t.Fatalf("%s: complete: %d %s", what, done.status, done.raw)
			}
			e.checkAsset(t, what, user, key, secret, done.Asset, want, string(data))
			stored++

			// The same bytes again: the asset is linked at open, under
			// this name, cleaned the same way.
			again := e.rawJSON("POST", "/api/jetty/sessions", key, secret, strings.Replace(string(mb), `"PLACEHOLDER"`, lit, 1))
			if again.status != 200 || !again.Deduplicated {
				t.Fatalf("%s: dedup open: %d %s", what, again.status, again.raw)
			}
			e.checkAsset(t, what+" (deduplicated)", user, key, secret, again.Asset, want, string(data))

			// A stream session names its file at open.
			sdata := []byte(fmt.Sprintf("stream %d", i))
			sm := plan("whatever the manifest says", sdata, 5*mib)
			so := e.rawJSON("POST", "/api/jetty/sessions", key, secret, `{"stream":{"name":`+lit+`,"chunk_size":5242880}}`)
			if so.status != 201 {
				checkRefused(t, "stream "+what, so.status, so.raw)
				refused++
				continue
			}
			sendAll(t, so.Session, sm, sdata, []int{0})
			sc := e.jsonCall("POST", "/api/jetty/sessions/"+so.Session.ID+"/complete", key, secret, map[string]any{"manifest": sm})
			if sc.status != 200 {
				t.Fatalf("stream %s: complete: %d %s", what, sc.status, sc.raw)
			}
			e.checkAsset(t, "stream "+what, user, key, secret, sc.Asset, want, string(sdata))
			stored++
		}
		e.checkInside(t, user, stored)
		t.Logf("%d hostile session names stored clean, %d refused", stored, refused)
	})
}

// TestHostileCacheKeys: a cache_key is opaque metadata. One with control
// characters, invalid UTF-8 or over 1024 bytes is refused with a 400 and
// a JSON error, nothing stored and nothing reserved; any other (even one
// that looks like a path or another account's prefix) is kept exactly
// and never reaches the object key.
func TestHostileCacheKeys(t *testing.T) {
	eachStorage(t, func(t *testing.T, e *env) {
		const user = "usr_hostile_ck"
		key, secret := e.provision(user, "enterprise") // 10,000 requests a minute
		stored, refused := 0, 0
		for i, c := range []struct {
			desc, ck string
			ok       bool
		}{
			{"traversal", "../../etc/passwd", true},
			{"another account's prefix", "users/usr_victim/1737804000000-aaaaaaaaaaaa.txt", true},
			{"windows path", `C:\x\..\y`, true},
			{"RTL override", "cache\u202ekey", true},
			{"fullwidth solidus", "a\uff0fb", true},
			{"1024 bytes", strings.Repeat("k", 1024), true},
			{"1025 bytes", strings.Repeat("k", 1025), false},
			{"10 KB", strings.Repeat("k", 10<<10), false},
			{"NUL", "a\x00b", false},
			{"CR LF", "a\r\nb", false},
			{"ESC", "a\x1b[2Jb", false},
			{"DEL", "a\x7fb", false},
			{"invalid UTF-8", "a\xff\xfeb", false},
		} {
			// Header (when a header can carry it), multipart field, and
			// session JSON (where the decoder replaces invalid UTF-8).
			type try struct {
				how    string
				status int
				raw    string
				asset  map[string]any
				want   string
				ok     bool
			}
			var tries []try
			content := fmt.Sprintf("cache key %d", i)
			if headerSafe(c.ck) {
				r := e.upload(key, secret, "f.txt", strings.NewReader(content+" header"), int64(len(content)+7), map[string]string{"X-Cache-Key": c.ck})
				tries = append(tries, try{"X-Cache-Key", r.status, r.raw, r.asset, c.ck, c.ok})
			}
			st, raw, asset := e.multipartUpload(key, secret, [][2]string{{"cache_key", c.ck}}, `filename="f.txt"`, content+" multipart")
			tries = append(tries, try{"multipart cache_key", st, raw, asset, c.ck, c.ok})

			data := []byte(content + " session")
			m := plan("f.txt", data, 5*mib)
			mb, _ := json.Marshal(map[string]any{"manifest": m, "cache_key": "PLACEHOLDER"})
			lit := jsonString(c.ck)
			o := e.rawJSON("POST", "/api/jetty/sessions", key, secret, strings.Replace(string(mb), `"PLACEHOLDER"`, lit, 1))
			jsonCK := decodedName(t, lit)
			tr := try{how: "session cache_key", status: o.status, raw: o.raw, want: jsonCK, ok: len(jsonCK) <= 1024 && !strings.ContainsFunc(jsonCK, func(r rune) bool { return r < 0x20 || r == 0x7f })}
			if o.status == 201 {
				sendAll(t, o.Session, m, data, o.Session.Missing)
				done := e.jsonCall("POST", "/api/jetty/sessions/"+o.Session.ID+"/complete", key, secret, nil)
				tr.status, tr.raw, tr.asset = done.status, done.raw, done.Asset
				if done.status == 200 {
					tr.status = 201
				}
			}
			tries = append(tries, tr)

			for _, r := range tries {
				what := r.how + " " + c.desc
				if !r.ok {
					checkRefused(t, what, r.status, r.raw)
					refused++
					continue
				}
				if r.status != 201 {
					t.Errorf("%s: %d %s", what, r.status, r.raw)
					continue
				}
				stored++
				if r.asset["cache_key"] != r.want {
					t.Errorf("%s: cache_key stored as %q", what, r.asset["cache_key"])
				}
				if k, _ := r.asset["key"].(string); !storedKey.MatchString(k) || !strings.HasPrefix(k, server.AccountPrefix(user)) || !strings.HasSuffix(k, ".txt") {
					t.Errorf("%s: object key %q", what, k)
				}
			}
		}
		e.checkInside(t, user, stored)
		t.Logf("%d cache keys kept, %d refused", stored, refused)
		if a := e.account(user); a.StorageUsedBytes == 0 {
			t.Error("nothing counted as used")
		}
		var used int64
		for _, o := range e.objects(server.AccountPrefix(user)) {
			used += o.Size
		}
		if a := e.account(user); a.StorageUsedBytes != used {
			t.Errorf("used %d bytes, the objects hold %d: a refused upload was counted", a.StorageUsedBytes, used)
		}
	})
}
