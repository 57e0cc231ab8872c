package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// partner wraps a handler for AgentCache calls. The caller proves it
// holds AGENTCACHE_WEBHOOK_SECRET in one of two ways:
//
//   - X-Jetty-Signature: t=<unix>,v1=<HMAC> over the timestamp, method,
//     path and raw body (server/webhooksig). The secret never travels, a
//     captured request is refused after 300 s, and a second copy inside
//     that window is refused as a replay. When the header is present it
//     must verify, whatever else the request carries.
//   - Authorization: Bearer <secret>, compared in constant time, unless
//     the server requires signatures (AGENTCACHE_REQUIRE_SIGNATURE).
//
// During a secret rotation the previous secret
// (AGENTCACHE_WEBHOOK_SECRET_PREVIOUS) is accepted too, both ways.
func (s *Server) partner(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.secret == "" {
			s.writeError(w, r, server.Errorf(server.EUnauthorized, "partner API disabled: the server has no AGENTCACHE_WEBHOOK_SECRET configured"))
			return
		}
		if sig := r.Header.Get(webhooksig.Header); sig != "" {
			if err := s.verifySignature(w, r, sig); err != nil {
				s.writeError(w, r, err)
				return
			}
			connguard.Authenticated(r.Context())
			h(w, r)
			return
		}
		if s.requireSig {
			s.writeError(w, r, server.Errorf(server.EUnauthorized, "missing %s header: this server requires signed partner calls (t=<unix seconds>,v1=<HMAC-SHA256 of \"<t>.<METHOD> <path>.<body>\">, see docs/partner-webhooks.md)", webhooksig.Header))
			return
		}
		token, ok := bearer(r)
		if !ok || token == "" {
			s.writeError(w, r, server.Errorf(server.EUnauthorized, "missing webhook secret: send Authorization: Bearer <AGENTCACHE_WEBHOOK_SECRET> or a %s header", webhooksig.Header))
			return
		}
		if !s.partnerSecretMatches(token) {
			s.writeError(w, r, server.Errorf(server.EUnauthorized, "wrong webhook secret: check that AgentCache's JETTYTHUNDER_WEBHOOK_SECRET matches this server's AGENTCACHE_WEBHOOK_SECRET"))
			return
		}
		connguard.Authenticated(r.Context())
		h(w, r)
	}
}

// partnerSecretMatches compares token with the current and the previous
// webhook secret, both in constant time, always both.
func (s *Server) partnerSecretMatches(token string) bool {
	cur := apikey.EqualConstantTime(token, s.secret)
	prev := s.prevSecret != "" && apikey.EqualConstantTime(token, s.prevSecret)
	return cur || prev
}

// verifySignature checks a signed partner call and puts its body back for
// the handler. A Bearer token sent alongside must be right too: a wrong
// secret is never ignored.
func (s *Server) verifySignature(w http.ResponseWriter, r *http.Request, sig string) error {
	if tok, ok := bearer(r); ok && tok != "" && !s.partnerSecretMatches(tok) {
		return server.Errorf(server.EUnauthorized, "wrong webhook secret in the Authorization header (the request is also signed; send one or the other)")
	}
	if r.ContentLength > maxJSONBody {
		return server.Errorf(server.ETooLarge, "request body is %d bytes; the limit is %d", r.ContentLength, maxJSONBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return server.Errorf(server.ETooLarge, "request body is larger than %d bytes", maxJSONBody)
		}
		if bodyStalled(err) {
			return errBodyStalled
		}
		return server.Errorf(server.EInvalid, "reading the request body: it ended early")
	}
	v, err := webhooksig.Verify(sig, []string{s.secret, s.prevSecret}, s.now(), r.Method, r.URL.EscapedPath(), body)
	if err != nil {
		s.metrics.webhookSigs.WithLabelValues(sigOutcome(err)).Inc()
		return server.Errorf(server.EUnauthorized, "%s: %v", webhooksig.Header, err)
	}
	// Bounded: a hung Redis must not hold a partner call for go-redis's
	// own timeouts (the same bound as the rate limiter's).
	cctx, cancel := context.WithTimeout(r.Context(), time.Second)
	fresh, err := s.replays.SetNX(cctx, v.ReplayKey(), []byte{1}, 2*webhooksig.Tolerance)
	cancel()
	switch {
	case err != nil:
		// The timestamp still bounds a replay to 300 s; refusing every
		// partner call because the cache is down would be worse.
		s.log.Warn("webhook replay cache unavailable, accepting a signed call on its timestamp alone", "err", err)
	case !fresh:
		s.metrics.webhookSigs.WithLabelValues("replayed").Inc()
		return server.Errorf(server.EUnauthorized, "%s: this signed request was already received (a replay); sign each call with a fresh timestamp", webhooksig.Header)
	}
	s.metrics.webhookSigs.WithLabelValues("ok").Inc()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return nil
}

