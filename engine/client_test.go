package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("wrapped: %w", context.Canceled), false},
		{context.DeadlineExceeded, true},
		{&url.Error{Op: "Put", URL: "x", Err: syscall.ECONNRESET}, true},
		{&url.Error{Op: "Put", URL: "x", Err: io.ErrUnexpectedEOF}, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{&APIError{Status: 408}, true},
		{&APIError{Status: 429, Code: protocol.CodeTooManyStreams}, true},
		{&APIError{Status: 500}, true},
		{&APIError{Status: 502}, true},
		{&APIError{Status: 503}, true},
		{&APIError{Status: 501}, false},
		{&APIError{Status: 400, Code: protocol.CodeChecksumMismatch}, false},
		{&APIError{Status: 401, Code: protocol.CodeTokenExpired}, false},
		{&APIError{Status: 403}, false},
		{&APIError{Status: 404}, false},
		{&APIError{Status: 409}, false},
		{&APIError{Status: 410}, false},
		{&APIError{Status: 413}, false},
		{errors.New("something else"), false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	for attempt := 1; attempt <= 40; attempt++ {
		ceiling := min(p.MaxDelay, p.BaseDelay<<min(attempt-1, 20))
		for range 50 {
			if d := p.backoff(attempt, errors.New("x")); d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	// At the defaults, the waits before a request gives up always add up
	// to more than 15 s: it outlives a 15-second outage.
	for range 200 {
		var total time.Duration
		for attempt := 1; attempt < p.MaxAttempts; attempt++ {
			total += p.backoff(attempt, errors.New("x"))
		}
		if total < 15*time.Second {
			t.Fatalf("the %d waits of the default policy add up to %v, under 15 s", p.MaxAttempts-1, total)
		}
	}
	d := p.backoff(1, &APIError{Status: 429, RetryAfter: 3 * time.Second})
	if d < 3*time.Second || d > 3*time.Second+p.BaseDelay {
		t.Errorf("Retry-After 3s gave %v", d)
	}
}

// TestBackoffOutage: a 503 with Retry-After (a part of the server down)
// paces the client: never sooner than asked, never sooner than the
// backoff, so a short Retry-After cannot make a request give up inside
// a 15 s outage (it replaced the backoff before: 7 × ~1 s), and workers
// told the same are spread over a quarter of the wait.
func TestBackoffOutage(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	short := &APIError{Status: 503, Code: "unavailable", RetryAfter: time.Second}
	for range 200 {
		var total time.Duration
		for attempt := 1; attempt < p.MaxAttempts; attempt++ {
			d := p.backoff(attempt, short)
			ceiling := min(p.MaxDelay, p.BaseDelay<<(attempt-1))
			if d < max(ceiling/2, time.Second) {
				t.Fatalf("attempt %d after a 503 with Retry-After 1s: %v, under the backoff or the Retry-After", attempt, d)
			}
			total += d
		}
		if total < 15*time.Second {
			t.Fatalf("503s with Retry-After 1s: the waits add up to %v, under 15 s", total)
		}
	}
	long := &APIError{Status: 503, Code: "unavailable", RetryAfter: 8 * time.Second}
	lo, hi := time.Hour, time.Duration(0)
	for range 500 {
		d := p.backoff(1, long)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 8*time.Second || hi > 10*time.Second || hi-lo < 500*time.Millisecond {
		t.Fatalf("503 with Retry-After 8s: waits in [%v, %v], want within [8 s, 10 s] and spread", lo, hi)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		" 12 ":                          12 * time.Second,
		"-3":                            0,
		"soon":                          0,
		"Sun, 22 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Sun, 22 Nov 2026 09:00:00 GMT": 0,
		"999999999":                     24 * time.Hour,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestAPIError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/jetty/sessions/plain/complete":
			http.Error(w, "gateway exploded", 502)
		case "/api/jetty/sessions/missing/complete":
			w.Header().Set("Retry-After", "4")
			writeJSON(w, 409, map[string]any{"error": "2 chunks missing", "code": protocol.CodeChunksMissing, "missing": []int{3, 5}})
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	_, err := c.Complete(context.Background(), "plain", nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Message != "gateway exploded" || !strings.Contains(err.Error(), "HTTP 502") {
		t.Errorf("plain: %#v", err)
	}
	_, err = c.Complete(context.Background(), "missing", nil)
	if !errors.As(err, &ae) || ae.Code != protocol.CodeChunksMissing || len(ae.Missing) != 2 || ae.Missing[1] != 5 || ae.RetryAfter != 4*time.Second {
		t.Errorf("missing: %#v", err)
	}
	if got := ae.Error(); got != "2 chunks missing (HTTP 409, chunks_missing)" {
		t.Errorf("message %q", got)
	}
}

func TestClientCalls(t *testing.T) {
	f := newFake(t)
	c := f.client()
	ctx := context.Background()
	m := sequentialManifest("c.bin", genBytes(50, 6*MiB), 5*MiB)
	open, err := c.OpenSession(ctx, protocol.OpenRequest{Manifest: m})
	if err != nil || open.Session == nil || open.Existing || len(open.Session.Missing) != 2 {
		t.Fatalf("open: %+v %v", open, err)
	}
	s := open.Session
	again, err := c.OpenSession(ctx, protocol.OpenRequest{Manifest: m})
	if err != nil || !again.Existing || again.Session.ID != s.ID {
		t.Errorf("reopen: %+v %v", again, err)
	}
	st, err := c.SessionStatus(ctx, s.ID)
	if err != nil || st.State != "open" || len(st.Missing) != 2 {
		t.Errorf("status: %+v %v", st, err)
	}
	tok, err := c.RefreshToken(ctx, s.ID)
	if err != nil || tok.UploadToken == "" || tok.TokenExpiresAt.IsZero() {
		t.Errorf("token: %+v %v", tok, err)
	}
	// A chunk with the manifest's hash but other bytes is refused.
	err = c.PutChunk(ctx, s.ChunkURL, tok.UploadToken, 1, m.Chunks[1].SHA256, strings.NewReader(strings.Repeat("x", int(m.Chunks[1].Size))), m.Chunks[1].Size)
	if !IsCode(err, protocol.CodeChecksumMismatch) {
		t.Errorf("bad chunk: %v", err)
	}
	if err := c.Call(ctx, http.MethodDelete, protocol.PathSessions+"/"+s.ID, nil, nil); err != nil {
		t.Errorf("abort: %v", err)
	}
	if _, err := c.SessionStatus(ctx, s.ID); !IsCode(err, "not_found") {
		t.Errorf("status after abort: %v", err)
	}
	if got := ChunkURL("https://e/x/{index}", 42); got != "https://e/x/42" {
		t.Errorf("ChunkURL %s", got)
	}
}

func TestRelativeChunkURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 201, protocol.OpenResponse{Session: &protocol.Session{ID: "s", ChunkURL: "/api/jetty/sessions/s/chunks/{index}"}})
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/"}
	open, err := c.OpenSession(context.Background(), protocol.OpenRequest{Stream: &protocol.StreamSpec{Name: "x", ChunkSize: protocol.MinChunkSize}})
	if err != nil || open.Session.ChunkURL != srv.URL+"/api/jetty/sessions/s/chunks/{index}" {
		t.Errorf("%+v %v", open.Session, err)
	}
	if e := edgeOf(open.Session.ChunkURL); e != srv.URL {
		t.Errorf("edge %s", e)
	}
}

func TestPutChunkWrongAck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		writeJSON(w, 200, map[string]any{"index": 7, "size": 3, "sha256": strings.Repeat("0", 64)})
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	err := c.PutChunk(context.Background(), srv.URL+"/c/{index}", "t", 3, strings.Repeat("0", 64), strings.NewReader("abc"), 3)
	if err == nil || !strings.Contains(err.Error(), "another chunk") {
		t.Errorf("err = %v", err)
	}
}

func TestRate(t *testing.T) {
	var r Rate
	t0 := time.Now()
	for i := 0; i <= 100; i++ {
		r.Update(t0.Add(time.Duration(i)*100*time.Millisecond), int64(i)*1_000_000) // 10 MB/s
	}
	if bps := r.BytesPerSecond(); math.Abs(bps-10e6) > 1e3 {
		t.Errorf("rate %.0f", bps)
	}
	if eta := r.ETA(50_000_000); eta < 4900*time.Millisecond || eta > 5100*time.Millisecond {
		t.Errorf("eta %v", eta)
	}
	// The estimate follows a change of speed.
	for i := 101; i <= 400; i++ {
		r.Update(t0.Add(time.Duration(i)*100*time.Millisecond), 100_000_000+int64(i-100)*100_000) // 1 MB/s
	}
	if bps := r.BytesPerSecond(); bps > 1.2e6 {
		t.Errorf("rate after slowdown %.0f", bps)
	}
	var z Rate
	if z.BytesPerSecond() != 0 || z.ETA(10) != 0 {
		t.Error("zero Rate")
	}
}
