package engine

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// TestDecodeError: the one decoder of error answers, on every kind of
// body and both forms of Retry-After.
func TestDecodeError(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	html := "<html><head><title>502 Bad Gateway</title></head><body>" + strings.Repeat("<p>nginx</p>", 30) + "</body></html>"
	for _, tc := range []struct {
		what       string
		status     int
		retryAfter string
		body       string
		store      bool
		want       APIError
		text       string // Error()
	}{
		{what: "JSON body", status: 413, body: `{"error":"file too large for tier free","code":"too_large"}`,
			want: APIError{Status: 413, Code: protocol.CodeTooLarge, Message: "file too large for tier free"},
			text: "file too large for tier free (HTTP 413, too_large)"},
		{what: "409 missing list", status: 409, body: `{"error":"2 chunks missing","code":"chunks_missing","missing":[3,5]}`,
			want: APIError{Status: 409, Code: protocol.CodeChunksMissing, Message: "2 chunks missing", Missing: []int{3, 5}},
			text: "2 chunks missing (HTTP 409, chunks_missing)"},
		{what: "non-JSON short text", status: 502, body: "gateway exploded\n",
			want: APIError{Status: 502, Message: "gateway exploded"},
			text: "gateway exploded (HTTP 502)"},
		{what: "non-JSON long page", status: 502, body: html,
			want: APIError{Status: 502},
			text: "Bad Gateway (HTTP 502)"},
		{what: "empty body", status: 404, body: "",
			want: APIError{Status: 404},
			text: "Not Found (HTTP 404)"},
		{what: "JSON without an error", status: 500, body: `{"message":"boom"}`,
			want: APIError{Status: 500},
			text: "Internal Server Error (HTTP 500)"},
		{what: "Retry-After seconds", status: 429, retryAfter: "7", body: `{"error":"slow down","code":"rate_limited"}`,
			want: APIError{Status: 429, Code: protocol.CodeRateLimited, Message: "slow down", RetryAfter: 7 * time.Second},
			text: "slow down (HTTP 429, rate_limited)"},
		{what: "Retry-After HTTP date", status: 503, retryAfter: "Sun, 22 Nov 2026 10:00:30 GMT", body: `{"error":"down","code":"unavailable"}`,
			want: APIError{Status: 503, Code: protocol.CodeUnavailable, Message: "down", RetryAfter: 30 * time.Second},
			text: "down (HTTP 503, unavailable)"},
		{what: "Retry-After date passed", status: 503, retryAfter: "Sun, 22 Nov 2026 09:00:00 GMT", body: "down",
			want: APIError{Status: 503, Message: "down"}, text: "down (HTTP 503)"},
		{what: "Retry-After nonsense", status: 503, retryAfter: "soon", body: "down",
			want: APIError{Status: 503, Message: "down"}, text: "down (HTTP 503)"},
		{what: "S3 XML", status: 400, store: true,
			body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>The Content-SHA256 you specified did not match.</Message></Error>`,
			want: APIError{Status: 400, Code: S3CodeBadDigest, Message: "The Content-SHA256 you specified did not match."},
			text: "The Content-SHA256 you specified did not match. (HTTP 400, BadDigest)"},
		{what: "store answering JSON", status: 507, store: true, retryAfter: "2", body: `{"error":"full","code":"insufficient_storage"}`,
			want: APIError{Status: 507, Code: protocol.CodeInsufficientStorage, Message: "full", RetryAfter: 2 * time.Second},
			text: "full (HTTP 507, insufficient_storage)"},
		{what: "XML from the server is not read as S3's", status: 400, body: `<Error><Code>BadDigest</Code></Error>`,
			want: APIError{Status: 400, Message: "<Error><Code>BadDigest</Code></Error>"},
			text: "<Error><Code>BadDigest</Code></Error> (HTTP 400)"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			h := http.Header{}
			if tc.retryAfter != "" {
				h.Set("Retry-After", tc.retryAfter)
			}
			got := decodeError(tc.status, h, []byte(tc.body), tc.store, now)
			if got.Status != tc.want.Status || got.Code != tc.want.Code || got.Message != tc.want.Message ||
				got.RetryAfter != tc.want.RetryAfter || !equalInts(got.Missing, tc.want.Missing) {
				t.Errorf("decodeError = %+v, want %+v", *got, tc.want)
			}
			if got.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", got.Error(), tc.text)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEveryCallDecodesErrors: every call of the Client, the command
// line's as well as the upload's, turns an error answer into the same
// *APIError: code, message, the missing list and Retry-After in both
// forms (the command line's calls read only delay-seconds before the one
// decoder).
func TestEveryCallDecodesErrors(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Retry-After", date)
		writeJSON(w, 429, protocol.ErrorBody{Error: "later", Code: protocol.CodeRateLimited, Missing: []int{1}})
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, APIKey: "k", APISecret: "s"}
	ctx := context.Background()
	calls := map[string]func() error{
		"Whoami": func() error { _, err := c.Whoami(ctx); return err },
		"Quota":  func() error { _, err := c.Quota(ctx); return err },
		"List":   func() error { _, err := c.List(ctx, "", 0); return err },
		"Asset":  func() error { _, err := c.Asset(ctx, "a1"); return err },
		"Delete": func() error { _, err := c.Delete(ctx, "a1"); return err },
		"OpenRange": func() error {
			b, err := c.OpenRange(ctx, "a1", 0, 10)
			if b != nil {
				b.Close()
			}
			return err
		},
		"OpenSession":   func() error { _, err := c.OpenSession(ctx, protocol.OpenRequest{}); return err },
		"SessionStatus": func() error { _, err := c.SessionStatus(ctx, "s"); return err },
		"RefreshToken":  func() error { _, err := c.RefreshToken(ctx, "s"); return err },
		"Complete":      func() error { _, err := c.Complete(ctx, "s", nil); return err },
		"Call":          func() error { return c.Call(ctx, http.MethodPost, protocol.PathOptimalEdges, struct{}{}, nil) },
		"PutChunk": func() error {
			return c.PutChunk(ctx, srv.URL+"/c/{index}", "tok", 0, strings.Repeat("0", 64), strings.NewReader("x"), 1)
		},
		"Presign": func() error { _, err := c.Presign(ctx, srv.URL+"/p", "tok", []int{1}, nil); return err },
		"PutPresigned": func() error {
			return c.PutPresigned(ctx, protocol.PresignedPart{Index: 1, URL: srv.URL + "/part"}, strings.NewReader("x"), 1)
		},
	}
	for name, call := range calls {
		err := call()
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != protocol.CodeRateLimited || ae.Message != "later" ||
			!equalInts(ae.Missing, []int{1}) || ae.RetryAfter < 80*time.Second || ae.RetryAfter > 90*time.Second {
			t.Errorf("%s: %#v", name, err)
		}
	}
}

// TestControlHeaders: the command line's calls and the upload's carry
// the same credentials and User-Agent; chunk PUTs carry only the token.
func TestControlHeaders(t *testing.T) {
	seen := map[string]http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen[r.Method+" "+r.URL.Path] = r.Header.Clone()
		switch {
		case r.URL.Path == protocol.PathWhoami:
			writeJSON(w, 200, protocol.Whoami{UserID: "u"})
		case strings.HasSuffix(r.URL.Path, "/token"):
			writeJSON(w, 200, protocol.Token{UploadToken: "t"})
		default:
			writeJSON(w, 200, map[string]any{})
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, APIKey: "jt_key", APISecret: "jts_secret", UserAgent: "jetty/test"}
	ctx := context.Background()
	if _, err := c.Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RefreshToken(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := c.PutChunk(ctx, srv.URL+"/c/{index}", "tok", 0, strings.Repeat("0", 64), strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"GET " + protocol.PathWhoami, "POST " + protocol.PathSessions + "/s1/token"} {
		h := seen[k]
		if h.Get("Authorization") != "Bearer jt_key" || h.Get(protocol.HeaderAPISecret) != "jts_secret" || h.Get("User-Agent") != "jetty/test" {
			t.Errorf("%s: headers %v", k, h)
		}
	}
	if h := seen["PUT /c/0"]; h.Get("Authorization") != "Bearer tok" || h.Get(protocol.HeaderAPISecret) != "" || h.Get("User-Agent") != "jetty/test" {
		t.Errorf("chunk PUT: headers %v", h)
	}
}

// TestAnswerTimeout: the account and asset calls give up when the
// server's answer does not begin in time, with a retryable timeout, not
// a cancellation; reading a body that began in time is not bounded, nor
// are the session calls (a completion may take minutes).
func TestAnswerTimeout(t *testing.T) {
	old := answerTimeout
	answerTimeout = 200 * time.Millisecond
	t.Cleanup(func() { answerTimeout = old })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == protocol.PathWhoami:
			select { // never answers
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case strings.HasSuffix(r.URL.Path, "/download"):
			w.Header().Set("Content-Range", "bytes 0-9/10")
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte("01234"))
			w.(http.Flusher).Flush()
			time.Sleep(500 * time.Millisecond)
			w.Write([]byte("56789"))
		case strings.HasSuffix(r.URL.Path, "/complete"):
			time.Sleep(500 * time.Millisecond)
			writeJSON(w, 200, protocol.CompleteResponse{Asset: protocol.Asset{ID: "a1"}})
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	ctx := context.Background()

	start := time.Now()
	_, err := c.Whoami(ctx)
	if err == nil || !Retryable(err) || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cannot reach "+srv.URL) ||
		!errors.Is(err, errAwaitingAnswer) || !strings.Contains(err.Error(), "no answer in time") {
		t.Fatalf("whoami of a server that never answers: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("gave up after %v", el)
	}

	body, err := c.OpenRange(ctx, "a1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(body)
	body.Close()
	if err != nil || string(b) != "0123456789" {
		t.Fatalf("a slow body was cut: %q %v", b, err)
	}

	if res, err := c.Complete(ctx, "s1", nil); err != nil || res.Asset.ID != "a1" {
		t.Fatalf("a slow completion: %+v %v", res, err)
	}
}
