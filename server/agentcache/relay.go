// Package agentcache is the AgentCache side of provisioning, from seed 000:
// the relay behind POST /api/webhooks/jettythunder/provision, /upgrade
// and /rotate.
//
// AgentCache's backend calls the relay with its INTERNAL_WEBHOOK_SECRET
// when a user signs up. The relay calls the JettyThunder provisioning API
// (POST {JETTYTHUNDER_API_URL}/api/agentcache/provision, signed with
// JETTYTHUNDER_WEBHOOK_SECRET) and caches the returned credentials for 30
// days, so a repeated call answers from the cache instead of provisioning
// twice: JettyThunder shows an API secret only once.
//
// A cached entry is never answered as it is. Every cache hit is checked
// with JettyThunder first, using the cached credentials themselves
// (GET /api/agentcache/quota): that proves they still work and gives the
// account's current tier, status, storage quota and JettySpeed flag,
// which replace the cached figures. Credentials JettyThunder refuses
// (rotated, revoked) are dropped from the cache and answered 409
// credentials_revoked; a deleted account's are dropped and answered 403
// account_deleted; a suspended account is answered 403 account_suspended
// (its entry is kept, so the same credentials are handed out again once
// it is reactivated). When the check cannot be made (JettyThunder down,
// rate-limited) the relay answers an error and keeps the entry: it never
// hands out credentials or figures it could not check.
//
// A provision call naming a higher tier (free < starter < pro < business
// < enterprise) than the account has upgrades it (POST
// /api/agentcache/upgrade) and answers the upgraded figures; one naming a
// lower or an incomparable tier is refused with 409 tier_mismatch, as
// downgrades are for the upgrade route only. The upgrade route changes
// the tier either way and updates the cached figures. The rotate route
// issues new credentials on JettyThunder (POST /api/agentcache/rotate)
// and caches them: the way back after credentials_revoked, or after an
// entry was lost.
//
// Guarantees:
//
//   - One upstream call sequence per user at a time, across every relay
//     instance sharing the cache: a lock (Cache.SetNX
//     "jettythunder:lock:<user_id>") elects one caller; the others poll
//     the cache, and take an entry checked with JettyThunder after they
//     arrived (with the tier they asked for) as their answer.
//   - The cache never holds plaintext credentials: entries are sealed with
//     AES-256-GCM under a random nonce, with the user id as additional
//     data, so an entry copied to another user's key does not open.
//   - An entry that does not decrypt (tampered, truncated, or sealed under
//     another key after INTERNAL_WEBHOOK_SECRET changed) is logged and
//     treated as a miss. The upstream then answers 409 for the existing
//     account, which the relay reports with rotation advice; it never
//     panics and never serves data it cannot authenticate.
//   - Once the relay has called upstream, the calls and the caching of
//     their result finish even when the client disconnects: JettyThunder
//     shows an API secret once, and losing it would force a rotation.
//   - An entry is only dropped on JettyThunder's word that its
//     credentials are refused (codes unknown_api_key, wrong_api_secret,
//     account_deleted), never on an outage or an answer the relay does
//     not understand: a dropped secret cannot be recovered.
//   - Nothing secret is logged: not the bearer tokens, not the API key or
//     secret, not the e-mail address.
package agentcache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/connguard"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/webhooksig"
)

// Path is where the relay is mounted (seed 000).
const Path = "/api/webhooks/jettythunder/provision"

// UpgradePath is the relay's tier-change route (seed 000's "webhook for
// tier upgrades"). Relay.ServeHTTP answers it; mount the Relay there too.
const UpgradePath = "/api/webhooks/jettythunder/upgrade"

// JettyThunder endpoints the relay calls, relative to
// RelayConfig.UpstreamURL.
const (
	// UpstreamPath provisions an account (partner call, signed).
	UpstreamPath = "/api/agentcache/provision"
	// UpstreamUpgradePath changes an account's tier (partner call, signed).
	UpstreamUpgradePath = "/api/agentcache/upgrade"
	// UpstreamQuotaPath is called with the cached credentials to check
	// them and read the account's current figures.
	UpstreamQuotaPath = "/api/agentcache/quota"
)

