package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// S3's error codes for a part whose bytes do not match its declared
// checksum: the engine treats them as CodeChecksumMismatch.
const (
	S3CodeBadDigest                   = "BadDigest"
	S3CodeXAmzContentChecksumMismatch = "XAmzContentChecksumMismatch"
	S3CodeInvalidDigest               = "InvalidDigest"
	// S3CodeStorageFull is MinIO's 507 when its drives are full.
	S3CodeStorageFull = "XMinioStorageFull"
)

// isChecksumMismatch reports a receiver refusing a chunk whose bytes do
// not hash to what was declared: the server's checksum_mismatch or S3's
// equivalents.
func isChecksumMismatch(err error) bool {
	return IsCode(err, protocol.CodeChecksumMismatch) || IsCode(err, S3CodeBadDigest) ||
		IsCode(err, S3CodeXAmzContentChecksumMismatch) || IsCode(err, S3CodeInvalidDigest)
}

// Client is the one client of the server's API (docs/api.md,
// docs/protocol.md): the control calls of the command line (whoami,
// quota, assets, delete, ranged downloads; assets.go), the session calls
// of uploads (open, status, token, complete) and their data plane (chunk
// PUTs, presign, presigned parts). Every call goes through one transport
// (the request with its headers, one round trip, one error decoder:
// every error answer is an *APIError). Authenticated calls carry the API
// key and secret; chunk PUTs and presign calls carry only the session's
// upload token, presigned parts nothing of the Client's. Retries are the
// callers': the uploader retries session calls and chunks (retry.go),
// Download its ranges. A Client is safe for concurrent use; its fields
// must not change while it is in use.
type Client struct {
	// BaseURL is the server, e.g. "https://jetty.example" (no trailing
	// path is needed; one is kept if given).
	BaseURL string
	// APIKey and APISecret authenticate control calls.
	APIKey, APISecret string
	// HTTP is the client used; nil means one shared client made for bulk
	// transfers (HTTP/1.1, so each worker gets its own TCP connection, and
	// enough idle connections kept per host for every worker).
	HTTP *http.Client
	// UserAgent is sent with every request ("jetty-engine" when empty).
	UserAgent string
}

// Opened is the answer of OpenSession.
type Opened struct {
	protocol.OpenResponse
	// Existing is true when the server answered 200 with a session it
	// already had for this content (a resumed or concurrent upload), false
	// when it created one (201).
	Existing bool
}

// APIError is an error answer of the server (or of a relay or an object
// store): the one error type of the Client.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code and Message are the body's "code" and "error" (an object
	// store's XML Code and Message; Message is a short text body as it
	// is).
	Code, Message string
	// RetryAfter is the Retry-After header (delay-seconds or an HTTP
	// date), when there was one.
	RetryAfter time.Duration
	// Missing is the body's "missing" list (409 chunks_missing).
	Missing []int
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (HTTP %d, %s)", msg, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// IsCode reports whether err is an *APIError with that code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

var (
	defaultHTTPOnce sync.Once
	defaultHTTP     *http.Client
)

// httpClient is c.HTTP or the shared client.
func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	defaultHTTPOnce.Do(func() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// One TCP connection per worker: parallel connections are what
		// fills a long fat pipe; HTTP/2 would multiplex every worker onto
		// one connection and one congestion window.
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		t.WriteBufferSize = 64 << 10
		t.ReadBufferSize = 16 << 10
		t.TLSHandshakeTimeout = 15 * time.Second
		// Per call instead (answerTimeout): a chunk PUT's answer is bounded
		// by the chunk timeout, a completion's by the control timeout.
		t.ResponseHeaderTimeout = 0
		defaultHTTP = &http.Client{Transport: t}
	})
	return defaultHTTP
}

func (c *Client) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return "jetty-engine"
}

// endpoint joins BaseURL and path.
func (c *Client) endpoint(path string) string {
	return strings.TrimRight(c.BaseURL, "/") + path
}

// serverKey names the server in journals and messages.
func (c *Client) serverKey() string { return strings.TrimRight(c.BaseURL, "/") }

// accountKey names the account of the client's credentials in local
// state (the upload index) without holding a secret: a hash of the API
// key, which is itself no secret but need not sit in files either.
func (c *Client) accountKey() string {
	sum := sha256.Sum256([]byte("jetty account\x00" + c.APIKey))
	return hex.EncodeToString(sum[:16])
}

