package server

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCleanFilename(t *testing.T) {
	cases := map[string]string{
		"test.txt":            "test.txt",
		"../../etc/passwd":    "passwd",
		`..\..\boot.ini`:      "boot.ini",
		"a\x00b\r\nc.txt":     "abc.txt",
		"..":                  "upload",
		"":                    "upload",
		"  report.pdf  ":      "report.pdf",
		"dir/":                "upload",
		"\xff\xfebad.bin":     "\uFFFDbad.bin",
		"zero\u200bwidth.txt": "zerowidth.txt",
		"résumé.doc":          "résumé.doc",
	}
	for in, want := range cases {
		if got := CleanFilename(in); got != want {
			t.Errorf("CleanFilename(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 2000) + ".mp4"
	got := CleanFilename(long)
	if len(got) > MaxFilenameLen || !utf8.ValidString(got) || !strings.HasSuffix(got, ".mp4") {
		t.Fatalf("long name cleaned to %d bytes %q...", len(got), got[:20])
	}
}

func FuzzCleanFilename(f *testing.F) {
	for _, s := range []string{"../../etc/passwd", "a\x00b", "\xff", strings.Repeat("x", 3000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := CleanFilename(s)
		if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\\\x00\r\n") || len(c) > MaxFilenameLen || !utf8.ValidString(c) {
			t.Fatalf("CleanFilename(%q) = %q", s, c)
		}
	})
}

func TestNewObjectKey(t *testing.T) {
	now := time.UnixMilli(1737804000000)
	re := regexp.MustCompile(`^users/usr_test_123/1737804000000-[a-z2-7]{12}(\.[a-z0-9]{1,10})?$`)
	for name, ext := range map[string]string{"test.txt": ".txt", "../../etc/passwd": "", "x.TAR": ".tar", "a.b/c": "", "movie.mp4\x00.exe": ".exe", "v.verylongextension": "", "f.t x": ""} {
		k, err := NewObjectKey("usr_test_123", name, now)
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(k) || !strings.HasSuffix(k, ext) {
			t.Errorf("NewObjectKey(%q) = %q", name, k)
		}
	}
	a, _ := NewObjectKey("u", "x", now)
	b, _ := NewObjectKey("u", "x", now)
	if a == b {
		t.Fatal("two keys in the same millisecond collide")
	}
	if _, err := NewObjectKey("../x", "f", now); ErrorCode(err) != EInvalidUserID {
		t.Fatalf("bad user id accepted: %v", err)
	}
}

func TestCleanPath(t *testing.T) {
	cases := map[string]string{
		"photos/sub/q.jpg":                     "photos/sub/q.jpg",
		`photos\sub\q.jpg`:                     "photos/sub/q.jpg",
		"q.jpg":                                "q.jpg",
		"../../etc/passwd":                     "etc/passwd",
		`..\..\boot.ini`:                       "boot.ini",
		"/abs/x":                               "abs/x",
		`a\..\b`:                               "a/b",
		"a//b":                                 "a/b",
		"./a":                                  "a",
		"a/./b/":                               "a/b",
		"..":                                   "upload",
		"....":                                 "upload",
		". . /../ .. /":                        "upload",
		"":                                     "upload",
		"/":                                    "upload",
		`C:\Users\x\evil.txt`:                  "Users/x/evil.txt",
		"C:":                                   "C:",
		"C:/C:/x":                              "x",
		`\\server\share\f.txt`:                 "server/share/f.txt",
		"a/\x00/b\r\n.txt":                     "a/b.txt",
		" dir /  .hidden ":                     "dir/hidden",
		"dir\u202e/x\u200b.txt":                "dir/x.txt",
		"a\uff0fb":                             "a\uff0fb", // a fullwidth solidus is no separator
		"\xff/\xfe":                            "\uFFFD/\uFFFD",
		strings.Repeat("d/", 40) + "f":         strings.Repeat("d/", MaxPathSegments-1) + "f",
		"résumé/2024/cv.doc":                   "résumé/2024/cv.doc",
		"x/" + strings.Repeat("C:/", 40) + "y": "y",
	}
	for in, want := range cases {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
	// Too long as a whole: the leading folders go, the name stays.
	seg := strings.Repeat("x", 250)
	long := strings.Repeat(seg+"/", 10) + "f.txt"
	got := CleanPath(long)
	if len(got) > MaxPathLen || !strings.HasSuffix(got, "/f.txt") || strings.Count(got, "/") != 4 { // 4 × 251 + 5 bytes
		t.Fatalf("long path cleaned to %d bytes, %d folders", len(got), strings.Count(got, "/"))
	}
	// A long last element is cut as CleanFilename cuts it.
	if got, want := CleanPath("dir/"+strings.Repeat("é", 2000)+".mp4"), "dir/"+CleanFilename(strings.Repeat("é", 2000)+".mp4"); got != want {
		t.Fatalf("long name in a folder: %q, want %q", got, want)
	}
}
