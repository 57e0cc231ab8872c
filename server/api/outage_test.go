package api_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// checkOutage asserts an answer is 503 unavailable with a Retry-After
// and a body that names none of leaks.
func checkOutage(t *testing.T, what string, status int, header http.Header, raw string, leaks ...string) {
	t.Helper()
	if status != 503 || !strings.Contains(raw, `"code":"unavailable"`) || header.Get("Retry-After") != "5" {
		t.Errorf("%s: %d Retry-After %q %s; want 503 unavailable with Retry-After: 5", what, status, header.Get("Retry-After"), raw)
	}
	for _, s := range leaks {
		if strings.Contains(strings.ToLower(raw), strings.ToLower(s)) {
			t.Errorf("%s: the answer %s reveals %q", what, raw, s)
		}
	}
}

// TestDatabaseOutageIs503: with PostgreSQL cut off (a toxiproxy proxy in
// front of it, disabled) user calls answer 503 unavailable with
// Retry-After, naming neither the database's address nor the driver;
// when the link is back they answer 200. A closed store (a bug, not an
// outage) stays 500 without Retry-After.
func TestDatabaseOutageIs503(t *testing.T) {
	u, err := url.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.Toxiproxy(t).Proxy(t, u.Host)
	u.Host = p.Addr()
	st, err := sqlstore.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lim := memory.NewLimiter()
	t.Cleanup(func() { lim.Close() })
	e := newEnvConfig(t, st, lim, nil, nil, nil)
	key, secret := e.provision("usr_outage_db", "pro")
	h := userHeaders(key, secret)

	p.Disable(t)
	for _, path := range []string{"/api/agentcache/quota", "/api/whoami"} {
		r := e.do("GET", path, "", h)
		checkOutage(t, path+" with the database cut off", r.status, r.header, r.raw, p.Addr(), u.Port(), "sqlstore", "pgx", "dial", "refused", "postgres")
	}
	r := e.do("POST", "/api/agentcache/provision", `{"agentcache_user_id":"usr_outage_2","agentcache_email":"o@example.com","tier":"pro"}`, partnerHeaders())
	checkOutage(t, "provision with the database cut off", r.status, r.header, r.raw, p.Addr(), "sqlstore")
	if !strings.Contains(e.logs.String(), "dependency unavailable") {
		t.Error("the outage was not logged")
	}
	p.Enable(t)
	if r := e.do("GET", "/api/agentcache/quota", "", h); r.status != 200 {
		t.Fatalf("quota with the database back: %d %s", r.status, r.raw)
	}

	st.Close()
	r = e.do("GET", "/api/agentcache/quota", "", h)
	if r.status != 500 || r.header.Get("Retry-After") != "" || !strings.Contains(r.raw, `"code":"internal"`) {
		t.Fatalf("closed store (a bug): %d Retry-After %q %s; want a bare 500", r.status, r.header.Get("Retry-After"), r.raw)
	}
}

// TestStorageOutageIs503: with the object store at a port nothing
// listens on, uploads and session opens answer 503 unavailable with
// Retry-After, naming neither the endpoint nor the SDK.
func TestStorageOutageIs503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	s3, err := s3blob.New(context.Background(), s3blob.Config{Endpoint: "http://" + dead, Region: "us-east-1",
		AccessKeyID: "outage-access-key", SecretAccessKey: "outage-secret-key", Bucket: "outage-bucket"})
	if err != nil {
		t.Fatal(err)
	}
	b := backends()[0]
	e := newEnvBlobs(t, b.store(t), b.limit(t), s3)
	key, secret := e.provision("usr_outage_s3", "pro")
	leaks := []string{dead, "outage-access-key", "outage-secret-key", "outage-bucket", "s3blob", "dial", "refused", "users/"}

	data := randBytes(3, 64<<10)
	req, _ := http.NewRequest("POST", e.url+"/api/storage/upload", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	req.Header.Set("X-Filename", "outage.bin")
	t0 := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	res.Body.Close()
	t.Logf("upload answered after %v (the SDK's own retries)", time.Since(t0).Round(time.Millisecond))
	checkOutage(t, "upload with storage down", res.StatusCode, res.Header, buf.String(), leaks...)

	t0 = time.Now()
	o := e.open(key, secret, plan("outage.bin", randBytes(4, 6<<20), 5<<20))
	t.Logf("open took %v", time.Since(t0))
	if o.status != 503 || o.Code != "unavailable" {
		t.Errorf("session open with storage down: %d %s", o.status, o.raw)
	}
	for _, s := range leaks {
		if strings.Contains(o.raw, s) {
			t.Errorf("session open with storage down: %s reveals %q", o.raw, s)
		}
	}
	if a := e.account("usr_outage_s3"); a.StorageReservedBytes != 0 || a.StorageUsedBytes != 0 {
		t.Errorf("after the refused calls: reserved %d, used %d", a.StorageReservedBytes, a.StorageUsedBytes)
	}
}
