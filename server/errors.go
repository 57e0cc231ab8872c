package server

import (
	"errors"
	"fmt"
)

// Error codes. Each is a stable, machine-readable string that reaches
// clients in the "code" field of an error body; server/api maps each to one
// HTTP status (see api.StatusFor).
const (
	EInternal = "internal"
	EInvalid  = "invalid_request"
	ENotFound = "not_found"
	EConflict = "conflict"

	// Provisioning and accounts.
	EAccountExists    = "account_exists"
	EUnknownTier      = "unknown_tier"
	EInvalidUserID    = "invalid_user_id"
	EAccountSuspended = "account_suspended"
	EAccountDeleted   = "account_deleted"

	// Authentication.
	EUnauthorized     = "unauthorized" // webhook secret missing or wrong
	EMissingAuth      = "missing_credentials"
	EMalformedAPIKey  = "malformed_api_key"
	EMissingAPISecret = "missing_api_secret"
	EUnknownAPIKey    = "unknown_api_key"
	EWrongAPISecret   = "wrong_api_secret"

	// Limits.
	EQuotaExceeded = "quota_exceeded"
	ETooLarge      = "too_large"
	ERateLimited   = "rate_limited"
	EFeatureTier   = "tier_lacks_feature"
	EUnavailable   = "unavailable"

	// Storage.
	EBandwidthExceeded = "bandwidth_quota_exceeded"
	EInvalidRange      = "invalid_range"
	// EInsufficientStorage: the server's own storage is full (not the
	// account's quota); nothing was stored, a later retry may succeed.
	EInsufficientStorage = "insufficient_storage"

	// Upload sessions.
	EInvalidManifest  = "invalid_manifest"
	EChecksumMismatch = "checksum_mismatch"
	EChunksMissing    = "chunks_missing"
	ETokenInvalid     = "token_invalid"
	ETokenExpired     = "token_expired"
	ETooManyStreams   = "too_many_streams"
	ELengthRequired   = "length_required"
	EGone             = "session_gone"    // the session expired before it was completed
	ETimeout          = "request_timeout" // the request body stalled
)

// ErrUnavailable marks an error of a part the server depends on (the
// database) that is down, restarting, unreachable or overloaded for the
// moment: the same call may well succeed in a few seconds. Adapters wrap
// it around the driver's error (server/sqlstore); the API answers such
// errors 503 unavailable with Retry-After. For everything else they stay
// internal errors (ErrorCode is EInternal), so steps that retry internal
// errors keep doing so.
var ErrUnavailable = errors.New("temporarily unavailable")

// Error is the one error type of the server. Code is one of the E*
// constants; Message is safe to show to a client and says what to do next.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// EInternal for any other non-nil error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of err. Errors that are not
// *Error are internal and get a generic message, never their text.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
