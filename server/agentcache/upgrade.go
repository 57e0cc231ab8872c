package agentcache

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// Account is an account's figures, without credentials, in the answer of
// the upgrade route.
type Account struct {
	UserID            string `json:"user_id"`
	Tier              string `json:"tier"`
	Status            string `json:"status"`
	StorageQuotaGB    int64  `json:"storage_quota_gb"`
	BandwidthQuotaGB  int64  `json:"bandwidth_quota_gb"`
	JettySpeedEnabled bool   `json:"jetty_speed_enabled"`
}

// UpgradeResponse is the body of a successful upgrade answer (200).
type UpgradeResponse struct {
	Success bool    `json:"success"`
	Message string  `json:"message"`
	Account Account `json:"account"`
}

// upgradeRequest is a validated upgrade request.
type upgradeRequest struct {
	UserID string
	Tier   string
}

// readUpgradeRequest reads {user_id, tier}; agentcache_user_id and
// new_tier (seed 002's names) are accepted too.
func readUpgradeRequest(w http.ResponseWriter, r *http.Request) (upgradeRequest, error) {
	raw, err := readBody(w, r)
	if err != nil {
		return upgradeRequest{}, err
	}
	var body struct {
		UserID           string `json:"user_id"`
		AgentCacheUserID string `json:"agentcache_user_id"`
		Tier             string `json:"tier"`
		NewTier          string `json:"new_tier"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return upgradeRequest{}, fail(http.StatusBadRequest, server.EInvalid, "request body is not a JSON object of strings user_id, tier: %v", jsonProblem(err))
	}
	userID, err := oneOf("user_id", body.UserID, "agentcache_user_id", body.AgentCacheUserID)
	if err != nil {
		return upgradeRequest{}, err
	}
	tier, err := oneOf("tier", strings.TrimSpace(body.Tier), "new_tier", strings.TrimSpace(body.NewTier))
	if err != nil {
		return upgradeRequest{}, err
	}
	req := upgradeRequest{UserID: userID, Tier: tier}
	for _, check := range []error{server.ValidateUserID(req.UserID), server.ValidateTierName(req.Tier)} {
		if check != nil {
			return upgradeRequest{}, fail(http.StatusBadRequest, server.ErrorCode(check), "%s", server.ErrorMessage(check))
		}
	}
	return req, nil
}

// serveUpgrade answers POST /api/webhooks/jettythunder/upgrade: under the
// user's lock it changes the tier on JettyThunder (up or down) and writes
// the new figures into the cached entry, if there is one.
func (rl *Relay) serveUpgrade(w http.ResponseWriter, r *http.Request, start time.Time) {
	const op = "jettythunder upgrade"
	req, err := readUpgradeRequest(w, r)
	if err != nil {
		rl.answerError(w, r, op, start, "", err)
		return
	}
	var a upstreamAccount
	err = rl.withLock(r.Context(), req.UserID, nil, func(ctx, uctx context.Context) error {
		var err error
		if a, err = rl.upgradeUpstream(uctx, req.UserID, req.Tier); err != nil {
			return err
		}
		e, ok, err := rl.cached(uctx, req.UserID)
		if err != nil {
			rl.log.LogAttrs(ctx, slog.LevelWarn, "jettythunder tier changed but the cache could not be read; the next provision call reads the new figures from JettyThunder",
				slog.String("user_id", req.UserID), slog.String("cause", err.Error()))
			return nil
		}
		if ok {
			// CheckedAt stays: the credentials themselves were not checked.
			e.Tier, e.StorageQuotaGB, e.JettySpeedEnabled = cmp.Or(a.Tier, req.Tier), a.StorageQuotaGB, a.JettySpeedEnabled
			rl.keep(uctx, req.UserID, e)
		}
		return nil
	})
	if err != nil {
		rl.answerError(w, r, op, start, req.UserID, err)
		return
	}
	acct := Account{
		UserID:            req.UserID,
		Tier:              cmp.Or(a.Tier, req.Tier),
		Status:            a.Status,
		StorageQuotaGB:    a.StorageQuotaGB,
		BandwidthQuotaGB:  a.BandwidthQuotaGB,
		JettySpeedEnabled: a.JettySpeedEnabled,
	}
	writeJSON(w, http.StatusOK, UpgradeResponse{Success: true, Message: "JettyThunder storage account moved to tier " + acct.Tier, Account: acct})
	rl.log.LogAttrs(r.Context(), slog.LevelInfo, op,
		slog.String("user_id", req.UserID),
		slog.String("outcome", "changed"),
		slog.String("tier", acct.Tier),
		slog.Int("status", http.StatusOK),
		slog.Duration("duration", time.Since(start)))
}

// upgradeUpstream calls POST /api/agentcache/upgrade (signed) and returns
// the account it answers. A deleted account's cached entry is dropped.
func (rl *Relay) upgradeUpstream(ctx context.Context, userID, tier string) (upstreamAccount, error) {
	a, err := rl.partnerCall(ctx, UpstreamUpgradePath, userID, map[string]any{"agentcache_user_id": userID, "tier": tier})
	if err == nil && a.Tier == "" {
		return upstreamAccount{}, unreachable(fmt.Sprintf("%s answered without the account's tier", UpstreamUpgradePath))
	}
	return a, err
}

// partnerCall makes a signed partner call about one user's account and
// returns the account it answers. A deleted account's cached entry is
// dropped.
func (rl *Relay) partnerCall(ctx context.Context, path, userID string, payload map[string]any) (upstreamAccount, error) {
	payload["nonce"] = randomToken()
	body, err := json.Marshal(payload)
	if err != nil {
		return upstreamAccount{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, rl.base+path, bytes.NewReader(body))
	if err != nil {
		return upstreamAccount{}, err
	}
	hreq.Header.Set(webhooksig.Header, webhooksig.Sign(rl.cfg.UpstreamSecret, time.Now(), http.MethodPost, hreq.URL.EscapedPath(), body))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := rl.cfg.HTTPClient.Do(hreq)
	if err != nil {
		e := unreachable(path + ": the request failed")
		e.cause = err
		return upstreamAccount{}, e
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		e := unreachable(path + ": the answer could not be read")
		e.cause = err
		return upstreamAccount{}, e
	}
	ue := decodeError(raw)
	msg := truncate(cmp.Or(ue.Error, ue.Message), 500)
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		var ans struct {
			Success *bool           `json:"success"`
			Account upstreamAccount `json:"account"`
		}
		if err := json.Unmarshal(raw, &ans); err != nil || (ans.Success != nil && !*ans.Success) {
			// Do not log raw: it may hold a secret.
			return upstreamAccount{}, unreachable(fmt.Sprintf("%s: HTTP %d without an account", path, resp.StatusCode))
		}
		return ans.Account, nil
	case resp.StatusCode == http.StatusBadRequest:
		return upstreamAccount{}, fail(http.StatusBadRequest, ue.Code, "%s", cmp.Or(msg, "JettyThunder rejected the request"))
	case resp.StatusCode == http.StatusNotFound && ue.Code == server.ENotFound && strings.Contains(msg, "account"):
		return upstreamAccount{}, fail(http.StatusNotFound, server.ENotFound,
			"JettyThunder has no storage account for user %q; provision it first (POST %s)", userID, Path)
	case resp.StatusCode == http.StatusForbidden && ue.Code == server.EAccountDeleted:
		rl.drop(ctx, userID, server.EAccountDeleted)
		return upstreamAccount{}, fail(http.StatusForbidden, server.EAccountDeleted,
			"user %q's JettyThunder account was deleted; it cannot change and its cached credentials were dropped", userID)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return upstreamAccount{}, fail(http.StatusBadGateway, CodeUpstreamUnauthorized,
			"JettyThunder refused the relay's webhook secret (HTTP %d): JETTYTHUNDER_WEBHOOK_SECRET here must equal AGENTCACHE_WEBHOOK_SECRET on JettyThunder", resp.StatusCode)
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return upstreamAccount{}, unreachable(fmt.Sprintf("HTTP %d from %s; check JETTYTHUNDER_API_URL", resp.StatusCode, path))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return upstreamAccount{}, unreachable(fmt.Sprintf("HTTP %d redirect; set JETTYTHUNDER_API_URL to the final URL", resp.StatusCode))
	default:
		return upstreamAccount{}, unreachable(fmt.Sprintf("%s: HTTP %d", path, resp.StatusCode))
	}
}
