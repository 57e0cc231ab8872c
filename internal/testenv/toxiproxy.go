package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ToxiproxyVersion is the pinned toxiproxy module version
// scripts/toxiproxy.sh installs (github.com/Shopify/toxiproxy/v2).
const ToxiproxyVersion = "v2.5.0"

// Toxi is the toxiproxy server of this test binary (see Toxiproxy). It
// talks to toxiproxy's HTTP JSON API on 127.0.0.1.
type Toxi struct {
	api    string // http://127.0.0.1:PORT
	client *http.Client
}

// Proxy is one toxiproxy proxy: a TCP listener on 127.0.0.1 that forwards
// every connection to an upstream through the toxics added to it.
type Proxy struct {
	toxi     *Toxi
	name     string
	addr     string // 127.0.0.1:PORT, as toxiproxy reports it
	upstream string
}

var (
	toxiOnce sync.Once
	toxiSrv  *Toxi
	toxiErr  error
)

// ToxiproxyBinary finds the toxiproxy server executable:
// $JETTY_TOXIPROXY_BIN, else toxiproxy-server in the tools directory, else
// toxiproxy-server on PATH.
func ToxiproxyBinary() (string, error) {
	if p := os.Getenv("JETTY_TOXIPROXY_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("JETTY_TOXIPROXY_BIN: %w", err)
		}
		return p, nil
	}
	if d := ToolsBin(); d != "" {
		p := filepath.Join(d, "toxiproxy-server")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("toxiproxy-server")
	if err != nil {
		return "", fmt.Errorf("toxiproxy-server not found in $JETTY_TOXIPROXY_BIN, %s or PATH (run ./scripts/toxiproxy.sh)", ToolsBin())
	}
	return p, nil
}

// Toxiproxy returns the toxiproxy server of this test binary. The first
// call starts it (see ToxiproxyBinary) with its API on a free loopback
// port and waits until the API answers; it is killed when the test binary
// exits (Pdeathsig on Linux). When no toxiproxy can be found or started the
// test is skipped, or fails under JETTY_REQUIRE_SERVICES=1.
//
// Tests share the server but not proxies: each test makes its own with
// Proxy, which removes it when the test ends.
func Toxiproxy(t testing.TB) *Toxi {
	t.Helper()
	toxiOnce.Do(startToxiproxy)
	if toxiErr != nil {
		Unavailable(t, "toxiproxy", toxiErr)
	}
	return toxiSrv
}

