package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/app"
)

// signedIn is a client signed in to s.
func signedIn(t *testing.T, s *srv) *http.Client {
	t.Helper()
	c := client(t)
	if res, body := s.signIn(t, c, consoleToken); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %s\n%s", res.Status, body)
	}
	return c
}

// act runs an operator action through its confirmation and returns the
// result page.
func (s *srv) act(t *testing.T, c *http.Client, accountID string, form url.Values) string {
	t.Helper()
	_, page := s.get(t, c, "/console/accounts/"+accountID)
	form.Set("csrf", csrfOf(t, page))
	res, confirm := s.post(t, c, "/console/accounts/"+accountID+"/action", form)
	if res.StatusCode != http.StatusOK || !strings.Contains(confirm, `id="confirm-button"`) {
		t.Fatalf("%s: %s, want the confirmation\n%s", form.Get("action"), res.Status, confirm)
	}
	form.Set("confirm", "yes")
	res, result := s.post(t, c, "/console/accounts/"+accountID+"/action", form)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s confirmed: %s\n%s", form.Get("action"), res.Status, result)
	}
	return result
}

var newSecretRE = regexp.MustCompile(`id="new-secret">([^<]+)<`)

// TestConsoleRotateShowsSecretOnce: a rotation shows the new key and
// secret on its result page, and nowhere after: not on the account page,
// not in the audit log, not in the server's log. The new pair works, the
// old one does not; an upgrade changes the tier and records the partner's
// status event (the same operation as POST /api/agentcache/upgrade).
func TestConsoleRotateShowsSecretOnce(t *testing.T) {
	s := startServer(t, nil)
	oldKey, oldSecret := testenv.Provision(t, s.url, webhookSecret, "usr_console_rot", "starter")
	ctx := context.Background()
	acct, err := s.Store().AccountByUserID(ctx, "usr_console_rot")
	if err != nil {
		t.Fatal(err)
	}
	c := signedIn(t, s)

	result := s.act(t, c, acct.ID, url.Values{"action": {"rotate"}, "overlap": {"0"}})
	m := newSecretRE.FindStringSubmatch(result)
	if m == nil {
		t.Fatalf("the result page shows no new secret:\n%s", result)
	}
	secret := m[1]
	after, _ := s.Store().AccountByUserID(ctx, "usr_console_rot")
	contains(t, "the result page", result, after.APIKey, "shown this once")
	if got := s.apiStatus(t, after.APIKey, secret); got != http.StatusOK {
		t.Fatalf("the new pair: %d, want 200", got)
	}
	if got := s.apiStatus(t, oldKey, oldSecret); got != http.StatusUnauthorized {
		t.Fatalf("the old pair after a rotation without overlap: %d, want 401", got)
	}
	_, page := s.get(t, c, "/console/accounts/"+acct.ID)
	_, audit := s.get(t, c, "/console/audit")
	for where, text := range map[string]string{"the account page": page, "the audit page": audit, "the server's log": s.log.String()} {
		if strings.Contains(text, secret) {
			t.Fatalf("%s shows the new secret", where)
		}
	}
	contains(t, "the audit page", audit, "rotate", "usr_console_rot")

	result = s.act(t, c, acct.ID, url.Values{"action": {"upgrade"}, "tier": {"business"}})
	contains(t, "the upgrade's result", result, "tier business")
	if a, _ := s.Store().AccountByUserID(ctx, "usr_console_rot"); a.Tier != "business" || a.StorageQuotaGB != 100 {
		t.Fatalf("after the upgrade: tier %s, quota %d GiB", a.Tier, a.StorageQuotaGB)
	}
	res, body := s.post(t, c, "/console/accounts/"+acct.ID+"/action", url.Values{"action": {"upgrade"}, "tier": {"platinum"}, "confirm": {"yes"}, "csrf": {csrfOf(t, page)}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, `id="result-error"`) {
		t.Fatalf("an unknown tier: %s\n%s", res.Status, body)
	}
	es, err := consoleStore(t, s).AuditEntries(ctx, 0, 1)
	if err != nil || len(es) != 1 || es[0].Action != "upgrade" || es[0].Result != server.EUnknownTier {
		t.Fatalf("the refused upgrade in the audit log: %+v %v", es, err)
	}
}

// TestConsoleSearch finds accounts by user id and by email, exact or by
// the beginning, the email whatever its case.
func TestConsoleSearch(t *testing.T) {
	s := startServer(t, nil)
	for _, u := range []string{"usr_alpha", "usr_alphabet", "usr_beta"} {
		testenv.Provision(t, s.url, webhookSecret, u, "starter")
	}
	c := signedIn(t, s)
	for q, want := range map[string][]string{
		"usr_alpha":            {"usr_alpha", "usr_alphabet"},
		"usr_b":                {"usr_beta"},
		"USR_BETA@EXAMPLE.COM": {"usr_beta"},
		"usr_alphabet@":        {"usr_alphabet"},
		"nobody":               nil,
		"":                     {"usr_alpha", "usr_alphabet", "usr_beta"},
	} {
		_, body := s.get(t, c, "/console/accounts?q="+url.QueryEscape(q))
		for _, u := range []string{"usr_alpha", "usr_alphabet", "usr_beta"} {
			shown := strings.Contains(body, ">"+u+"</a>")
			wanted := false
			for _, w := range want {
				wanted = wanted || w == u
			}
			if shown != wanted {
				t.Fatalf("search %q: %s shown %v, want %v", q, u, shown, wanted)
			}
		}
	}
}

// TestConsolePostgres runs sign-in, a search and a suspension on
// PostgreSQL and Redis, as a production deployment does: the session
// made by one instance is honoured by another on the same database.
func TestConsolePostgres(t *testing.T) {
	dsn, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	edit := func(c *app.Config) { c.DatabaseURL, c.RedisURL = dsn, redisURL }
	s1 := startServer(t, edit)
	s2 := startServer(t, edit)
	key, secret := testenv.Provision(t, s1.url, webhookSecret, "usr_console_pg", "pro")
	c := signedIn(t, s1)
	// The same cookie, sent to the other instance.
	u1, _ := url.Parse(s1.url + "/console/")
	u2, _ := url.Parse(s2.url + "/console/")
	c.Jar.SetCookies(u2, c.Jar.Cookies(u1))
	_, body := s2.get(t, c, "/console/accounts?q=USR_CONSOLE_PG%40example.com")
	contains(t, "the other instance's search", body, ">usr_console_pg</a>")
	acct, err := s2.Store().AccountByUserID(context.Background(), "usr_console_pg")
	if err != nil {
		t.Fatal(err)
	}
	s2.act(t, c, acct.ID, url.Values{"action": {"suspend"}})
	if got := s1.apiStatus(t, key, secret); got != http.StatusForbidden {
		t.Fatalf("API call of the suspended account: %d, want 403", got)
	}
	es, err := consoleStore(t, s1).AuditEntries(context.Background(), 0, 5)
	if err != nil || len(es) < 2 || es[0].Action != "suspend" || es[0].Target != "usr_console_pg" {
		t.Fatalf("audit on PostgreSQL: %+v %v", es, err)
	}
}
