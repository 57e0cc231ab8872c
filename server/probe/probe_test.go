package probe

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// pacedBody yields n pieces of 16 KiB, one every gap.
type pacedBody struct {
	n   int
	gap time.Duration
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(b.gap)
	b.n--
	return copy(p, make([]byte, min(len(p), 16<<10))), nil
}

func TestHandlerBudget(t *testing.T) {
	// 64 × 16 KiB one every 10 ms: the whole body takes ~0.64 s. Asked
	// for 100 ms, the handler stops reading long before the end and
	// answers at once; without a usable budget it reads it all.
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	post := func(query string) protocol.ProbeResult {
		t.Helper()
		resp, err := http.Post(srv.URL+query, "application/octet-stream", &pacedBody{n: 64, gap: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res protocol.ProbeResult
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", query, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := post("?ms=100"); res.Bytes <= 0 || res.Bytes >= 32*16<<10 || res.Micros > 500_000 {
		t.Errorf("ms=100: %+v, want a part of the body, read for about 100 ms", res)
	}
	for _, q := range []string{"", "?ms=0", "?ms=-5", "?ms=abc", "?ms=60000"} {
		if res := post(q); res.Bytes != 64*16<<10 {
			t.Errorf("%q: read %d bytes, want the whole body (the budget is ignored)", q, res.Bytes)
		}
	}
}

// TestHandlerSilentSender: a probe that declares more than it sends
// and goes silent is answered after the probe's read time and its
// connection closed, not held: the handler used to clear its deadline,
// and the server's discard of the unread rest (under 256 KiB) waited for
// the silent sender forever.
func TestHandlerSilentSender(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "POST "+protocol.PathProbe+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 5000))
	c.SetReadDeadline(time.Now().Add(protocol.ProbeReadTime + 10*time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection still open %v after a silent probe (read %q): %v", time.Since(start), b, err)
	}
	if !strings.Contains(string(b), " 200 ") || !strings.Contains(string(b), `"bytes":5000`) {
		t.Fatalf("answer %q", b)
	}
	t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
}
