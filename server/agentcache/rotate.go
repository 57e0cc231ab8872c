package agentcache

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jettythunder/jetty/server"
)

// RotatePath is the relay's credential-rotation route: it rotates on
// JettyThunder and caches the new pair, which JettyThunder shows only to
// the caller of its rotate route. It is how AgentCache recovers after the
// relay answered 409 credentials_revoked or account_exists.
const RotatePath = "/api/webhooks/jettythunder/rotate"

// UpstreamRotatePath issues new credentials (partner call, signed).
const UpstreamRotatePath = "/api/agentcache/rotate"

// MaxOverlapSeconds is the longest overlap_seconds JettyThunder accepts.
const MaxOverlapSeconds = 7 * 24 * 3600

// Messages of successful rotate answers.
const (
	MessageRotated          = "JettyThunder credentials rotated; the new pair is cached"
	MessageRotatedSuspended = "JettyThunder credentials rotated; the new pair is cached, but the account is suspended: it works once the account is reactivated"
)

// serveRotate answers POST /api/webhooks/jettythunder/rotate with body
// {user_id, overlap_seconds?}: under the user's lock it rotates on
// JettyThunder, caches the new credentials and answers them (200, the
// provision route's shape).
func (rl *Relay) serveRotate(w http.ResponseWriter, r *http.Request, start time.Time) {
	const op = "jettythunder rotate"
	raw, err := readBody(w, r)
	var body struct {
		UserID           string `json:"user_id"`
		AgentCacheUserID string `json:"agentcache_user_id"`
		OverlapSeconds   int64  `json:"overlap_seconds"`
	}
	if err == nil {
		if jerr := json.Unmarshal(raw, &body); jerr != nil {
			err = fail(http.StatusBadRequest, server.EInvalid, "request body is not a JSON object with user_id and an optional overlap_seconds: %v", jsonProblem(jerr))
		}
	}
	var userID string
	if err == nil {
		userID, err = oneOf("user_id", body.UserID, "agentcache_user_id", body.AgentCacheUserID)
	}
	if err == nil {
		if check := server.ValidateUserID(userID); check != nil {
			err = fail(http.StatusBadRequest, server.ErrorCode(check), "%s", server.ErrorMessage(check))
		} else if body.OverlapSeconds < 0 || body.OverlapSeconds > MaxOverlapSeconds {
			err = fail(http.StatusBadRequest, server.EInvalid, "overlap_seconds must be 0 to %d (7 days)", MaxOverlapSeconds)
		}
	}
	if err != nil {
		rl.answerError(w, r, op, start, "", err)
		return
	}

	var creds Credentials
	var status string
	err = rl.withLock(r.Context(), userID, nil, func(ctx, uctx context.Context) error {
		a, err := rl.partnerCall(uctx, UpstreamRotatePath, userID, map[string]any{"agentcache_user_id": userID, "overlap_seconds": body.OverlapSeconds})
		if err != nil {
			return err
		}
		if a.APIKey == "" || a.APISecret == "" {
			return unreachable(fmt.Sprintf("%s answered without api_key and api_secret", UpstreamRotatePath))
		}
		creds = Credentials{
			APIKey:            a.APIKey,
			APISecret:         a.APISecret,
			Tier:              a.Tier,
			StorageQuotaGB:    a.StorageQuotaGB,
			JettySpeedEnabled: a.JettySpeedEnabled,
			S3Bucket:          a.S3Bucket,
			S3Prefix:          a.S3Prefix,
			ProvisionedAt:     cmp.Or(a.CreatedAt, time.Now().UTC().Format(time.RFC3339Nano)),
		}
		status = a.Status
		if err := rl.store(uctx, userID, entry{Credentials: creds, CheckedAt: time.Now()}); err != nil {
			// The old pair is gone and the new secret is shown once: answer
			// it rather than fail.
			rl.log.LogAttrs(ctx, slog.LevelError, "jettythunder credentials rotated but not cached; a provision call will not find them",
				slog.String("user_id", userID), slog.String("cause", err.Error()))
		}
		return nil
	})
	if err != nil {
		rl.answerError(w, r, op, start, userID, err)
		return
	}
	msg := MessageRotated
	if status == string(server.StatusSuspended) {
		msg = MessageRotatedSuspended
	}
	writeJSON(w, http.StatusOK, Response{Success: true, Message: msg, Credentials: creds})
	rl.log.LogAttrs(r.Context(), slog.LevelInfo, op,
		slog.String("user_id", userID),
		slog.String("outcome", "rotated"),
		slog.Int64("overlap_seconds", body.OverlapSeconds),
		slog.Int("status", http.StatusOK),
		slog.Duration("duration", time.Since(start)))
}
