package console_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestConsoleScreenshots writes full-page PNGs of every console page at
// 1280 and 390 pixels wide into the directory JETTY_CONSOLE_SCREENSHOTS
// names (`make console-screenshots` points it at docs/console/); without
// it the test skips. The server holds the seed's accounts and files, a
// live relay in Frankfurt and Amsterdam and a dead one in Tokyo.
func TestConsoleScreenshots(t *testing.T) {
	dir := os.Getenv("JETTY_CONSOLE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set JETTY_CONSOLE_SCREENSHOTS to a directory (make console-screenshots)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, withEdges)
	seed(t, s)
	startRelay(t, s, "edge_fra_1", "fra")
	startRelay(t, s, "edge_ams_1", "ams")
	deadRelay(t, s, "edge_nrt_1", "nrt")
	s.signIn(t, client(t), "a_wrong_token_for_the_audit_log_0123456789") // a refused sign-in, for the audit page
	acct, err := s.Store().AccountByUserID(context.Background(), "usr_overview_pro")
	if err != nil {
		t.Fatal(err)
	}
	pages := []struct{ name, path, ready string }{
		{"overview", "/console/", "#fig-accounts"},
		{"accounts", "/console/accounts", "#accounts"},
		{"account", "/console/accounts/" + acct.ID, "#account-status"},
		{"edges", "/console/edges", "#relays"},
		{"audit", "/console/audit", "main h1"},
	}
	for _, width := range []int64{1280, 390} {
		tab := newTab(t)
		shot := func(name string) {
			t.Helper()
			png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("screenshot of %s: %v", name, err)
			}
			path := filepath.Join(dir, name+"-"+strconv.FormatInt(width, 10)+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		err := chromedp.Do(tab,
			chromedp.EmulateViewport(width, 844),
			chromedp.Navigate(s.url+"/console/signin"),
			chromedp.WaitVisible(chromedp.ID("token")),
		)
		if err != nil {
			t.Fatal(err)
		}
		shot("signin")
		browserSignIn(t, tab, s, consoleToken)
		for _, p := range pages {
			if err := chromedp.Do(tab, chromedp.Navigate(s.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready))); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			shot(p.name)
		}
	}
}
