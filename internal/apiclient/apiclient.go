// Package apiclient is the command line's client for the server's control
// API (docs/api.md): who am I, quota, list, get, delete and download
// assets. Uploads go through engine (the JettySpeed protocol). Errors from
// the server come back as *engine.APIError, so commands map them to exit
// codes in one place.
package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/engine"
)

// Client calls one server with one key and secret.
type Client struct {
	BaseURL   string
	APIKey    string
	APISecret string
	HTTP      *http.Client // nil: a client with sane timeouts
	UserAgent string
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 60 * time.Second,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       90 * time.Second,
	TLSHandshakeTimeout:   15 * time.Second,
}}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// Engine returns an engine client for uploads with the same credentials.
func (c *Client) Engine() *engine.Client {
	return &engine.Client{BaseURL: c.BaseURL, APIKey: c.APIKey, APISecret: c.APISecret, UserAgent: c.UserAgent}
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", c.BaseURL, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	req.Header.Set("X-API-Secret", c.APISecret)
	ua := c.UserAgent
	if ua == "" {
		ua = "jetty-cli"
	}
	req.Header.Set("User-Agent", ua)
	return req, nil
}

// apiError turns an error response into *engine.APIError.
func apiError(res *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	e := &engine.APIError{Status: res.StatusCode}
	var b struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(body, &b) == nil && b.Error != "" {
		e.Message, e.Code = b.Error, b.Code
	} else {
		e.Message = strings.TrimSpace(string(body))
		if e.Message == "" {
			e.Message = res.Status
		}
	}
	if s := res.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// getJSON performs a request and decodes a 2xx JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := c.newRequest(ctx, method, path, nil)
	if err != nil {
		return err
	}
	res, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", c.BaseURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return apiError(res)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", c.BaseURL, err)
	}
	return nil
}

// Whoami is GET /api/whoami.
type Whoami struct {
	AccountID         string    `json:"account_id"`
	UserID            string    `json:"agentcache_user_id"`
	Email             string    `json:"email"`
	Tier              string    `json:"tier"`
	Status            string    `json:"status"`
	JettySpeedEnabled bool      `json:"jetty_speed_enabled"`
	S3Prefix          string    `json:"s3_prefix"`
	CreatedAt         time.Time `json:"created_at"`
}

// Whoami tells which account the credentials belong to (and so checks
// them).
func (c *Client) Whoami(ctx context.Context) (Whoami, error) {
	var w Whoami
	err := c.do(ctx, "GET", "/api/whoami", &w)
	return w, err
}

// Usage is one resource of the quota answer.
type Usage struct {
	UsedGB         float64 `json:"used_gb"`
	QuotaGB        int64   `json:"quota_gb"`
	AvailableGB    float64 `json:"available_gb"`
	PercentUsed    float64 `json:"percent_used"`
	UsedBytes      int64   `json:"used_bytes"`
	ReservedBytes  int64   `json:"reserved_bytes"`
	QuotaBytes     int64   `json:"quota_bytes"`
	AvailableBytes int64   `json:"available_bytes"`
}

// Quota is GET /api/agentcache/quota.
type Quota struct {
	Tier              string `json:"tier"`
	Status            string `json:"status"`
	JettySpeedEnabled bool   `json:"jetty_speed_enabled"`
	Storage           Usage  `json:"storage"`
	Bandwidth         Usage  `json:"bandwidth"`
	Limits            struct {
		MaxFileSizeMB      int64 `json:"max_file_size_mb"`
		MaxFileSizeBytes   int64 `json:"max_file_size_bytes"`
		RateLimitPerMinute int   `json:"rate_limit_per_minute"`
	} `json:"limits"`
}

// Quota returns the account's usage and limits.
func (c *Client) Quota(ctx context.Context) (Quota, error) {
	var q Quota
	err := c.do(ctx, "GET", "/api/agentcache/quota", &q)
	return q, err
}

// Page is one page of assets.
type Page struct {
	Assets     []engine.Asset `json:"assets"`
	NextCursor string         `json:"next_cursor"`
}

// List returns one page of assets, newest first.
func (c *Client) List(ctx context.Context, cursor string, limit int) (Page, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p Page
	err := c.do(ctx, "GET", "/api/storage/assets?"+q.Encode(), &p)
	return p, err
}

// ListAll returns every asset (following cursors).
func (c *Client) ListAll(ctx context.Context) ([]engine.Asset, error) {
	var all []engine.Asset
	cursor := ""
	for {
		p, err := c.List(ctx, cursor, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Assets...)
		if p.NextCursor == "" {
			return all, nil
		}
		cursor = p.NextCursor
	}
}

// Asset returns one asset's metadata.
func (c *Client) Asset(ctx context.Context, id string) (engine.Asset, error) {
	var out struct {
		Asset engine.Asset `json:"asset"`
	}
	err := c.do(ctx, "GET", "/api/storage/assets/"+url.PathEscape(id), &out)
	return out.Asset, err
}

// Deleted is the answer of Delete.
type Deleted struct {
	Deleted    string `json:"deleted"`
	FreedBytes int64  `json:"freed_bytes"`
}

// Delete removes an asset.
func (c *Client) Delete(ctx context.Context, id string) (Deleted, error) {
	var d Deleted
	err := c.do(ctx, "DELETE", "/api/storage/assets/"+url.PathEscape(id), &d)
	return d, err
}

// ErrRangeIgnored is returned by OpenRange when the server answered 200 to
// a ranged request.
var ErrRangeIgnored = errors.New("server ignored the range")

// OpenRange opens length bytes of an asset from offset (length -1: to the
// end). The caller closes the body.
func (c *Client) OpenRange(ctx context.Context, id string, offset, length int64) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, "GET", "/api/storage/assets/"+url.PathEscape(id)+"/download", nil)
	if err != nil {
		return nil, err
	}
	if offset > 0 || length >= 0 {
		if length >= 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
		} else {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		}
	}
	res, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.BaseURL, err)
	}
	switch {
	case res.StatusCode == http.StatusPartialContent:
		return res.Body, nil
	case res.StatusCode == http.StatusOK:
		if req.Header.Get("Range") != "" {
			res.Body.Close()
			return nil, ErrRangeIgnored
		}
		return res.Body, nil
	default:
		defer res.Body.Close()
		return nil, apiError(res)
	}
}
