package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jettythunder/jetty/internal/idleread"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) newAssetBody(r *http.Request, a server.Asset) protocol.Asset {
	return protocol.Asset{
		ID:              a.ID,
		URL:             s.baseURL(r) + "/api/storage/assets/" + url.PathEscape(a.ID) + "/download",
		Key:             a.ObjectKey,
		Size:            a.Size,
		Hash:            a.SHA256,
		HashVerified:    a.SHA256Verified,
		ContentID:       a.ContentID,
		Filename:        a.Filename,
		ContentType:     a.ContentType,
		CacheKey:        a.CacheKey,
		PipelineID:      a.PipelineID,
		HitCount:        a.HitCount,
		LastAccessed:    timePtr(a.LastAccessed),
		ExpiresAt:       timePtr(a.ExpiresAt),
		UploadedVia:     a.UploadedVia,
		UploadSpeedMbps: a.UploadSpeedMbps,
		CreatedAt:       a.CreatedAt.UTC(),
	}
}

// baseURL is the URL clients reach this server at: the configured public
// URL, else the scheme and Host of the request (never the listen address).
func (s *Server) baseURL(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// uploadInput is what an upload request carries besides the bytes.
type uploadInput struct {
	filename    string
	contentType string
	cacheKey    string
	pipelineID  string // "" or a UUID in canonical form
	ttl         time.Duration
	body        io.Reader
	// form is the body of a multipart upload (also body): the fields
	// after the file are known once it was read to its end (finish).
	form     *formBody
	size     int64 // exact size when known, else -1
	declared int64 // Content-Length of the request, -1 when absent
	// sha256 is the hash the client says the bytes have (X-Content-SHA256,
	// lower-case hex; "" when not given): a mismatch stores nothing.
	sha256 string
}

const maxCacheKeyLen = 1024

// parseTTL reads a TTL in seconds (X-TTL header or ttl form field).
func parseTTL(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > 10*365*24*3600 {
		return 0, server.Errorf(server.EInvalid, "ttl must be a whole number of seconds between 1 and 315360000 (got %q)", v)
	}
	return time.Duration(n) * time.Second, nil
}

func checkCacheKey(k string) error { return checkText("cache_key", k, maxCacheKeyLen) }

// maxNameFilterLen bounds the name and prefix filters of the list: the
// store holds no longer file name.
const maxNameFilterLen = 1024

// checkText checks a text field: at most max bytes of UTF-8 without
// control characters.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return server.Errorf(server.EInvalid, "%s is %d bytes; the limit is %d", field, len(v), max)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return server.Errorf(server.EInvalid, "%s contains control characters", field)
	}
	// The store refuses it too, but only after the body was stored.
	if !utf8.ValidString(v) {
		return server.Errorf(server.EInvalid, "%s is not valid UTF-8", field)
	}
	return nil
}

// readUploadInput understands seed 000's raw body with X-Filename and seed
// 002's multipart/form-data with "file" and the fields "cache_key", "ttl"
// and "agentcache_pipeline_id" (or "pipeline_id") before or after it
// (upload_form.go). Headers give the same values (X-Cache-Key, X-TTL,
// X-AgentCache-Pipeline-Id); a form field overrides its header.
func readUploadInput(r *http.Request) (uploadInput, error) {
	in := uploadInput{declared: r.ContentLength, size: -1}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	in.cacheKey = r.Header.Get(protocol.HeaderCacheKey)
	if err := checkCacheKey(in.cacheKey); err != nil {
		return in, err
	}
	if h := r.Header.Get(protocol.HeaderContentSHA256); h != "" {
		in.sha256 = strings.ToLower(h)
		if !protocol.IsHex64(in.sha256) {
			return in, server.Errorf(server.EInvalid, "X-Content-SHA256 must be the file's SHA-256 in hex (64 characters)")
		}
	}
	ttl, err := parseTTL(r.Header.Get(protocol.HeaderTTL))
	if err != nil {
		return in, err
	}
	in.ttl = ttl
	if in.pipelineID, err = server.NormalizePipelineID(r.Header.Get(protocol.HeaderPipelineID)); err != nil {
		return in, server.Errorf(server.EInvalid, "%s: %s", protocol.HeaderPipelineID, server.ErrorMessage(err))
	}
	if mt == "multipart/form-data" {
		return readForm(in, r.Body, params["boundary"])
	}
	in.filename = r.Header.Get(protocol.HeaderFilename)
	if in.filename == "" {
		return in, server.Errorf(server.EInvalid, "missing X-Filename header: send the file name in X-Filename with the raw body, or use multipart/form-data with a \"file\" field")
	}
	if dec, err := url.PathUnescape(in.filename); err == nil && strings.Contains(in.filename, "%") {
		in.filename = dec
	}
	in.contentType = mt
	in.body = r.Body
	in.size = r.ContentLength
	return in, nil
}

