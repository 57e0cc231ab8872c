package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// RetryPolicy says how failed requests are retried. Zero fields take the
// defaults.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts of one request, the first included
	// (default 8). Token refreshes after 401 token_expired do not count.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff: before attempt n+1 the
	// engine waits a uniformly random time in [c/2, c] with c =
	// min(MaxDelay, BaseDelay×2^(n-1)) ("equal jitter"), or Retry-After
	// when the server sent one. Defaults 250 ms and 20 s: the 7 waits of
	// the default 8 attempts add up to at least 15.9 s (23.8 s on
	// average), so a request outlives a 15-second outage of any part.
	BaseDelay, MaxDelay time.Duration
	// ChunkTimeout bounds one attempt of one chunk PUT. Default: 5 minutes,
	// plus twice the time the bandwidth limit needs for the chunks of all
	// workers when there is a limit.
	ChunkTimeout time.Duration
	// BreakerCooldown is how long a route whose circuit breaker opened
	// (consecutive failures, or a draining edge) gets no chunks before
	// one trial chunk is sent through it again. Default 10 s.
	BreakerCooldown time.Duration
}

// Defaults of RetryPolicy.
const (
	DefaultMaxAttempts  = 8
	DefaultBaseDelay    = 250 * time.Millisecond
	DefaultMaxDelay     = 20 * time.Second
	DefaultChunkTimeout = 5 * time.Minute
	// DefaultBreakerCooldown is RetryPolicy.BreakerCooldown's default.
	DefaultBreakerCooldown = 10 * time.Second
	// checksumRetries is how many times a chunk refused with 400
	// checksum_mismatch is sent again when the bytes in memory still hash
	// right (the corruption happened on the way).
	checksumRetries = 2
	// tokenRefreshes bounds the refreshes one request may ask for.
	tokenRefreshes = 3
	// controlTimeout bounds one attempt of a control call (a completion
	// assembling 10,000 parts included).
	controlTimeout = 5 * time.Minute
	// maxCrowdedWaits bounds the 429 too_many_streams answers one chunk
	// waits out (about a second each) before the upload fails.
	maxCrowdedWaits = 120
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	if p.BreakerCooldown <= 0 {
		p.BreakerCooldown = DefaultBreakerCooldown
	}
	return p
}

// backoff is the wait after the attempt-th failed attempt (1-based):
// equal jitter, or the server's Retry-After (exactly for 429; as a floor
// for 503, see below). Full jitter (from 0) spreads
// workers as well, but a run of short draws let a request give up inside
// a 10-second storage outage (seen in TestFaultMinIOUnreachable); the
// lower half-bound makes the total predictable.
func (p RetryPolicy) backoff(attempt int, err error) time.Duration {
	ceiling := p.MaxDelay
	if attempt < 32 {
		ceiling = min(p.MaxDelay, p.BaseDelay<<(attempt-1))
	}
	half := ceiling / 2
	d := half + time.Duration(rand.Int64N(int64(ceiling-half)+1))
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		if ae.Status == http.StatusTooManyRequests {
			// A limit names when it opens: honour it, and spread the
			// workers that were all told the same.
			return ae.RetryAfter + time.Duration(rand.Int64N(int64(p.BaseDelay)+1))
		}
		// A part of the server is down (503): wait at least as long as
		// asked, never less than the backoff (whose waits add up to more
		// than an outage usually lasts; a short Retry-After must not let
		// a request give up sooner), spread over a quarter of the wait so
		// that workers told the same do not come back as one.
		spread := max(p.BaseDelay, ae.RetryAfter/4)
		d = max(d, ae.RetryAfter) + time.Duration(rand.Int64N(int64(spread)+1))
	}
	return d
}

// Retryable reports whether a request that failed with err may succeed if
// sent again unchanged: network errors and timeouts, 408, 429 and 5xx
// answers. 400, 403, 404, 409, 410 and 413 never are, nor 507 (the
// server's storage is full: retrying at once only adds load; see
// IsStorageFull); 401 token_expired is not retryable as such (the engine
// refreshes the token first) and a canceled context is final.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || IsStorageFull(err) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusRequestTimeout, ae.Status == http.StatusTooManyRequests:
			return true
		case ae.Status >= 500:
			return ae.Status != http.StatusNotImplemented && ae.Status != http.StatusHTTPVersionNotSupported
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true // a per-attempt timeout; the caller checks its own context first
	}
	return isNetError(err)
}

// ErrStorageFull wraps the error of an upload that stopped because the
// server's storage (or the object store behind it) is full: 507
// insufficient_storage, or the store's own storage-full answer on the
// direct route. It is final for the upload: no chunk is retried, nothing
// is failed over. What the server holds is kept; the same upload run
// again later resumes.
var ErrStorageFull = errors.New("the server's storage is full; the upload stopped")

// IsStorageFull reports an answer saying the server's storage is full.
func IsStorageFull(err error) bool {
	if errors.Is(err, ErrStorageFull) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusInsufficientStorage ||
		ae.Code == protocol.CodeInsufficientStorage || ae.Code == S3CodeStorageFull)
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED)
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryControl runs a control call until it succeeds, fails for good or
// runs out of attempts.
func retryControl(ctx context.Context, p RetryPolicy, sleep func(context.Context, time.Duration) error, onRetry func(attempt int, err error, d time.Duration), call func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, controlTimeout)
		err := call(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Retryable(err) || attempt >= p.MaxAttempts {
			return err
		}
		d := p.backoff(attempt, err)
		if onRetry != nil {
			onRetry(attempt, err, d)
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}
