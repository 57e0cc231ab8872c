package s3blob_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// answer is what storage said to a presigned request.
type answer struct {
	status  int
	code    string // S3 error code, if any
	message string
	etag    string
	err     error // transport error (no answer)
}

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s %q", a.status, a.code, a.message)
}

func (a answer) ok() bool { return a.err == nil && a.status/100 == 2 }

func (a answer) refused() bool { return a.err == nil && a.status/100 == 4 }

func readAnswer(resp *http.Response) answer {
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, etag: resp.Header.Get("ETag")}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var e struct {
		Code    string
		Message string
	}
	if xml.Unmarshal(b, &e) == nil {
		a.code, a.message = e.Code, e.Message
	}
	return a
}

var presignHTTP = &http.Client{Timeout: time.Minute}

// send sends pr the way a client does: its method and URL, every header
// as given (Content-Length as the request's length, which net/http writes
// itself), and body with its own length. edit, when not nil, changes the
// request first (a misbehaving client).
func send(t *testing.T, pr blob.PresignedRequest, body []byte, edit func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), pr.Method, pr.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range pr.Headers {
		if http.CanonicalHeaderKey(k) == "Content-Length" {
			continue // net/http sends req.ContentLength
		}
		req.Header.Set(k, v)
	}
	req.ContentLength = int64(len(body))
	if edit != nil {
		edit(req)
	}
	resp, err := presignHTTP.Do(req)
	if err != nil {
		return answer{err: err}
	}
	return readAnswer(resp)
}

// sendRaw writes the request by hand: the signed Content-Length is
// declared but only body is sent before the client closes its side.
func sendRaw(t *testing.T, pr blob.PresignedRequest, body []byte) answer {
	t.Helper()
	u, err := url.Parse(pr.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", pr.Method, u.RequestURI(), u.Host)
	for k, v := range pr.Headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return answer{err: err}
	}
	return readAnswer(resp)
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func storedParts(t *testing.T, s *s3blob.Store, key, id string) map[int]blob.Part {
	t.Helper()
	parts, err := s.ListParts(t.Context(), key, id)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int]blob.Part, len(parts))
	for _, p := range parts {
		m[p.Number] = p
	}
	return m
}

func minioStore(t *testing.T, cfg func(*s3blob.Config)) (*s3blob.Store, testenv.S3) {
	t.Helper()
	env := testenv.MinIO(t)
	c := config(env)
	if cfg != nil {
		cfg(&c)
	}
	s := newStore(t, c)
	if err := s.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s, env
}