// errBodyTooLarge is returned by capReader when the body goes past its cap.
var errBodyTooLarge = errors.New("body larger than allowed")

// capReader passes through at most cap bytes and fails with
// errBodyTooLarge as soon as the source has more.
type capReader struct {
	r   io.Reader
	cap int64
	n   int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.cap {
		return 0, errBodyTooLarge
	}
	if rem := c.cap - c.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.cap {
		return n - int(c.n-c.cap), errBodyTooLarge
	}
	return n, err
}

// tooLarge explains a file over the tier's max size, naming a tier that
// would take it.
func (s *Server) tooLarge(ctx context.Context, size int64, t server.Tier, exact bool) error {
	what := units.HumanBytes(size)
	if !exact {
		what = "more than " + what
	}
	msg := fmt.Sprintf("file is %s; tier %q allows at most %s per file", what, t.Name, units.HumanBytes(t.MaxFileSizeBytes()))
	if better := s.tierAllowing(ctx, func(c server.Tier) bool { return c.MaxFileSizeBytes() >= size }); better != "" && exact {
		msg += fmt.Sprintf("; upgrade to %s for files this size", better)
	} else {
		msg += "; split the file or upgrade"
	}
	return server.Errorf(server.ETooLarge, "%s", msg)
}

// overQuota explains an upload that does not fit in the storage quota.
func (s *Server) overQuota(ctx context.Context, size int64, acct server.Account) error {
	free := max(acct.StorageQuotaBytes()-acct.StorageUsedBytes-acct.StorageReservedBytes, 0)
	need := acct.StorageUsedBytes + acct.StorageReservedBytes + size
	msg := fmt.Sprintf("storage quota exceeded: the file is %s but only %s of your %s quota is free (%s used, %s reserved by uploads in progress)",
		units.HumanBytes(size), units.HumanBytes(free), units.HumanBytes(acct.StorageQuotaBytes()), units.HumanBytes(acct.StorageUsedBytes), units.HumanBytes(acct.StorageReservedBytes))
	if better := s.tierAllowing(ctx, func(c server.Tier) bool { return c.StorageQuotaBytes() >= need }); better != "" {
		msg += fmt.Sprintf("; delete files or upgrade to %s", better)
	} else {
		msg += "; delete files to make room"
	}
	return server.Errorf(server.EQuotaExceeded, "%s", msg)
}

// tierAllowing names the smallest tier (by storage quota) satisfying ok.
func (s *Server) tierAllowing(ctx context.Context, ok func(server.Tier) bool) string {
	tiers, err := s.store.Tiers(ctx)
	if err != nil {
		return ""
	}
	best := ""
	var bestQuota int64 = -1
	for _, t := range tiers {
		if ok(t) && (bestQuota < 0 || t.StorageQuotaGB < bestQuota) {
			best, bestQuota = t.Name, t.StorageQuotaGB
		}
	}
	return best
}

// reservationTTL is how long an upload of size bytes may take before its
// reservation and partial object are reclaimed: an hour plus one second
// per 256 KiB (a 1 GiB upload at 256 KiB/s), at most a day.
func reservationTTL(size int64) time.Duration {
	d := time.Hour + time.Duration(size/(256<<10))*time.Second
	return min(d, 24*time.Hour)
}

