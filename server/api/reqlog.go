package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// requestLog writes api_requests rows in batches from one goroutine, so a
// slow database never slows the request path. When the buffer is full rows
// are dropped and counted (jetty_request_log_dropped_total).
//
// Rows of failed requests without an account (404s, bad keys, bad
// signatures) and of edge probes (which need no credentials either): the
// rows anyone can make for nothing, are written at most anonLogRate a
// second per instance, after a burst of anonLogBurst; the
// rest are counted (jetty_request_log_skipped_total) and, like every
// request, in jetty_http_requests_total. A flood of them therefore cannot
// grow the table faster than that, whatever the database could take.
type requestLog struct {
	store   server.Store
	log     *slog.Logger
	metrics *metrics
	anon    *rate.Limiter
	rows    chan server.APIRequest
	flushes chan chan struct{}
	done    chan struct{}
}

const (
	reqlogBuffer = 4096
	reqlogBatch  = 256
	reqlogEvery  = time.Second
	// anonLogRate and anonLogBurst bound the rows of failed requests
	// without an account (see requestLog): about 1.7 million a day per
	// instance at most, kept for JETTY_ANON_REQUEST_LOG_RETENTION.
	anonLogRate  = 20
	anonLogBurst = 200
)

// heartbeatRoute is the route of relay heartbeats, whose successes are
// not logged (see observe); probeRoute the unauthenticated throughput
// probe.
const (
	heartbeatRoute = "POST " + protocol.PathEdgeHeartbeat
	probeRoute     = "POST " + protocol.PathProbe
)

func newRequestLog(store server.Store, log *slog.Logger, m *metrics) *requestLog {
	l := &requestLog{
		store:   store,
		log:     log,
		metrics: m,
		anon:    rate.NewLimiter(anonLogRate, anonLogBurst),
		rows:    make(chan server.APIRequest, reqlogBuffer),
		flushes: make(chan chan struct{}),
		done:    make(chan struct{}),
	}
	go l.run()
	return l
}

func requestRow(r *http.Request, route string, status int, elapsed time.Duration, bytes int64, info *requestInfo, now time.Time) server.APIRequest {
	ua := r.UserAgent()
	if len(ua) > 512 {
		ua = ua[:512]
	}
	return server.APIRequest{
		AccountID:        info.accountID,
		Method:           r.Method,
		Endpoint:         route,
		StatusCode:       status,
		ResponseTimeMS:   elapsed.Milliseconds(),
		BytesTransferred: bytes,
		ErrorMessage:     info.errMsg,
		IPAddress:        clientIP(r),
		UserAgent:        ua,
		CreatedAt:        now.UTC(),
	}
}

func (l *requestLog) add(row server.APIRequest) {
	if row.AccountID == "" && (row.StatusCode >= 400 || row.Endpoint == probeRoute) && !l.anon.Allow() {
		l.metrics.reqlogSkipped.Inc()
		return
	}
	select {
	case l.rows <- row:
	default:
		l.metrics.reqlogDropped.Inc()
	}
}

func (l *requestLog) run() {
	defer close(l.done)
	t := time.NewTicker(reqlogEvery)
	defer t.Stop()
	batch := make([]server.APIRequest, 0, reqlogBatch)
	write := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := l.store.LogRequests(ctx, batch); err != nil {
			l.log.Warn("write api_requests", "rows", len(batch), "err", err)
			l.metrics.reqlogDropped.Add(float64(len(batch)))
		}
		cancel()
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case row, ok := <-l.rows:
				if !ok {
					return
				}
				batch = append(batch, row)
				if len(batch) == reqlogBatch {
					write()
				}
			default:
				return
			}
		}
	}
	for {
		select {
		case row, ok := <-l.rows:
			if !ok {
				write()
				return
			}
			batch = append(batch, row)
			if len(batch) == reqlogBatch {
				write()
			}
		case <-t.C:
			write()
		case ack := <-l.flushes:
			drain()
			write()
			close(ack)
		}
	}
}

func (l *requestLog) flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case l.flushes <- ack:
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting rows and waits until the last batch is written.
// It must be called only after no handler can call add any more.
func (l *requestLog) close() {
	close(l.rows)
	<-l.done
}
