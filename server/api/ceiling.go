package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
)

// RateCeiling is a server-wide ceiling on the user API beside the tiers'
// per-minute limits (seed 002's RATE_LIMIT_MAX_REQUESTS per
// RATE_LIMIT_WINDOW_MS): at most Max calls per Window for each account,
// and for each client address among the calls that fail to authenticate.
// Counted by the Limiter, so shared by every instance on Redis. The zero
// value is no ceiling. The data plane (chunk PUTs, presigned parts, the
// probe), the partner and relay calls, health and metrics are not
// counted (docs/decisions.md, issue 19).
type RateCeiling struct {
	Max    int
	Window time.Duration
}

// ceiling counts one call under key against the ceiling; a
// *rateLimitError when it is over. Limiter failures fail open, as the
// tier limits do.
func (s *Server) ceiling(ctx context.Context, w http.ResponseWriter, key string) error {
	c := s.rateCeiling
	if c.Max <= 0 || c.Window <= 0 {
		return nil
	}
	res, err := s.limiter.Allow(ctx, "ceil:"+key, c.Max, c.Window)
	if err != nil {
		s.log.Warn("rate limiter unavailable, allowing request", "err", err)
		return nil
	}
	// The headers tell the tighter of the two limits.
	if cur, err := strconv.Atoi(w.Header().Get("X-RateLimit-Remaining")); err != nil || res.Remaining < cur {
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
	}
	if res.Allowed {
		return nil
	}
	s.metrics.rateLimited.Inc()
	return &rateLimitError{
		err:        server.Errorf(server.ERateLimited, "this server's rate limit of %d requests per %s reached (RATE_LIMIT_MAX_REQUESTS): retry after the Retry-After seconds", c.Max, windowText(c.Window)),
		retryAfter: res.RetryAfter,
	}
}

// authFailure reports a refusal of the caller's credentials (not an
// outage), which the ceiling counts per client address.
func authFailure(err error) bool {
	switch server.ErrorCode(err) {
	case server.EMissingAuth, server.EMalformedAPIKey, server.EMissingAPISecret, server.EUnknownAPIKey,
		server.EWrongAPISecret, server.EAccountSuspended, server.EAccountDeleted:
		return true
	}
	return false
}

// windowText is a window as people write it: 1m, 90s, 1h30m.
func windowText(d time.Duration) string {
	t := d.String()
	if strings.HasSuffix(t, "m0s") {
		t = strings.TrimSuffix(t, "0s")
	}
	if strings.HasSuffix(t, "h0m") {
		t = strings.TrimSuffix(t, "0m")
	}
	return t
}
