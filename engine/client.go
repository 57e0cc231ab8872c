package engine

import (
	"bytes"
	"context"
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

// Client speaks the JettySpeed protocol (docs/protocol.md) to one server.
// Control calls carry the API key and secret; chunk PUTs carry only the
// session's upload token. A Client is safe for concurrent use; its fields
// must not change while it is in use.
type Client struct {
	// BaseURL is the server, e.g. "https://jetty.example" (no trailing
	// path is needed; one is kept if given).
	BaseURL string
	// APIKey and APISecret authenticate control calls.
	APIKey, APISecret string
	// HTTP is the client used; nil means one shared client made for bulk
	// uploads (HTTP/1.1, so each worker gets its own TCP connection, and
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

// APIError is an error answer of the server.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code and Message are the body's "code" and "error".
	Code, Message string
	// RetryAfter is the Retry-After header, when there was one.
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

// httpClient is c.HTTP or the shared bulk-upload client.
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
		t.ResponseHeaderTimeout = 0 // the per-chunk timeout covers it
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

// serverKey names the server in journals.
func (c *Client) serverKey() string { return strings.TrimRight(c.BaseURL, "/") }

// control makes an authenticated control call: in is sent as JSON (when
// not nil), a 2xx answer decoded into out (when not nil). It returns the
// status.
func (c *Client) control(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path), body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.setControlHeaders(req)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, readAPIError(resp)
	}
	if out != nil {
		// Manifests of 10,000 chunks are about 1.2 MB; answers are smaller.
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
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
		req.Header.Set("X-API-Secret", c.APISecret)
	}
}

// Call makes an authenticated control call to path on the server (for
// endpoints outside the session protocol, such as optimal-edges): in is
// sent as JSON when not nil, a 2xx answer is decoded into out when not
// nil; other answers are *APIError.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	_, err := c.control(ctx, method, path, in, out)
	return err
}

// HTTPClient is the HTTP client the Client uses (c.HTTP or the shared
// bulk-upload client).
func (c *Client) HTTPClient() *http.Client { return c.httpClient() }

// readAPIError turns an error answer into an *APIError.
func readAPIError(resp *http.Response) error {
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	decodeAPIError(e, b)
	return e
}

// readStoreError turns an object store's error answer into an *APIError:
// S3 answers XML (<Error><Code>BadDigest</Code><Message>…</Message>
// </Error>), whose Code and Message it takes; anything else is read as
// readAPIError does.
func readStoreError(resp *http.Response) error {
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var x struct {
		XMLName xml.Name `xml:"Error"`
		Code    string   `xml:"Code"`
		Message string   `xml:"Message"`
	}
	if xml.Unmarshal(b, &x) == nil && x.Code != "" {
		e.Code, e.Message = x.Code, x.Message
		return e
	}
	decodeAPIError(e, b)
	return e
}

// decodeAPIError fills e from an error body: the protocol's JSON, or a
// short text.
func decodeAPIError(e *APIError, b []byte) {
	var body struct {
		Error   string `json:"error"`
		Code    string `json:"code"`
		Missing []int  `json:"missing"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Message, e.Missing = body.Code, body.Error, body.Missing
	} else if s := strings.TrimSpace(string(b)); s != "" && len(s) < 200 {
		e.Message = s
	}
}

// parseRetryAfter reads delay-seconds or an HTTP date.
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
	status, err := c.control(ctx, http.MethodPost, protocol.PathSessions, req, &out.OpenResponse)
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
	_, err := c.control(ctx, http.MethodGet, protocol.PathSessions+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// RefreshToken gets a fresh upload token for a session.
func (c *Client) RefreshToken(ctx context.Context, id string) (protocol.Token, error) {
	var out protocol.Token
	_, err := c.control(ctx, http.MethodPost, protocol.PathSessions+"/"+url.PathEscape(id)+"/token", struct{}{}, &out)
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
	_, err := c.control(ctx, http.MethodPost, protocol.PathSessions+"/"+url.PathEscape(id)+"/complete", body, &out)
	return out, err
}

// Abort drops a session: its chunks are removed and its reservation
// released.
func (c *Client) Abort(ctx context.Context, id string) error {
	_, err := c.control(ctx, http.MethodDelete, protocol.PathSessions+"/"+url.PathEscape(id), nil, nil)
	return err
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
// token is sent, never the API key or secret.
func (c *Client) Presign(ctx context.Context, presignURL, token string, chunks []int) (protocol.PresignResponse, error) {
	var out protocol.PresignResponse
	target, err := c.resolve(presignURL)
	if err != nil {
		return out, fmt.Errorf("presign URL: %w", err)
	}
	b, err := json.Marshal(protocol.PresignRequest{Chunks: chunks})
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
