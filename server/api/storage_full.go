package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/chunkadmit"
)

// The server's own storage being full (not an account's quota): writes
// the object store refuses with blob.ErrNoSpace are answered 507
// insufficient_storage, which clients do not retry at once; /readyz
// reports the storage as "full" (see storageReadiness); a new upload
// whose size does not fit in the free space is refused before any byte
// is sent.

// storageFullMessage is what a client is told, on the origin and on
// relays (see chunkadmit.StorageFullMessage).
const storageFullMessage = chunkadmit.StorageFullMessage

// storageFullFor is how long /readyz reports the storage full after a
// write was refused for lack of space (the only sign an S3 backend gives).
const storageFullFor = 30 * time.Second

// storageFull turns an error that says the object store is full into the
// client's 507 (a chunk's comes as one already, from chunkadmit, with the
// store's error behind it), and reports the storage full for a while;
// other errors pass unchanged.
func (s *Server) storageFull(r *http.Request, err error) error {
	if !errors.Is(err, blob.ErrNoSpace) {
		return err
	}
	s.fullUntil.Store(s.now().Add(storageFullFor).UnixNano())
	s.log.Warn("storage full: a write was refused; free space in the object store", "method", r.Method, "route", r.Pattern, "err", err)
	if server.ErrorCode(err) == server.EInsufficientStorage {
		return err
	}
	return server.Errorf(server.EInsufficientStorage, "%s", storageFullMessage)
}

// MinFree is the free space the object store must keep for /readyz to
// report it ready: Bytes, or Percent of the backend's size. The zero
// value is the default, the smaller of 1 GiB and 5% of the filesystem;
// Off disables the check.
type MinFree struct {
	Bytes   int64
	Percent float64
	Off     bool
}

// DefaultMinFreeBytes and DefaultMinFreePercent make MinFree's default.
const (
	DefaultMinFreeBytes   = 1 << 30
	DefaultMinFreePercent = 5
)

// of returns the threshold in bytes for a backend of total bytes.
func (m MinFree) of(total int64) int64 {
	switch {
	case m.Off:
		return 0
	case m.Percent > 0:
		return int64(float64(total) * m.Percent / 100)
	case m.Bytes > 0:
		return m.Bytes
	}
	return min(DefaultMinFreeBytes, int64(float64(total)*DefaultMinFreePercent/100))
}

// ParseMinFree reads JETTY_STORAGE_MIN_FREE: "" for the default, a size
// ("2GiB", "500MB", "1048576"), a percentage of the filesystem ("10%"),
// or "0"/"off" to disable the check.
func ParseMinFree(v string) (MinFree, error) {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "":
		return MinFree{}, nil
	case "0", "off", "none":
		return MinFree{Off: true}, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f <= 0 || f >= 100 {
			return MinFree{}, fmt.Errorf("storage min free %q: a percentage must be between 0 and 100", v)
		}
		return MinFree{Percent: f}, nil
	}
	n, err := parseBytes(v)
	if err != nil || n <= 0 {
		return MinFree{}, fmt.Errorf("storage min free %q: give a size such as 2GiB or 500MB, a percentage such as 5%%, or off", v)
	}
	return MinFree{Bytes: n}, nil
}

// parseBytes reads a byte count with an optional unit (B, KB, MB, GB,
// TB: powers of 1000; KiB, MiB, GiB, TiB, and K, M, G, T: powers of 1024).
func parseBytes(v string) (int64, error) {
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	num, err := strconv.ParseFloat(v[:i], 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}[strings.ToLower(strings.TrimSpace(v[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit in %q", v)
	}
	return int64(num * mult), nil
}

// storageReadiness is /readyz's storage check: "ok", "full", or
// "unavailable" (its free space cannot be read). A store that can tell
// its free space (files) is full below MinFree; one that cannot (S3) is
// full for storageFullFor after it refused a write for lack of space,
// and otherwise not reported ("").
func (s *Server) storageReadiness(ctx context.Context) (string, bool) {
	sr, ok := s.blobs.(blob.SpaceReporter)
	if !ok {
		if s.now().UnixNano() < s.fullUntil.Load() {
			return "full", false
		}
		return "", true
	}
	sp, err := sr.Space(ctx)
	if err != nil {
		s.log.Warn("readyz: storage space", "err", err)
		return "unavailable", false
	}
	if floor := s.minFree.of(sp.Total); sp.Free < floor {
		s.log.Warn("readyz: storage below its free-space floor (JETTY_STORAGE_MIN_FREE)", "free_bytes", sp.Free, "min_free_bytes", floor)
		return "full", false
	}
	return "ok", true
}

// checkRoom refuses a new upload of size bytes (plus room to assemble one
// chunk of chunk bytes) that cannot fit in the object store's free space,
// before any byte is sent. Stores that cannot tell their space pass.
func (s *Server) checkRoom(ctx context.Context, size, chunk int64) error {
	sr, ok := s.blobs.(blob.SpaceReporter)
	if !ok || size <= 0 {
		return nil
	}
	sp, err := sr.Space(ctx)
	if err != nil {
		return nil // the write itself will tell
	}
	if need := size + chunk; sp.Free < need {
		s.log.Warn("storage full: refused an upload that does not fit", "size", size, "free_bytes", sp.Free)
		return server.Errorf(server.EInsufficientStorage, "the server's storage is full: it has %s free, this upload needs %s; nothing was stored; try again later, and tell the server's operator if it lasts", units.HumanBytes(sp.Free), units.HumanBytes(need))
	}
	return nil
}
