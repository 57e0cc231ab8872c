package protocol

import "net/http"

// Error codes. Each is a stable, machine-readable string that reaches
// clients in the "code" field of an ErrorBody, with the one HTTP status
// StatusFor gives it, whoever answers: the server or a relay.
const (
	CodeInternal = "internal"
	CodeInvalid  = "invalid_request"
	CodeNotFound = "not_found"
	// CodeConflict (409): on a chunk PUT or a presign call, the session
	// takes no more chunks because it is being completed or is complete
	// (by a concurrent upload of the same content, which shares it).
	CodeConflict = "conflict"

	// Provisioning and accounts.
	CodeAccountExists    = "account_exists"
	CodeUnknownTier      = "unknown_tier"
	CodeInvalidUserID    = "invalid_user_id"
	CodeAccountSuspended = "account_suspended"
	CodeAccountDeleted   = "account_deleted"

	// Authentication.
	CodeUnauthorized     = "unauthorized" // webhook or edge secret missing or wrong
	CodeMissingAuth      = "missing_credentials"
	CodeMalformedAPIKey  = "malformed_api_key"
	CodeMissingAPISecret = "missing_api_secret"
	CodeUnknownAPIKey    = "unknown_api_key"
	CodeWrongAPISecret   = "wrong_api_secret"

	// Limits.
	CodeQuotaExceeded = "quota_exceeded"
	CodeTooLarge      = "too_large"
	CodeRateLimited   = "rate_limited"
	CodeFeatureTier   = "tier_lacks_feature"
	// CodeJettySpeedOff (403): the server has chunked uploads turned off
	// (JETTYSPEED_ENABLED=false): send the file in one request to
	// PathUpload instead.
	CodeJettySpeedOff = "jettyspeed_disabled"
	// CodeCORSOrigin (403): a CORS preflight from a browser origin the
	// server's JETTY_CORS_ORIGINS does not list.
	CodeCORSOrigin = "cors_origin_not_allowed"
	// CodeUnavailable (503, with Retry-After): a part the server depends
	// on is down for the moment; the same call may succeed later.
	CodeUnavailable = "unavailable"

	// Storage.
	CodeBandwidthExceeded = "bandwidth_quota_exceeded"
	CodeInvalidRange      = "invalid_range"
	// CodeInsufficientStorage (507): the server's own storage is full
	// (not the account's quota); nothing was stored, a later retry may
	// succeed.
	CodeInsufficientStorage = "insufficient_storage"

	// Upload sessions.
	CodeInvalidManifest  = "invalid_manifest"
	CodeChecksumMismatch = "checksum_mismatch"
	CodeChunksMissing    = "chunks_missing"
	CodeTokenInvalid     = "token_invalid"
	CodeTokenExpired     = "token_expired"
	CodeTooManyStreams   = "too_many_streams"
	CodeLengthRequired   = "length_required"
	CodeSessionGone      = "session_gone"    // the session expired before it was completed
	CodeTimeout          = "request_timeout" // the request body stalled

	// Relays.
	// CodeEdgeDraining (503): a relay going away; clients stop sending
	// through it at once.
	CodeEdgeDraining = "edge_draining"
	// CodeEdgeBusy (503, with Retry-After): a relay at its capacity;
	// clients send the chunk through another route.
	CodeEdgeBusy = "edge_busy"
	// CodeBadGateway (502): a relay could not get a chunk through: the
	// origin or the storage behind it did not answer or refused it for
	// its own reasons. Clients send the chunk through another route.
	CodeBadGateway = "bad_gateway"
)

// statusByCode is the one map from error codes to HTTP statuses.
var statusByCode = map[string]int{
	CodeInvalid:             http.StatusBadRequest,
	CodeInvalidUserID:       http.StatusBadRequest,
	CodeUnknownTier:         http.StatusBadRequest,
	CodeNotFound:            http.StatusNotFound,
	CodeAccountExists:       http.StatusConflict,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeMissingAuth:         http.StatusUnauthorized,
	CodeMalformedAPIKey:     http.StatusUnauthorized,
	CodeMissingAPISecret:    http.StatusUnauthorized,
	CodeUnknownAPIKey:       http.StatusUnauthorized,
	CodeWrongAPISecret:      http.StatusUnauthorized,
	CodeAccountSuspended:    http.StatusForbidden,
	CodeAccountDeleted:      http.StatusForbidden,
	CodeFeatureTier:         http.StatusForbidden,
	CodeJettySpeedOff:       http.StatusForbidden,
	CodeCORSOrigin:          http.StatusForbidden,
	CodeQuotaExceeded:       http.StatusRequestEntityTooLarge,
	CodeTooLarge:            http.StatusRequestEntityTooLarge,
	CodeRateLimited:         http.StatusTooManyRequests,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeInternal:            http.StatusInternalServerError,
	CodeConflict:            http.StatusConflict,
	CodeBandwidthExceeded:   http.StatusForbidden,
	CodeInvalidRange:        http.StatusRequestedRangeNotSatisfiable,
	CodeInvalidManifest:     http.StatusBadRequest,
	CodeChecksumMismatch:    http.StatusBadRequest,
	CodeChunksMissing:       http.StatusConflict,
	CodeTokenInvalid:        http.StatusUnauthorized,
	CodeTokenExpired:        http.StatusUnauthorized,
	CodeTooManyStreams:      http.StatusTooManyRequests,
	CodeLengthRequired:      http.StatusLengthRequired,
	CodeSessionGone:         http.StatusGone,
	CodeTimeout:             http.StatusRequestTimeout,
	CodeInsufficientStorage: http.StatusInsufficientStorage,
	CodeEdgeDraining:        http.StatusServiceUnavailable,
	CodeEdgeBusy:            http.StatusServiceUnavailable,
	CodeBadGateway:          http.StatusBadGateway,
}

// StatusFor returns the HTTP status of an error code (500 if unknown).
func StatusFor(code string) int {
	if st, ok := statusByCode[code]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	// Error says what went wrong and what to do, for people.
	Error string `json:"error"`
	Code  string `json:"code"`
	// Missing lists the chunks a completion still needs (409
	// chunks_missing only).
	Missing []int `json:"missing,omitempty"`
}
