package api

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// requestInfo travels in the request context so handlers can tell the
// outer middleware who the caller was and what went wrong.
type requestInfo struct {
	accountID string
	errMsg    string
}

type ctxKey int

const (
	infoKey ctxKey = iota
	accountKey
)

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey).(*requestInfo)
	return info
}

// statusWriter records the status and body size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe wraps every request: panics become 500s, and each request is
// counted in metrics, logged with slog and written to api_requests. Only
// the route pattern is recorded, never the raw URL or any header, so no
// credential can reach a log.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey, info))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				// The value is scrubbed: a panic can format anything,
				// a request's headers included.
				s.log.Error("panic in handler", "route", r.Pattern, "panic", s.panicText(p))
				if sw.status == 0 {
					writeJSON(sw, http.StatusInternalServerError, protocol.ErrorBody{Error: "internal error", Code: "internal"})
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
			if route == "GET /metrics" || route == "GET /healthz" || route == "GET /readyz" {
				return
			}
			if route == heartbeatRoute && sw.status < 400 {
				// A relay's liveness ping every 2 s (43,200 rows a day per
				// relay otherwise): counted in jetty_edge_heartbeats_total,
				// kept in edge_nodes.last_seen. Refused ones are logged.
				return
			}
			bytes := sw.bytes
			if r.ContentLength > 0 {
				bytes += r.ContentLength
			}
			s.log.Info("request",
				"method", r.Method, "route", route, "status", sw.status,
				"duration_ms", elapsed.Milliseconds(), "bytes", bytes, "account", info.accountID)
			s.reqlog.add(requestRow(r, route, sw.status, elapsed, bytes, info, s.now()))
		}()
		next.ServeHTTP(sw, r)
	})
}

// clientIP is the peer address of the request. X-Forwarded-For is not
// trusted: any client can set it.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
