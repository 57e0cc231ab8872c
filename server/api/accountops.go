package api

import (
	"context"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
)

// The operations on an account that the partner API offers, as the
// partner handlers and the operator console (server/console) both run
// them: the store's change (which records the status event in its
// transaction), the jetty_provisioning_total outcome, and a nudge to the
// webhook worker.

// ChangeTier moves the account of userID to tier.
func (s *Server) ChangeTier(ctx context.Context, userID, tier string) (server.Account, error) {
	acct, err := func() (server.Account, error) {
		if err := server.ValidateTierName(tier); err != nil {
			return server.Account{}, err
		}
		return s.store.ChangeTier(ctx, userID, tier)
	}()
	return acct, s.done("upgrade", err)
}

// SetAccountStatus suspends, reactivates or deletes the account of
// userID. Deleting an account that is already deleted succeeds again.
func (s *Server) SetAccountStatus(ctx context.Context, userID string, status server.AccountStatus) (server.Account, error) {
	op := map[server.AccountStatus]string{
		server.StatusSuspended: "suspend",
		server.StatusActive:    "reactivate",
		server.StatusDeleted:   "delete",
	}[status]
	acct, err := s.store.SetStatus(ctx, userID, status)
	if status == server.StatusDeleted && server.ErrorCode(err) == server.EAccountDeleted {
		acct, err = s.store.AccountByUserID(ctx, userID)
	}
	return acct, s.done(op, err)
}

// RotateCredentials issues a new key and secret for the account of
// userID; the secret is returned this once. The old pair keeps working
// for overlap (0: not at all; at most server.MaxKeyOverlap).
func (s *Server) RotateCredentials(ctx context.Context, userID string, overlap time.Duration) (server.Account, string, error) {
	var secret string
	acct, err := func() (server.Account, error) {
		if overlap < 0 || overlap > server.MaxKeyOverlap {
			return server.Account{}, server.Errorf(server.EInvalid, "overlap_seconds must be 0 to %d (7 days)", int64(server.MaxKeyOverlap/time.Second))
		}
		key, sec, err := s.newCredentials()
		if err != nil {
			return server.Account{}, err
		}
		secret = sec
		var until time.Time
		if overlap > 0 {
			until = s.now().Add(overlap)
		}
		return s.store.RotateCredentials(ctx, userID, key, apikey.HashSecret(secret), until)
	}()
	if err := s.done("rotate", err); err != nil {
		return acct, "", err
	}
	return acct, secret, nil
}

// RevokePreviousCredentials ends a rotation's overlap at once.
func (s *Server) RevokePreviousCredentials(ctx context.Context, userID string) (server.Account, error) {
	acct, err := s.store.RevokePreviousCredentials(ctx, userID)
	return acct, s.done("revoke", err)
}

// done counts the outcome of op and, when it succeeded, wakes the
// webhook worker for the event it recorded.
func (s *Server) done(op string, err error) error {
	s.outcome(op, err)
	if err == nil {
		s.notifyWebhooks()
	}
	return err
}
