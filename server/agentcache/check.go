package agentcache

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// tierRank orders seed 000's tiers. A tier missing here (a custom row in
// JettyThunder's tier_configs) is not comparable: a provision call naming
// one for an account on another tier is refused, not guessed at.
var tierRank = map[string]int{"free": 0, "starter": 1, "pro": 2, "business": 3, "enterprise": 4}

// higherTier reports whether want is above have in tierRank; ok is false
// when either is not ranked.
func higherTier(want, have string) (higher, ok bool) {
	w, okW := tierRank[want]
	h, okH := tierRank[have]
	return w > h, okW && okH
}

// figures are an account's current figures, as JettyThunder reports them.
type figures struct {
	Tier              string
	Status            string
	StorageQuotaGB    int64
	JettySpeedEnabled bool
}

func (e *entry) apply(f figures) {
	e.Tier = f.Tier
	e.StorageQuotaGB = f.StorageQuotaGB
	e.JettySpeedEnabled = f.JettySpeedEnabled
}

// upstreamError is the body of a JettyThunder error answer.
type upstreamError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Code    string `json:"code"`
}

func decodeError(raw []byte) upstreamError {
	var e upstreamError
	_ = json.Unmarshal(raw, &e)
	e.Code = safeCode(e.Code)
	return e
}

// reconcile answers a cache hit, with the user's lock held: it checks the
// cached credentials with JettyThunder, refreshes the cached figures, and
// upgrades when req names a higher tier than the account has.
func (rl *Relay) reconcile(uctx context.Context, req request, e entry) (Credentials, outcome, error) {
	f, err := rl.check(uctx, req.UserID, e.Credentials)
	if err != nil {
		return Credentials{}, "", err
	}
	e.apply(f)
	e.CheckedAt = time.Now()
	out := outcomeCached
	if req.Tier != e.Tier {
		higher, comparable := higherTier(req.Tier, e.Tier)
		if !comparable || !higher {
			rl.keep(uctx, req.UserID, e)
			why := "lower than"
			if !comparable {
				why = "not comparable with"
			}
			return Credentials{}, "", fail(http.StatusConflict, CodeTierMismatch,
				"user %q's JettyThunder account is on tier %q; the requested tier %q is %s it, and a provision call only ever upgrades. Nothing was changed; to change the tier, call POST %s with {\"user_id\", \"tier\"}",
				req.UserID, e.Tier, req.Tier, why, UpgradePath)
		}
		a, err := rl.upgradeUpstream(uctx, req.UserID, req.Tier)
		if err != nil {
			rl.keep(uctx, req.UserID, e)
			return Credentials{}, "", err
		}
		e.Tier, e.StorageQuotaGB, e.JettySpeedEnabled = cmp.Or(a.Tier, req.Tier), a.StorageQuotaGB, a.JettySpeedEnabled
		e.CheckedAt = time.Now()
		out = outcomeUpgraded
	}
	rl.keep(uctx, req.UserID, e)
	return e.Credentials, out, nil
}

// keep writes a checked entry back. A failure is logged only: the
// credentials were just confirmed, and the next call checks them again.
func (rl *Relay) keep(ctx context.Context, userID string, e entry) {
	if err := rl.store(ctx, userID, e); err != nil {
		rl.log.LogAttrs(ctx, slog.LevelWarn, "jettythunder checked credentials not written back to the cache",
			slog.String("user_id", userID), slog.String("cause", err.Error()))
	}
}

// drop deletes the user's entry: JettyThunder said its credentials are
// refused for good.
func (rl *Relay) drop(ctx context.Context, userID, why string) {
	err := rl.cfg.Cache.Delete(ctx, CredentialsKey(userID))
	attrs := []slog.Attr{slog.String("user_id", userID), slog.String("reason", why)}
	if err != nil {
		attrs = append(attrs, slog.String("cause", err.Error()))
		rl.log.LogAttrs(ctx, slog.LevelError, "jettythunder refused credentials could not be dropped from the cache; they are checked again before any use", attrs...)
		return
	}
	rl.log.LogAttrs(ctx, slog.LevelInfo, "jettythunder refused credentials dropped from the cache", attrs...)
}

