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
	"github.com/jettythunder/jetty/protocol"
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

// Whoami tells which account the credentials belong to (and so checks
// them).
func (c *Client) Whoami(ctx context.Context) (protocol.Whoami, error) {
	var w protocol.Whoami
	err := c.do(ctx, "GET", protocol.PathWhoami, &w)
	return w, err
}

// Quota returns the account's usage and limits.
func (c *Client) Quota(ctx context.Context) (protocol.Quota, error) {
	var q protocol.Quota
	err := c.do(ctx, "GET", protocol.PathQuota, &q)
	return q, err
}

// List returns one page of assets, newest first.
func (c *Client) List(ctx context.Context, cursor string, limit int) (protocol.AssetList, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p protocol.AssetList
	err := c.do(ctx, "GET", protocol.PathAssets+"?"+q.Encode(), &p)
	return p, err
}

// ListAll returns every asset (following cursors).
func (c *Client) ListAll(ctx context.Context) ([]protocol.Asset, error) {
	var all []protocol.Asset
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
func (c *Client) Asset(ctx context.Context, id string) (protocol.Asset, error) {
	var out protocol.AssetResponse
	err := c.do(ctx, "GET", protocol.PathAssets+"/"+url.PathEscape(id), &out)
	return out.Asset, err
}

// Delete removes an asset.
func (c *Client) Delete(ctx context.Context, id string) (protocol.DeleteResponse, error) {
	var d protocol.DeleteResponse
	err := c.do(ctx, "DELETE", protocol.PathAssets+"/"+url.PathEscape(id), &d)
	return d, err
}

// ErrRangeIgnored is returned by OpenRange when the server answered 200 to
// a ranged request.
var ErrRangeIgnored = errors.New("server ignored the range")

// OpenRange opens length bytes of an asset from offset (length -1: to the
// end). The caller closes the body.
func (c *Client) OpenRange(ctx context.Context, id string, offset, length int64) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, "GET", protocol.PathAssets+"/"+url.PathEscape(id)+"/download", nil)
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
