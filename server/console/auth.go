package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
)

// CookieName is the session cookie's name.
const CookieName = "jetty_console"

// session is the signed-in operator of a request.
type session struct {
	hash  string // SHA-256 of the cookie's value, hex: the row's key
	short string // the first 8 characters of hash: "who" in the audit log
	csrf  string // the synchronizer token of this session's forms
}

type sessionKey struct{}

// sessionFrom is the request's session, when it is signed in.
func sessionFrom(ctx context.Context) (session, bool) {
	s, ok := ctx.Value(sessionKey{}).(session)
	return s, ok
}

// hashToken is the SHA-256 of a cookie's value, hex.
func hashToken(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// csrfFor derives the CSRF token of a session from its cookie's value:
// HMAC-SHA256 keyed with the value, so it is tied to the session, the
// same on every instance, and cannot be made without the cookie.
func csrfFor(cookie string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte("jetty console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// clientIP is the address the request came from (the connection's peer;
// X-Forwarded-For is not trusted, see docs/console.md).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// lookupSession finds the live session of the request's cookie and
// records its use.
func (c *Console) lookupSession(r *http.Request) (session, bool, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return session{}, false, nil
	}
	h := hashToken(ck.Value)
	_, err = c.store.TouchConsoleSession(r.Context(), h, c.now(), c.cfg.SessionIdle)
	if server.ErrorCode(err) == server.ENotFound {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, err
	}
	return session{hash: h, short: h[:8], csrf: csrfFor(ck.Value)}, true, nil
}

// signedIn serves h only to a signed-in operator; others are sent to the
// sign-in page (303), with where they wanted to go.
func (c *Console) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok, err := c.lookupSession(r)
		if err != nil {
			c.serverError(w, r, err)
			return
		}
		if !ok {
			next := r.URL.Path
			if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, Prefix+"/signin?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// signedInPost serves h only to a signed-in operator whose form carries
// the session's CSRF token and does not come from another origin; 403
// otherwise (401 without a session).
func (c *Console) signedInPost(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			c.fail(w, r, http.StatusForbidden, "This form was sent from another site and was refused.")
			return
		}
		s, ok, err := c.lookupSession(r)
		if err != nil {
			c.serverError(w, r, err)
			return
		}
		if !ok {
			c.fail(w, r, http.StatusUnauthorized, "You are not signed in (or your session has ended). Sign in again.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		got := r.PostFormValue("csrf")
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
			c.fail(w, r, http.StatusForbidden, "The form's security token is missing or wrong. Reload the page and try again.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// sameOrigin refuses requests a browser marks as coming from another
// site: Sec-Fetch-Site cross-site or same-site, or an Origin whose host
// is not the request's. Requests without either header (not from a
// browser, or an old one) pass: the CSRF token still guards them.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	if o == "null" {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// secure reports whether the cookie is marked Secure.
func (c *Console) secure(r *http.Request) bool { return c.cfg.SecureCookie || r.TLS != nil }

// signInData is the data of the sign-in page.
type signInData struct {
	Next  string
	Error string
}

// safeNext is where to go after signing in: a console path, or the
// overview (never another site).
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

func (c *Console) handleSignInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok, err := c.lookupSession(r); err == nil && ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, "signin", signInData{Next: safeNext(r.URL.Query().Get("next"))})
}

// handleSignIn checks the operator token. Attempts are limited per
// client address and in all, counted before the token is compared (so an
// address over its limit learns nothing, whatever it sends); a refused
// attempt answers 429 with Retry-After.
func (c *Console) handleSignIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "This form was sent from another site and was refused.")
		return
	}
	ip := clientIP(r)
	ctx := r.Context()
	for _, l := range []struct {
		key   string
		limit int
	}{{"console:signin:ip:" + ip, c.cfg.SignInPerMinute}, {"console:signin:all", c.cfg.SignInGlobalPerMinute}} {
		res, err := c.deps.Limiter.Allow(ctx, l.key, l.limit, time.Minute)
		if err != nil {
			c.serverError(w, r, err)
			return
		}
		if !res.Allowed {
			c.audit(ctx, server.AuditEntry{Actor: "anonymous", Action: "signin", Result: "rate limited", IP: ip})
			secs := int((res.RetryAfter + time.Second - 1) / time.Second)
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			c.renderStatus(w, r, http.StatusTooManyRequests, "signin", signInData{
				Next:  Prefix + "/",
				Error: "Too many sign-in attempts. Wait " + strconv.Itoa(secs) + " s and try again.",
			})
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	token := r.PostFormValue("token")
	next := safeNext(r.PostFormValue("next"))
	if subtle.ConstantTimeCompare([]byte(token), []byte(c.cfg.Token)) != 1 {
		c.audit(ctx, server.AuditEntry{Actor: "anonymous", Action: "signin", Result: "wrong token", IP: ip})
		c.renderStatus(w, r, http.StatusUnauthorized, "signin", signInData{Next: next, Error: "That token is not right."})
		return
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		c.serverError(w, r, err)
		return
	}
	value := base64.RawURLEncoding.EncodeToString(raw)
	now := c.now().UTC()
	h := hashToken(value)
	if err := c.store.CreateConsoleSession(ctx, server.ConsoleSession{IDHash: h, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(c.cfg.SessionMax)}); err != nil {
		c.serverError(w, r, err)
		return
	}
	c.audit(ctx, server.AuditEntry{Actor: h[:8], Action: "signin", Result: "ok", IP: ip})
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: Prefix,
		MaxAge: int(c.cfg.SessionMax / time.Second), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r),
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) handleSignOut(w http.ResponseWriter, r *http.Request) {
	s, _ := sessionFrom(r.Context())
	if err := c.store.DeleteConsoleSession(r.Context(), s.hash, c.now(), c.cfg.SessionIdle); err != nil {
		c.serverError(w, r, err)
		return
	}
	c.audit(r.Context(), server.AuditEntry{Actor: s.short, Action: "signout", Result: "ok", IP: clientIP(r)})
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
	http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
}

// audit writes an entry, stamped now; a failure to write is logged.
func (c *Console) audit(ctx context.Context, e server.AuditEntry) {
	e.At = c.now().UTC()
	if err := c.store.AddAuditEntry(ctx, e); err != nil {
		c.log.Error("console: write the audit log", "action", e.Action, "err", err)
	}
}
