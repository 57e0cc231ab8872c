package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// DefaultSmallFileMax is Options.SmallFileMax's default: files up to 1 MiB
// go in one request.
//
// The session protocol costs three round trips and, on the server, a
// multipart upload (create, part, list, complete) per file; for a small
// file that is most of the time it takes. One request (POST
// /api/storage/upload with X-Content-SHA256) is one round trip and one
// object write, verified end to end all the same: the server refuses bytes
// that do not hash to the header. What it gives up is deduplication before
// sending: a file the account already holds is sent anyway (and stored
// once). Up to 1 MiB that costs at most about half a second on a 2 MB/s
// link, less than the two round trips it saves on most links; above it,
// sessions (which answer "already held" before any byte moves) win.
const DefaultSmallFileMax = 1 << 20

// smallFileMax is the threshold in force (-1: never).
func (u *uploader) smallFileMax() int64 {
	switch m := u.opts.SmallFileMax; {
	case m < 0:
		return -1
	case m == 0:
		return DefaultSmallFileMax
	default:
		return min(m, protocol.MaxChunkSize)
	}
}

// uploadSmall sends a small file in one verified request: it reads the
// file (at most smallFileMax bytes) once, hashes it, and POSTs it with its
// SHA-256, retrying as chunk PUTs do.
func (u *uploader) uploadSmall(ctx context.Context, r io.ReaderAt, size int64, name string) (*Result, error) {
	res := &Result{ChunksTotal: 1, Workers: 1, Method: MethodSingle}
	data := make([]byte, size)
	if err := readFull(r, data, 0); err != nil {
		return res, fmt.Errorf("read %s: %w", name, err)
	}
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	return u.sendOneRequest(ctx, res, size, sum, name, func() (protocol.Asset, bool, error) {
		return u.postSmall(ctx, data, sum, name)
	})
}

// sendOneRequest sends a file of size bytes whose SHA-256 is sum in one
// verified request (post), retrying as chunk PUTs do: a checksum mismatch
// (the hashed bytes changed on the way) a couple more times, other
// retryable failures up to the policy's attempts. It checks the hash the
// server recorded and fills res. Small files and whole files (uploadWhole)
// both go this way.
func (u *uploader) sendOneRequest(ctx context.Context, res *Result, size int64, sum, name string, post func() (protocol.Asset, bool, error)) (*Result, error) {
	u.hub.plan(size, size)
	u.hub.start(size, 0, 1, 0, 1)
	edge := edgeOf(u.c.endpoint(uploadPath))
	var asset protocol.Asset
	var dedup bool
	mismatches := 0
	for attempt := 1; ; attempt++ {
		var err error
		asset, dedup, err = post()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		retry := Retryable(err) || (isChecksumMismatch(err) && mismatches < checksumRetries)
		if isChecksumMismatch(err) {
			mismatches++
		}
		if !retry || attempt >= u.policy.MaxAttempts {
			if attempt > 1 {
				err = fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return res, err
		}
		d := u.policy.backoff(attempt, err)
		u.hub.retry(0, attempt+1, err, d)
		if err := u.sleep(ctx, d); err != nil {
			return res, err
		}
	}
	if asset.Hash != "" && asset.Hash != sum {
		return res, fmt.Errorf("the server recorded %s with SHA-256 %s, the file has %s", name, asset.Hash, sum)
	}
	u.sent.Add(1)
	u.hub.chunkDone(0, size, RouteOrigin, RouteOrigin, edge, "")
	res.Asset, res.Deduplicated = asset, dedup
	if dedup {
		res.DedupAt = DedupAtComplete // the bytes were sent with the request
	}
	return res, nil
}

// uploadPath is the single-request upload endpoint.
const uploadPath = "/api/storage/upload"

// postSmall makes one attempt.
func (u *uploader) postSmall(ctx context.Context, data []byte, sum, name string) (protocol.Asset, bool, error) {
	actx, cancel := context.WithTimeout(ctx, u.chunkTimeoutFor(int64(len(data))))
	var br *bodyReader
	asset, dedup, err := u.doPostSmall(actx, data, sum, name, &br)
	cancel() // a refused request may still be writing its body: stop it
	if br != nil {
		waitReleased(ctx, br)
		br.flush()
	}
	return asset, dedup, err
}

func (u *uploader) doPostSmall(ctx context.Context, data []byte, sum, name string, brp **bodyReader) (protocol.Asset, bool, error) {
	return u.doPost(ctx, bytes.NewReader(data), int64(len(data)), sum, name, brp)
}

// doPost makes one single-request upload of n bytes read from src.
func (u *uploader) doPost(ctx context.Context, src io.Reader, n int64, sum, name string, brp **bodyReader) (protocol.Asset, bool, error) {
	var body io.Reader = http.NoBody
	if n > 0 {
		*brp = newBodyReader(ctx, src, u.lim, u.hub)
		body = *brp
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.c.endpoint(uploadPath), body)
	if err != nil {
		closeBody(body)
		return protocol.Asset{}, false, err
	}
	req.ContentLength = n
	req.GetBody = nil // the engine retries itself, counting every byte
	req.Header.Set(protocol.HeaderFilename, url.PathEscape(name))
	req.Header.Set(protocol.HeaderContentSHA256, sum)
	ct := u.opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	req.Header.Set("Content-Type", ct)
	if u.opts.CacheKey != "" {
		req.Header.Set(protocol.HeaderCacheKey, u.opts.CacheKey)
	}
	if u.opts.PipelineID != "" {
		req.Header.Set(protocol.HeaderPipelineID, u.opts.PipelineID)
	}
	if u.opts.TTL > 0 {
		req.Header.Set(protocol.HeaderTTL, strconv.FormatInt(int64((u.opts.TTL+time.Second-1)/time.Second), 10))
	}
	u.c.setControlHeaders(req)
	resp, err := u.c.httpClient().Do(req)
	if err != nil {
		return protocol.Asset{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return protocol.Asset{}, false, readAPIError(resp)
	}
	var out protocol.UploadResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return protocol.Asset{}, false, fmt.Errorf("upload: decode answer: %w", err)
	}
	if out.Asset.ID == "" {
		return protocol.Asset{}, false, errors.New("upload: the answer names no asset")
	}
	return out.Asset, out.Deduplicated, nil
}

// chunkTimeoutFor bounds one request carrying n bytes: the policy's chunk
// timeout, stretched by the bandwidth limit when there is one.
func (u *uploader) chunkTimeoutFor(n int64) time.Duration {
	t := u.policy.ChunkTimeout
	if t <= 0 {
		t = DefaultChunkTimeout
		if u.opts.BandwidthLimit > 0 {
			t += time.Duration(2 * float64(n) / float64(u.opts.BandwidthLimit) * float64(time.Second))
		}
	}
	return t
}
