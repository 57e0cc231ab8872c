package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
)

// OutageRetryAfter is the Retry-After of a 503 unavailable: long enough
// for a restarting database or a store shedding load, short enough that a
// client resumes soon after. Clients add their own jitter.
const OutageRetryAfter = 5 * time.Second

// asOutage turns an error of a part that is down for the moment into
// 503 unavailable with Retry-After, so clients pace themselves instead of
// reporting a bug: the database (the store wraps server.ErrUnavailable:
// refused, reset, restarting, out of connections, locked) or the object
// store (blob.IsUnavailable: unreachable, 5xx, SlowDown, a file system out
// of descriptors). Anything else, real bugs included, comes back
// unchanged (500 internal). The cause is logged as a warning; the answer
// names the part, never its address or the driver's text.
func (s *Server) asOutage(r *http.Request, err error) error {
	if server.ErrorCode(err) != server.EInternal {
		return err // already an answer meant for the client
	}
	var part string
	switch {
	case errors.Is(err, server.ErrUnavailable):
		part = "the database"
	case blob.IsUnavailable(err):
		part = "storage"
	default:
		return err
	}
	s.log.Warn("dependency unavailable", "method", r.Method, "route", r.Pattern, "err", err)
	return &rateLimitError{
		err:        server.Errorf(server.EUnavailable, "%s of this server is unavailable for the moment: retry in %d seconds", part, int(OutageRetryAfter.Seconds())),
		retryAfter: OutageRetryAfter,
	}
}
