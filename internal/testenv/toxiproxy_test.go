package testenv_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
)

// These tests check that the shaping really happens. Timing asserts are
// lower bounds the toxics guarantee, plus "clearly faster without the
// toxic" comparisons with wide margins, so a loaded machine makes them
// slower, not flaky.

// echoServer accepts connections on 127.0.0.1 and echoes each back until
// the client closes its side, then closes.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// minRoundTrip is the fastest of n one-byte round trips on c.
func minRoundTrip(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	buf := make([]byte, 1)
	for i := 0; i < n; i++ {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("round trip %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("round trip %d: read: %v", i, err)
		}
		if d := time.Since(start); d < best {
			best = d
		}
		if buf[0] != byte(i) {
			t.Fatalf("round trip %d: echoed %d", i, buf[0])
		}
	}
	return best
}

// transfer sends n bytes through c to the echo server and returns how long
// until the last of them came back.
func transfer(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := bytes.Repeat([]byte("jetty toxiproxy "), n/16)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	d := time.Since(start)
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echo differs from what was sent")
	}
	return d
}

func TestToxiproxyLatency(t *testing.T) {
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))

	base := minRoundTrip(t, dial(t, p.Addr()), 5)
	if name := p.Latency(t, "downstream", 100, 0); name != "latency_downstream" {
		t.Errorf("toxic name %q, want latency_downstream", name)
	}
	slow := minRoundTrip(t, dial(t, p.Addr()), 3)
	t.Logf("round trip: %v without the toxic, %v with 100 ms downstream latency", base, slow)
	if slow < 100*time.Millisecond {
		t.Errorf("round trip with 100 ms latency took %v, want >= 100ms", slow)
	}
	if slow-base < 50*time.Millisecond {
		t.Errorf("latency added only %v (%v against %v)", slow-base, slow, base)
	}

	p.RemoveToxic(t, "latency_downstream")
	if again := minRoundTrip(t, dial(t, p.Addr()), 5); again >= slow-50*time.Millisecond {
		t.Errorf("after RemoveToxic the round trip is still %v", again)
	}
}

func TestToxiproxyBandwidth(t *testing.T) {
	const size = 512 << 10 // at 512 KB/s (512,000 B/s): at least 1.02 s
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))

	base := transfer(t, dial(t, p.Addr()), size)
	p.Bandwidth(t, "upstream", 512)
	slow := transfer(t, dial(t, p.Addr()), size)
	t.Logf("512 KiB echoed: %v unshaped, %v at 512 KB/s upstream", base, slow)
	if slow < 800*time.Millisecond {
		t.Errorf("512 KiB at 512 KB/s took %v, want >= 800ms", slow)
	}
	if slow-base < 500*time.Millisecond {
		t.Errorf("unshaped transfer took %v, not clearly faster than the shaped %v", base, slow)
	}
}

func TestToxiproxyDisableEnable(t *testing.T) {
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))
	open := dial(t, p.Addr())
	minRoundTrip(t, open, 1)

	p.Disable(t)
	// The open connection is closed...
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := open.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("open connection after Disable: read %d bytes, %v; want it closed", n, err)
	}
	// ...and new ones are refused.
	if c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded on a disabled proxy")
	}

	p.Enable(t)
	minRoundTrip(t, dial(t, p.Addr()), 1)
}

func TestToxiproxyResetPeer(t *testing.T) {
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))
	p.ResetPeer(t, "upstream", 0, 1)
	c := dial(t, p.Addr())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return // already reset
	}
	n, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want the connection reset", n, err)
	}
	t.Logf("after reset_peer: %v", err)
}

func TestToxiproxyTimeout(t *testing.T) {
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))

	// timeout 0: the data vanishes and the connection stays open.
	name := p.Timeout(t, "upstream", 0, 1)
	c := dial(t, p.Addr())
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through a timeout toxic: read %d bytes, %v; want nothing until the deadline", n, err)
	}
	p.RemoveToxic(t, name)

	// timeout 200 ms: the connection is closed after it.
	p.Timeout(t, "downstream", 200, 1)
	c = dial(t, p.Addr())
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want the connection closed after 200ms", n, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, want about 200ms", d)
	}
}

func TestToxiproxySlowClose(t *testing.T) {
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))
	p.SlowClose(t, "downstream", 300)
	c := dial(t, p.Addr())
	minRoundTrip(t, c, 1)
	start := time.Now()
	c.CloseWrite() // the echo server closes in turn; its FIN is held back
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after close: %v, want EOF", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("close arrived after %v, want >= 300ms", d)
	}
}

func TestToxiproxyHTTPUpstream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	p := testenv.Toxiproxy(t).Proxy(t, srv.URL) // a URL is reduced to host:port
	res, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Get(p.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if b, _ := io.ReadAll(res.Body); string(b) != "hello" {
		t.Fatalf("got %q through the proxy", b)
	}
}

func TestToxiproxyGenericToxic(t *testing.T) {
	p := testenv.Toxiproxy(t).Proxy(t, echoServer(t))
	// toxiproxy's own default name, and a generic toxic.
	if name := p.AddToxic(t, "", "slicer", "upstream", 1, map[string]any{"average_size": 64, "delay": 1}); name != "slicer_upstream" {
		t.Errorf("default toxic name %q, want slicer_upstream", name)
	}
	transfer(t, dial(t, p.Addr()), 64<<10)
	p.RemoveToxic(t, "slicer_upstream")
}

func TestToxiproxyProxyRemovedAtCleanup(t *testing.T) {
	tx := testenv.Toxiproxy(t)
	up := echoServer(t)
	var addrs []string
	t.Run("a/b c", func(t *testing.T) { // names that are not URL-safe
		for i := 0; i < 2; i++ {
			p := tx.Proxy(t, up)
			minRoundTrip(t, dial(t, p.Addr()), 1)
			addrs = append(addrs, p.Addr())
		}
	})
	if len(addrs) != 2 || addrs[0] == addrs[1] {
		t.Fatalf("proxy addresses %v, want two different ones", addrs)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("proxy at %s still accepts connections after its test ended", a)
		}
	}
}
