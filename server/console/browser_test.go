package console_test

// The harness of the console's tests: a real `jetty server` (server/app)
// on port 0 with the console on, and one headless Chromium for the whole
// package (TestMain), in which every test opens its own browser context
// (its own cookies). Chromium is Debian's `chromium` (scripts/test-deps.sh
// installs it); without it the browser tests skip loudly, or fail under
// JETTY_REQUIRE_SERVICES=1.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
)

// Fixed secrets of the test servers (strong enough to start with).
const (
	consoleToken  = "console_test_4f9c2a7e1b8d6035c9e2f71a4b0d8c63"
	webhookSecret = "whsec_console_test_8e21b7c4d90f3a65e1c2b7d4f08a9e36"
)

// browser is the package's one Chromium (nil when there is none);
// noBrowser says why.
var (
	browser   context.Context
	noBrowser string
)

// chromiumPath finds Chromium: JETTY_CHROMIUM, or chromium,
// chromium-browser, google-chrome on PATH.
func chromiumPath() string {
	if p := os.Getenv("JETTY_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	path := chromiumPath()
	if path == "" {
		noBrowser = "Chromium is not installed (apt-get install chromium, or run scripts/test-deps.sh)"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "jetty-console-chromium-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	b, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// Start the browser now, so every test only opens a context in it.
	if err := chromedp.Do(b); err != nil {
		noBrowser = "Chromium at " + path + " did not start: " + err.Error()
		return m.Run()
	}
	browser = b
	return m.Run()
}

// newTab opens a tab in a browser context of its own (cookies of its own),
// closed at the end of the test. It skips the test loudly without
// Chromium, or fails it under JETTY_REQUIRE_SERVICES=1.
func newTab(t *testing.T) context.Context {
	t.Helper()
	if browser == nil {
		msg := "\n*** " + noBrowser + "\n*** the console's browser tests did not run\n"
		if testenv.Required() {
			t.Fatal(msg + "(JETTY_REQUIRE_SERVICES=1)")
		}
		t.Skip(msg)
	}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first action opens the tab, bound to the context it runs on:
	// run it here, on the tab's own context, so no caller's deadline can
	// close it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// srv is a running server with the console on.
type srv struct {
	*app.App
	url string
	log *testenv.SyncBuffer
}

// startServer runs `jetty server` in-process on port 0 with the console
// on, on SQLite and files under a temp dir unless edit says otherwise,
// and stops it at the end of the test.
func startServer(t *testing.T, edit func(*app.Config)) *srv {
	t.Helper()
	cfg := app.Config{
		Listen:        "127.0.0.1:0",
		DataDir:       t.TempDir(),
		WebhookSecret: webhookSecret,
		ConsoleToken:  consoleToken,
	}
	if edit != nil {
		edit(&cfg)
	}
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return &srv{App: a, url: a.URL(), log: logs}
}

// client is an HTTP client with a cookie jar that does not follow
// redirects (tests look at them).
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn signs c in with token through the form and returns the answer
// (its body read into the second value).
func (s *srv) signIn(t *testing.T, c *http.Client, token string) (*http.Response, string) {
	t.Helper()
	return s.post(t, c, "/console/signin", url.Values{"token": {token}, "next": {"/console/"}})
}

// post sends a form and returns the answer and its body.
func (s *srv) post(t *testing.T, c *http.Client, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	res, err := c.PostForm(s.url+path, form)
	if err != nil {
		t.Fatal(err)
	}
	return res, readBody(t, res)
}

// get fetches path and returns the answer and its body.
func (s *srv) get(t *testing.T, c *http.Client, path string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(s.url + path)
	if err != nil {
		t.Fatal(err)
	}
	return res, readBody(t, res)
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the CSRF token of a page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// apiStatus is the status of GET /api/agentcache/quota with an account's
// credentials.
func (s *srv) apiStatus(t *testing.T, key, secret string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/api/agentcache/quota", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-API-Secret", secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// contains fails t unless s holds every one of want.
func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("%s does not show %q:\n%s", what, w, s)
		}
	}
}
