package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/jettythunder/jetty/server"
)

// Status webhooks (issue 19): the partner registers an account's
// webhook_url (at provision, or here) and reads the delivery state of its
// events. The events themselves are recorded by the store and sent by
// server/webhooks.

// notifyWebhooks wakes the delivery worker after a change.
func (s *Server) notifyWebhooks() {
	if s.webhookNotify != nil {
		s.webhookNotify()
	}
}

// handleSetWebhookURL sets or removes (with "") an account's webhook_url:
// POST /api/agentcache/webhook-url {"user_id": "...", "webhook_url": "..."}.
// Events still pending go to the new URL; removing it fails them.
func (s *Server) handleSetWebhookURL(w http.ResponseWriter, r *http.Request) {
	acct, err := func() (server.Account, error) {
		req, userID, err := decodePartner(w, r)
		if err != nil {
			return server.Account{}, err
		}
		if req.WebhookURL == nil {
			return server.Account{}, server.Errorf(server.EInvalid, "webhook_url is required (an https URL, or \"\" to stop sending events)")
		}
		if *req.WebhookURL != "" {
			if err := server.ValidateWebhookURL(*req.WebhookURL, s.webhookPolicy); err != nil {
				return server.Account{}, err
			}
		}
		return s.store.SetWebhookURL(r.Context(), userID, *req.WebhookURL)
	}()
	s.outcome("webhook_url", err)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.notifyWebhooks()
	s.log.Info("set webhook url", "account", acct.ID, "user_id", acct.UserID, "set", acct.WebhookURL != "")
	msg := "webhook_url set; status events are sent there"
	if acct.WebhookURL == "" {
		msg = "webhook_url removed; no status events are recorded"
	}
	writeJSON(w, http.StatusOK, accountResponse{Success: true, Message: msg, Account: newAccountBody(acct)})
}

// webhookEventBody is one event and its delivery state, as the partner
// (or an operator) sees it.
type webhookEventBody struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Sequence      int64           `json:"sequence"`
	State         string          `json:"state"`
	Attempts      int             `json:"attempts"`
	LastStatus    int             `json:"last_status,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	LastAttemptAt *time.Time      `json:"last_attempt_at,omitempty"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	DeliveredAt   *time.Time      `json:"delivered_at,omitempty"`
	FailedAt      *time.Time      `json:"failed_at,omitempty"`
	Payload       json.RawMessage `json:"payload"`
}

type webhookListResponse struct {
	Success    bool               `json:"success"`
	UserID     string             `json:"agentcache_user_id"`
	WebhookURL string             `json:"webhook_url,omitempty"`
	Events     []webhookEventBody `json:"events"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// handleListWebhooks answers GET /api/agentcache/webhooks?user_id=...
// [&limit=N]: the account's newest events (50 by default, at most 500),
// newest first, each with its delivery state and the body sent.
func (s *Server) handleListWebhooks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	userID := q.Get("user_id")
	if userID == "" {
		userID = q.Get("agentcache_user_id")
	}
	if err := server.ValidateUserID(userID); err != nil {
		s.writeError(w, r, err)
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			s.writeError(w, r, server.Errorf(server.EInvalid, "limit must be 1 to 500"))
			return
		}
		limit = n
	}
	acct, err := s.store.AccountByUserID(r.Context(), userID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	evs, err := s.store.WebhookEvents(r.Context(), acct.ID, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := webhookListResponse{Success: true, UserID: acct.UserID, WebhookURL: acct.WebhookURL, Events: []webhookEventBody{}}
	for _, e := range evs {
		b := webhookEventBody{
			ID:            e.ID,
			Type:          e.Type,
			Sequence:      e.Seq,
			State:         string(e.State),
			Attempts:      e.Attempts,
			LastStatus:    e.LastStatus,
			LastError:     e.LastError,
			LastAttemptAt: optTime(e.LastAttemptAt),
			CreatedAt:     e.CreatedAt.UTC(),
			DeliveredAt:   optTime(e.DeliveredAt),
			FailedAt:      optTime(e.FailedAt),
			Payload:       json.RawMessage(e.Payload),
		}
		if e.State == server.WebhookPending {
			b.NextAttemptAt = optTime(e.NextAttemptAt)
		}
		out.Events = append(out.Events, b)
	}
	writeJSON(w, http.StatusOK, out)
}
