package api

import (
	"net/http"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
)

// partnerRequest is the body of every partner call. Both seeds' field
// names are accepted: seed 002's agentcache_user_id/agentcache_email/
// new_tier and seed 000's user_id/email/tier.
type partnerRequest struct {
	AgentcacheUserID string `json:"agentcache_user_id"`
	UserID           string `json:"user_id"`
	AgentcacheEmail  string `json:"agentcache_email"`
	Email            string `json:"email"`
	Tier             string `json:"tier"`
	NewTier          string `json:"new_tier"`
	// OverlapSeconds (rotate only): how long the outgoing key and secret
	// keep working, 0 to 604800; 0 or absent revokes them at once.
	OverlapSeconds int64 `json:"overlap_seconds"`
	// WebhookURL (provision and POST /api/agentcache/webhook-url)
	// receives the account's status events; "" removes it.
	WebhookURL *string `json:"webhook_url"`
}

// pick returns the one value given under either of two names.
func pick(a, b, nameA, nameB string) (string, error) {
	if a != "" && b != "" && a != b {
		return "", server.Errorf(server.EInvalid, "%s and %s disagree; send one of them", nameA, nameB)
	}
	if a != "" {
		return a, nil
	}
	return b, nil
}

func (p partnerRequest) userID() (string, error) {
	id, err := pick(p.AgentcacheUserID, p.UserID, "agentcache_user_id", "user_id")
	if err != nil {
		return "", err
	}
	if err := server.ValidateUserID(id); err != nil {
		return "", err
	}
	return id, nil
}

// decodePartner reads a partner body and its validated user id.
func decodePartner(w http.ResponseWriter, r *http.Request) (partnerRequest, string, error) {
	var req partnerRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return req, "", err
	}
	userID, err := req.userID()
	return req, userID, err
}

// accountBody is seed 002's account shape, plus the storage location.
type accountBody struct {
	ID                string    `json:"id"`
	UserID            string    `json:"agentcache_user_id"`
	APIKey            string    `json:"api_key,omitempty"`
	APISecret         string    `json:"api_secret,omitempty"`
	Tier              string    `json:"tier"`
	Status            string    `json:"status"`
	StorageQuotaGB    int64     `json:"storage_quota_gb"`
	BandwidthQuotaGB  int64     `json:"bandwidth_quota_gb"`
	JettySpeedEnabled bool      `json:"jetty_speed_enabled"`
	S3Bucket          string    `json:"s3_bucket"`
	S3Prefix          string    `json:"s3_prefix"`
	CreatedAt         time.Time `json:"created_at"`
	// PreviousKeyExpiresAt is set while a rotated-out key still works.
	PreviousKeyExpiresAt *time.Time `json:"previous_key_expires_at,omitempty"`
	// DeletedAt is when a deleted account was deleted: its data is purged
	// JETTY_DELETED_ACCOUNT_GRACE later (PurgedAt), the row stays.
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
	PurgedAt  *time.Time `json:"purged_at,omitempty"`
	// WebhookURL receives the account's status events (absent: none).
	WebhookURL string `json:"webhook_url,omitempty"`
}

func newAccountBody(a server.Account) accountBody {
	b := accountBody{
		ID:                a.ID,
		UserID:            a.UserID,
		Tier:              a.Tier,
		Status:            string(a.Status),
		StorageQuotaGB:    a.StorageQuotaGB,
		BandwidthQuotaGB:  a.BandwidthQuotaGB,
		JettySpeedEnabled: a.JettySpeedEnabled,
		S3Bucket:          a.S3Bucket,
		S3Prefix:          a.S3Prefix,
		CreatedAt:         a.CreatedAt.UTC(),
		WebhookURL:        a.WebhookURL,
	}
	if !a.PrevKeyExpiresAt.IsZero() {
		t := a.PrevKeyExpiresAt.UTC()
		b.PreviousKeyExpiresAt = &t
	}
	if !a.DeletedAt.IsZero() {
		t := a.DeletedAt.UTC()
		b.DeletedAt = &t
	}
	if !a.PurgedAt.IsZero() {
		t := a.PurgedAt.UTC()
		b.PurgedAt = &t
	}
	return b
}

type accountResponse struct {
	Success bool        `json:"success"`
	Message string      `json:"message,omitempty"`
	Account accountBody `json:"account"`
}

// outcome counts a partner call in jetty_provisioning_total.
func (s *Server) outcome(op string, err error) {
	o := "ok"
	if err != nil {
		o = server.ErrorCode(err)
	}
	s.metrics.provisioning.WithLabelValues(op, o).Inc()
}

// newCredentials makes a fresh key and secret.
func (s *Server) newCredentials() (key, secret string, err error) {
	if key, err = apikey.NewKey(s.liveKeys); err != nil {
		return "", "", err
	}
	if secret, err = apikey.NewSecret(); err != nil {
		return "", "", err
	}
	return key, secret, nil
}

// handleProvision creates an account: 201 with the credentials (the
// secret is shown this once), 409 when the user already has one, 400 for
// an unknown tier or bad fields.
func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) {
	acct, secret, err := s.provision(r, w)
	s.outcome("provision", err)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("provisioned account", "account", acct.ID, "user_id", acct.UserID, "tier", acct.Tier, "api_key", apikey.Redact(acct.APIKey))
	body := newAccountBody(acct)
	body.APIKey, body.APISecret = acct.APIKey, secret
	writeJSON(w, http.StatusCreated, accountResponse{Success: true, Message: "account provisioned; the API secret is shown only once", Account: body})
}