// check calls GET /api/agentcache/quota with the cached credentials. A
// 200 proves they work and gives the current figures. The entry is
// dropped only on JettyThunder's explicit word (unknown_api_key,
// wrong_api_secret, account_deleted); any other failure keeps it and
// answers an error, never the credentials.
func (rl *Relay) check(ctx context.Context, userID string, c Credentials) (figures, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, rl.base+UpstreamQuotaPath, nil)
	if err != nil {
		return figures{}, err
	}
	hreq.Header.Set("Authorization", "Bearer "+c.APIKey)
	hreq.Header.Set(protocol.HeaderAPISecret, c.APISecret)
	hreq.Header.Set("Accept", "application/json")
	resp, err := rl.cfg.HTTPClient.Do(hreq)
	if err != nil {
		e := uncheckable("the request failed")
		e.cause = err
		return figures{}, e
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		e := uncheckable("the answer could not be read")
		e.cause = err
		return figures{}, e
	}
	ue := decodeError(raw)
	switch {
	case resp.StatusCode == http.StatusOK:
		var q protocol.Quota
		if err := json.Unmarshal(raw, &q); err != nil || q.Tier == "" {
			return figures{}, uncheckable("HTTP 200 without the account's tier")
		}
		if q.Status != "" && q.Status != string(server.StatusActive) {
			// This server refuses such accounts before answering; another
			// implementation might not.
			return figures{}, rl.statusRefusal(ctx, userID, q.Status)
		}
		return figures{Tier: q.Tier, Status: q.Status, StorageQuotaGB: q.Storage.QuotaGB, JettySpeedEnabled: q.JettySpeedEnabled}, nil
	case resp.StatusCode == http.StatusUnauthorized && credentialsRefused(ue.Code):
		rl.drop(ctx, userID, ue.Code)
		return figures{}, fail(http.StatusConflict, CodeCredentialsRevoked,
			"JettyThunder refused user %q's cached credentials (%s: they were rotated or revoked); the relay dropped them and hands them out no more. Issue new ones with POST %s (the relay rotates on JettyThunder and caches the new pair)",
			userID, ue.Code, RotatePath)
	case resp.StatusCode == http.StatusForbidden && (ue.Code == server.EAccountDeleted || ue.Code == server.EAccountSuspended):
		return figures{}, rl.statusRefusal(ctx, userID, map[string]string{
			server.EAccountDeleted:   string(server.StatusDeleted),
			server.EAccountSuspended: string(server.StatusSuspended),
		}[ue.Code])
	case resp.StatusCode == http.StatusTooManyRequests:
		e := fail(http.StatusTooManyRequests, server.ERateLimited,
			"JettyThunder is rate-limiting user %q's account, so the relay could not check its cached credentials and hands nothing out; retry after the Retry-After seconds", userID)
		e.retryAfter = "1"
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 && n <= 3600 {
			e.retryAfter = strconv.Itoa(n)
		}
		return figures{}, e
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return figures{}, uncheckable(fmt.Sprintf("HTTP %d from %s; check JETTYTHUNDER_API_URL", resp.StatusCode, UpstreamQuotaPath))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return figures{}, uncheckable(fmt.Sprintf("HTTP %d redirect; set JETTYTHUNDER_API_URL to the final URL", resp.StatusCode))
	default:
		detail := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if ue.Code != server.EInvalid {
			detail += " " + ue.Code
		}
		return figures{}, uncheckable(detail)
	}
}

// statusRefusal answers for an account that is not active: a deleted one's
// entry is dropped, a suspended one's kept for its reactivation.
func (rl *Relay) statusRefusal(ctx context.Context, userID, status string) *relayError {
	switch status {
	case string(server.StatusSuspended):
		return fail(http.StatusForbidden, server.EAccountSuspended,
			"user %q's JettyThunder account is suspended: its credentials are refused until it is reactivated (POST /api/agentcache/reactivate); the relay keeps them and hands them out again once it is", userID)
	case string(server.StatusDeleted):
		rl.drop(ctx, userID, server.EAccountDeleted)
		return fail(http.StatusForbidden, server.EAccountDeleted,
			"user %q's JettyThunder account was deleted: its credentials no longer work and the relay dropped them. A deleted account stays as a tombstone, so this user id cannot be provisioned again", userID)
	}
	return uncheckable(fmt.Sprintf("account status %q", truncate(status, 32)))
}

// uncheckable: the cached credentials could not be checked. The entry is
// kept (a dropped secret cannot be recovered) and nothing is handed out.
func uncheckable(detail string) *relayError {
	return fail(http.StatusBadGateway, CodeUpstreamUnavailable,
		"Failed to connect to JettyThunder to check the cached credentials (%s); they are kept but not handed out until JettyThunder confirms them; retry shortly", detail)
}

// credentialsRefused reports whether an error code (not a secret) says
// the credentials themselves were refused: rotated away or revoked.
func credentialsRefused(code string) bool {
	switch code {
	case server.EUnknownAPIKey, server.EWrongAPISecret:
		return true
	}
	return false
}
