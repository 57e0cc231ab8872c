package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
)

// silentFDLimit is the descriptor limit the server and the relay run
// under, and silentConns how many silent connections they are sent: more
// than the limit, which exhausted it before connections were capped.
const (
	silentFDLimit = 256
	silentConns   = 300
	silentBody    = 2 * time.Second // JETTY_BODY_TIMEOUT of the children
)

// TestSilentConnectionsUnderFDLimit: a real server process and a real
// relay process, each under `prlimit --nofile=256`, are sent 300
// connections that send their headers and declare a small body they
// never send (on a 404 route, a GET with a body, an unauthenticated call,
// a probe). /healthz and /readyz keep answering within 5 s, a real user
// can provision and call, and every silent connection is closed by the
// server within the body timeout (2 s here) plus slack. Before, the
// silent connections were held forever (Go's discard of an unread body
// blocks) and exhausted the descriptors: /healthz got no answer.
func TestSilentConnectionsUnderFDLimit(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Unavailable(t, "prlimit (util-linux)", err)
	}
	wrap := []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", silentFDLimit, silentFDLimit), "--"}
	env := []string{"AGENTCACHE_WEBHOOK_SECRET=" + e2eSecret, "JETTY_EDGE_SECRET=" + cmdEdgeSecret,
		"JETTY_BODY_TIMEOUT=" + silentBody.String(), "JETTY_METRICS_TOKEN=" + silentMetricsToken,
		"DATABASE_URL=", "LYVE_ENDPOINT=", "REDIS_URL=", "JETTY_METRICS_LISTEN="}
	srv := startChildOpts(t, childOpts{wrap: wrap}, env, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	if n := childNofile(t, srv); n != silentFDLimit {
		t.Fatalf("the server runs with %d descriptors, want %d", n, silentFDLimit)
	}

	t.Run("server", func(t *testing.T) {
		kinds := []string{
			"POST /no/such/route HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
			"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
			"POST /api/agentcache/provision HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
			"POST /api/jetty/probe HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
		}
		silentAttack(t, srv.url, kinds, func(t *testing.T) {
			// A real user, mid-attack: provisioned and served, each call
			// within 5 s.
			cl := &http.Client{Timeout: 5 * time.Second}
			user := testenv.RandomName("usr_silent")
			req, _ := http.NewRequest("POST", srv.url+"/api/agentcache/provision",
				strings.NewReader(`{"agentcache_user_id":"`+user+`","agentcache_email":"`+user+`@example.com","tier":"pro"}`))
			req.Header.Set("Authorization", "Bearer "+e2eSecret)
			req.Header.Set("Content-Type", "application/json")
			var acct struct {
				Account struct {
					APIKey    string `json:"api_key"`
					APISecret string `json:"api_secret"`
				} `json:"account"`
			}
			res, err := cl.Do(req)
			if err != nil {
				t.Fatalf("provision during the attack: %v", err)
			}
			err = json.NewDecoder(res.Body).Decode(&acct)
			res.Body.Close()
			if err != nil || res.StatusCode != 201 {
				t.Fatalf("provision during the attack: %d %v", res.StatusCode, err)
			}
			req, _ = http.NewRequest("GET", srv.url+"/api/agentcache/quota", nil)
			req.Header.Set("Authorization", "Bearer "+acct.Account.APIKey)
			req.Header.Set("X-API-Secret", acct.Account.APISecret)
			if res, err = cl.Do(req); err != nil {
				t.Fatalf("quota during the attack: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("quota during the attack: %d", res.StatusCode)
			}
		})
		m := childMetrics(t, srv.url)
		t.Logf("server metrics: open %v, unauthenticated %v, evicted %v, refused %v",
			m["jetty_connections_open"], m["jetty_connections_unauthenticated"], m["jetty_connections_evicted_total"], m["jetty_connections_refused_total"])
	})

	t.Run("relay", func(t *testing.T) {
		relay := startChildOpts(t, childOpts{wrap: wrap, ready: "jetty edge relay serving"},
			[]string{"JETTY_EDGE_SECRET=" + cmdEdgeSecret, "JETTY_BODY_TIMEOUT=" + silentBody.String(), "LYVE_ENDPOINT="},
			"edge", "--origin", srv.url, "--listen", "127.0.0.1:0", "--heartbeat", "500ms", "--no-s3")
		if n := childNofile(t, relay); n != silentFDLimit {
			t.Fatalf("the relay runs with %d descriptors, want %d", n, silentFDLimit)
		}
		kinds := []string{
			"POST /no/such/route HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
			"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
			"PUT /api/jetty/sessions/s1/chunks/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
			"POST /api/jetty/probe HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
		}
		silentAttack(t, relay.url, kinds, nil)
	})
}

const silentMetricsToken = "silent_metrics_6f2b9d4e1a8c7f3e5b0d2a9c4e7f1b8d"

// silentAttack opens silentConns connections to base, round-robin over
// kinds (raw requests whose bodies stop short), checks /healthz and
// /readyz (relays have none) while they are open, runs during (if any),
// and then checks that the server closed every one of them in time.
func silentAttack(t *testing.T, base string, kinds []string, during func(t *testing.T)) {
	u, _ := url.Parse(base)
	closedAfter := make([]time.Duration, silentConns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range silentConns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		io.WriteString(c, kinds[i%len(kinds)]) // may fail: the server may have closed it already
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			opened := time.Now()
			c.SetReadDeadline(opened.Add(30 * time.Second))
			io.Copy(io.Discard, c)
			closedAfter[i] = time.Since(opened)
		}()
	}
	t.Logf("%d silent connections opened in %v", silentConns, time.Since(start).Round(time.Millisecond))

	var worst time.Duration
	for round := range 3 {
		for _, path := range []string{"/healthz", "/readyz"} {
			if path == "/readyz" && strings.Contains(kinds[2], "/chunks/") {
				continue // relays answer /healthz only
			}
			d, status, err := quickGet(base + path)
			if err != nil || status != 200 {
				t.Fatalf("round %d: %s during the attack: %d, %v after %v", round, path, status, err, d.Round(time.Millisecond))
			}
			worst = max(worst, d)
		}
		time.Sleep(700 * time.Millisecond)
	}
	t.Logf("slowest /healthz or /readyz during the attack: %v", worst.Round(time.Millisecond))
	if during != nil {
		during(t)
	}

	wg.Wait()
	sorted := append([]time.Duration(nil), closedAfter...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("silent connections closed by the server after: median %v, p99 %v, max %v",
		sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)*99/100].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	// The body timeout, plus the header timeout's worth of slack for a
	// loaded machine: never the 30 s the reads wait for.
	if limit := silentBody + 10*time.Second; sorted[len(sorted)-1] > limit {
		held := 0
		for _, d := range sorted {
			if d > limit {
				held++
			}
		}
		t.Fatalf("%d of %d silent connections were still open after %v", held, silentConns, limit)
	}
}

// quickGet asks for u on a new connection and reports how long the
// answer took; it gives up after 5 s.
func quickGet(u string) (time.Duration, int, error) {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	res, err := cl.Get(u)
	if err != nil {
		return time.Since(t0), 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return time.Since(t0), res.StatusCode, nil
}

// childNofile reads the descriptor limit the child runs under.
func childNofile(t *testing.T, c *child) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", c.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			var soft int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "Max open files")), "%d", &soft)
			return soft
		}
	}
	t.Fatal("no 'Max open files' line")
	return 0
}

// childMetrics scrapes the child's /metrics (with the test's token) into
// name → value for the series without labels.
func childMetrics(t *testing.T, base string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+silentMetricsToken)
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			out[name] = v
		}
	}
	return out
}
