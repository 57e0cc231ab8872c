package server

import (
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jettythunder/jetty/server/blob"
)

// checkCleanName fails t unless c is what CleanFilename may return: valid
// UTF-8 of 1..MaxFilenameLen bytes, a single path element (no '/' or '\',
// not "." or ".."), no control or format character, no leading or
// trailing space or dot (so ".." can only ever sit between two other
// characters, never be an element of its own).
func checkCleanName(t *testing.T, in, c string) {
	t.Helper()
	bad := func(why string) { t.Fatalf("CleanFilename(%q) = %q: %s", in, c, why) }
	switch {
	case c == "" || len(c) > MaxFilenameLen:
		bad("length outside 1..MaxFilenameLen")
	case !utf8.ValidString(c):
		bad("invalid UTF-8")
	case strings.ContainsAny(c, `/\`):
		bad("contains a path separator")
	case c == "." || c == "..":
		bad("is a relative path element")
	case strings.ContainsFunc(c, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		bad("contains a control or format character")
	case strings.HasPrefix(c, " ") || strings.HasPrefix(c, "."):
		bad("starts with a space or a dot")
	case strings.HasSuffix(c, " ") || strings.HasSuffix(c, "."):
		bad("ends with a space or a dot")
	case path.Base(c) != c:
		bad("is not its own base name")
	}
}

// FuzzCleanFilenameProperties: whatever a client sends, the stored name
// is one clean path element (checkCleanName), cleaning it again changes
// nothing, a name that is already clean is kept as it is, and the
// extension an object key takes from it is empty or .[a-z0-9]{1,10}.
func FuzzCleanFilenameProperties(f *testing.F) {
	for _, s := range []string{
		"report.pdf", "../../etc/passwd", `..\..\x`, "/etc/shadow", `C:\x`, `C:\Windows\system32\cmd.exe`,
		"a\x00b.txt", "line\r\nbreak.txt", "\x1b[2Jclear", "\xff\xfe", "ok\xc3", "evil\u202egnp.exe",
		"a\uff0fb", "..", "...", " . . ", "", strings.Repeat("x", 10<<10), strings.Repeat("é", 300) + ".mp4",
		"x" + strings.Repeat(" ", 300) + "y", strings.Repeat("a", 254) + ". b", "\u2028\u2029", "a..b",
		`a\..\b`, "a//b", "./a", "/abs/x", "photos/sub/q.jpg", ". . /..",
	} {
		f.Add(s)
	}
	ext := regexp.MustCompile(`^(\.[a-z0-9]{1,10})?$`)
	f.Fuzz(func(t *testing.T, s string) {
		c := CleanFilename(s)
		checkCleanName(t, s, c)
		if again := CleanFilename(c); again != c {
			t.Fatalf("not idempotent: CleanFilename(%q) = %q, then %q", s, c, again)
		}
		clean := s != "" && len(s) <= MaxFilenameLen && utf8.ValidString(s) && !strings.ContainsAny(s, `/\`) &&
			!strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) &&
			strings.Trim(s, " .") == s
		if clean && c != s {
			t.Fatalf("a clean name was changed: %q -> %q", s, c)
		}
		if e := keyExt(s); !ext.MatchString(e) {
			t.Fatalf("keyExt(%q) = %q", s, e)
		}
	})
}

// FuzzObjectKey: an object key is built only for a valid user id, lies
// inside that account's prefix as users/{id}/{ms}-{12 base32}{ext},
// passes blob.ValidKey and is already in canonical path form; the
// filename, however hostile, contributes at most a short extension.
func FuzzObjectKey(f *testing.F) {
	f.Add("usr_test_123", "test.txt", int64(1737804000000))
	f.Add("../x", "a", int64(0))
	f.Add("a..b", "../../etc/passwd", int64(-1))
	f.Add(".hidden", "x.TAR", int64(1<<62))
	f.Add("u/../../v", `..\..\x.exe`, int64(-1<<62))
	f.Add("usr\x00", "a\x00.txt", int64(1))
	f.Add(strings.Repeat("u", MaxUserIDLen+1), strings.Repeat("x", 10<<10), int64(5))
	f.Add("0b5e8a7c-7f1e-4a53-9d7e-4c1f0d2b1a11", "movie.mp4\x00.exe", int64(9))
	last := regexp.MustCompile(`^-?\d+-[a-z2-7]{12}(\.[a-z0-9]{1,10})?$`)
	f.Fuzz(func(t *testing.T, userID, filename string, ms int64) {
		now := time.UnixMilli(ms)
		key, err := NewObjectKey(userID, filename, now)
		if verr := ValidateUserID(userID); verr != nil {
			if err == nil {
				t.Fatalf("user id %q is invalid (%v) but got key %q", userID, verr, key)
			}
			return
		}
		if err != nil {
			t.Fatalf("NewObjectKey(%q, %q): %v", userID, filename, err)
		}
		// The user id alone may appear in a prefix: safe characters,
		// no "." or ".." element, no leading or trailing dot.
		if len(userID) > MaxUserIDLen || strings.Contains(userID, "..") || strings.Trim(userID, ".") != userID ||
			strings.ContainsFunc(userID, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
			}) {
			t.Fatalf("ValidateUserID accepted %q", userID)
		}
		prefix := AccountPrefix(userID)
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok || strings.Contains(rest, "/") || !blob.ValidKey(key) || path.Clean(key) != key || len(key) > blob.MaxKeyLen {
			t.Fatalf("key %q for user %q escapes %q or is not a valid key", key, userID, prefix)
		}
		if !last.MatchString(rest) || !strings.HasSuffix(rest, keyExt(filename)) {
			t.Fatalf("key %q: unexpected last element", key)
		}
	})
}

// checkCleanPath fails t unless c is what CleanPath may return: valid
// UTF-8 of 1..MaxPathLen bytes, 1..MaxPathSegments elements separated by
// single '/', each of them a clean name (checkCleanName: no "." or "..",
// no '\'), relative and lexically local, already in canonical form, not
// starting with a Windows drive unless it is the only element.
func checkCleanPath(t *testing.T, in, c string) {
	t.Helper()
	bad := func(why string) { t.Fatalf("CleanPath(%q) = %q: %s", in, c, why) }
	switch {
	case c == "" || len(c) > MaxPathLen:
		bad("length outside 1..MaxPathLen")
	case !utf8.ValidString(c):
		bad("invalid UTF-8")
	case strings.Contains(c, `\`):
		bad("contains a backslash")
	case path.IsAbs(c) || strings.HasSuffix(c, "/") || strings.Contains(c, "//"):
		bad("absolute, or an empty element")
	case path.Clean(c) != c || !filepath.IsLocal(c):
		bad("not a canonical local path")
	}
	els := strings.Split(c, "/")
	if len(els) > MaxPathSegments {
		bad("too many elements")
	}
	if len(els) > 1 && isDrive(els[0]) {
		bad("starts with a drive")
	}
	for _, e := range els {
		checkCleanName(t, in, e)
	}
}

// FuzzCleanPathProperties: whatever a client sends, the stored path is
// safe (checkCleanPath), cleaning it again changes nothing, its last
// element is what CleanFilename makes of the name's last non-empty
// element when one survives, and a path that is already clean is kept.
func FuzzCleanPathProperties(f *testing.F) {
	for _, s := range []string{
		"photos/sub/q.jpg", "../../etc/passwd", `..\..\x`, "/etc/shadow", "/abs/x", `C:\x`, `C:\Windows\system32\cmd.exe`,
		`a\..\b`, "a//b", "./a", "..", "...", ". . /..", "", "////", `\\server\share\f.txt`, "C:", "C:/C:/x", "./C:/y",
		"a/\x00/b", "a/..\x00/b", "dir/", "evil\u202e/gnp.exe", "a\uff0fb", strings.Repeat("d/", 100) + "f",
		strings.Repeat(strings.Repeat("x", 250)+"/", 10) + "f.txt", strings.Repeat("é", 300) + "/x.mp4", "a/ . /b",
		"\xff/\xfe", "x/" + strings.Repeat("C:/", 40) + "y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := CleanPath(s)
		checkCleanPath(t, s, c)
		if again := CleanPath(c); again != c {
			t.Fatalf("not idempotent: CleanPath(%q) = %q, then %q", s, c, again)
		}
		if n := CleanFilename(s); !strings.ContainsAny(s, `/\`) && c != n {
			t.Fatalf("a name without separators: CleanPath(%q) = %q, CleanFilename = %q", s, c, n)
		}
	})
}
