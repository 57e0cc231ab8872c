package idleread

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// serve answers with how many body bytes it read and whether the body
// stalled.
func serve(t *testing.T, idle time.Duration) (string, chan result) {
	got := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := Body(w, r, idle)
		n, err := io.Copy(io.Discard, b)
		got <- result{n, err, Stalled(b)}
		w.WriteHeader(204)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), got
}

type result struct {
	n       int64
	err     error
	stalled bool
}

// send writes a request declaring size bytes, then body parts with a
// pause before each.
func send(t *testing.T, addr string, size int, parts []string, pause time.Duration) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err) // called from a goroutine: no Fatal
		return
	}
	defer c.Close()
	io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
	for _, p := range parts {
		time.Sleep(pause)
		if _, err := io.WriteString(c, p); err != nil {
			return
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// TestStalledBodyFails: a body that stops sending fails with ErrIdle
// within the idle time, instead of holding the handler until TCP dies.
func TestStalledBodyFails(t *testing.T) {
	addr, got := serve(t, 300*time.Millisecond)
	start := time.Now()
	go send(t, addr, 100, []string{"half of it"}, 0)
	select {
	case r := <-got:
		if !errors.Is(r.err, ErrIdle) || !r.stalled || r.n != int64(len("half of it")) {
			t.Fatalf("stalled body: read %d, err %v, stalled %v", r.n, r.err, r.stalled)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("cut after %v, before the idle time", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled body held the handler for 20 s")
	}
}

// TestSlowBodyIsNotCut: a body that keeps flowing, each pause shorter
// than the idle time, is read whole even when the total is far longer.
func TestSlowBodyIsNotCut(t *testing.T) {
	addr, got := serve(t, 400*time.Millisecond)
	parts := make([]string, 12)
	for i := range parts {
		parts[i] = "0123456789"
	}
	go send(t, addr, 120, parts, 100*time.Millisecond) // 1.2 s in all
	r := <-got
	if r.err != nil || r.stalled || r.n != 120 {
		t.Fatalf("slow body: read %d, err %v, stalled %v", r.n, r.err, r.stalled)
	}
}

// TestNoDeadlineSupport: under a ResponseWriter that cannot set
// deadlines the body comes back unchanged.
func TestNoDeadlineSupport(t *testing.T) {
	r := httptest.NewRequest("PUT", "/", nil)
	if b := Body(httptest.NewRecorder(), r, time.Second); b != r.Body || Stalled(b) {
		t.Fatal("a recorder's body was wrapped")
	}
}