func sigOutcome(err error) string {
	switch {
	case errors.Is(err, webhooksig.ErrStale):
		return "stale"
	case errors.Is(err, webhooksig.ErrMismatch):
		return "mismatch"
	}
	return "malformed"
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// credentials extracts an API key and secret from either Bearer +
// X-API-Secret or HTTP Basic key:secret.
func credentials(r *http.Request) (key, secret string, err error) {
	if k, s, ok := r.BasicAuth(); ok {
		key, secret = k, s
	} else if tok, ok := bearer(r); ok {
		key, secret = tok, r.Header.Get(protocol.HeaderAPISecret)
	} else {
		return "", "", server.Errorf(server.EMissingAuth, "missing credentials: send Authorization: Bearer <API key> with X-API-Secret: <API secret>, or HTTP Basic key:secret (run `jetty login`)")
	}
	key, secret = strings.TrimSpace(key), strings.TrimSpace(secret)
	if key == "" {
		return "", "", server.Errorf(server.EMissingAuth, "missing API key in the Authorization header")
	}
	if err := protocol.CheckAPIKey(key); err != nil {
		return "", "", server.Errorf(server.EMalformedAPIKey, "malformed API key: %v", err)
	}
	if secret == "" {
		return "", "", server.Errorf(server.EMissingAPISecret, "API key given without its secret: add the header X-API-Secret: jts_... (the secret shown once at provisioning)")
	}
	if err := protocol.CheckAPISecret(secret); err != nil {
		return "", "", server.Errorf(server.EWrongAPISecret, "malformed API secret: %v", err)
	}
	return key, secret, nil
}

// authenticate resolves the caller's account from its key and secret.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (server.Account, error) {
	key, secret, err := credentials(r)
	if err != nil {
		return server.Account{}, err
	}
	acct, err := s.store.AccountByAPIKey(ctx, key)
	if server.ErrorCode(err) == server.ENotFound {
		// Spend the same hashing work as a real comparison.
		apikey.SecretMatches(secret, strings.Repeat("0", 64))
		return server.Account{}, server.Errorf(server.EUnknownAPIKey, "unknown API key: it was never issued or has been rotated (run `jetty login` with current credentials)")
	}
	if err != nil {
		return server.Account{}, err
	}
	hash := acct.SecretHash
	if !apikey.EqualConstantTime(key, acct.APIKey) {
		// The previous key of a rotation: valid until its overlap ends.
		if !s.now().Before(acct.PrevKeyExpiresAt) {
			apikey.SecretMatches(secret, strings.Repeat("0", 64))
			return server.Account{}, server.Errorf(server.EUnknownAPIKey, "API key was rotated and its overlap has ended: use the new credentials (run `jetty login` with them)")
		}
		hash = acct.PrevSecretHash
	}
	if !apikey.SecretMatches(secret, hash) {
		return server.Account{}, server.Errorf(server.EWrongAPISecret, "wrong API secret for this API key")
	}
	if err := accountUsable(acct); err != nil {
		return server.Account{}, err
	}
	return acct, nil
}

// accountUsable refuses a suspended or deleted account.
func accountUsable(acct server.Account) error {
	switch acct.Status {
	case server.StatusSuspended:
		return server.Errorf(server.EAccountSuspended, "account suspended: contact AgentCache support to reactivate it")
	case server.StatusDeleted:
		return server.Errorf(server.EAccountDeleted, "account deleted: these credentials no longer work")
	}
	return nil
}

// activeAccount loads an account by id and refuses it when it is
// suspended or deleted. Calls authenticated by an upload token (chunk
// PUTs, presigned parts, relays' session lookups) use it so that a
// suspension or deletion stops an open session's bytes with the next
// request, not when the token expires.
func (s *Server) activeAccount(ctx context.Context, accountID string) (server.Account, error) {
	acct, err := s.store.AccountByID(ctx, accountID)
	if err != nil {
		if server.ErrorCode(err) == server.ENotFound {
			return acct, server.Errorf(server.EAccountDeleted, "account deleted: these credentials no longer work")
		}
		return acct, err
	}
	return acct, accountUsable(acct)
}

// user wraps a handler for calls authenticated by API key and secret. It
// applies the tier's per-minute rate limit and records the caller.
func (s *Server) user(h func(http.ResponseWriter, *http.Request, server.Account)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		acct, err := s.authenticate(ctx, r)
		if err != nil {
			if authFailure(err) {
				// Refused credentials count against the server's ceiling
				// per client address (ceiling.go).
				if lerr := s.ceiling(ctx, w, "ip:"+clientIP(r)); lerr != nil {
					err = lerr
				}
			}
			s.writeError(w, r, err)
			return
		}
		connguard.Authenticated(ctx)
		if info := requestInfoFrom(ctx); info != nil {
			info.accountID = acct.ID
		}
		if err := s.rateLimit(ctx, w, acct); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := s.ceiling(ctx, w, "acct:"+acct.ID); err != nil {
			s.writeError(w, r, err)
			return
		}
		if now := s.now(); now.Sub(acct.LastAccessed) > time.Minute {
			if err := s.store.TouchAccount(ctx, acct.ID, now); err != nil {
				s.log.Warn("touch account", "account", acct.ID, "err", err)
			}
		}
		h(w, r.WithContext(context.WithValue(ctx, accountKey, acct)), acct)
	}
}

// rateLimit applies the tier's rate_limit_per_minute to control-plane
// calls. Limiter failures fail open (logged): an outage of Redis must not
// take uploads down with it.
func (s *Server) rateLimit(ctx context.Context, w http.ResponseWriter, acct server.Account) error {
	t, err := s.tier(ctx, acct.Tier)
	if err != nil {
		return err
	}
	if t.RateLimitPerMinute <= 0 {
		return nil
	}
	res, err := s.limiter.Allow(ctx, "acct:"+acct.ID, t.RateLimitPerMinute, time.Minute)
	if err != nil {
		s.log.Warn("rate limiter unavailable, allowing request", "err", err)
		return nil
	}
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
	if !res.Allowed {
		s.metrics.rateLimited.Inc()
		return &rateLimitError{
			err:        server.Errorf(server.ERateLimited, "rate limit of %d requests per minute for tier %q reached: retry after the Retry-After seconds, or upgrade for a higher limit", t.RateLimitPerMinute, t.Name),
			retryAfter: res.RetryAfter,
		}
	}
	return nil
}
