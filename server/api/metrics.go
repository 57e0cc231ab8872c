package api

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
)

// handleMetrics answers GET /metrics on the main listener: with the
// Bearer MetricsToken when one is set, to anyone when MetricsPublic
// (--dev), else 404 saying how to turn them on. A production server never
// shows its traffic, accounts' activity and errors to whoever asks.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metricsToken == "" && !s.metricsPublic {
		s.writeError(w, r, server.Errorf(server.ENotFound, "metrics are not served on this listener: set JETTY_METRICS_LISTEN (e.g. 127.0.0.1:9090) to serve them on a private address, or JETTY_METRICS_TOKEN to require Authorization: Bearer <token> here"))
		return
	}
	s.MetricsHandler().ServeHTTP(w, r)
}

// MetricsHandler serves the Prometheus text to anyone, or, when a
// MetricsToken is set, to callers sending Authorization: Bearer <token>
// (compared in constant time). The server mounts it on its own listener
// for JETTY_METRICS_LISTEN.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.metricsToken != "" {
			tok, ok := bearer(r)
			if !ok || !apikey.EqualConstantTime(tok, s.metricsToken) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="jetty metrics"`)
				s.writeError(w, r, server.Errorf(server.EUnauthorized, "metrics need Authorization: Bearer <JETTY_METRICS_TOKEN>"))
				return
			}
			connguard.Authenticated(r.Context())
		}
		s.promHandler.ServeHTTP(w, r)
	})
}

type metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	provisioning    *prometheus.CounterVec
	rateLimited     prometheus.Counter
	reqlogDropped   prometheus.Counter
	reqlogSkipped   prometheus.Counter
	uploadedBytes   prometheus.Counter
	downloadedBytes prometheus.Counter
	sessions        *prometheus.CounterVec
	chunks          *prometheus.CounterVec
	streamsDown     prometheus.Counter
	edgeHeartbeats  prometheus.Counter
	presigned       prometheus.Counter
	webhookSigs     *prometheus.CounterVec
	usage           *usageMetrics // usage.go
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jetty_http_request_duration_seconds",
			Help:    "HTTP request duration by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		provisioning: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_provisioning_total",
			Help: "Partner provisioning calls by operation and outcome (the error code, or ok).",
		}, []string{"operation", "outcome"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_rate_limited_total",
			Help: "Requests refused with 429 by the per-tier rate limit.",
		}),
		reqlogDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_request_log_dropped_total",
			Help: "api_requests rows dropped because the log writer fell behind or failed.",
		}),
		reqlogSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_request_log_skipped_total",
			Help: "api_requests rows of failed requests without an account and of probes not written: more than 20 a second arrived.",
		}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_uploaded_bytes_total",
			Help: "Payload bytes of stored uploads (deduplicated uploads included).",
		}),
		downloadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_downloaded_bytes_total",
			Help: "Bytes sent by asset downloads.",
		}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_upload_sessions_total",
			Help: "JettySpeed upload sessions by event (opened, completed, aborted).",
		}, []string{"event"}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_chunks_total",
			Help: "Chunk PUTs by outcome (stored, checksum_mismatch, too_many_streams).",
		}, []string{"outcome"}),
		streamsDown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_stream_ceiling_unavailable_total",
			Help: "Chunk PUTs let through without the per-session stream ceiling because its store (Redis) failed.",
		}),
		edgeHeartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_edge_heartbeats_total",
			Help: "Relay heartbeats accepted.",
		}),
		presigned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetty_presigned_parts_total",
			Help: "Presigned part URLs handed out for direct uploads to storage.",
		}),
		webhookSigs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_webhook_signatures_total",
			Help: "Signed partner calls by outcome (ok, stale, mismatch, malformed, replayed).",
		}, []string{"outcome"}),
	}
	m.usage = newUsageMetrics(reg)
	reg.MustRegister(m.requests, m.duration, m.provisioning, m.rateLimited, m.reqlogDropped, m.reqlogSkipped, m.uploadedBytes, m.downloadedBytes, m.sessions, m.chunks, m.streamsDown, m.edgeHeartbeats, m.presigned, m.webhookSigs)
	return m
}
