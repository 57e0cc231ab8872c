// Package console is the operator's web console of `jetty server`, served
// under /console when JETTY_CONSOLE_TOKEN is set (server/app mounts it):
// server-rendered pages from html/template, with the templates and one
// hand-written stylesheet embedded in the binary (no JavaScript build
// step, nothing loaded from a CDN).
//
// Pages: Overview (overview.go), Accounts (accounts.go: search, one
// account's page, and the operator actions of the partner API behind a
// confirmation), Edges (edges.go) and Audit (audit.go). Every template
// is parsed as layout.html plus its own file; render adds the CSRF token
// and the operator's session to each page's data.
//
// Sign-in (auth.go) exchanges the operator token for a session cookie
// whose value is random and stored only as its SHA-256 in the database
// (console_sessions), so every instance behind a load balancer knows it.
// Every POST carries a CSRF token derived from the session (a keyed hash
// of the cookie's value) and is refused from another origin. Sign-in
// attempts are rate-limited per client address and in all through the
// server's Limiter (Redis when configured), and every sign-in, sign-out
// and action is written to the audit log (console_audit).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jettythunder/jetty/internal/secrets"
	"github.com/jettythunder/jetty/server"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console"

// Defaults of Config.
const (
	DefaultSessionIdle = 2 * time.Hour
	DefaultSessionMax  = 12 * time.Hour
)

// Config configures the console.
type Config struct {
	// Token (JETTY_CONSOLE_TOKEN) is what an operator signs in with; it
	// must pass internal/secrets' check.
	Token string
	// SecureCookie (JETTY_CONSOLE_SECURE_COOKIE=1) marks the session
	// cookie Secure even on plain-http requests: set it behind a
	// TLS-terminating proxy. Requests that came over TLS get it anyway.
	SecureCookie bool
	// SessionIdle ends a session unused this long (default 2h);
	// SessionMax ends any session this long after sign-in (default 12h).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// SignInPerMinute is how many sign-in attempts one client address
	// may make in a minute (default 5); SignInGlobalPerMinute all
	// addresses together (default 60).
	SignInPerMinute       int
	SignInGlobalPerMinute int
}

// Store is the database as the console reads it.
type Store interface {
	server.Store
	server.ConsoleStore
}

// AccountOps are the partner API's operations on an account (server/api
// exports them), so that an operator's action records the same status
// events and metrics as AgentCache's call.
type AccountOps struct {
	ChangeTier func(ctx context.Context, userID, tier string) (server.Account, error)
	SetStatus  func(ctx context.Context, userID string, status server.AccountStatus) (server.Account, error)
	// Rotate issues a new key and secret (the secret is returned once);
	// the old pair keeps working for overlap (0: not at all).
	Rotate func(ctx context.Context, userID string, overlap time.Duration) (server.Account, string, error)
	// RevokePrevious ends a rotation's overlap at once.
	RevokePrevious func(ctx context.Context, userID string) (server.Account, error)
}

// Deps is what the console works with.
type Deps struct {
	Store    Store
	Limiter  server.Limiter
	Accounts AccountOps
	Logger   *slog.Logger
	Now      func() time.Time // default time.Now
}

// Console is the console's HTTP handler and its state.
type Console struct {
	cfg     Config
	deps    Deps
	store   Store
	log     *slog.Logger
	now     func() time.Time
	pages   map[string]*template.Template
	handler http.Handler
}

