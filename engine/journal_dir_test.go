package engine

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestJournalDirPerOS(t *testing.T) {
	for _, c := range []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"linux", map[string]string{"HOME": "/home/u"}, filepath.Join("/home/u", ".local", "state", "jetty", "journal")},
		{"linux", map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": "/s"}, filepath.Join("/s", "jetty", "journal")},
		{"linux", map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": "rel"}, filepath.Join("/home/u", ".local", "state", "jetty", "journal")},
		{"darwin", map[string]string{"HOME": "/Users/u"}, filepath.Join("/Users/u", "Library", "Application Support", "jetty", "journal")},
		{"darwin", map[string]string{"HOME": "/Users/u", "XDG_STATE_HOME": "/s"}, filepath.Join("/s", "jetty", "journal")},
		{"windows", map[string]string{"LocalAppData": `C:\Users\u\AppData\Local`, "HOME": "/ignored"}, filepath.Join(`C:\Users\u\AppData\Local`, "jetty", "journal")},
	} {
		got, err := journalDir(c.goos, func(k string) string { return c.env[k] })
		if err != nil || got != c.want {
			t.Errorf("%s %v: %q, %v; want %q", c.goos, c.env, got, err, c.want)
		}
	}
	if _, err := journalDir("windows", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "LocalAppData") {
		t.Errorf("windows without LocalAppData: %v", err)
	}
}
