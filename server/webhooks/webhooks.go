// Package webhooks delivers the status events of the outbox
// (server.WebhookStore) to each account's webhook_url: signed with
// X-Jetty-Signature (server/webhooksig) under the partner's webhook
// secret, at least once, in order per account, with retries and
// exponential backoff (capped, with jitter) until a bounded age, after
// which an event is marked failed.
//
// The state lives in the database (attempts, next_attempt_at, last_error,
// delivered_at), so a restarted server carries on where the last one
// stopped, and several instances may share one database: each event is
// claimed with a lease, so one instance at a time sends it. A receiver
// that keeps failing holds back only its own account's later events.
//
// Every call has a timeout, follows no redirect, reads at most a few KiB
// of the answer, and (unless AllowPrivate) refuses to connect to
// loopback, private, link-local or otherwise non-public addresses,
// checked on the address actually dialled, so a name that resolves to an
// internal address is refused too (see docs/partner-webhooks.md).
package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// Defaults of Config.
const (
	DefaultPoll      = time.Second
	DefaultRetryBase = 10 * time.Second
	DefaultRetryMax  = time.Hour
	DefaultMaxAge    = 72 * time.Hour
	DefaultTimeout   = 10 * time.Second
	DefaultRetention = 30 * 24 * time.Hour
	defaultBatch     = 32
	defaultSenders   = 8
	maxAnswer        = 4 << 10 // bytes of an answer read (and kept for last_error, at most 200)
	pruneEvery       = time.Hour
	countEvery       = 10 * time.Second
)

// Config configures a Worker. Store and Secret are required.
type Config struct {
	Store  server.WebhookStore
	Secret string // AGENTCACHE_WEBHOOK_SECRET: signs every event
	// PreviousSecret (AGENTCACHE_WEBHOOK_SECRET_PREVIOUS), during a
	// rotation of the webhook secret, adds a second v1= signature so the
	// partner verifies with whichever secret it holds.
	PreviousSecret string
	Log            *slog.Logger
	// Holder names this instance in leases (hostname:pid).
	Holder string
	// Registerer receives the metrics (jetty_webhook_*); none when nil.
	Registerer prometheus.Registerer

	// Poll is how often the outbox is read when idle (DefaultPoll).
	Poll time.Duration
	// RetryBase is the delay after a first failed attempt, doubled on each
	// further one up to RetryMax, each with jitter (a random part of up to
	// half of it).
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxAge is how long after it was recorded an event is tried before
	// it is marked failed (DefaultMaxAge, 3 days).
	MaxAge time.Duration
	// Timeout bounds each HTTP call (DefaultTimeout).
	Timeout time.Duration
	// Retention is how long delivered and failed events are kept
	// (DefaultRetention; negative: forever).
	Retention time.Duration
	// AllowPrivate lets the sender connect to loopback, private and other
	// non-public addresses (JETTY_WEBHOOK_ALLOW_PRIVATE; --dev and tests).
	AllowPrivate bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Worker sends pending events. Run it with Run; it is safe to run one per
// server instance.
type Worker struct {
	cfg    Config
	client *http.Client
	lease  time.Duration
	wake   chan struct{}
	m      *metrics

	lastPrune, lastCount time.Time
}

type metrics struct {
	events   *prometheus.GaugeVec
	attempts *prometheus.CounterVec
}

// New makes a Worker.
func New(cfg Config) *Worker {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Holder == "" {
		cfg.Holder = "webhooks"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryBase)
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	// A claimed batch is sent defaultSenders at a time: the lease covers
	// the last of them timing out, with a margin.
	lease := time.Duration(defaultBatch/defaultSenders+1)*cfg.Timeout + 30*time.Second
	w := &Worker{cfg: cfg, wake: make(chan struct{}, 1), lease: lease}
	w.client = newClient(cfg.Timeout, cfg.AllowPrivate)
	w.m = &metrics{
		events: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetty_webhook_events",
			Help: "Status webhook events in the outbox by state (pending, delivered, failed), as last counted.",
		}, []string{"state"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetty_webhook_attempts_total",
			Help: "Webhook delivery attempts by result (delivered, http_error, network_error, refused_address, gave_up).",
		}, []string{"result"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(w.m.events, w.m.attempts)
	}
	return w
}

// errRefusedAddr is a connection refused by the address policy.
var errRefusedAddr = errors.New("address is not public (loopback, private, link-local or reserved); set JETTY_WEBHOOK_ALLOW_PRIVATE=1 to allow it")

// newClient is the sender's HTTP client: no proxy, no redirects, a
// timeout, and a dialer that checks every address it connects to.
func newClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !server.PublicAddr(ap.Addr()) {
				return errRefusedAddr
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Notify asks the worker to look at the outbox now rather than at its
// next poll (after a change that recorded an event, say).
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends. Errors are logged and retried at the next
// poll.
func (w *Worker) Run(ctx context.Context) {
	defer w.client.CloseIdleConnections()
	for {
		n, err := w.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			w.cfg.Log.Warn("webhook delivery", "err", err)
		}
		if n > 0 && err == nil {
			continue // there may be more due: the next events of these accounts
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-time.After(w.cfg.Poll):
		}
	}
}

// RunOnce claims the events due now, sends them concurrently (each
// account has at most one at a time) and records the outcomes. It reports
// how many it sent.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	now := w.cfg.Now()
	w.housekeeping(ctx, now)
	// The claim is not cut short by a shutdown: a claim committed but not
	// read would leave its events leased, unsent, until the lease ran out.
	// Every event claimed gets an attempt recorded, which ends its lease.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	evs, err := w.cfg.Store.ClaimWebhookEvents(cctx, w.cfg.Holder, now, w.lease, defaultBatch)
	cancel()
	if err != nil {
		return 0, err
	}
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, defaultSenders)
		mu   sync.Mutex
		errs []error
	)
	for _, e := range evs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.deliver(ctx, e); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return len(evs), errors.Join(errs...)
}