// A client uploads parts with presigned requests alone; storage records
// each part's SHA-256, and completion checks them against the manifest.
func TestPresignPartUpload(t *testing.T) {
	s, _ := minioStore(t, nil)
	ctx := t.Context()
	const key = "users/u1/direct.bin"
	id, err := s.CreateUpload(ctx, key, "application/x-test")
	if err != nil {
		t.Fatal(err)
	}
	chunks := [][]byte{randomBytes(t, blob.MinPartSize), randomBytes(t, 12345)}
	const ttl = 10 * time.Minute
	var manifest []blob.Part
	for i, c := range chunks {
		n, sum := i+1, sha256Sum(c)
		before := time.Now()
		pr, err := s.PresignPart(ctx, key, id, n, int64(len(c)), sum, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("presigned: %s %s\nheaders: %v\nexpires: %v", pr.Method, pr.URL, pr.Headers, pr.Expires)
		}
		if pr.Method != http.MethodPut {
			t.Errorf("method %q", pr.Method)
		}
		if got, want := pr.Headers["X-Amz-Checksum-Sha256"], base64.StdEncoding.EncodeToString(sum); got != want {
			t.Errorf("X-Amz-Checksum-Sha256 = %q, want %q", got, want)
		}
		if _, ok := pr.Headers["Host"]; ok {
			t.Error("Host among the headers")
		}
		if cl, ok := pr.Headers["Content-Length"]; ok && cl != strconv.Itoa(len(c)) {
			t.Errorf("Content-Length = %s, want %d", cl, len(c))
		}
		if u, err := url.Parse(pr.URL); err != nil {
			t.Error(err)
		} else {
			for k := range u.Query() {
				if strings.EqualFold(k, "X-Amz-Checksum-Sha256") {
					t.Errorf("checksum in the URL, not a signed header: %s", pr.URL)
				}
			}
			if sh := u.Query().Get("X-Amz-SignedHeaders"); !strings.Contains(";"+sh+";", ";x-amz-checksum-sha256;") {
				t.Errorf("x-amz-checksum-sha256 not signed: X-Amz-SignedHeaders=%s", sh)
			}
		}
		// X-Amz-Date has whole seconds.
		if lo, hi := before.Add(ttl-time.Second), time.Now().Add(ttl); pr.Expires.Before(lo) || pr.Expires.After(hi) {
			t.Errorf("Expires %v outside [%v, %v]", pr.Expires, lo, hi)
		}
		a := send(t, pr, c, nil)
		if !a.ok() {
			t.Fatalf("part %d: %v", n, a)
		}
		if a.etag == "" {
			t.Errorf("part %d: no ETag in the answer", n)
		}
		manifest = append(manifest, blob.Part{Number: n, Size: int64(len(c)), SHA256: sum})
	}
	stored := storedParts(t, s, key, id)
	for _, m := range manifest {
		st, ok := stored[m.Number]
		if !ok || st.Size != m.Size || !bytes.Equal(st.SHA256, m.SHA256) {
			t.Errorf("ListParts part %d = %+v (present %v), want size %d sha256 %x", m.Number, st, ok, m.Size, m.SHA256)
		}
	}
	// The manifest as the server keeps it (no ETags): CompleteUpload finds
	// them through ListParts.
	info, err := s.CompleteUpload(ctx, key, id, manifest)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Join(chunks, nil)
	if info.Size != int64(len(want)) {
		t.Errorf("size %d, want %d", info.Size, len(want))
	}
	rc, _, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (sha256 %x), want %d (sha256 %x)", len(got), sha256Sum(got), len(want), sha256Sum(want))
	}
}

