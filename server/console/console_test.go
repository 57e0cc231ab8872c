package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/app"
)

// browserSignIn signs the tab in through the form and waits for the
// console's navigation.
func browserSignIn(t *testing.T, tab context.Context, s *srv, token string) {
	t.Helper()
	err := chromedp.Do(tab,
		chromedp.Navigate(s.url+"/console/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#signin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav[aria-label=Console]`)),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
}

// text is the visible text of the element sel.
func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

// TestConsoleBrowserSuspendAndReactivate drives the console in Chromium:
// sign in, see the overview, find an account by its user id, suspend it
// through the confirmation (its API calls are then refused), reactivate
// it (they work again), and find both actions in the audit log. The
// session cookie is HttpOnly, SameSite=Strict, on /console.
func TestConsoleBrowserSuspendAndReactivate(t *testing.T) {
	tab := newTab(t)
	s := startServer(t, nil)
	key, secret := testenv.Provision(t, s.url, webhookSecret, "usr_console_find", "pro")
	testenv.Provision(t, s.url, webhookSecret, "usr_console_other", "starter")
	if got := s.apiStatus(t, key, secret); got != http.StatusOK {
		t.Fatalf("API call before suspension = %d, want 200", got)
	}

	browserSignIn(t, tab, s, consoleToken)
	if h := text(t, tab, "main h1"); h != "Overview" {
		t.Fatalf("after sign-in the page says %q, want the overview", h)
	}
	cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{s.url + "/console/"}})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range cookies.Cookies {
		if c.Name != "jetty_console" {
			continue
		}
		found = true
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/console" || c.Secure {
			t.Fatalf("session cookie: HttpOnly %v, SameSite %q, Path %q, Secure %v; want HttpOnly, Strict, /console, not Secure over plain http",
				c.HTTPOnly, c.SameSite, c.Path, c.Secure)
		}
		if len(c.Value) < 43 {
			t.Fatalf("session cookie of %d characters: want 32 random bytes or more", len(c.Value))
		}
	}
	if !found {
		t.Fatalf("no session cookie among %d", len(cookies.Cookies))
	}

	// Find the account by its user id and open it.
	err = chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`nav a[href="/console/accounts"]`)),
		chromedp.WaitVisible(chromedp.ID("q")),
		chromedp.SendKeys(chromedp.ID("q"), "usr_console_f"),
		chromedp.Click(chromedp.CSS(`#search button`)),
		chromedp.WaitVisible(chromedp.CSS(`#accounts a`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if rows := text(t, tab, "#accounts tbody"); !strings.Contains(rows, "usr_console_find") || strings.Contains(rows, "usr_console_other") {
		t.Fatalf("search for usr_console_f lists:\n%s", rows)
	}
	err = chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`#accounts a`)),
		chromedp.WaitVisible(chromedp.ID("account-status")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if st := text(t, tab, "#account-status"); st != "active" {
		t.Fatalf("status %q, want active", st)
	}

	// Suspend, through the confirmation.
	act := func(form, want string) {
		t.Helper()
		err := chromedp.Do(tab,
			chromedp.Click(chromedp.CSS(form+` button[type=submit]`)),
			chromedp.WaitVisible(chromedp.ID("confirm-button")),
		)
		if err != nil {
			t.Fatal(err)
		}
		contains(t, "the confirmation", text(t, tab, "#confirm-says"), "usr_console_find")
		err = chromedp.Do(tab,
			chromedp.Click(chromedp.ID("confirm-button")),
			chromedp.WaitVisible(chromedp.ID("result")),
		)
		if err != nil {
			t.Fatal(err)
		}
		contains(t, "the result", text(t, tab, "#result"), "now "+want)
		err = chromedp.Do(tab,
			chromedp.Click(chromedp.ID("back-to-account")),
			chromedp.WaitVisible(chromedp.ID("account-status")),
		)
		if err != nil {
			t.Fatal(err)
		}
		if st := text(t, tab, "#account-status"); st != want {
			t.Fatalf("status %q, want %s", st, want)
		}
	}
	act("#action-suspend", "suspended")
	if got := s.apiStatus(t, key, secret); got != http.StatusForbidden {
		t.Fatalf("API call of the suspended account = %d, want 403", got)
	}
	act("#action-reactivate", "active")
	if got := s.apiStatus(t, key, secret); got != http.StatusOK {
		t.Fatalf("API call after reactivation = %d, want 200", got)
	}

	// The audit log shows both, newest first, and the sign-in.
	err = chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`nav a[href="/console/audit"]`)),
		chromedp.WaitVisible(chromedp.ID("audit")),
	)
	if err != nil {
		t.Fatal(err)
	}
	log := text(t, tab, "#audit tbody")
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "reactivate\tusr_console_find\tok") ||
		!strings.Contains(lines[1], "suspend\tusr_console_find\tok") || !strings.Contains(lines[2], "signin") {
		t.Fatalf("audit log:\n%s", log)
	}

	// The partner hears of both through the same status events.
	acct, err := s.Store().AccountByUserID(context.Background(), "usr_console_find")
	if err != nil || acct.Status != server.StatusActive {
		t.Fatalf("account %+v, %v", acct, err)
	}
}