func (s *Server) provision(r *http.Request, w http.ResponseWriter) (server.Account, string, error) {
	req, userID, err := decodePartner(w, r)
	if err != nil {
		return server.Account{}, "", err
	}
	email, err := pick(req.AgentcacheEmail, req.Email, "agentcache_email", "email")
	if err != nil {
		return server.Account{}, "", err
	}
	if err := server.ValidateEmail(email); err != nil {
		return server.Account{}, "", err
	}
	tier, err := pick(req.Tier, req.NewTier, "tier", "new_tier")
	if err != nil {
		return server.Account{}, "", err
	}
	if err := server.ValidateTierName(tier); err != nil {
		return server.Account{}, "", err
	}
	var hook string
	if req.WebhookURL != nil && *req.WebhookURL != "" {
		if err := server.ValidateWebhookURL(*req.WebhookURL, s.webhookPolicy); err != nil {
			return server.Account{}, "", err
		}
		hook = *req.WebhookURL
	}
	key, secret, err := s.newCredentials()
	if err != nil {
		return server.Account{}, "", err
	}
	acct, err := s.store.CreateAccount(r.Context(), server.NewAccount{
		UserID:     userID,
		Email:      email,
		Tier:       tier,
		APIKey:     key,
		SecretHash: apikey.HashSecret(secret),
		S3Bucket:   s.bucket,
		S3Prefix:   server.S3PrefixFor(userID),
		WebhookURL: hook,
	})
	if err != nil {
		return server.Account{}, "", err
	}
	s.notifyWebhooks()
	return acct, secret, nil
}

// handleUpgrade moves an account to another tier (up or down).
func (s *Server) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	req, userID, err := decodePartner(w, r)
	var tier string
	if err == nil {
		tier, err = pick(req.NewTier, req.Tier, "new_tier", "tier")
	}
	if err != nil {
		s.outcome("upgrade", err)
		s.writeError(w, r, err)
		return
	}
	acct, err := s.ChangeTier(r.Context(), userID, tier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("changed tier", "account", acct.ID, "user_id", acct.UserID, "tier", acct.Tier)
	writeJSON(w, http.StatusOK, accountResponse{Success: true, Message: "tier changed to " + acct.Tier, Account: newAccountBody(acct)})
}

// handleStatus suspends, reactivates or deletes an account. Deleting an
// account that is already deleted answers 200 again.
func (s *Server) handleStatus(status server.AccountStatus) http.HandlerFunc {
	op := map[server.AccountStatus]string{
		server.StatusSuspended: "suspend",
		server.StatusActive:    "reactivate",
		server.StatusDeleted:   "delete",
	}[status]
	return func(w http.ResponseWriter, r *http.Request) {
		_, userID, err := decodePartner(w, r)
		if err != nil {
			s.outcome(op, err)
			s.writeError(w, r, err)
			return
		}
		acct, err := s.SetAccountStatus(r.Context(), userID, status)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("changed account status", "account", acct.ID, "user_id", acct.UserID, "status", acct.Status)
		writeJSON(w, http.StatusOK, accountResponse{Success: true, Message: "account " + string(acct.Status), Account: newAccountBody(acct)})
	}
}

// handleRotate issues a new key and secret for an account. Without
// overlap_seconds the old pair stops working at once (how a leaked or lost
// secret is dealt with); with it, the old pair keeps working that long so
// a fleet can move over without downtime.
func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	req, userID, err := decodePartner(w, r)
	if err == nil && (req.OverlapSeconds < 0 || req.OverlapSeconds > int64(server.MaxKeyOverlap/time.Second)) {
		err = server.Errorf(server.EInvalid, "overlap_seconds must be 0 to %d (7 days)", int64(server.MaxKeyOverlap/time.Second))
	}
	if err != nil {
		s.outcome("rotate", err)
		s.writeError(w, r, err)
		return
	}
	acct, secret, err := s.RotateCredentials(r.Context(), userID, time.Duration(req.OverlapSeconds)*time.Second)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("rotated credentials", "account", acct.ID, "user_id", acct.UserID, "api_key", apikey.Redact(acct.APIKey), "previous_valid_until", acct.PrevKeyExpiresAt)
	body := newAccountBody(acct)
	body.APIKey, body.APISecret = acct.APIKey, secret
	msg := "credentials rotated; the old ones no longer work; the API secret is shown only once"
	if !acct.PrevKeyExpiresAt.IsZero() {
		msg = "credentials rotated; the old ones work until previous_key_expires_at; the API secret is shown only once"
	}
	writeJSON(w, http.StatusOK, accountResponse{Success: true, Message: msg, Account: body})
}

// handleRevoke ends a rotation's overlap: the previous key and secret
// stop working with the next request. (The current pair is revoked by
// rotating without an overlap, or by suspending the account.)
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	_, userID, err := decodePartner(w, r)
	if err != nil {
		s.outcome("revoke", err)
		s.writeError(w, r, err)
		return
	}
	acct, err := s.RevokePreviousCredentials(r.Context(), userID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("revoked previous credentials", "account", acct.ID, "user_id", acct.UserID)
	writeJSON(w, http.StatusOK, accountResponse{Success: true, Message: "previous credentials revoked", Account: newAccountBody(acct)})
}