// Defaults for RelayConfig.
const (
	DefaultTTL             = 30 * 24 * time.Hour
	DefaultLockTTL         = 60 * time.Second
	DefaultWaitTimeout     = 30 * time.Second
	DefaultPollInterval    = 50 * time.Millisecond
	DefaultUpstreamTimeout = 30 * time.Second
)

// MaxBodyBytes is the largest request body the relay reads.
const MaxBodyBytes = 64 << 10

// maxUpstreamBody bounds what is read of an upstream answer.
const maxUpstreamBody = 1 << 20

// Error codes the relay adds to those of package server.
const (
	// CodeUpstreamUnauthorized: JettyThunder refused the relay's secret.
	CodeUpstreamUnauthorized = "upstream_unauthorized"
	// CodeUpstreamUnavailable: JettyThunder could not be reached, failed,
	// or answered something the relay does not understand.
	CodeUpstreamUnavailable = "upstream_unavailable"
	// CodeMethodNotAllowed: the relay only answers POST.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeCredentialsRevoked (409): JettyThunder refused the cached
	// credentials (rotated or revoked); the relay dropped them.
	CodeCredentialsRevoked = "credentials_revoked"
	// CodeTierMismatch (409): a provision call named a tier lower than
	// (or not comparable with) the account's; nothing was changed.
	CodeTierMismatch = "tier_mismatch"
)

// hkdfInfo binds keys derived from InternalSecret to this one use.
const hkdfInfo = "jettythunder agentcache relay: credentials cache v1"

// sealVersion is the first byte of every cache entry.
const sealVersion = 1

// CredentialsKey is the cache key of a user's sealed credentials.
func CredentialsKey(userID string) string { return "jettythunder:credentials:" + userID }

// LockKey is the cache key of a user's provisioning lock.
func LockKey(userID string) string { return "jettythunder:lock:" + userID }

// RelayConfig configures a Relay. InternalSecret, UpstreamURL,
// UpstreamSecret and Cache are required; the rest have defaults.
type RelayConfig struct {
	// InternalSecret (INTERNAL_WEBHOOK_SECRET) is the bearer token callers
	// of the relay must send.
	InternalSecret string
	// UpstreamURL (JETTYTHUNDER_API_URL) is the base URL of the
	// JettyThunder server, e.g. https://jettythunder.app.
	UpstreamURL string
	// UpstreamSecret (JETTYTHUNDER_WEBHOOK_SECRET) is the bearer token sent
	// upstream; JettyThunder knows it as AGENTCACHE_WEBHOOK_SECRET.
	UpstreamSecret string
	// Cache holds sealed credentials and the provisioning locks. Relay
	// instances that share it (server/redis) share both.
	Cache server.Cache
	// HTTPClient calls upstream. Default: 30s timeout, redirects not
	// followed (a redirect would turn the POST into a GET).
	HTTPClient *http.Client
	// Logger receives one line per request. Default: slog.Default().
	Logger *slog.Logger
	// TTL is how long credentials stay cached. Default: DefaultTTL (30d).
	TTL time.Duration
	// EncryptionKey is the 32-byte AES-256 key sealing cached credentials.
	// Nil (or empty) derives one from InternalSecret with HKDF-SHA256; then changing
	// InternalSecret makes existing entries unreadable (treated as misses).
	EncryptionKey []byte

	// LockTTL bounds how long a crashed relay can hold a user's lock.
	// Default: DefaultLockTTL (60s); it must exceed UpstreamTimeout.
	LockTTL time.Duration
	// WaitTimeout bounds how long a caller waits for another caller's
	// provisioning of the same user. Default: DefaultWaitTimeout (30s).
	WaitTimeout time.Duration
	// PollInterval is the mean pause between cache polls while waiting.
	// Default: DefaultPollInterval (50ms).
	PollInterval time.Duration
	// UpstreamTimeout bounds the upstream calls of one request (a check
	// of the cached credentials, then an upgrade) and the caching of
	// their result, whatever HTTPClient's own timeout. Default: 30s.
	UpstreamTimeout time.Duration
}

