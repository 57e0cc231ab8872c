package console_test

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestConsolePhoneWidth: at 390 CSS pixels wide (a phone), the overview
// and the edges page fit the width: wide tables scroll inside their own
// container, cards stack, nothing makes the page itself scroll sideways.
func TestConsolePhoneWidth(t *testing.T) {
	tab := newTab(t)
	s := startServer(t, withEdges)
	seed(t, s)
	startRelay(t, s, "edge_console_phone", "ams")
	if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	browserSignIn(t, tab, s, consoleToken)
	for _, p := range []struct{ path, ready string }{{"/console/", "#fig-accounts"}, {"/console/edges", "#relays"}} {
		if err := chromedp.Do(tab, chromedp.Navigate(s.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready))); err != nil {
			t.Fatal(err)
		}
		w, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		if err != nil {
			t.Fatal(err)
		}
		if w > 390 {
			t.Errorf("%s is %d px wide at a 390 px viewport: the page scrolls sideways", p.path, w)
		}
	}
}
