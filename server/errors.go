package server

import (
	"errors"
	"fmt"

	"github.com/jettythunder/jetty/protocol"
)

// Error codes: the protocol's (protocol.Code*), under the names the
// domain uses. protocol.StatusFor maps each to its one HTTP status.
const (
	EInternal            = protocol.CodeInternal
	EInvalid             = protocol.CodeInvalid
	ENotFound            = protocol.CodeNotFound
	EConflict            = protocol.CodeConflict
	EAccountExists       = protocol.CodeAccountExists
	EUnknownTier         = protocol.CodeUnknownTier
	EInvalidUserID       = protocol.CodeInvalidUserID
	EAccountSuspended    = protocol.CodeAccountSuspended
	EAccountDeleted      = protocol.CodeAccountDeleted
	EUnauthorized        = protocol.CodeUnauthorized
	EMissingAuth         = protocol.CodeMissingAuth
	EMalformedAPIKey     = protocol.CodeMalformedAPIKey
	EMissingAPISecret    = protocol.CodeMissingAPISecret
	EUnknownAPIKey       = protocol.CodeUnknownAPIKey
	EWrongAPISecret      = protocol.CodeWrongAPISecret
	EQuotaExceeded       = protocol.CodeQuotaExceeded
	ETooLarge            = protocol.CodeTooLarge
	ERateLimited         = protocol.CodeRateLimited
	EFeatureTier         = protocol.CodeFeatureTier
	EJettySpeedOff       = protocol.CodeJettySpeedOff
	ECORSOrigin          = protocol.CodeCORSOrigin
	EUnavailable         = protocol.CodeUnavailable
	EBandwidthExceeded   = protocol.CodeBandwidthExceeded
	EInvalidRange        = protocol.CodeInvalidRange
	EInsufficientStorage = protocol.CodeInsufficientStorage
	EInvalidManifest     = protocol.CodeInvalidManifest
	EChecksumMismatch    = protocol.CodeChecksumMismatch
	EChunksMissing       = protocol.CodeChunksMissing
	ETokenInvalid        = protocol.CodeTokenInvalid
	ETokenExpired        = protocol.CodeTokenExpired
	ETooManyStreams      = protocol.CodeTooManyStreams
	ELengthRequired      = protocol.CodeLengthRequired
	EGone                = protocol.CodeSessionGone
	ETimeout             = protocol.CodeTimeout
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
