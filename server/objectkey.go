package server

import (
	"crypto/rand"
	"fmt"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxFilenameLen bounds a stored filename, in bytes.
const MaxFilenameLen = 255

// CleanFilename turns whatever name a client sent into safe metadata: the
// last path element only (both / and \ separate), invalid UTF-8 replaced,
// control and format characters removed, surrounding spaces and dots
// trimmed, at most MaxFilenameLen bytes (cut on a rune boundary, keeping
// the extension when it is short). A name with nothing left is "upload".
// The result is never a path: it contains no separator and is not "." or
// "..".
func CleanFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if name = cleanElement(name); name == "" {
		return "upload"
	}
	return name
}

// cleanElement cleans one path element of valid UTF-8 without
// separators: control and format characters removed, surrounding spaces
// and dots trimmed, at most MaxFilenameLen bytes (keeping a short
// extension). It returns "" when nothing is left.
func cleanElement(name string) string {
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if len(name) > MaxFilenameLen {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		// Trim again: the cut may leave spaces or dots at the end.
		name = strings.TrimRight(truncateUTF8(name[:len(name)-len(ext)], MaxFilenameLen-len(ext)), " .") + ext
	}
	return name
}

// Bounds of a stored name that keeps its folders (CleanPath).
const (
	// MaxPathLen bounds the whole relative path, in bytes.
	MaxPathLen = 1024
	// MaxPathSegments bounds its elements (folders and the file name).
	MaxPathSegments = 32
)

// CleanPath turns whatever name a client sent into a safe relative path
// of '/'-separated elements, so that a file uploaded from a folder keeps
// its place in it ("photos/sub/q.jpg"): both / and \ separate; empty,
// "." and ".." elements are dropped (so a ".." never survives and an
// absolute path becomes relative: "/etc/passwd" is "etc/passwd",
// "../../x" is "x"); a leading Windows drive ("C:") is dropped; every
// element is cleaned as CleanFilename cleans a name (controls and format
// characters removed, spaces and dots trimmed, at most MaxFilenameLen
// bytes), and elements left empty are dropped. A path of more than
// MaxPathSegments elements or MaxPathLen bytes keeps its last elements
// (the file name always survives). A name with nothing left is "upload".
// The result never starts or ends with '/', never holds "//", a '\', a
// "." or ".." element, and cleaning it again changes nothing.
func CleanPath(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	raw := strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' })
	segs := make([]string, 0, len(raw))
	for _, r := range raw {
		if c := cleanElement(r); c != "" {
			segs = append(segs, c)
		}
	}
	if len(segs) == 0 {
		return "upload"
	}
	if len(segs) > MaxPathSegments {
		segs = segs[len(segs)-MaxPathSegments:]
	}
	n := len(segs) - 1 // the separators
	for _, s := range segs {
		n += len(s)
	}
	for n > MaxPathLen && len(segs) > 1 {
		n -= len(segs[0]) + 1
		segs = segs[1:]
	}
	// Last, so that what is left never starts with a drive either.
	for len(segs) > 1 && isDrive(segs[0]) {
		segs = segs[1:]
	}
	return strings.Join(segs, "/")
}

// isDrive reports whether s is a Windows drive ("C:").
func isDrive(s string) bool {
	return len(s) == 2 && s[1] == ':' && (s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// keyExt returns a safe extension for an object key: a dot and 1–10
// lowercase ASCII letters or digits taken from the filename, or "".
func keyExt(filename string) string {
	ext := strings.ToLower(path.Ext(CleanFilename(filename)))
	if len(ext) < 2 || len(ext) > 11 {
		return ""
	}
	for _, c := range ext[1:] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return ext
}

const keyAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// NewObjectKey builds users/{user_id}/{unix_ms}-{random}{.ext} from a
// validated user id, the time and 60 random bits. The filename only
// contributes a sanitised extension.
func NewObjectKey(userID, filename string, now time.Time) (string, error) {
	if err := ValidateUserID(userID); err != nil {
		return "", err
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("object key: %w", err)
	}
	for i := range b {
		b[i] = keyAlphabet[b[i]&31]
	}
	return fmt.Sprintf("%s%d-%s%s", AccountPrefix(userID), now.UnixMilli(), b, keyExt(filename)), nil
}

// AccountsRoot is where every account's objects live: the object-key
// prefix of all of them.
const AccountsRoot = "users/"

// S3PrefixFor is an account's s3_prefix as provisioning records it.
func S3PrefixFor(userID string) string { return AccountsRoot + userID }

// AccountPrefix is the object-key prefix of an account's objects.
func AccountPrefix(userID string) string { return S3PrefixFor(userID) + "/" }