// Credentials is what the relay returns and caches: seed 000's shape,
// plus the account's tier.
type Credentials struct {
	APIKey            string `json:"api_key"`
	APISecret         string `json:"api_secret"`
	Tier              string `json:"tier,omitempty"`
	StorageQuotaGB    int64  `json:"storage_quota_gb"`
	JettySpeedEnabled bool   `json:"jetty_speed_enabled"`
	S3Bucket          string `json:"s3_bucket"`
	S3Prefix          string `json:"s3_prefix"`
	ProvisionedAt     string `json:"provisioned_at"`
}

// Response is the body of a successful provision answer: 201 when the
// relay provisioned the account, 200 when it answered from the cache
// (after checking the credentials with JettyThunder) or upgraded it.
type Response struct {
	Success     bool        `json:"success"`
	Message     string      `json:"message"`
	Credentials Credentials `json:"credentials"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Messages of successful answers.
const (
	MessageCreated  = "JettyThunder storage account created"
	MessageCached   = "JettyThunder storage account already provisioned (cached credentials, checked with JettyThunder)"
	MessageUpgraded = "JettyThunder storage account upgraded (cached credentials, checked with JettyThunder)"
)

// entry is what a cache entry seals: the credentials, and when
// JettyThunder last confirmed them (a waiter takes an entry confirmed
// after it arrived as its answer).
type entry struct {
	Credentials
	CheckedAt time.Time `json:"checked_at"`
}

// Relay is the http.Handler of POST /api/webhooks/jettythunder/provision,
// /upgrade and /rotate.
type Relay struct {
	cfg          RelayConfig
	base         string // UpstreamURL without its trailing slash
	secretDigest [sha256.Size]byte
	aead         cipher.AEAD
	log          *slog.Logger
}

// NewRelay checks cfg, fills in defaults and returns a Relay.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.InternalSecret == "" {
		return nil, errors.New("agentcache relay: InternalSecret (INTERNAL_WEBHOOK_SECRET) is required")
	}
	if cfg.UpstreamSecret == "" {
		return nil, errors.New("agentcache relay: UpstreamSecret (JETTYTHUNDER_WEBHOOK_SECRET) is required")
	}
	if cfg.Cache == nil {
		return nil, errors.New("agentcache relay: Cache is required (memory.NewCache for one instance, redis.NewCache for several)")
	}
	u, err := url.Parse(cfg.UpstreamURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agentcache relay: UpstreamURL (JETTYTHUNDER_API_URL) %q is not an http(s) URL", cfg.UpstreamURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("agentcache relay: UpstreamURL (JETTYTHUNDER_API_URL) %q must not have a query or fragment", cfg.UpstreamURL)
	}
	key := cfg.EncryptionKey
	if len(key) == 0 {
		key, err = hkdf.Key(sha256.New, []byte(cfg.InternalSecret), nil, hkdfInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("agentcache relay: derive encryption key: %w", err)
		}
	} else if len(key) != 32 {
		return nil, fmt.Errorf("agentcache relay: EncryptionKey is %d bytes, want 32 (AES-256)", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("agentcache relay: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("agentcache relay: %w", err)
	}

	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout: DefaultUpstreamTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if cfg.LockTTL <= cfg.UpstreamTimeout {
		return nil, fmt.Errorf("agentcache relay: LockTTL %s must exceed UpstreamTimeout %s, or a slow upstream call could lose its lock", cfg.LockTTL, cfg.UpstreamTimeout)
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	cfg.EncryptionKey = nil // only the AEAD keeps it

	return &Relay{
		cfg:          cfg,
		base:         strings.TrimRight(cfg.UpstreamURL, "/"),
		secretDigest: sha256.Sum256([]byte(cfg.InternalSecret)),
		aead:         aead,
		log:          cfg.Logger,
	}, nil
}

// relayError is an answer other than success.
type relayError struct {
	status     int
	code       string
	message    string
	retryAfter string // Retry-After, when set
	cause      error  // logged, never sent
}

func (e *relayError) Error() string { return e.code + ": " + e.message }

func fail(status int, code, format string, args ...any) *relayError {
	return &relayError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// request is a validated provisioning request.
type request struct {
	UserID string
	Email  string
	Tier   string
}

// ServeHTTP answers POST /api/webhooks/jettythunder/upgrade (UpgradePath),
// POST /api/webhooks/jettythunder/rotate (RotatePath) and, on any other
// path, POST /api/webhooks/jettythunder/provision.
func (rl *Relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op := "jettythunder provision"
	switch r.URL.Path {
	case UpgradePath:
		op = "jettythunder upgrade"
	case RotatePath:
		op = "jettythunder rotate"
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Error: "use POST", Code: CodeMethodNotAllowed})
		return
	}
	if err := rl.authorize(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentcache"`)
		rl.answerError(w, r, op, start, "", err)
		return
	}
	switch r.URL.Path {
	case UpgradePath:
		rl.serveUpgrade(w, r, start)
		return
	case RotatePath:
		rl.serveRotate(w, r, start)
		return
	}
	req, err := readRequest(w, r)
	if err != nil {
		rl.answerError(w, r, op, start, "", err)
		return
	}
	creds, outcome, err := rl.provision(r.Context(), req)
	if err != nil {
		rl.answerError(w, r, op, start, req.UserID, err)
		return
	}
	status, msg := http.StatusOK, MessageCached
	switch outcome {
	case outcomeCreated:
		status, msg = http.StatusCreated, MessageCreated
	case outcomeUpgraded:
		msg = MessageUpgraded
	}
	writeJSON(w, status, Response{Success: true, Message: msg, Credentials: creds})
	rl.log.LogAttrs(r.Context(), slog.LevelInfo, op,
		slog.String("user_id", req.UserID),
		slog.String("outcome", string(outcome)),
		slog.String("tier", creds.Tier),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)))
}