// answerTimeout bounds how long the account and asset calls (Whoami,
// Quota, List, Asset, Delete, OpenRange) wait for the server's answer to
// begin: a server that takes the connection and never answers fails the
// command instead of hanging it. Reading the body is not bounded (a range
// of a download takes as long as the link needs). Session calls have no
// such bound (a completion may assemble 10,000 parts; the uploader bounds
// each attempt, controlTimeout), nor chunk PUTs (the chunk timeout).
var answerTimeout = 60 * time.Second

// newRequest builds an authenticated request to path on the server:
// Accept JSON, the User-Agent, the API key and secret.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path), body)
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", c.BaseURL, err)
	}
	c.setControlHeaders(req)
	return req, nil
}

// setControlHeaders sets what every authenticated control request
// carries: Accept JSON, the User-Agent, the API key and secret.
func (c *Client) setControlHeaders(req *http.Request) {
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent())
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	if c.APISecret != "" {
		req.Header.Set(protocol.HeaderAPISecret, c.APISecret)
	}
}

// roundTrip sends an authenticated request: a failure to get an answer
// is a *ReachError ("cannot reach" the server), an answer other than 2xx an *APIError
// (its body read and closed). A 2xx answer's body is the caller's to
// close. headerTimeout > 0 bounds the wait for the answer to begin.
func (c *Client) roundTrip(req *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	resp, err := c.send(req, headerTimeout)
	if err != nil {
		return nil, &ReachError{Server: c.serverKey(), Err: err}
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// errAwaitingAnswer is the cause of a call whose answer did not begin
// within its header timeout.
var errAwaitingAnswer error = answerTimeoutError{}

// answerTimeoutError is a net.Error that timed out, as the transport's
// own ResponseHeaderTimeout error is: Retryable.
type answerTimeoutError struct{}

func (answerTimeoutError) Error() string   { return "timeout awaiting response headers" }
func (answerTimeoutError) Timeout() bool   { return true }
func (answerTimeoutError) Temporary() bool { return true }

// send makes one round trip of req; headerTimeout > 0 bounds the wait
// for the answer's headers (http.Transport's ResponseHeaderTimeout, per
// call, so that one transport and one pool of connections serve calls
// that answer at once and calls that may take minutes).
func (c *Client) send(req *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	if headerTimeout <= 0 {
		return c.httpClient().Do(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(headerTimeout, func() { cancel(errAwaitingAnswer) })
	resp, err := c.httpClient().Do(req.WithContext(ctx))
	fired := !timer.Stop()
	switch {
	case err != nil:
		cancel(nil)
		if fired && req.Context().Err() == nil {
			return nil, &url.Error{Op: urlOp(req.Method), URL: req.URL.String(), Err: errAwaitingAnswer}
		}
		return nil, err
	case fired: // the answer began just as the time ran out: its body is cut
		resp.Body.Close()
		cancel(nil)
		return nil, &url.Error{Op: urlOp(req.Method), URL: req.URL.String(), Err: errAwaitingAnswer}
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

// urlOp is the Op http.Client gives a method in its *url.Error ("Get").
func urlOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

// cancelOnClose releases a call's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// control makes an authenticated control call: in is sent as JSON (when
// not nil), a 2xx answer decoded into out (when not nil). It returns the
// status. headerTimeout > 0 bounds the wait for the answer to begin.
func (c *Client) control(ctx context.Context, method, path string, in, out any, headerTimeout time.Duration) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.roundTrip(req, headerTimeout)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae.Status, err
		}
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		// Manifests of 10,000 chunks are about 1.2 MB; answers are smaller.
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: unexpected answer from %s: %w", method, path, c.serverKey(), err)
		}
	}
	return resp.StatusCode, nil
}

// Call makes an authenticated control call to path on the server (for
// endpoints outside the session protocol, such as optimal-edges): in is
// sent as JSON when not nil, a 2xx answer is decoded into out when not
// nil; other answers are *APIError.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	_, err := c.control(ctx, method, path, in, out, 0)
	return err
}

// HTTPClient is the HTTP client the Client uses (c.HTTP or the shared
// client).
func (c *Client) HTTPClient() *http.Client { return c.httpClient() }

// errorBodyLimit bounds what is read of an error answer.
const errorBodyLimit = 64 << 10

// readAPIError turns an error answer of the server or a relay into an
// *APIError (decodeError).
func readAPIError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	return decodeError(resp.StatusCode, resp.Header, b, false, time.Now())
}

