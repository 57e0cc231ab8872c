package console_test

// Seeding for the overview, edges and screenshot tests: accounts
// provisioned, files uploaded and a relay registered through the real
// API, as AgentCache, users and `jetty edge` do.

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/relay"
)

// edgeSecret is the test servers' JETTY_EDGE_SECRET.
const edgeSecret = "console_test_edge_9d3f6b2a8c1e4f70b5a2d9c8e7f61b03"

// withEdges lets relays register and keeps the background jobs quiet
// for the test's length (the test rolls usage up itself).
func withEdges(c *app.Config) {
	c.EdgeSecret = edgeSecret
	c.JobsInterval = time.Hour
}

// creds are an account's key and secret.
type creds struct{ key, secret string }

// provision provisions userID on tier through the partner API.
func (s *srv) provision(t *testing.T, userID, tier string) creds {
	t.Helper()
	k, sec := testenv.Provision(t, s.url, webhookSecret, userID, tier)
	return creds{k, sec}
}

// partnerCall makes a partner call and returns its status.
func (s *srv) partnerCall(t *testing.T, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", s.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+webhookSecret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// upload stores data as name through POST /api/storage/upload.
func (s *srv) upload(t *testing.T, c creds, name string, data []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.url+"/api/storage/upload", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("X-API-Secret", c.secret)
	req.Header.Set("X-Filename", name)
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %s", name, res.Status)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// seeded is what seed wrote.
type seeded struct {
	pro, starter creds
	provisions   int64 // provisioning calls made
	provisionsOK int64
}

// seed provisions three accounts (pro, starter, free) and one refused
// call (the user exists), suspends the free one, uploads three files (the
// second the first's bytes under another name: deduplicated), waits
// until the request log holds the provisioning calls (it is written in
// batches), and rolls the day's usage up.
func seed(t *testing.T, s *srv) seeded {
	t.Helper()
	ctx := context.Background()
	d := seeded{
		pro:     s.provision(t, "usr_overview_pro", "pro"),
		starter: s.provision(t, "usr_overview_starter", "starter"),
	}
	s.provision(t, "usr_overview_free", "free")
	if st := s.partnerCall(t, "/api/agentcache/provision", `{"agentcache_user_id":"usr_overview_pro","agentcache_email":"x@example.com","tier":"pro"}`); st != http.StatusConflict {
		t.Fatalf("provisioning an existing user: %d, want 409", st)
	}
	d.provisions, d.provisionsOK = 4, 3
	if st := s.partnerCall(t, "/api/agentcache/suspend", `{"agentcache_user_id":"usr_overview_free"}`); st != http.StatusOK {
		t.Fatalf("suspend: %d", st)
	}
	same := randomBytes(300 << 10)
	s.upload(t, d.pro, "report.pdf", same)
	s.upload(t, d.pro, "report-copy.pdf", same)
	s.upload(t, d.starter, "notes.txt", randomBytes(40<<10))
	for start := time.Now(); ; {
		o, err := s.Store().Overview(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if o.Provisioning[len(o.Provisioning)-1].Calls >= d.provisions {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the request log never recorded the provisioning calls")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The roll-up counts the day's requests from the log, now written.
	if _, err := s.Store().RollupUsageDay(ctx, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	return d
}

// startRelay runs a `jetty edge` relay in-process at location loc
// against s until the test ends; it returns once the origin accepted its
// first heartbeat (relay.Start waits for the registration). Its
// heartbeats are a minute apart, so it stays healthy for the test.
func startRelay(t *testing.T, s *srv, id, loc string) {
	t.Helper()
	r, err := relay.New(context.Background(), relay.Config{Origin: s.url, ID: id, Location: loc, Secret: edgeSecret, Interval: time.Minute, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx, ln); err != nil {
		cancel()
		t.Fatalf("relay: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := r.Wait(); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

// deadRelay records a relay at loc whose last heartbeat was an hour ago
// (a relay killed without deregistering, before the jobs prune it).
func deadRelay(t *testing.T, s *srv, id, loc string) {
	t.Helper()
	_, err := s.Store().EdgeHeartbeat(context.Background(), server.EdgeNode{
		ID: id, URL: "http://127.0.0.1:1", LocationID: loc, Mode: "relay", Capacity: 16, Interval: 5 * time.Second,
	}, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
}