// housekeeping refreshes the state gauges and prunes old events, now and
// then.
func (w *Worker) housekeeping(ctx context.Context, now time.Time) {
	if now.Sub(w.lastCount) >= min(countEvery, max(10*w.cfg.Poll, 500*time.Millisecond)) {
		w.lastCount = now
		if c, err := w.cfg.Store.CountWebhookEvents(ctx); err == nil {
			for st, n := range c {
				w.m.events.WithLabelValues(string(st)).Set(float64(n))
			}
		}
	}
	if w.cfg.Retention > 0 && now.Sub(w.lastPrune) >= pruneEvery {
		w.lastPrune = now
		n, err := w.cfg.Store.PruneWebhookEvents(ctx, now.Add(-w.cfg.Retention), 5000)
		if err != nil {
			w.cfg.Log.Warn("prune webhook events", "err", err)
		} else if n > 0 {
			w.cfg.Log.Info("pruned webhook events", "deleted", n)
		}
	}
}

// deliver sends one event and records the attempt.
func (w *Worker) deliver(ctx context.Context, e server.WebhookEvent) error {
	status, sendErr := w.send(ctx, e)
	now := w.cfg.Now()
	a := server.WebhookAttempt{At: now, Status: status}
	result := "delivered"
	switch {
	case sendErr == nil:
		a.Delivered = true
	default:
		a.Error = sendErr.Error()
		result = "network_error"
		if status != 0 {
			result = "http_error"
		} else if errors.Is(sendErr, errRefusedAddr) {
			result = "refused_address"
		}
		switch {
		case ctx.Err() != nil:
			// This server is stopping: another instance (or the next
			// start) may try again at once.
			a.NextAttemptAt = now
		case now.Sub(e.CreatedAt) >= w.cfg.MaxAge:
			a.GiveUp = true
		default:
			a.NextAttemptAt = now.Add(w.backoff(e.Attempts + 1))
		}
	}
	w.m.attempts.WithLabelValues(result).Inc()
	if a.GiveUp {
		w.m.attempts.WithLabelValues("gave_up").Inc()
		w.cfg.Log.Warn("webhook event failed: gave up", "event", e.ID, "type", e.Type, "account", e.AccountID,
			"attempts", e.Attempts+1, "last_error", a.Error)
	} else if !a.Delivered {
		w.cfg.Log.Info("webhook delivery failed, will retry", "event", e.ID, "type", e.Type, "account", e.AccountID,
			"attempt", e.Attempts+1, "err", a.Error, "next_attempt_at", a.NextAttemptAt)
	}
	// Recorded even when ctx ended (a shutdown): the call was made.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := w.cfg.Store.RecordWebhookAttempt(rctx, e.ID, w.cfg.Holder, a)
	if server.ErrorCode(err) == server.ENotFound {
		// The lease ran out and another instance took the event over: it
		// will be sent again (at least once).
		return nil
	}
	return err
}

// backoff is the delay before attempt n+1 after n failed attempts:
// RetryBase·2^(n-1), at most RetryMax, minus a random part of up to half
// of it (jitter, so many failing events do not retry in step).
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.RetryMax
	if n-1 < 40 {
		if x := w.cfg.RetryBase << (n - 1); x > 0 && x < d {
			d = x
		}
	}
	return d - time.Duration(rand.Int64N(int64(d/2)+1))
}

// send posts the event to its URL; a 2xx answer is success. It returns
// the answer's status (0 without one).
func (w *Worker) send(ctx context.Context, e server.WebhookEvent) (int, error) {
	if e.URL == "" {
		return 0, errors.New("no webhook_url")
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return 0, fmt.Errorf("webhook_url: %w", err)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(e.Payload))
	if err != nil {
		return 0, fmt.Errorf("webhook_url: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jetty-webhooks/1")
	req.Header.Set("X-Jetty-Event", e.Type)
	req.Header.Set("X-Jetty-Event-Id", e.ID)
	req.Header.Set("X-Jetty-Delivery-Attempt", strconv.Itoa(e.Attempts+1))
	req.Header.Set(webhooksig.Header, w.sign(path, e.Payload))
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the partner's own; say what went wrong
		}
		return 0, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, nil
	}
	msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += " (redirects are not followed: register the final URL)"
	}
	if s := printable(answer, 200); s != "" {
		msg += ": " + s
	}
	return resp.StatusCode, errors.New(msg)
}

// sign is the X-Jetty-Signature of a call: one v1= per secret.
func (w *Worker) sign(path string, body []byte) string {
	now := w.cfg.Now()
	h := webhooksig.Sign(w.cfg.Secret, now, http.MethodPost, path, body)
	if w.cfg.PreviousSecret != "" {
		p := webhooksig.Sign(w.cfg.PreviousSecret, now, http.MethodPost, path, body)
		if i := strings.Index(p, ",v1="); i > 0 {
			h += p[i:]
		}
	}
	return h
}

// printable is the start of an answer body, for last_error: at most n
// bytes, control characters replaced.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	out := make([]rune, 0, len(b))
	for _, r := range string(bytes.ToValidUTF8(b, nil)) {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	return string(bytes.TrimSpace([]byte(string(out))))
}
