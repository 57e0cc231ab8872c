package connguard

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs h behind a guard (nil: Bodies only) on a loopback port.
func serve(t *testing.T, g *Guard, h http.Handler, bodyTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	var served net.Listener = ln
	if g != nil {
		served = g.Install(srv, ln, bodyTimeout)
	} else {
		srv.Handler = Bodies(h, bodyTimeout)
	}
	go srv.Serve(served)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// raw opens a connection and writes s.
func raw(t *testing.T, addr, s string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if s != "" {
		io.WriteString(c, s)
	}
	return c
}

// closedWithin reads c until the server closes it or d passes; it
// returns what was read and whether the server closed it.
func closedWithin(c net.Conn, d time.Duration) (string, bool) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	timedOut := err != nil && errorAs(err, &ne) && ne.Timeout()
	return string(b), !timedOut
}

func errorAs(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

// get sends a GET on a new connection and returns the status line.
func get(t *testing.T, addr, path string, within time.Duration) string {
	t.Helper()
	c := raw(t, addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(within))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("GET %s: no answer within %v: %v", path, within, err)
	}
	return strings.TrimSpace(line)
}

var notFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Write([]byte("ok"))
		return
	}
	http.NotFound(w, r)
})

// TestSilentBodyIsCut: a request that declares a body and sends part of
// it is answered and its connection closed within the body timeout, on a
// route that never reads its body (Go's discard of the unread body
// blocked forever), and on a GET that carries a body.
func TestSilentBodyIsCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	addr := serve(t, nil, notFound, timeout)
	for _, req := range []string{
		"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n",
		"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	} {
		start := time.Now()
		got, closed := closedWithin(raw(t, addr, req), 10*time.Second)
		if !closed {
			t.Fatalf("%q: connection still open after 10 s", req)
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("%q: closed after %v, before the body timeout", req, d)
		}
		t.Logf("%q: closed after %v, answer %q", req[:12], time.Since(start).Round(time.Millisecond), firstLine(got))
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// TestCompleteBodyLongAnswer: the deadline ends with the body: a request
// whose body arrived whole gets an answer longer than the body timeout,
// on the same connection, and so does the next request on it.
func TestCompleteBodyLongAnswer(t *testing.T) {
	const timeout = 200 * time.Millisecond
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			io.Copy(io.Discard, r.Body)
		}
		for i := range 5 { // 0.5 s, more than the timeout
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	addr := serve(t, nil, h, timeout)
	c := raw(t, addr, "")
	br := bufio.NewReader(c)
	for _, path := range []string{"/read", "/unread", "/read"} {
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", path)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(res.Body)
		if err != nil || strings.Count(string(b), "part") != 5 {
			t.Fatalf("%s: answer cut: %q, %v", path, b, err)
		}
	}
}

// TestEvictsLongestSilent: at the unauthenticated cap a new connection
// evicts the one silent longest; /healthz keeps answering however many
// silent connections arrive, and the guard never holds more than the cap.
func TestEvictsLongestSilent(t *testing.T) {
	g := New(Limits{MaxConns: 20, MaxUnauth: 4}, nil)
	addr := serve(t, g, notFound, time.Minute)
	var silent []net.Conn
	for i := range 4 {
		silent = append(silent, raw(t, addr, fmt.Sprintf("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n%d", i)))
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, func() bool { return g.Stats().Open == 4 })
	if line := get(t, addr, "/healthz", 5*time.Second); !strings.Contains(line, "200") {
		t.Fatalf("healthz at the cap: %q", line)
	}
	if _, closed := closedWithin(silent[0], 5*time.Second); !closed {
		t.Fatal("the longest silent connection was not evicted")
	}
	for _, c := range silent[1:] {
		if _, closed := closedWithin(c, 50*time.Millisecond); closed {
			t.Fatal("a younger silent connection was evicted too")
		}
	}
	// A flood: the cap holds and healthz still answers.
	for range 40 {
		raw(t, addr, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	}
	if line := get(t, addr, "/healthz", 5*time.Second); !strings.Contains(line, "200") {
		t.Fatalf("healthz after the flood: %q", line)
	}
	st := g.Stats()
	if st.Unauth > 4 || st.Evicted < 40 {
		t.Fatalf("after the flood: %+v", st)
	}
	t.Logf("%+v", st)
}

// TestAuthenticatedAndServedKept: connections that authenticated, and a
// connection whose request is being answered, are never evicted for
// unauthenticated newcomers; with nothing to evict a newcomer is refused.
func TestAuthenticatedAndServedKept(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4) // a /slow handler runs
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			Authenticated(r.Context())
		case "/slow":
			entered <- struct{}{}
			<-release
		}
		w.Write([]byte("ok"))
	})
	inHandler := func(what string) {
		t.Helper()
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: its handler did not start", what)
		}
	}
	g := New(Limits{MaxConns: 3, MaxUnauth: 2}, nil)
	addr := serve(t, g, h, time.Minute)

	// An authenticated keep-alive connection, then idle.
	authed := raw(t, addr, "GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(authed)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("login: %v", err)
	} else {
		io.Copy(io.Discard, res.Body)
	}
	// A request being answered (complete, no body): not evictable.
	slow := raw(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	inHandler("slow")
	waitFor(t, func() bool { st := g.Stats(); return st.Open == 2 && st.Unauth == 1 })
	// A silent one: evictable.
	silent := raw(t, addr, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
	waitFor(t, func() bool { return g.Stats().Open == 3 })

	// A newcomer at both caps evicts the silent one only.
	fresh := raw(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, closed := closedWithin(silent, 5*time.Second); !closed {
		t.Fatal("the silent connection was kept")
	}
	// Until its handler runs, the newcomer itself waits for its client
	// (it could be evicted in turn): wait for it to be answered.
	inHandler("fresh")
	// Another newcomer finds nothing to evict: both unauthenticated
	// connections are being answered, and evicting the idle
	// authenticated one would not make room under the unauthenticated
	// cap: it is refused.
	refused := raw(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if got, closed := closedWithin(refused, 5*time.Second); !closed || got != "" {
		t.Fatalf("newcomer with nothing to evict: closed %v, got %q", closed, got)
	}
	close(release)
	for _, c := range []net.Conn{slow, fresh} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 200 {
			t.Fatalf("a served connection was cut: %v", err)
		}
	}
	// The authenticated connection survived all of it.
	fmt.Fprintf(authed, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	authed.SetReadDeadline(time.Now().Add(5 * time.Second))
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("the authenticated connection was evicted: %v", err)
	}
	if st := g.Stats(); st.Evicted != 1 || st.Refused != 1 {
		t.Fatalf("stats %+v, want 1 evicted and 1 refused", st)
	}
}

func TestLimitsFor(t *testing.T) {
	for n, want := range map[uint64]Limits{
		256:     {192, 96},
		1024:    {768, 384},
		20000:   {15000, 7500},
		1 << 20: {786432, 393216},
		50:      {16, 8},
	} {
		if got := LimitsFor(n); got != want {
			t.Errorf("LimitsFor(%d) = %+v, want %+v", n, got, want)
		}
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not reached within 5 s")
}

// TestRefusedBodyAnswerArrives: a handler that refuses a large body
// without reading it gets its answer to the client, which is still
// sending, through a tracked connection (the server half-closes it
// first, as on a bare TCP connection, rather than resetting it).
func TestRefusedBodyAnswerArrives(t *testing.T) {
	g := New(Limits{MaxConns: 10, MaxUnauth: 10}, nil)
	addr := serve(t, g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}), time.Minute)
	for range 5 {
		res, err := http.Post("http://"+addr+"/", "application/octet-stream", strings.NewReader(strings.Repeat("x", 4<<20)))
		if err != nil {
			t.Fatalf("the refusal did not arrive: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
}