func (rl *Relay) answerError(w http.ResponseWriter, r *http.Request, op string, start time.Time, userID string, err error) {
	var re *relayError
	if !errors.As(err, &re) {
		re = &relayError{status: http.StatusInternalServerError, code: server.EInternal, message: "internal error", cause: err}
	}
	if re.retryAfter != "" {
		w.Header().Set("Retry-After", re.retryAfter)
	}
	writeJSON(w, re.status, ErrorResponse{Error: re.message, Code: re.code})
	level := slog.LevelInfo
	if re.status >= 500 {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("outcome", "error"),
		slog.Int("status", re.status),
		slog.String("code", re.code),
		slog.Duration("duration", time.Since(start)),
	}
	if userID != "" {
		attrs = append(attrs, slog.String("user_id", userID))
	}
	if re.cause != nil {
		attrs = append(attrs, slog.String("cause", re.cause.Error()))
	}
	rl.log.LogAttrs(r.Context(), level, op, attrs...)
}

// authorize checks the bearer token in constant time, comparing SHA-256
// digests so neither the content nor the length of the secret leaks.
func (rl *Relay) authorize(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return fail(http.StatusUnauthorized, server.EUnauthorized, "missing Authorization header; send Authorization: Bearer <INTERNAL_WEBHOOK_SECRET>")
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return fail(http.StatusUnauthorized, server.EUnauthorized, "malformed Authorization header; send Authorization: Bearer <INTERNAL_WEBHOOK_SECRET>")
	}
	d := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(d[:], rl.secretDigest[:]) != 1 {
		return fail(http.StatusUnauthorized, server.EUnauthorized, "invalid bearer token; it must equal INTERNAL_WEBHOOK_SECRET")
	}
	connguard.Authenticated(r.Context())
	return nil
}