// handleUpload answers POST /api/storage/upload: the body is streamed to
// storage while its SHA-256 is computed, within the tier's max file size
// and the account's quota, checked before reading (Content-Length) and
// enforced while streaming.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request, acct server.Account) {
	start := time.Now()
	ctx := r.Context()
	body := idleread.Body(w, r, s.bodyIdle)
	r.Body = body
	t, err := s.tier(ctx, acct.Tier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	maxSize := t.MaxFileSizeBytes()
	free := acct.StorageQuotaBytes() - acct.StorageUsedBytes - acct.StorageReservedBytes
	// Refuse on the declared length before reading a byte.
	if r.ContentLength > maxSize && !isMultipart(r) {
		s.writeError(w, r, s.tooLarge(ctx, r.ContentLength, t, true))
		return
	}
	// A multipart body carries some framing around the file: allow 1 MiB.
	if r.ContentLength > maxSize+1<<20 && isMultipart(r) {
		s.writeError(w, r, s.tooLarge(ctx, r.ContentLength-1<<20, t, false))
		return
	}
	if r.ContentLength > free && !isMultipart(r) {
		s.writeError(w, r, s.overQuota(ctx, r.ContentLength, acct))
		return
	}
	if err := s.checkRoom(ctx, r.ContentLength, 0); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := readUploadInput(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// What to reserve: the exact size when known, else as much as the
	// file could be (tier max, bounded by the free quota and the declared
	// multipart length).
	reserve := in.size
	if reserve < 0 {
		reserve = min(maxSize, max(free, 0))
		if in.declared >= 0 {
			reserve = min(reserve, in.declared)
		}
	}
	if reserve <= 0 && in.size != 0 {
		s.writeError(w, r, s.overQuota(ctx, max(in.size, 1), acct))
		return
	}
	var resID string
	if reserve > 0 {
		res, err := s.store.Reserve(ctx, acct.ID, reserve, reservationTTL(reserve))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		resID = res.ID
	}
	asset, dedup, err := s.storeUpload(ctx, acct, in, resID, reserve, maxSize, start)
	if err != nil {
		if resID != "" {
			if rerr := s.store.ReleaseReservation(context.WithoutCancel(ctx), resID); rerr != nil && server.ErrorCode(rerr) != server.ENotFound {
				s.log.Warn("release reservation", "err", rerr)
			}
		}
		if idleread.Stalled(body) {
			err = server.Errorf(server.ETimeout, "the upload body sent nothing for %s; nothing was stored, send it again", s.bodyIdleOrDefault())
		}
		if errors.Is(err, errBodyTooLarge) {
			if reserve >= maxSize || in.size >= 0 {
				err = s.tooLarge(ctx, min(reserve, maxSize)+1, t, false)
			} else {
				err = s.overQuota(ctx, reserve+1, acct)
			}
		}
		s.writeError(w, r, err)
		return
	}
	s.metrics.uploadedBytes.Add(float64(asset.Size))
	s.countUpload(acct, asset.Size, dedupStage(dedup, dedupAtUpload))
	s.log.Info("stored asset", "account", acct.ID, "asset", asset.ID, "size", asset.Size, "deduplicated", dedup)
	writeJSON(w, http.StatusCreated, protocol.UploadResponse{Success: true, Deduplicated: dedup, Asset: s.newAssetBody(r, asset)})
}

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "multipart/form-data"
}

