package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/jettythunder/jetty/internal/idleread"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// rateLimitError carries the wait before a retry (Retry-After): rate
// limits, a session's stream ceiling, outages (outage.go).
type rateLimitError struct {
	err        *server.Error
	retryAfter time.Duration
}

func (e *rateLimitError) Error() string { return e.err.Error() }
func (e *rateLimitError) Unwrap() error { return e.err }

// writeError answers with err's status and body. Internal errors are
// logged with their text and answered with a generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	err = s.storageFull(r, err) // storage_full.go
	err = s.asOutage(r, err)    // a part down for now: 503 with Retry-After
	code := server.ErrorCode(err)
	msg := server.ErrorMessage(err)
	if code == server.EInternal {
		s.log.Error("internal error", "method", r.Method, "route", r.Pattern, "err", err)
	}
	var rl *rateLimitError
	if errors.As(err, &rl) {
		secs := int(math.Ceil(rl.retryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	if info := requestInfoFrom(r.Context()); info != nil {
		info.errMsg = msg
	}
	writeJSON(w, protocol.StatusFor(code), protocol.ErrorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errBodyStalled answers a body that did not arrive within its deadline
// (connguard's total one, or an idle one).
var errBodyStalled = server.Errorf(server.ETimeout, "the request body stopped arriving before its end; nothing was done: send the request again")

// bodyStalled reports whether a body read failed on its deadline.
func bodyStalled(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, idleread.ErrIdle)
}

// maxJSONBody bounds control-plane request bodies.
const maxJSONBody = 64 << 10

// decodeJSON reads one JSON object from the request body into v, refusing
// bodies over maxJSONBody, trailing data and non-JSON content types.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONLimit(w, r, v, maxJSONBody)
}

// jsonMarshal encodes v without HTML escaping.
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// decodeJSONLimit is decodeJSON with a body limit of limit bytes.
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "text/plain") {
			return server.Errorf(server.EInvalid, "Content-Type must be application/json (got %q)", ct)
		}
	}
	if r.ContentLength > limit {
		return server.Errorf(server.ETooLarge, "request body is %d bytes; the limit is %d", r.ContentLength, limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case bodyStalled(err):
			return errBodyStalled
		case errors.As(err, &mbe):
			return server.Errorf(server.ETooLarge, "request body is larger than %d bytes", limit)
		case errors.Is(err, io.EOF):
			return server.Errorf(server.EInvalid, "request body is empty; send a JSON object")
		default:
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			switch {
			case errors.As(err, &se):
				return server.Errorf(server.EInvalid, "malformed JSON at byte %d", se.Offset)
			case errors.As(err, &te):
				return server.Errorf(server.EInvalid, "field %q must be a %s", te.Field, te.Type)
			}
			return server.Errorf(server.EInvalid, "malformed JSON body")
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if bodyStalled(err) {
			return errBodyStalled
		}
		if errors.As(err, &mbe) {
			return server.Errorf(server.ETooLarge, "request body is larger than %d bytes", limit)
		}
		return server.Errorf(server.EInvalid, "request body holds more than one JSON value")
	}
	return nil
}
