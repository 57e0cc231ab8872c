package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/jettythunder/jetty/protocol"
)

// The account and asset calls of the control API (docs/api.md), which the
// command line makes: who am I, quota, list, get, delete, and ranged
// reads of an asset's bytes (Download, download.go, builds on OpenRange).
// Each waits at most answerTimeout for the server's answer to begin and
// is not retried (Download retries its ranges).

// Whoami tells which account the credentials belong to (and so checks
// them).
func (c *Client) Whoami(ctx context.Context) (protocol.Whoami, error) {
	var w protocol.Whoami
	_, err := c.control(ctx, http.MethodGet, protocol.PathWhoami, nil, &w, answerTimeout)
	return w, err
}

// Quota returns the account's usage and limits.
func (c *Client) Quota(ctx context.Context) (protocol.Quota, error) {
	var q protocol.Quota
	_, err := c.control(ctx, http.MethodGet, protocol.PathQuota, nil, &q, answerTimeout)
	return q, err
}

// List returns one page of assets, newest first: from cursor ("" for the
// first page), at most limit (0: the server's default).
func (c *Client) List(ctx context.Context, cursor string, limit int) (protocol.AssetList, error) {
	return c.ListWhere(ctx, ListFilter{}, cursor, limit)
}

// ListFilter narrows a listing: assets with exactly this cache key, of
// this AgentCache pipeline (a UUID), with exactly this file name, with a
// file name beginning with this prefix (byte for byte); empty fields
// match everything.
type ListFilter struct {
	CacheKey   string
	PipelineID string
	Name       string
	Prefix     string
}

// ListWhere returns a page of the assets matching f (newest first).
func (c *Client) ListWhere(ctx context.Context, f ListFilter, cursor string, limit int) (protocol.AssetList, error) {
	q := url.Values{}
	if f.CacheKey != "" {
		q.Set("cache_key", f.CacheKey)
	}
	if f.PipelineID != "" {
		q.Set("pipeline_id", f.PipelineID)
	}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.Prefix != "" {
		q.Set("prefix", f.Prefix)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p protocol.AssetList
	_, err := c.control(ctx, http.MethodGet, protocol.PathAssets+"?"+q.Encode(), nil, &p, answerTimeout)
	return p, err
}

// ListAll returns every asset (following cursors).
func (c *Client) ListAll(ctx context.Context) ([]protocol.Asset, error) {
	return c.ListAllWhere(ctx, ListFilter{})
}

// ListAllWhere returns every asset matching f (following cursors).
func (c *Client) ListAllWhere(ctx context.Context, f ListFilter) ([]protocol.Asset, error) {
	var all []protocol.Asset
	cursor := ""
	for {
		p, err := c.ListWhere(ctx, f, cursor, 1000)
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
	_, err := c.control(ctx, http.MethodGet, protocol.PathAssets+"/"+url.PathEscape(id), nil, &out, answerTimeout)
	return out.Asset, err
}

// Delete removes an asset.
func (c *Client) Delete(ctx context.Context, id string) (protocol.DeleteResponse, error) {
	var d protocol.DeleteResponse
	_, err := c.control(ctx, http.MethodDelete, protocol.PathAssets+"/"+url.PathEscape(id), nil, &d, answerTimeout)
	return d, err
}

// ErrRangeIgnored is returned by OpenRange when the server answered 200 to
// a ranged request (a proxy in between may strip Range headers).
var ErrRangeIgnored = errors.New("server ignored the range")

// OpenRange opens length bytes of an asset from offset (length -1: to the
// end; offset 0 and length -1: the whole asset, without a Range header).
// A ranged request answered with anything but 206 is ErrRangeIgnored.
// The caller closes the body.
func (c *Client) OpenRange(ctx context.Context, id string, offset, length int64) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, http.MethodGet, protocol.PathAssets+"/"+url.PathEscape(id)+"/download", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Del("Accept") // the bytes, not JSON
	switch {
	case length >= 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.roundTrip(req, answerTimeout)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusPartialContent && req.Header.Get("Range") != "" {
		resp.Body.Close()
		return nil, ErrRangeIgnored
	}
	return resp.Body, nil
}