// storeUpload streams the body into a new object and records the asset.
func (s *Server) storeUpload(ctx context.Context, acct server.Account, in uploadInput, resID string, reserve, maxSize int64, start time.Time) (server.Asset, bool, error) {
	filename := server.CleanPath(in.filename)
	key, err := server.NewObjectKey(acct.UserID, filename, s.now())
	if err != nil {
		return server.Asset{}, false, err
	}
	// The pending record makes a crash from here on leave a trace the
	// collector removes.
	if err := s.store.AddPendingObject(ctx, key, "", s.now().Add(reservationTTL(reserve))); err != nil {
		return server.Asset{}, false, err
	}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.blobs.Delete(cctx, key); err != nil {
			s.log.Warn("delete object", "key", key, "err", err)
			return // the collector retries when the pending record expires
		}
		if err := s.store.ObjectCollected(cctx, key); err != nil {
			s.log.Warn("forget object", "key", key, "err", err)
		}
	}
	body := &capReader{r: in.body, cap: min(reserve, maxSize)}
	info, sum, err := s.blobs.Put(ctx, key, body, in.size, in.contentType)
	if err == nil && in.form != nil {
		// The fields after the file: read with its end, applied now,
		// before anything is recorded.
		if ferr := in.form.finish(&in); ferr != nil {
			cleanup()
			return server.Asset{}, false, ferr
		}
	}
	if err != nil {
		if !blob.IsUnavailable(err) {
			cleanup()
		} // else the delete would fail as slowly; the pending record has the collector remove the object
		if in.form != nil && in.form.err != nil {
			return server.Asset{}, false, in.form.err // a field after the file refused
		}
		if errors.Is(err, errBodyTooLarge) || errors.Is(body.err(), errBodyTooLarge) {
			return server.Asset{}, false, errBodyTooLarge
		}
		if ctx.Err() != nil {
			return server.Asset{}, false, server.Errorf(server.EInvalid, "upload interrupted: the client went away")
		}
		if errors.Is(err, blob.ErrInvalidKey) {
			return server.Asset{}, false, err
		}
		return server.Asset{}, false, fmt.Errorf("store object: %w", err)
	}
	if got := hex.EncodeToString(sum); in.sha256 != "" && got != in.sha256 {
		cleanup()
		return server.Asset{}, false, server.Errorf(server.EChecksumMismatch, "the bytes received hash to %s, not the X-Content-SHA256 %s; nothing was stored, send the file again", got, in.sha256)
	}
	var expires time.Time
	if in.ttl > 0 {
		expires = s.now().Add(in.ttl)
	}
	secs := time.Since(start).Seconds()
	speed := 0.0
	if secs > 0 {
		speed = float64(info.Size) * 8 / 1e6 / secs
	}
	asset, dedup, err := s.store.CreateAsset(ctx, server.NewAsset{
		AccountID:       acct.ID,
		ObjectKey:       key,
		Bucket:          acct.S3Bucket,
		Filename:        filename,
		ContentType:     in.contentType,
		Size:            info.Size,
		SHA256:          hex.EncodeToString(sum),
		SHA256Verified:  true, // hashed here, every byte in order
		CacheKey:        in.cacheKey,
		PipelineID:      in.pipelineID,
		ExpiresAt:       expires,
		UploadedVia:     "api",
		UploadSpeedMbps: speed,
	}, resID)
	if err != nil {
		cleanup()
		return server.Asset{}, false, err
	}
	if dedup {
		cleanup() // the account already held these bytes
	}
	return asset, dedup, nil
}

// err reports whether the cap was exceeded.
func (c *capReader) err() error {
	if c.n > c.cap {
		return errBodyTooLarge
	}
	return nil
}

