package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob/fsblob"
)

// stallRaw sends "METHOD URL" with headers and a Content-Length of size,
// then only the bytes of sent, and waits for the answer. It returns the
// status line and how long the server took to give it.
func stallRaw(t *testing.T, method, rawURL, headers string, size int, sent []byte) (string, time.Duration) {
	t.Helper()
	u, _ := url.Parse(rawURL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n", method, u.RequestURI(), u.Host, size, headers)
	c.Write(sent)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, _ := io.ReadAll(io.LimitReader(c, 4096))
	line, _, _ := strings.Cut(string(b), "\r\n")
	return line, time.Since(start)
}

// TestStalledBodiesFreeTheirSlot: a chunk PUT or a single-request upload
// whose body stops mid-way is answered 408 once the idle time passes,
// stores nothing, holds no reservation, and the same upload then succeeds.
func TestStalledBodiesFreeTheirSlot(t *testing.T) {
	b := backends()[0]
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const idle = 300 * time.Millisecond
	e := newEnvConfig(t, b.store(t), b.limit(t), fs, nil, func(c *api.Config) { c.BodyIdleTimeout = idle })
	key, secret := e.provision("usr_stall", "pro")

	data := randBytes(7, 6*mib)
	m := plan("stall.bin", data, 5*mib)
	o := e.open(key, secret, m)
	if o.Session == nil {
		t.Fatalf("open: %d %s", o.status, o.raw)
	}
	s := o.Session
	chunk0 := strings.Replace(s.ChunkURL, "{index}", "0", 1)
	h := fmt.Sprintf("Authorization: Bearer %s\r\nX-Chunk-SHA256: %s\r\n", s.Token, m.Chunks[0].SHA256)
	status, d := stallRaw(t, "PUT", chunk0, h, int(m.Chunks[0].Size), data[:64<<10])
	if !strings.Contains(status, " 408 ") {
		t.Fatalf("stalled chunk answered %q after %v, want 408", status, d)
	}
	if d < idle || d > 15*time.Second {
		t.Fatalf("stalled chunk answered after %v (idle %v)", d, idle)
	}
	if st := e.jsonCall("GET", "/api/jetty/sessions/"+s.ID, key, secret, nil); !strings.Contains(st.raw, `"held":[]`) {
		t.Fatalf("after a stalled chunk the session holds: %s", st.raw)
	}
	sendAll(t, s, m, data, []int{0, 1})
	if c := e.jsonCall("POST", "/api/jetty/sessions/"+s.ID+"/complete", key, secret, nil); c.status/100 != 2 {
		t.Fatalf("complete after the stall: %d %s", c.status, c.raw)
	}

	before := e.account("usr_stall")
	h = fmt.Sprintf("Authorization: Bearer %s\r\nX-API-Secret: %s\r\nX-Filename: stalled.bin\r\nContent-Type: application/octet-stream\r\n", key, secret)
	status, d = stallRaw(t, "POST", e.url+"/api/storage/upload", h, 2*mib, data[:1000])
	if !strings.Contains(status, " 408 ") {
		t.Fatalf("stalled upload answered %q after %v, want 408", status, d)
	}
	after := e.account("usr_stall")
	if after.StorageUsedBytes != before.StorageUsedBytes || after.StorageReservedBytes != 0 {
		t.Fatalf("stalled upload left used %d (was %d), reserved %d", after.StorageUsedBytes, before.StorageUsedBytes, after.StorageReservedBytes)
	}
	if r := e.upload(key, secret, "stalled.bin", bytes.NewReader(data[:2*mib]), 2*mib, nil); r.status/100 != 2 {
		t.Fatalf("upload after the stall: %d %s", r.status, r.raw)
	}
}

// TestStalledSmallBodies: behind connguard.Bodies (as the server runs),
// a body that stops short is answered 408 request_timeout once its
// deadline passes on the routes that read it (partner calls by Bearer and
// by signature, a manifest after authentication, with the idle timeout),
// and on a route that never reads it the answer comes and the connection
// closes instead of waiting for the rest forever.
func TestStalledSmallBodies(t *testing.T) {
	b := backends()[0]
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const limit = 300 * time.Millisecond
	e := newEnvConfig(t, b.store(t), b.limit(t), fs, nil, func(c *api.Config) { c.BodyIdleTimeout = limit })
	key, secret := e.provision("usr_stall_small", "pro")
	ts := httptest.NewServer(connguard.Bodies(e.api.Handler(), limit))
	defer ts.Close()

	partner := "Authorization: Bearer " + webhookSecret + "\r\nContent-Type: application/json\r\n"
	signed := "X-Jetty-Signature: t=1,v1=" + strings.Repeat("ab", 32) + "\r\nContent-Type: application/json\r\n"
	user := fmt.Sprintf("Authorization: Bearer %s\r\nX-API-Secret: %s\r\nContent-Type: application/json\r\n", key, secret)
	for _, tc := range []struct {
		name, method, path, headers, want string
	}{
		{"partner bearer", "POST", "/api/agentcache/provision", partner, " 408 "},
		{"partner signed", "POST", "/api/agentcache/provision", signed, " 408 "},
		{"manifest", "POST", "/api/jetty/sessions", user, " 408 "},
		{"unknown route", "POST", "/no/such/route", "", " 404 "},
		{"GET with a body", "GET", "/healthz", "", " 200 "},
	} {
		status, d := stallRaw(t, tc.method, ts.URL+tc.path, tc.headers, 100, []byte(`{"agentcache`))
		if !strings.Contains(status, tc.want) || d < limit || d > 15*time.Second {
			t.Errorf("%s: %q after %v, want%safter the %v deadline", tc.name, status, d, tc.want, limit)
		}
	}
}