// TestConsoleWrongTokenRefusedAndLimited: a wrong token is refused with
// a message (in the browser too), every attempt counts towards the limit
// of the client's address, and the attempt over it answers 429 with
// Retry-After, even with the right token.
func TestConsoleWrongTokenRefusedAndLimited(t *testing.T) {
	tab := newTab(t)
	s := startServer(t, nil)
	err := chromedp.Do(tab,
		chromedp.Navigate(s.url+"/console/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "wrong_"+consoleToken),
		chromedp.Click(chromedp.CSS(`#signin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("signin-error")),
	)
	if err != nil {
		t.Fatal(err)
	}
	contains(t, "the sign-in page", text(t, tab, "#signin-error"), "not right")

	c := client(t)
	for i := 2; i <= 5; i++ { // the browser made the first attempt
		res, _ := s.signIn(t, c, "wrong")
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token, attempt %d: %s, want 401", i, res.Status)
		}
	}
	res, body := s.signIn(t, c, consoleToken)
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sixth attempt in a minute: %s, want 429", res.Status)
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q, want 1 to 60 seconds", res.Header.Get("Retry-After"))
	}
	contains(t, "the refusal", body, "Too many sign-in attempts")
	for _, ck := range res.Cookies() {
		if ck.Name == "jetty_console" && ck.Value != "" {
			t.Fatal("a session was issued over the limit")
		}
	}
	es, err := consoleStore(t, s).AuditEntries(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var wrong, limited int
	for _, e := range es {
		if e.Action == "signin" && e.Result == "wrong token" && e.IP == "127.0.0.1" {
			wrong++
		}
		if e.Action == "signin" && e.Result == "rate limited" {
			limited++
		}
	}
	if wrong != 5 || limited != 1 {
		t.Fatalf("audit: %d wrong tokens, %d limited; want 5 and 1: %+v", wrong, limited, es)
	}
}

// consoleStore is the server's store as the console sees it.
func consoleStore(t *testing.T, s *srv) server.ConsoleStore {
	t.Helper()
	cs, ok := s.Store().(server.ConsoleStore)
	if !ok {
		t.Fatalf("store %T keeps no console data", s.Store())
	}
	return cs
}

// TestConsoleRefusesPostWithoutCSRF: a signed-in session's POST without
// its CSRF token, with another session's, or from another origin is
// refused (403) and changes nothing; with it, the confirmation appears.
func TestConsoleRefusesPostWithoutCSRF(t *testing.T) {
	s := startServer(t, nil)
	testenv.Provision(t, s.url, webhookSecret, "usr_console_csrf", "pro")
	acct, err := s.Store().AccountByUserID(context.Background(), "usr_console_csrf")
	if err != nil {
		t.Fatal(err)
	}
	c, other := client(t), client(t)
	for _, cl := range []*http.Client{c, other} {
		if res, _ := s.signIn(t, cl, consoleToken); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign in: %s", res.Status)
		}
	}
	_, page := s.get(t, c, "/console/accounts/"+acct.ID)
	token := csrfOf(t, page)
	_, otherPage := s.get(t, other, "/console/accounts/"+acct.ID)
	otherToken := csrfOf(t, otherPage)
	if token == otherToken {
		t.Fatal("two sessions share a CSRF token")
	}
	path := "/console/accounts/" + acct.ID + "/action"
	form := func(csrf string) url.Values {
		v := url.Values{"action": {"suspend"}, "confirm": {"yes"}}
		if csrf != "" {
			v.Set("csrf", csrf)
		}
		return v
	}
	for name, csrf := range map[string]string{"no token": "", "another session's token": otherToken, "a made-up token": "x" + token[1:]} {
		if res, body := s.post(t, c, path, form(csrf)); res.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: %s, want 403\n%s", name, res.Status, body)
		}
	}
	// The right token from another site.
	req, _ := http.NewRequest("POST", s.url+path, strings.NewReader(form(token).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if readBody(t, res); res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin POST: %s, want 403", res.Status)
	}
	if a, _ := s.Store().AccountByUserID(context.Background(), "usr_console_csrf"); a.Status != server.StatusActive {
		t.Fatalf("a refused POST changed the account: %s", a.Status)
	}
	// Sign-out is a POST too.
	if res, _ := s.post(t, c, "/console/signout", url.Values{}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out without the token: %s, want 403", res.Status)
	}
	v := form(token)
	v.Del("confirm")
	if res, body := s.post(t, c, path, v); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="confirm-button"`) {
		t.Fatalf("with the token: %s, want the confirmation\n%s", res.Status, body)
	}
	if a, _ := s.Store().AccountByUserID(context.Background(), "usr_console_csrf"); a.Status != server.StatusActive {
		t.Fatalf("the confirmation page changed the account: %s", a.Status)
	}
}

// TestConsoleWithoutSession: without the session cookie (or with a
// made-up one, or after signing out) pages redirect to the sign-in page
// and POSTs are refused; in the browser, the sign-in page is where one
// lands.
func TestConsoleWithoutSession(t *testing.T) {
	tab := newTab(t)
	s := startServer(t, nil)
	testenv.Provision(t, s.url, webhookSecret, "usr_console_nosess", "pro")
	acct, _ := s.Store().AccountByUserID(context.Background(), "usr_console_nosess")

	resp, err := chromedp.RunResponse(tab, chromedp.Navigate(s.url+"/console/accounts?q=usr"))
	if err != nil {
		t.Fatal(err)
	}
	if loc, _ := chromedp.Run(tab, chromedp.Location()); !strings.HasPrefix(loc, s.url+"/console/signin?next=") || resp.Status != 200 {
		t.Fatalf("without a session the browser is at %s (%d), want the sign-in page", loc, resp.Status)
	}

	c := client(t)
	for _, p := range []string{"/console/", "/console/accounts", "/console/accounts/" + acct.ID, "/console/edges", "/console/audit"} {
		res, _ := s.get(t, c, p)
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/console/signin") {
			t.Fatalf("GET %s without a session: %s to %q, want 303 to the sign-in page", p, res.Status, res.Header.Get("Location"))
		}
	}
	if res, _ := s.post(t, c, "/console/accounts/"+acct.ID+"/action", url.Values{"action": {"suspend"}, "confirm": {"yes"}, "csrf": {"x"}}); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without a session: %s, want 401", res.Status)
	}
	u, _ := url.Parse(s.url + "/console/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "jetty_console", Value: "made_up_made_up_made_up_made_up_made_up_madeup"}})
	if res, _ := s.get(t, c, "/console/accounts"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("with a made-up cookie: %s, want 303", res.Status)
	}

	// Signed in, then out: the cookie no longer works, even if kept.
	c = client(t)
	s.signIn(t, c, consoleToken)
	kept := c.Jar.Cookies(u)
	_, page := s.get(t, c, "/console/")
	if res, _ := s.post(t, c, "/console/signout", url.Values{"csrf": {csrfOf(t, page)}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", res.Status)
	}
	c.Jar.SetCookies(u, kept)
	if res, _ := s.get(t, c, "/console/"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the cookie of a signed-out session: %s, want 303", res.Status)
	}
	if a, _ := s.Store().AccountByUserID(context.Background(), "usr_console_nosess"); a.Status != server.StatusActive {
		t.Fatalf("account changed: %s", a.Status)
	}
}

// TestConsoleOffWithoutToken: without JETTY_CONSOLE_TOKEN there is no
// console; with a weak one the server does not start.
func TestConsoleOffWithoutToken(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.ConsoleToken = "" })
	res, _ := s.get(t, client(t), "/console/")
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("/console/ without a token: %s, want 404", res.Status)
	}
	for _, weak := range []string{"short", strings.Repeat("ab", 20), " " + consoleToken} {
		_, err := app.New(context.Background(), app.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), ConsoleToken: weak}, nil)
		if err == nil || !strings.Contains(err.Error(), "JETTY_CONSOLE_TOKEN") {
			t.Fatalf("JETTY_CONSOLE_TOKEN=%q: %v, want a refusal naming it", weak, err)
		}
	}
}