// handleList answers GET /api/storage/assets?limit=&cursor=&cache_key=&pipeline_id=&name=&prefix=:
// the account's assets newest first, narrowed to an exact cache key, a
// pipeline, an exact file name and/or a file name prefix when asked.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request, acct server.Account) {
	q := r.URL.Query()
	for name, vs := range q {
		switch name {
		case "limit", "cursor", "cache_key", "pipeline_id", "name", "prefix":
			if len(vs) > 1 {
				s.writeError(w, r, server.Errorf(server.EInvalid, "query parameter %s appears %d times; give it once", shortName(name), len(vs)))
				return
			}
		default:
			s.writeError(w, r, server.Errorf(server.EInvalid, "unknown query parameter %s: the list takes limit, cursor, cache_key, pipeline_id, name and prefix", shortName(name)))
			return
		}
	}
	var f server.AssetFilter
	for _, p := range []struct {
		param, what string
		max         int
		to          *string
	}{
		{"cache_key", "the cache key to look up", maxCacheKeyLen, &f.CacheKey},
		{"name", "the file name to look up", maxNameFilterLen, &f.Name},
		{"prefix", "the beginning of the file names to list", maxNameFilterLen, &f.NamePrefix},
	} {
		vs, ok := q[p.param]
		if !ok {
			continue
		}
		if vs[0] == "" {
			s.writeError(w, r, server.Errorf(server.EInvalid, "%s is empty: give %s, or leave the parameter out to list everything", p.param, p.what))
			return
		}
		if err := checkText(p.param, vs[0], p.max); err != nil {
			s.writeError(w, r, err)
			return
		}
		*p.to = vs[0]
	}
	if vs, ok := q["pipeline_id"]; ok {
		p, err := server.NormalizePipelineID(vs[0])
		if err == nil && p == "" {
			err = server.Errorf(server.EInvalid, "pipeline_id is empty: give the pipeline's UUID, or leave the parameter out to list everything")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.PipelineID = p
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, server.Errorf(server.EInvalid, "limit must be between 1 and 1000 (got %q)", v))
			return
		}
		limit = n
	}
	page, err := s.store.ListAssets(r.Context(), acct.ID, f, q.Get("cursor"), limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := protocol.AssetList{Assets: make([]protocol.Asset, 0, len(page.Assets)), NextCursor: page.Next}
	for _, a := range page.Assets {
		out.Assets = append(out.Assets, s.newAssetBody(r, a))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleGetAsset answers GET /api/storage/assets/{id}.
func (s *Server) handleGetAsset(w http.ResponseWriter, r *http.Request, acct server.Account) {
	a, err := s.store.AssetByID(r.Context(), acct.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, assetNotFound(err))
		return
	}
	writeJSON(w, http.StatusOK, protocol.AssetResponse{Success: true, Asset: s.newAssetBody(r, a)})
}

func assetNotFound(err error) error {
	if server.ErrorCode(err) == server.ENotFound {
		return server.Errorf(server.ENotFound, "no such file (no file of this account has that id)")
	}
	return err
}

// handleDeleteAsset answers DELETE /api/storage/assets/{id}. The bytes
// are freed from the quota when no other asset of the account shares them.
func (s *Server) handleDeleteAsset(w http.ResponseWriter, r *http.Request, acct server.Account) {
	ctx := r.Context()
	id := r.PathValue("id")
	a, err := s.store.AssetByID(ctx, acct.ID, id)
	if err != nil {
		s.writeError(w, r, assetNotFound(err))
		return
	}
	garbage, err := s.store.DeleteAsset(ctx, acct.ID, id)
	if err != nil {
		s.writeError(w, r, assetNotFound(err))
		return
	}
	var freed int64
	if garbage != "" {
		freed = a.Size
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := s.blobs.Delete(cctx, garbage); err != nil {
			s.log.Warn("delete object; the collector will retry", "key", garbage, "err", err)
		} else if err := s.store.ObjectCollected(cctx, garbage); err != nil {
			s.log.Warn("forget object", "key", garbage, "err", err)
		}
		cancel()
	}
	writeJSON(w, http.StatusOK, protocol.DeleteResponse{Success: true, Deleted: id, FreedBytes: freed})
}

// byteRange is a resolved Range request.
type byteRange struct{ start, length int64 }

// rangeNum reads a range bound: ASCII digits only (no sign, unlike
// strconv), spaces and tabs around them allowed. A number too large for
// int64 saturates: it lies beyond any object, and a huge last-pos or
// suffix-length is valid (RFC 9110 14.1.2).
func rangeNum(s string) (int64, bool) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		if n > (math.MaxInt64-int64(d))/10 {
			n = math.MaxInt64
		} else {
			n = n*10 + int64(d)
		}
	}
	return n, true
}

