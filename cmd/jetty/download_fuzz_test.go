package main

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/jettythunder/jetty/protocol"
)

// FuzzDownloadCleanFilename: whatever name a server hands out, the name
// `jetty download` writes is "" or one safe path element on every OS:
// valid UTF-8 of at most maxDownloadName bytes (so the hidden part and
// sidecar files fit 255 bytes), no separator, no control, format or
// Windows-reserved character, no leading or trailing space or dot (so it
// is never "." or ".." and ".." is never an element), no device name;
// cleaning again changes nothing; joined to a directory it stays in it.
// "" only when nothing printable is left.
func FuzzDownloadCleanFilename(f *testing.F) {
	for _, s := range []string{
		"report.pdf", "../../etc/passwd", `..\..\x`, "/abs/path", `C:\x`, `\\server\share\f.txt`,
		"a\x00b", "line\r\nbreak", "\x1b]0;title\x07", "\xff\xfe", "evil\u202egnp.exe", "a\uff0fb",
		"..", "...", " . ", "", "CON", "nul.tar.gz", "COM¹.txt", "LPT9", "CON .txt", "what?<>:\"|*",
		strings.Repeat("x", 10<<10), strings.Repeat("é", 150) + ".txt",
		"COM1" + strings.Repeat(" ", 200) + "x", "CON" + strings.Repeat(".", 300) + "y.txt",
	} {
		f.Add(s)
	}
	dir := filepath.Join(string(filepath.Separator)+"base", "dir")
	f.Fuzz(func(t *testing.T, s string) {
		c := cleanFilename(s)
		bad := func(why string) { t.Fatalf("cleanFilename(%q) = %q: %s", s, c, why) }
		if c == "" {
			// Nothing printable after the last separator.
			rest := s[strings.LastIndexAny(s, `/\`)+1:]
			if strings.ContainsFunc(rest, func(r rune) bool {
				return !(unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == ' ' || r == '.')
			}) {
				bad("emptied a name that had printable characters")
			}
			return
		}
		switch {
		case len(c) > maxDownloadName:
			bad("longer than maxDownloadName")
		case len("."+c+".jetty-part.json") > 255:
			bad("part sidecar name over 255 bytes")
		case !utf8.ValidString(c):
			bad("invalid UTF-8")
		case strings.ContainsAny(c, `/\<>:"|?*`):
			bad("separator or Windows-reserved character")
		case strings.ContainsFunc(c, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
			bad("control or format character")
		case strings.Trim(c, " .") != c:
			bad("leading or trailing space or dot")
		case c == "." || c == "..":
			bad("relative path element")
		}
		base, _, _ := strings.Cut(c, ".")
		if windowsReserved[strings.ToUpper(strings.TrimRight(base, " "))] {
			bad("Windows device name")
		}
		if again := cleanFilename(c); again != c {
			t.Fatalf("not idempotent: cleanFilename(%q) = %q, then %q", s, c, again)
		}
		if target := filepath.Join(dir, c); filepath.Dir(target) != dir || filepath.Base(target) != c {
			bad("escapes the directory when joined: " + target)
		}
		// downloadTarget without -o uses exactly this name in ".".
		d, name, err := downloadTarget("", protocol.Asset{ID: "a1", Filename: s})
		if err != nil || d != "." || name != c {
			t.Fatalf("downloadTarget(%q) = %q, %q, %v; want ., %q", s, d, name, err, c)
		}
	})
}