// readStoreError turns an object store's error answer (to a presigned
// part) into an *APIError (decodeError, S3's XML first).
func readStoreError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	return decodeError(resp.StatusCode, resp.Header, b, true, time.Now())
}

// decodeError is the one decoder of error answers. The status and the
// Retry-After header (parseRetryAfter) are always taken. Of the body:
// with store, S3's XML (<Error><Code>BadDigest</Code><Message>…
// </Message></Error>) gives Code and Message when it has a Code;
// otherwise the protocol's JSON (protocol.ErrorBody) gives Message, Code
// and Missing; a body that is not JSON is the Message when it is a short
// text (under 200 bytes: an HTML error page of a proxy is not shown);
// with no message at all, Error() says the status's text.
func decodeError(status int, h http.Header, body []byte, store bool, now time.Time) *APIError {
	e := &APIError{Status: status, RetryAfter: parseRetryAfter(h.Get(protocol.HeaderRetryAfter), now)}
	if store {
		var x struct {
			XMLName xml.Name `xml:"Error"`
			Code    string   `xml:"Code"`
			Message string   `xml:"Message"`
		}
		if xml.Unmarshal(body, &x) == nil && x.Code != "" {
			e.Code, e.Message = x.Code, x.Message
			return e
		}
	}
	var eb protocol.ErrorBody
	if json.Unmarshal(body, &eb) == nil {
		e.Code, e.Message, e.Missing = eb.Code, eb.Error, eb.Missing
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 {
		e.Message = s
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date (at most a day;
// a negative delay or a date passed is none).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// OpenSession opens (or finds again) an upload session: a deduplicated
// answer (200 with an asset), an existing session for the same content
// (200, Existing), or a new one (201).
func (c *Client) OpenSession(ctx context.Context, req protocol.OpenRequest) (Opened, error) {
	var out Opened
	status, err := c.control(ctx, http.MethodPost, protocol.PathSessions, req, &out.OpenResponse, 0)
	if err != nil {
		return out, err
	}
	switch {
	case out.Deduplicated && out.Asset == nil:
		return out, errors.New("open session: deduplicated answer without an asset")
	case !out.Deduplicated && out.Session == nil:
		return out, errors.New("open session: answer has neither session nor asset")
	}
	out.Existing = status == http.StatusOK && !out.Deduplicated
	if s := out.Session; s != nil {
		if s.ChunkURL, err = c.resolve(s.ChunkURL); err != nil {
			return out, fmt.Errorf("open session: chunk_url: %w", err)
		}
	}
	return out, nil
}

// resolve makes a possibly relative URL absolute against BaseURL.
func (c *Client) resolve(u string) (string, error) {
	ref, err := url.Parse(strings.ReplaceAll(u, "{index}", "0"))
	if err != nil {
		return "", err
	}
	if ref.IsAbs() {
		return u, nil
	}
	base, err := url.Parse(c.BaseURL)
	if err != nil {
		return "", err
	}
	abs := base.ResolveReference(&url.URL{Path: "/"}).String()
	return strings.TrimRight(abs, "/") + "/" + strings.TrimLeft(u, "/"), nil
}

// SessionStatus asks what the server holds of a session.
func (c *Client) SessionStatus(ctx context.Context, id string) (protocol.SessionState, error) {
	var out protocol.SessionState
	_, err := c.control(ctx, http.MethodGet, protocol.PathSessions+"/"+url.PathEscape(id), nil, &out, 0)
	return out, err
}

// RefreshToken gets a fresh upload token for a session.
func (c *Client) RefreshToken(ctx context.Context, id string) (protocol.Token, error) {
	var out protocol.Token
	_, err := c.control(ctx, http.MethodPost, protocol.PathSessions+"/"+url.PathEscape(id)+"/token", struct{}{}, &out, 0)
	if err == nil && out.UploadToken == "" {
		err = errors.New("refresh token: answer has no upload_token")
	}
	return out, err
}

// Complete asks the server to assemble the session's object. m is the
// manifest of a stream session, nil otherwise. A 409 chunks_missing error
// lists the chunks to send again in its Missing.
func (c *Client) Complete(ctx context.Context, id string, m *protocol.Manifest) (protocol.CompleteResponse, error) {
	var out protocol.CompleteResponse
	body := map[string]any{}
	if m != nil {
		body["manifest"] = m
	}
	_, err := c.control(ctx, http.MethodPost, protocol.PathSessions+"/"+url.PathEscape(id)+"/complete", body, &out, 0)
	return out, err
}

// ChunkURL substitutes index for "{index}" in a session's chunk URL.
func ChunkURL(chunkURL string, index int) string {
	return strings.ReplaceAll(chunkURL, "{index}", strconv.Itoa(index))
}

// PutChunk sends one chunk: size bytes of body, with its hex SHA-256.
// chunkURL is the session's chunk_url ("{index}" is replaced by index; a
// URL without it is used as is). Only the upload token is sent, never the
// API secret: the URL may be an edge.
func (c *Client) PutChunk(ctx context.Context, chunkURL, token string, index int, sha256 string, body io.Reader, size int64) error {
	if body == nil || size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, ChunkURL(chunkURL, index), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.GetBody = nil // the engine retries itself, counting every byte
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(protocol.HeaderChunkSHA256, sha256)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("User-Agent", c.userAgent())
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	var ack struct {
		Index  *int   `json:"index"`
		Size   *int64 `json:"size"`
		SHA256 string `json:"sha256"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &ack) == nil {
		switch {
		case ack.Index != nil && *ack.Index != index,
			ack.Size != nil && *ack.Size != size,
			ack.SHA256 != "" && !strings.EqualFold(ack.SHA256, sha256):
			return fmt.Errorf("chunk %d: the server acknowledged another chunk (%s)", index, bytes.TrimSpace(b))
		}
	}
	return nil
}

// Presign asks presignURL (a direct route's PresignURL) for presigned part
// URLs of chunks: POST with the session's upload token, body
// PresignRequest, answer PresignResponse. Every part answered is checked
// to be one asked for and to have an absolute http(s) URL. Only the upload
// token is sent, never the API key or secret. sums are the chunks' hashes
// for a sized session (protocol.PresignRequest.SHA256), nil for a session
// opened with a manifest.
func (c *Client) Presign(ctx context.Context, presignURL, token string, chunks []int, sums []string) (protocol.PresignResponse, error) {
	var out protocol.PresignResponse
	target, err := c.resolve(presignURL)
	if err != nil {
		return out, fmt.Errorf("presign URL: %w", err)
	}
	if sums != nil && len(sums) != len(chunks) {
		return out, fmt.Errorf("presign: %d hashes for %d chunks", len(sums), len(chunks))
	}
	b, err := json.Marshal(protocol.PresignRequest{Chunks: chunks, SHA256: sums})
	if err != nil {
		return out, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent())
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return out, readAPIError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return out, fmt.Errorf("presign: decode answer: %w", err)
	}
	asked := make(map[int]bool, len(chunks))
	for _, i := range chunks {
		asked[i] = true
	}
	for _, p := range out.Parts {
		if !asked[p.Index] {
			return out, fmt.Errorf("presign: the answer has chunk %d, which was not asked for", p.Index)
		}
		if pu, err := url.Parse(p.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return out, fmt.Errorf("presign: chunk %d: bad part URL %q", p.Index, p.URL)
		}
	}
	return out, nil
}

// PutPresigned sends one chunk straight to the object store: size bytes
// of body to part.URL with part.Method (PUT when empty), exactly
// part.Headers (they are signed into the URL; a Host among them sets the
// request's host) and Content-Length. A 2xx answer is success; an error
// answer is an *APIError with the store's own code (S3's XML Code, e.g.
// BadDigest or SignatureDoesNotMatch). No credential of the Client and no
// upload token is ever sent: the URL is a third party's.
func (c *Client) PutPresigned(ctx context.Context, part protocol.PresignedPart, body io.Reader, size int64) error {
	method := part.Method
	if method == "" {
		method = http.MethodPut
	}
	if body == nil || size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, method, part.URL, body)
	if err != nil {
		closeBody(body)
		return err
	}
	req.ContentLength = size
	req.GetBody = nil // the engine retries itself, counting every byte
	for k, v := range part.Headers {
		switch http.CanonicalHeaderKey(k) {
		case "Host":
			req.Host = v
		case "Content-Length": // written from req.ContentLength
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil || n != size {
				closeBody(body)
				return fmt.Errorf("chunk %d: the presigned part is for %s bytes, not %d", part.Index, v, size)
			}
		default:
			req.Header.Set(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.userAgent())
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readStoreError(resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	return nil
}

// closeBody closes a request body no transport took (the engine waits
// for its chunk bodies to be closed before it reuses their buffers).
func closeBody(body io.Reader) {
	if c, ok := body.(io.Closer); ok {
		c.Close()
	}
}

// isNetError reports errors of the connection rather than of the server.
func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || isConnReset(err)
}