// New checks cfg and builds the console.
func New(cfg Config, deps Deps) (*Console, error) {
	if cfg.Token == "" {
		return nil, errors.New("console: JETTY_CONSOLE_TOKEN is not set")
	}
	if err := secrets.Check("JETTY_CONSOLE_TOKEN", cfg.Token); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Limiter == nil {
		return nil, errors.New("console: a store and a limiter are needed")
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.SessionMax <= 0 {
		cfg.SessionMax = DefaultSessionMax
	}
	if cfg.SignInPerMinute <= 0 {
		cfg.SignInPerMinute = 5
	}
	if cfg.SignInGlobalPerMinute <= 0 {
		cfg.SignInGlobalPerMinute = 60
	}
	c := &Console{cfg: cfg, deps: deps, store: deps.Store, log: deps.Logger, now: deps.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.handler = c.routes()
	return c, nil
}

// Handler serves the console; mount it at Prefix ("/console/" and
// "/console").
func (c *Console) Handler() http.Handler { return c.handler }

// routes registers every page. Pages behind sign-in are wrapped in
// c.signedIn; POSTs in c.signedInPost (session and CSRF).
func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+Prefix+"/signin", c.handleSignInPage)
	mux.HandleFunc("POST "+Prefix+"/signin", c.handleSignIn)
	mux.HandleFunc("POST "+Prefix+"/signout", c.signedInPost(c.handleSignOut))

	mux.HandleFunc("GET "+Prefix+"/{$}", c.signedIn(c.handleOverview))
	mux.HandleFunc("GET "+Prefix+"/edges", c.signedIn(c.handleEdges))
	mux.HandleFunc("GET "+Prefix+"/accounts", c.signedIn(c.handleAccounts))
	mux.HandleFunc("GET "+Prefix+"/accounts/{id}", c.signedIn(c.handleAccount))
	mux.HandleFunc("POST "+Prefix+"/accounts/{id}/action", c.signedInPost(c.handleAction))
	mux.HandleFunc("GET "+Prefix+"/audit", c.signedIn(c.handleAudit))
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	return securityHeaders(mux)
}

// securityHeaders adds the headers every console answer carries: no
// framing, no sniffing, no caching, a strict content security policy (no
// script at all), no referrer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin") // not no-referrer: Chromium then sends "Origin: null" with the forms
		if !strings.HasPrefix(r.URL.Path, Prefix+"/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// funcs are the helpers every template may call.
var funcs = template.FuncMap{
	"bytes":   humanBytes,
	"percent": percent,
	"when":    when,
	"mibps":   func(v float64) string { return fmt.Sprintf("%.1f MiB/s", v/8*1e6/(1<<20)) },
}

// parseTemplates parses each page as layout.html plus its own file.
func (c *Console) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, n := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("console: template %s: %w", page, err)
		}
		c.pages[page] = t
	}
	return nil
}

// View is what every template gets: the page's own data in .Data, and
// what the frame needs.
type View struct {
	Page     string // the template's name: overview, accounts, ...
	CSRF     string // the token every form posts as "csrf"
	Operator string // the session's short id; "" when signed out
	Data     any
}

// render writes page (templates/<page>.html inside layout.html) with
// data in .Data, adding the CSRF token and the operator's session from
// the request's context.
func (c *Console) render(w http.ResponseWriter, r *http.Request, page string, data any) {
	c.renderStatus(w, r, http.StatusOK, page, data)
}

// renderStatus is render with a status code.
func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	t, ok := c.pages[page]
	if !ok {
		c.log.Error("console: no such template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	v := View{Page: page, Data: data}
	if s, ok := sessionFrom(r.Context()); ok {
		v.CSRF, v.Operator = s.csrf, s.short
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout.html", v); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// failure is the data of the error page.
type failure struct {
	Status  int
	Message string
}

// fail answers status with a page that says message.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, message string) {
	c.renderStatus(w, r, status, "error", failure{Status: status, Message: message})
}

// serverError logs err and answers 500 without its details.
func (c *Console) serverError(w http.ResponseWriter, r *http.Request, err error) {
	c.log.Error("console", "path", r.URL.Path, "err", err)
	status := http.StatusInternalServerError
	msg := "Something went wrong on the server; the log has the details."
	if errors.Is(err, server.ErrUnavailable) {
		status, msg = http.StatusServiceUnavailable, "The database is unavailable; try again shortly."
	}
	c.fail(w, r, status, msg)
}