// Storage refuses whatever is not exactly the signed part, and keeps
// nothing of it. The answers are logged (the client maps them).
func TestPresignPartRefused(t *testing.T) {
	s, _ := minioStore(t, nil)
	ctx := t.Context()
	const key = "users/u1/refused.bin"
	id, err := s.CreateUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 10
	good := randomBytes(t, size)
	sum := sha256Sum(good)
	other := bytes.Clone(good)
	other[size/2] ^= 1
	otherSum := base64.StdEncoding.EncodeToString(sha256Sum(other))

	presign := func(t *testing.T, n int, ttl time.Duration) blob.PresignedRequest {
		t.Helper()
		pr, err := s.PresignPart(ctx, key, id, n, size, sum, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return pr
	}
	setHeader := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }

	cases := []struct {
		name string
		body []byte
		edit func(*http.Request)
		raw  bool // declare the signed length, send body, close
	}{
		{name: "wrong bytes of the right length", body: other},
		{name: "wrong bytes with the checksum header altered to match them", body: other, edit: setHeader("X-Amz-Checksum-Sha256", otherSum)},
		{name: "checksum header missing", body: good, edit: func(r *http.Request) { r.Header.Del("X-Amz-Checksum-Sha256") }},
		{name: "checksum header missing, wrong bytes", body: other, edit: func(r *http.Request) { r.Header.Del("X-Amz-Checksum-Sha256") }},
		{name: "checksum header altered", body: good, edit: setHeader("X-Amz-Checksum-Sha256", otherSum)},
		{name: "body one byte longer", body: append(bytes.Clone(good), 'x')},
		{name: "body one byte shorter", body: good[:size-1]},
		{name: "body truncated under the signed Content-Length", body: good[:size/2], raw: true},
		{name: "extra unsigned checksum header of the wrong bytes", body: other, edit: func(r *http.Request) {
			var c [4]byte
			v := crc32.ChecksumIEEE(other)
			c[0], c[1], c[2], c[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			r.Header.Set("X-Amz-Checksum-Crc32", base64.StdEncoding.EncodeToString(c[:]))
		}},
		{name: "part number changed in the URL", body: good, edit: func(r *http.Request) {
			q := r.URL.Query()
			q.Set("partNumber", strconv.Itoa(atoi(t, q.Get("partNumber"))+1000))
			r.URL.RawQuery = q.Encode()
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := i + 1
			pr := presign(t, n, time.Hour)
			var a answer
			if c.raw {
				a = sendRaw(t, pr, c.body)
			} else {
				a = send(t, pr, c.body, c.edit)
			}
			t.Logf("answer: %v", a)
			if c.raw {
				// A server may also just drop the connection.
				if a.ok() {
					t.Errorf("accepted: %v", a)
				}
			} else if !a.refused() {
				t.Errorf("not refused with 4xx: %v", a)
			}
			stored := storedParts(t, s, key, id)
			if p, ok := stored[n]; ok {
				t.Errorf("part %d stored anyway: %+v", n, p)
			}
			if p, ok := stored[n+1000]; ok {
				t.Errorf("part %d stored anyway: %+v", n+1000, p)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		n := len(cases) + 1
		pr := presign(t, n, s3blob.MinPresignTTL)
		// The backend refuses once now - X-Amz-Date > X-Amz-Expires.
		time.Sleep(time.Until(pr.Expires) + 300*time.Millisecond)
		a := send(t, pr, good, nil)
		t.Logf("answer: %v", a)
		if !a.refused() {
			t.Errorf("not refused with 4xx: %v", a)
		}
		if p, ok := storedParts(t, s, key, id)[n]; ok {
			t.Errorf("part %d stored anyway: %+v", n, p)
		}
	})

	// Control: the same kind of request, sent as given, is accepted (so
	// the refusals above are the edits' doing), and a refused attempt at
	// a stored part leaves it as it was.
	t.Run("control", func(t *testing.T) {
		n := len(cases) + 2
		pr := presign(t, n, time.Hour)
		if a := send(t, pr, good, nil); !a.ok() {
			t.Fatalf("right bytes: %v", a)
		}
		a := send(t, pr, other, nil)
		t.Logf("wrong bytes over a stored part: %v", a)
		if !a.refused() {
			t.Errorf("wrong bytes over a stored part: %v", a)
		}
		p, ok := storedParts(t, s, key, id)[n]
		if !ok || p.Size != size || !bytes.Equal(p.SHA256, sum) {
			t.Errorf("part %d = %+v (present %v), want the right one", n, p, ok)
		}
	})
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("atoi %q: %v", s, err)
	}
	return n
}

// Presigned requests name the public endpoint; everything else the store
// does goes to Endpoint.
func TestPresignPartPublicEndpoint(t *testing.T) {
	env := testenv.MinIO(t)
	u, err := url.Parse(env.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != "127.0.0.1" {
		t.Skipf("MinIO endpoint %s: the test renames 127.0.0.1", env.Endpoint)
	}
	ctx := t.Context()
	body := randomBytes(t, 1000)
	sum := sha256Sum(body)

	t.Run("reachable", func(t *testing.T) {
		// Another name of the same server: the signature covers the Host
		// the client sends, so this works only if the request was signed
		// for that name.
		public := "http://localhost:" + u.Port()
		s, env := minioStore(t, func(c *s3blob.Config) { c.PublicEndpoint = public })
		id, err := s.CreateUpload(ctx, "pub/obj", "")
		if err != nil {
			t.Fatal(err)
		}
		pr, err := s.PresignPart(ctx, "pub/obj", id, 1, int64(len(body)), sum, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(pr.URL, public+"/"+env.Bucket+"/pub/obj?") {
			t.Errorf("URL %s is not path-style under %s", pr.URL, public)
		}
		if a := send(t, pr, body, nil); !a.ok() {
			t.Fatalf("%v", a)
		}
		if p, ok := storedParts(t, s, "pub/obj", id)[1]; !ok || !bytes.Equal(p.SHA256, sum) {
			t.Errorf("part 1 = %+v (present %v)", p, ok)
		}
	})

	t.Run("only for presigning", func(t *testing.T) {
		for _, public := range []string{"https://storage.example.invalid", "storage.example.invalid"} {
			s, env := minioStore(t, func(c *s3blob.Config) { c.PublicEndpoint = public })
			if err := roundTrip(s, t); err != nil { // talks to Endpoint
				t.Fatal(err)
			}
			pr, err := s.PresignPart(ctx, "ca/k", "some-upload", 1, 5, sum, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(pr.URL, "https://storage.example.invalid/"+env.Bucket+"/ca/k?") {
				t.Errorf("PublicEndpoint %q: URL %s", public, pr.URL)
			}
		}
	})

	t.Run("default", func(t *testing.T) {
		s := newStore(t, config(env))
		pr, err := s.PresignPart(ctx, "ca/k", "some-upload", 1, 5, sum, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(pr.URL, env.Endpoint+"/"+env.Bucket+"/ca/k?") {
			t.Errorf("URL %s is not under %s", pr.URL, env.Endpoint)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		for _, public := range []string{"ftp://host", "http://", "http://host/?q=1", "http://[::1"} {
			c := config(env)
			c.PublicEndpoint = public
			if _, err := s3blob.New(ctx, c); err == nil {
				t.Errorf("PublicEndpoint %q accepted", public)
			}
		}
	})
}

func TestConfigFromEnvPublicEndpoint(t *testing.T) {
	env := map[string]string{"LYVE_ENDPOINT": "http://minio:9000"}
	getenv := func(k string) string { return env[k] }
	if c, ok := s3blob.ConfigFromEnv(getenv); !ok || c.PublicEndpoint != "" {
		t.Errorf("unset: %+v %v", c, ok)
	}
	env["JETTY_S3_PUBLIC_ENDPOINT"] = " https://s3.example.com "
	if c, _ := s3blob.ConfigFromEnv(getenv); c.Endpoint != "http://minio:9000" || c.PublicEndpoint != "https://s3.example.com" {
		t.Errorf("set: %+v", c)
	}
	delete(env, "LYVE_ENDPOINT")
	if _, ok := s3blob.ConfigFromEnv(getenv); ok {
		t.Error("ok without LYVE_ENDPOINT")
	}
}

// countingTransport fails every request and counts them.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, errors.New("no network in this test")
}

// Bad arguments are refused before anything is signed or sent; and
// presigning never sends anything anyway.
func TestPresignPartInvalid(t *testing.T) {
	tr := &countingTransport{}
	s, err := s3blob.New(context.Background(), s3blob.Config{
		Endpoint: "http://127.0.0.1:1", Bucket: "b", AccessKeyID: "id", SecretAccessKey: "secret",
		HTTPClient: &http.Client{Transport: tr},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sum := sha256Sum([]byte("part"))
	type args struct {
		key, id string
		n       int
		size    int64
		sum     []byte
		ttl     time.Duration
	}
	ok := args{"users/u/k.bin", "upload-1", 1, 4, sum, time.Hour}
	for _, c := range []struct {
		name string
		edit func(*args)
		want error // nil: any error
	}{
		{"bad key", func(a *args) { a.key = "users/../k" }, blob.ErrInvalidKey},
		{"empty key", func(a *args) { a.key = "" }, blob.ErrInvalidKey},
		{"no upload id", func(a *args) { a.id = "" }, blob.ErrNotFound},
		{"number 0", func(a *args) { a.n = 0 }, nil},
		{"number 10001", func(a *args) { a.n = blob.MaxParts + 1 }, nil},
		{"size 0", func(a *args) { a.size = 0 }, nil},
		{"size -1", func(a *args) { a.size = -1 }, nil},
		{"31-byte digest", func(a *args) { a.sum = sum[:31] }, nil},
		{"no digest", func(a *args) { a.sum = nil }, nil},
		{"ttl 0", func(a *args) { a.ttl = 0 }, nil},
		{"ttl under a second", func(a *args) { a.ttl = 999 * time.Millisecond }, nil},
		{"ttl over 7 days", func(a *args) { a.ttl = s3blob.MaxPresignTTL + time.Second }, nil},
	} {
		a := ok
		c.edit(&a)
		_, err := s.PresignPart(ctx, a.key, a.id, a.n, a.size, a.sum, a.ttl)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	for _, a := range []args{ok, {ok.key, ok.id, blob.MaxParts, 1, sum, s3blob.MaxPresignTTL}, {ok.key, ok.id, 1, 5 << 30, sum, s3blob.MinPresignTTL}} {
		pr, err := s.PresignPart(ctx, a.key, a.id, a.n, a.size, a.sum, a.ttl)
		if err != nil {
			t.Errorf("%+v: %v", a, err)
			continue
		}
		if d := time.Until(pr.Expires); d > a.ttl || d < a.ttl-2*time.Second {
			t.Errorf("%+v: expires in %v", a, d)
		}
	}
	if n := tr.n.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}