func newToxi(api string) *Toxi {
	// Proxy: nil: the API is on loopback and must never go through an
	// HTTP proxy from the environment.
	// No keep-alive: a POST on a kept connection that the API server closes
	// as idle at that moment fails with EOF and is not retried (it is not
	// idempotent to net/http); a connection per call costs nothing here.
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	return &Toxi{api: api, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func startToxiproxy() {
	bin, err := ToxiproxyBinary()
	if err != nil {
		toxiErr = err
		return
	}
	// The API port is chosen here (toxiproxy cannot report a port 0 it
	// bound for its API): another process may take it before toxiproxy
	// binds it, in which case toxiproxy exits and we try another.
	for attempt := 0; attempt < 3; attempt++ {
		toxiSrv, err = runToxiproxy(bin)
		if err == nil {
			return
		}
	}
	toxiErr = err
}

func runToxiproxy(bin string) (*Toxi, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	// toxiproxy logs every API request and connection at info/debug.
	cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setPdeathsig(cmd)

	exited, err := startChild(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}

	tx := newToxi(fmt.Sprintf("http://127.0.0.1:%d", port))
	probe := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("toxiproxy exited during start: %s", out.String())
		default:
		}
		resp, err := probe.Get(tx.api + "/version")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return tx, nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("toxiproxy API did not answer within 30s: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends a JSON request to the API and decodes a JSON answer into
// out (when not nil). Statuses other than want are errors carrying
// toxiproxy's message.
func (tx *Toxi) call(method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, tx.api+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := tx.client.Do(req)
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		var apiErr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &apiErr) == nil && apiErr.Error != "" {
			return &toxiError{status: resp.StatusCode, msg: fmt.Sprintf("toxiproxy %s %s: %s: %s", method, path, resp.Status, apiErr.Error)}
		}
		return &toxiError{status: resp.StatusCode, msg: fmt.Sprintf("toxiproxy %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(raw)))}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("toxiproxy %s %s: decoding %q: %w", method, path, raw, err)
		}
	}
	return nil
}

type toxiError struct {
	status int
	msg    string
}

func (e *toxiError) Error() string { return e.msg }

func isToxiStatus(err error, status int) bool {
	var te *toxiError
	return errors.As(err, &te) && te.status == status
}

// proxyJSON is a proxy in toxiproxy's API (POST /proxies,
// POST /proxies/{name}).
type proxyJSON struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  bool   `json:"enabled"`
}

// toxicJSON is a toxic in toxiproxy's API (POST /proxies/{name}/toxics).
type toxicJSON struct {
	Name       string         `json:"name,omitempty"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float64        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// Proxy creates a proxy, with a name unique to t, that listens on
// 127.0.0.1 on a free port (toxiproxy binds 127.0.0.1:0 and reports the
// port) and forwards every connection to upstream (host:port; a URL such
// as an httptest.Server's is reduced to its host:port). It starts
// enabled, with no toxics, and is removed when the test ends (closing its
// connections).
func (tx *Toxi) Proxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	return tx.ProxyOn(t, "127.0.0.1", upstream)
}

// ProxyOn is Proxy listening on host (an address of this machine, such as
// the server end of a veth pair that clients in another network namespace
// reach) instead of 127.0.0.1.
func (tx *Toxi) ProxyOn(t testing.TB, host, upstream string) *Proxy {
	t.Helper()
	if strings.Contains(upstream, "://") {
		u, err := url.Parse(upstream)
		if err != nil {
			t.Fatalf("testenv: proxy upstream %q: %v", upstream, err)
		}
		upstream = u.Host
	}
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		t.Fatalf("testenv: proxy upstream %q is not host:port: %v", upstream, err)
	}
	name := RandomName(proxyNamePrefix(t.Name()))
	var got proxyJSON
	err := tx.call("POST", "/proxies", proxyJSON{Name: name, Listen: net.JoinHostPort(host, "0"), Upstream: upstream, Enabled: true}, &got, http.StatusCreated)
	if err != nil {
		t.Fatalf("testenv: create proxy to %s: %v", upstream, err)
	}
	p := &Proxy{toxi: tx, name: name, addr: got.Listen, upstream: upstream}
	t.Cleanup(func() {
		err := tx.call("DELETE", p.path(""), nil, nil, http.StatusNoContent)
		if err != nil && !isToxiStatus(err, http.StatusNotFound) {
			t.Logf("testenv: removing proxy %s: %v", name, err)
		}
	})
	gotHost, port, err := net.SplitHostPort(got.Listen)
	if err != nil || gotHost != host || port == "0" || port == "" {
		t.Fatalf("testenv: toxiproxy reports proxy %s listening on %q, want %s:<port>", name, got.Listen, host)
	}
	return p
}

// proxyNamePrefix makes a readable, URL-safe prefix from a test name.
func proxyNamePrefix(testName string) string {
	var b strings.Builder
	for _, r := range testName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 48 {
			break
		}
	}
	return b.String() + "-"
}

func (p *Proxy) path(suffix string) string {
	return "/proxies/" + url.PathEscape(p.name) + suffix
}

// Name is the proxy's name in toxiproxy.
func (p *Proxy) Name() string { return p.name }

// Addr is the host:port to dial to go through the proxy.
func (p *Proxy) Addr() string { return p.addr }

// URL is "http://" + Addr(), for an HTTP upstream.
func (p *Proxy) URL() string { return "http://" + p.addr }

// AddToxic adds a toxic of type typ (latency, bandwidth, slow_close,
// timeout, reset_peer, slicer, limit_data) on stream ("upstream": data
// from the client to upstream; "downstream": from upstream to the client)
// with toxiproxy's attributes for that type, and returns its name. An empty
// name gets toxiproxy's default, "<type>_<stream>"; names are unique per
// proxy. toxicity is the probability (0 to 1) that a connection gets the
// toxic, drawn per connection. The toxic applies to open connections and
// new ones until RemoveToxic or the end of the test.
func (p *Proxy) AddToxic(t testing.TB, name, typ, stream string, toxicity float64, attrs map[string]any) string {
	t.Helper()
	if stream != "upstream" && stream != "downstream" {
		t.Fatalf("testenv: toxic stream %q: want upstream or downstream", stream)
	}
	if attrs == nil {
		attrs = map[string]any{}
	}
	var got toxicJSON
	err := p.toxi.call("POST", p.path("/toxics"), toxicJSON{Name: name, Type: typ, Stream: stream, Toxicity: toxicity, Attributes: attrs}, &got, http.StatusOK)
	if err != nil {
		t.Fatalf("testenv: add %s toxic to proxy %s: %v", typ, p.name, err)
	}
	return got.Name
}

// RemoveToxic removes the toxic called name.
func (p *Proxy) RemoveToxic(t testing.TB, name string) {
	t.Helper()
	if err := p.toxi.call("DELETE", p.path("/toxics/"+url.PathEscape(name)), nil, nil, http.StatusNoContent); err != nil {
		t.Fatalf("testenv: remove toxic %s from proxy %s: %v", name, p.name, err)
	}
}

// Latency delays all data on stream by ms milliseconds, ± up to jitterMS
// (drawn per chunk). It returns the toxic's name, "latency_<stream>".
func (p *Proxy) Latency(t testing.TB, stream string, ms, jitterMS int) string {
	t.Helper()
	return p.AddToxic(t, "latency_"+stream, "latency", stream, 1, map[string]any{"latency": ms, "jitter": jitterMS})
}

// Bandwidth limits each connection's stream to kbPerSec kilobytes (of
// 1000 bytes) per second. It returns the toxic's name,
// "bandwidth_<stream>".
func (p *Proxy) Bandwidth(t testing.TB, stream string, kbPerSec int) string {
	t.Helper()
	return p.AddToxic(t, "bandwidth_"+stream, "bandwidth", stream, 1, map[string]any{"rate": kbPerSec})
}

// ResetPeer resets connections (TCP RST): timeoutMS after the first data
// on stream arrives (0: at once), for the given fraction of connections.
// Connections opened before the toxic was added are closed normally (FIN)
// instead: toxiproxy sets SO_LINGER 0 when a connection starts. It returns
// the toxic's name, "reset_peer_<stream>".
func (p *Proxy) ResetPeer(t testing.TB, stream string, timeoutMS int, toxicity float64) string {
	t.Helper()
	return p.AddToxic(t, "reset_peer_"+stream, "reset_peer", stream, toxicity, map[string]any{"timeout": timeoutMS})
}

// Timeout drops all data on stream and, when timeoutMS > 0, closes the
// connection timeoutMS after the toxic starts on it (0: never closes: the
// connection just hangs), for the given fraction of connections. It
// returns the toxic's name, "timeout_<stream>".
func (p *Proxy) Timeout(t testing.TB, stream string, timeoutMS int, toxicity float64) string {
	t.Helper()
	return p.AddToxic(t, "timeout_"+stream, "timeout", stream, toxicity, map[string]any{"timeout": timeoutMS})
}

// SlowClose delays the close of stream (its FIN) by delayMS milliseconds
// after the sending side closed. It returns the toxic's name,
// "slow_close_<stream>".
func (p *Proxy) SlowClose(t testing.TB, stream string, delayMS int) string {
	t.Helper()
	return p.AddToxic(t, "slow_close_"+stream, "slow_close", stream, 1, map[string]any{"delay": delayMS})
}

// Disable stops the proxy: its open connections are closed and new ones
// are refused until Enable.
func (p *Proxy) Disable(t testing.TB) {
	t.Helper()
	p.setEnabled(t, false)
}

// Enable starts the proxy again on the same address (toxiproxy rebinds
// the port it had; in the unlikely case another socket took it meanwhile,
// the test fails). Toxics are kept.
func (p *Proxy) Enable(t testing.TB) {
	t.Helper()
	p.setEnabled(t, true)
}

func (p *Proxy) setEnabled(t testing.TB, enabled bool) {
	t.Helper()
	var got proxyJSON
	if err := p.toxi.call("POST", p.path(""), map[string]bool{"enabled": enabled}, &got, http.StatusOK); err != nil {
		t.Fatalf("testenv: set proxy %s enabled=%v: %v", p.name, enabled, err)
	}
	if got.Enabled != enabled {
		t.Fatalf("testenv: proxy %s reports enabled=%v after setting %v", p.name, got.Enabled, enabled)
	}
}