// readRequest reads and validates the body. Seed 000 names the fields
// user_id and email; the JettyThunder API's agentcache_user_id and
// agentcache_email are accepted too. Unknown fields are ignored.
func readRequest(w http.ResponseWriter, r *http.Request) (request, error) {
	raw, err := readBody(w, r)
	if err != nil {
		return request{}, err
	}
	var body struct {
		UserID           string `json:"user_id"`
		AgentCacheUserID string `json:"agentcache_user_id"`
		Email            string `json:"email"`
		AgentCacheEmail  string `json:"agentcache_email"`
		Tier             string `json:"tier"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return request{}, fail(http.StatusBadRequest, server.EInvalid, "request body is not a JSON object of strings user_id, email, tier: %v", jsonProblem(err))
	}
	userID, err := oneOf("user_id", body.UserID, "agentcache_user_id", body.AgentCacheUserID)
	if err != nil {
		return request{}, err
	}
	email, err := oneOf("email", body.Email, "agentcache_email", body.AgentCacheEmail)
	if err != nil {
		return request{}, err
	}
	req := request{UserID: userID, Email: email, Tier: strings.TrimSpace(body.Tier)}
	for _, check := range []error{
		server.ValidateUserID(req.UserID),
		server.ValidateEmail(req.Email),
		server.ValidateTierName(req.Tier),
	} {
		if check != nil {
			return request{}, fail(http.StatusBadRequest, server.ErrorCode(check), "%s", server.ErrorMessage(check))
		}
	}
	return req, nil
}

// readBody reads a request body of at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, fail(http.StatusRequestEntityTooLarge, server.ETooLarge, "request body is %d bytes; the limit is %d", r.ContentLength, MaxBodyBytes)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fail(http.StatusRequestEntityTooLarge, server.ETooLarge, "request body exceeds %d bytes", MaxBodyBytes)
		}
		return nil, fail(http.StatusBadRequest, server.EInvalid, "could not read the request body")
	}
	return raw, nil
}

// oneOf returns whichever of two alias fields is set; both set to
// different values is an error.
func oneOf(name, v, alias, av string) (string, error) {
	switch {
	case v == "":
		return av, nil
	case av == "" || av == v:
		return v, nil
	default:
		return "", fail(http.StatusBadRequest, server.EInvalid, "%s and %s differ; send one of them", name, alias)
	}
}

// jsonProblem describes a JSON error without echoing the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return "the body must be a JSON object"
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be a %s", typ.Field, typ.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return "malformed JSON"
}

// outcome is how a provision call was answered.
type outcome string

const (
	outcomeCreated  outcome = "created"
	outcomeCached   outcome = "cached"
	outcomeUpgraded outcome = "upgraded"
)

// provision answers under the user's lock: it provisions on a miss, and
// on a hit checks the cached credentials with JettyThunder (and upgrades
// when the request names a higher tier). While another caller holds the
// lock it waits, and takes an entry checked after it arrived, for the
// tier it asks for, as its answer.
func (rl *Relay) provision(ctx context.Context, req request) (Credentials, outcome, error) {
	arrived := time.Now()
	var creds Credentials
	var out outcome
	peek := func(ctx context.Context) (bool, error) {
		e, ok, err := rl.cached(ctx, req.UserID)
		if err != nil || !ok || !fresh(e, arrived, req.Tier) {
			return false, err
		}
		creds, out = e.Credentials, outcomeCached
		return true, nil
	}
	err := rl.withLock(ctx, req.UserID, peek, func(ctx, uctx context.Context) error {
		var err error
		creds, out, err = rl.provisionLocked(ctx, uctx, req, arrived)
		return err
	})
	return creds, out, err
}

// fresh reports whether e was confirmed by JettyThunder after a request
// that arrived at arrived, for the tier it asks for: a request waiting
// for the lock can take it as its own answer.
func fresh(e entry, arrived time.Time, tier string) bool {
	return !e.CheckedAt.Before(arrived) && e.Tier == tier
}

// withLock runs locked holding the user's lock. While another caller holds
// it, peek (when not nil) is called between polls; when it reports done,
// withLock returns without running locked. locked gets the caller's
// context and one detached from the caller's cancellation, bounded by
// UpstreamTimeout, for upstream calls and caching.
func (rl *Relay) withLock(ctx context.Context, userID string, peek func(context.Context) (bool, error), locked func(ctx, uctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, rl.cfg.WaitTimeout)
	defer cancel()
	token := []byte(randomToken())
	for {
		if peek != nil {
			done, err := peek(ctx)
			if err != nil {
				return cacheFailure(ctx, err)
			}
			if done {
				return nil
			}
		}
		won, err := rl.cfg.Cache.SetNX(ctx, LockKey(userID), token, rl.cfg.LockTTL)
		if err != nil {
			return cacheFailure(ctx, err)
		}
		if won {
			detached := context.WithoutCancel(ctx)
			defer rl.unlock(detached, userID, token)
			uctx, cancel := context.WithTimeout(detached, rl.cfg.UpstreamTimeout)
			defer cancel()
			return locked(ctx, uctx)
		}
		// Another caller holds the lock: wait for its result, or for the
		// lock to go (it failed, or crashed and the lock expired).
		t := time.NewTimer(jitter(rl.cfg.PollInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return busy()
		case <-t.C:
		}
	}
}

func busy() *relayError {
	return fail(http.StatusServiceUnavailable, server.EUnavailable,
		"another request is provisioning or upgrading this user's JettyThunder account; retry shortly")
}

func cacheFailure(ctx context.Context, err error) *relayError {
	if ctx.Err() != nil {
		return busy()
	}
	e := fail(http.StatusServiceUnavailable, server.EUnavailable, "the credential cache is unavailable; retry shortly")
	e.cause = err
	return e
}

// provisionLocked runs with the user's lock held. It reads the cache once
// more (the previous holder may have just answered for this request); on
// a miss it provisions upstream and caches the result; on a hit it checks
// the credentials (check) and reconciles the tier. From the first
// upstream call on it runs on uctx, which ignores the caller's
// cancellation.
func (rl *Relay) provisionLocked(ctx, uctx context.Context, req request, arrived time.Time) (Credentials, outcome, error) {
	e, ok, err := rl.cached(ctx, req.UserID)
	if err != nil {
		return Credentials{}, "", cacheFailure(ctx, err)
	}
	if ok && fresh(e, arrived, req.Tier) {
		return e.Credentials, outcomeCached, nil
	}
	if ok {
		return rl.reconcile(uctx, req, e)
	}

	creds, err := rl.callUpstream(uctx, req)
	if err != nil {
		return Credentials{}, "", err
	}
	if err := rl.store(uctx, req.UserID, entry{Credentials: creds, CheckedAt: time.Now()}); err != nil {
		// The account exists now and its secret is shown only once: hand
		// it to the caller rather than fail, and say it was not cached.
		rl.log.LogAttrs(ctx, slog.LevelError, "jettythunder credentials provisioned but not cached; a repeated call will get 409",
			slog.String("user_id", req.UserID), slog.String("cause", err.Error()))
	}
	return creds, outcomeCreated, nil
}

// store seals e into the user's cache entry for TTL.
func (rl *Relay) store(ctx context.Context, userID string, e entry) error {
	sealed, err := rl.seal(userID, e)
	if err != nil {
		return err
	}
	return rl.cfg.Cache.Set(ctx, CredentialsKey(userID), sealed, rl.cfg.TTL)
}

// unlock deletes the user's lock if it still holds this caller's token.
// Get-then-Delete is not atomic, but the lock cannot expire and be retaken
// in between: LockTTL exceeds UpstreamTimeout, which bounds the holder.
func (rl *Relay) unlock(ctx context.Context, userID string, token []byte) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, ok, err := rl.cfg.Cache.Get(ctx, LockKey(userID))
	if err == nil && ok && bytes.Equal(v, token) {
		err = rl.cfg.Cache.Delete(ctx, LockKey(userID))
	}
	if err != nil {
		rl.log.LogAttrs(ctx, slog.LevelWarn, "jettythunder provision lock not released; it expires on its own",
			slog.String("user_id", userID), slog.Duration("lock_ttl", rl.cfg.LockTTL), slog.String("cause", err.Error()))
	}
}

// cached returns the user's cached credentials. An entry that does not
// decrypt is logged and reported as a miss.
func (rl *Relay) cached(ctx context.Context, userID string) (entry, bool, error) {
	raw, ok, err := rl.cfg.Cache.Get(ctx, CredentialsKey(userID))
	if err != nil || !ok {
		return entry{}, false, err
	}
	e, err := rl.open(userID, raw)
	if err != nil {
		rl.log.LogAttrs(ctx, slog.LevelWarn, "jettythunder cached credentials unreadable (tampered, or sealed under another key); treating as a miss",
			slog.String("user_id", userID), slog.String("cause", err.Error()))
		return entry{}, false, nil
	}
	return e, true, nil
}

// seal encrypts creds for the user's cache entry: version byte, then
// AES-256-GCM with a random 12-byte nonce (prepended by the AEAD) and the
// user id as additional data.
func (rl *Relay) seal(userID string, e entry) ([]byte, error) {
	plain, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return rl.aead.Seal([]byte{sealVersion}, nil, plain, []byte(userID)), nil
}

func (rl *Relay) open(userID string, sealed []byte) (entry, error) {
	if len(sealed) < 1+rl.aead.Overhead() || sealed[0] != sealVersion {
		return entry{}, errors.New("not a sealed credentials entry")
	}
	plain, err := rl.aead.Open(nil, nil, sealed[1:], []byte(userID))
	if err != nil {
		return entry{}, errors.New("authentication failed")
	}
	var e entry
	if err := json.Unmarshal(plain, &e); err != nil || e.APIKey == "" || e.APISecret == "" {
		return entry{}, errors.New("sealed entry holds no credentials")
	}
	return e, nil
}

// upstreamAccount is the "account" of a JettyThunder 201 answer (seed 002).
type upstreamAccount struct {
	ID                string `json:"id"`
	APIKey            string `json:"api_key"`
	APISecret         string `json:"api_secret"`
	Tier              string `json:"tier"`
	StorageQuotaGB    int64  `json:"storage_quota_gb"`
	BandwidthQuotaGB  int64  `json:"bandwidth_quota_gb"`
	JettySpeedEnabled bool   `json:"jetty_speed_enabled"`
	S3Bucket          string `json:"s3_bucket"`
	S3Prefix          string `json:"s3_prefix"`
	Status            string `json:"status"`
	CreatedAt         string `json:"created_at"`
}

// callUpstream provisions the account on JettyThunder and maps its answer.
func (rl *Relay) callUpstream(ctx context.Context, req request) (Credentials, error) {
	body, err := json.Marshal(map[string]string{
		"agentcache_user_id": req.UserID,
		"agentcache_email":   req.Email,
		"tier":               req.Tier,
		"nonce":              randomToken(),
	})
	if err != nil {
		return Credentials{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, rl.base+UpstreamPath, bytes.NewReader(body))
	if err != nil {
		return Credentials{}, err
	}
	// Signed, not Bearer: the secret never travels and a captured call
	// cannot be replayed (server/webhooksig).
	hreq.Header.Set(webhooksig.Header, webhooksig.Sign(rl.cfg.UpstreamSecret, time.Now(), http.MethodPost, hreq.URL.EscapedPath(), body))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := rl.cfg.HTTPClient.Do(hreq)
	if err != nil {
		e := unreachable("the request failed")
		e.cause = err
		return Credentials{}, e
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		e := unreachable("the answer could not be read")
		e.cause = err
		return Credentials{}, e
	}

	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		var ans struct {
			Success *bool           `json:"success"`
			Account upstreamAccount `json:"account"`
		}
		if err := json.Unmarshal(raw, &ans); err != nil || (ans.Success != nil && !*ans.Success) ||
			ans.Account.APIKey == "" || ans.Account.APISecret == "" {
			// Do not log raw: it may hold a secret.
			return Credentials{}, unreachable(fmt.Sprintf("HTTP %d without an account with api_key and api_secret", resp.StatusCode))
		}
		a := ans.Account
		provisioned := a.CreatedAt
		if provisioned == "" {
			provisioned = time.Now().UTC().Format(time.RFC3339Nano)
		}
		return Credentials{
			APIKey:            a.APIKey,
			APISecret:         a.APISecret,
			Tier:              cmp.Or(a.Tier, req.Tier),
			StorageQuotaGB:    a.StorageQuotaGB,
			JettySpeedEnabled: a.JettySpeedEnabled,
			S3Bucket:          a.S3Bucket,
			S3Prefix:          a.S3Prefix,
			ProvisionedAt:     provisioned,
		}, nil
	case http.StatusConflict:
		return Credentials{}, fail(http.StatusConflict, server.EAccountExists,
			"a JettyThunder storage account already exists for user %q, but its credentials are not cached here and the API secret cannot be recovered; rotate them through the relay (POST %s), which issues a new secret and caches it", req.UserID, RotatePath)
	case http.StatusBadRequest:
		var ans struct {
			Error   string `json:"error"`
			Message string `json:"message"`
			Code    string `json:"code"`
		}
		_ = json.Unmarshal(raw, &ans)
		msg := cmp.Or(ans.Error, ans.Message, "JettyThunder rejected the request")
		return Credentials{}, fail(http.StatusBadRequest, safeCode(ans.Code), "%s", truncate(msg, 500))
	case http.StatusUnauthorized, http.StatusForbidden:
		return Credentials{}, fail(http.StatusBadGateway, CodeUpstreamUnauthorized,
			"JettyThunder refused the relay's webhook secret (HTTP %d): JETTYTHUNDER_WEBHOOK_SECRET here must equal AGENTCACHE_WEBHOOK_SECRET on JettyThunder", resp.StatusCode)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return Credentials{}, unreachable(fmt.Sprintf("HTTP %d from %s; check JETTYTHUNDER_API_URL", resp.StatusCode, UpstreamPath))
	default:
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return Credentials{}, unreachable(fmt.Sprintf("HTTP %d redirect; set JETTYTHUNDER_API_URL to the final URL", resp.StatusCode))
		}
		return Credentials{}, unreachable(fmt.Sprintf("HTTP %d", resp.StatusCode))
	}
}

func unreachable(detail string) *relayError {
	return fail(http.StatusBadGateway, CodeUpstreamUnavailable, "Failed to connect to JettyThunder: %s", detail)
}

// safeCode passes an upstream error code through if it looks like one.
func safeCode(code string) string {
	if code == "" || len(code) > 64 {
		return server.EInvalid
	}
	for _, c := range code {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return server.EInvalid
		}
	}
	return code
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// randomToken identifies one lock holder, or makes one signed upstream
// call unlike any other: the body of every signed call carries a "nonce"
// field (JettyThunder ignores unknown fields), so two identical calls in
// the same second are not refused as a replay (server/webhooksig).
func randomToken() string { return rand.Text() }

// jitter returns d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(mrand.Int64N(int64(d)))
}