// parseRange resolves a single-range Range header against size. ok is
// false when the header should be ignored (absent, or several ranges:
// the whole object is sent); err is EInvalidRange when unsatisfiable.
func parseRange(h string, size int64) (br byteRange, ok bool, err error) {
	if h == "" {
		return byteRange{}, false, nil
	}
	const p = "bytes="
	if !strings.HasPrefix(h, p) {
		return byteRange{}, false, server.Errorf(server.EInvalidRange, "Range must be bytes=start-end")
	}
	spec := strings.Trim(h[len(p):], " \t")
	if strings.Contains(spec, ",") {
		return byteRange{}, false, nil
	}
	dash := strings.IndexByte(spec, '-')
	if dash < 0 {
		return byteRange{}, false, server.Errorf(server.EInvalidRange, "malformed Range %q", h)
	}
	a, b := strings.Trim(spec[:dash], " \t"), strings.Trim(spec[dash+1:], " \t")
	if a == "" { // suffix: last b bytes
		n, ok := rangeNum(b)
		if !ok || n <= 0 {
			return byteRange{}, false, server.Errorf(server.EInvalidRange, "malformed Range %q", h)
		}
		n = min(n, size)
		if n == 0 {
			return byteRange{}, false, server.Errorf(server.EInvalidRange, "range %q is outside the %d-byte object", h, size)
		}
		return byteRange{start: size - n, length: n}, true, nil
	}
	start, ok := rangeNum(a)
	if !ok {
		return byteRange{}, false, server.Errorf(server.EInvalidRange, "malformed Range %q", h)
	}
	if start >= size {
		return byteRange{}, false, server.Errorf(server.EInvalidRange, "range %q starts beyond the %d-byte object", h, size)
	}
	end := size - 1
	if b != "" {
		e, ok := rangeNum(b)
		if !ok || e < start {
			return byteRange{}, false, server.Errorf(server.EInvalidRange, "malformed Range %q", h)
		}
		end = min(e, size-1)
	}
	return byteRange{start: start, length: end - start + 1}, true, nil
}

// countingWriter counts bytes written.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// handleDownload answers GET /api/storage/assets/{id}/download: the
// object streamed through the server, with single Range support; bytes
// sent count toward the monthly bandwidth quota.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request, acct server.Account) {
	ctx := r.Context()
	a, err := s.store.AssetByID(ctx, acct.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, assetNotFound(err))
		return
	}
	// The ETag names the content by what the server verified: the
	// whole-file SHA-256 where it hashed the file, else the chunk list.
	etag := `"` + a.ContentID + `"`
	rangeHeader := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		rangeHeader = "" // the client's copy is stale: send everything
	}
	br, partial, err := parseRange(rangeHeader, a.Size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", a.Size))
		writeJSON(w, http.StatusRequestedRangeNotSatisfiable, protocol.ErrorBody{Error: server.ErrorMessage(err), Code: server.EInvalidRange})
		if info := requestInfoFrom(ctx); info != nil {
			info.errMsg = server.ErrorMessage(err)
		}
		return
	}
	if !partial {
		br = byteRange{start: 0, length: a.Size}
	}
	if r.Method != http.MethodHead && br.length > 0 {
		used, err := s.store.BandwidthUsed(ctx, acct.ID, s.now())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if quota := acct.BandwidthQuotaBytes(); used+br.length > quota {
			s.writeError(w, r, server.Errorf(server.EBandwidthExceeded,
				"monthly bandwidth quota exceeded: this download is %s, %s of your %s are used this month; upgrade your tier or wait for next month",
				units.HumanBytes(br.length), units.HumanBytes(used), units.HumanBytes(quota)))
			return
		}
	}
	var body io.ReadCloser
	if br.length > 0 && r.Method != http.MethodHead {
		body, _, err = s.blobs.Get(ctx, a.ObjectKey, br.start, br.length)
		if err != nil {
			if errors.Is(err, blob.ErrNotFound) {
				err = fmt.Errorf("asset %s: object %s missing: %w", a.ID, a.ObjectKey, err)
			}
			s.writeError(w, r, err)
			return
		}
		defer body.Close()
	}
	h := w.Header()
	ct := a.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.FormatInt(br.length, 10))
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", etag)
	if a.SHA256Verified {
		h.Set(protocol.HeaderContentSHA256, a.SHA256) // only a hash the server computed
	}
	// The file name only: a stored name may keep its folders
	// ("photos/sub/q.jpg"), which a browser must not be asked to create.
	h.Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(path.Base(a.Filename)))
	h.Set("X-Content-Type-Options", "nosniff")
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.start, br.start+br.length-1, a.Size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if body == nil {
		return
	}
	cw := &countingWriter{w: w}
	_, copyErr := io.Copy(cw, body)
	if copyErr != nil {
		s.log.Warn("download interrupted", "asset", a.ID, "sent", cw.n, "err", copyErr)
	}
	s.metrics.downloadedBytes.Add(float64(cw.n))
	if err := s.store.RecordDownload(context.WithoutCancel(ctx), acct.ID, a.ID, cw.n, s.now()); err != nil {
		s.log.Warn("record download", "asset", a.ID, "err", err)
	}
}
