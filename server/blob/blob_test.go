package blob

import (
	"strings"
	"testing"
)

func TestValidKey(t *testing.T) {
	for _, k := range []string{"users/usr_1/1700000000000-abc.txt", "a", "a/b/c", "users/x/.keep"} {
		if !ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range []string{"", "/abs", "a//b", "a/../b", "..", "./a", "a/", `a\b`, "a\x00b", "a\nb", strings.Repeat("a", MaxKeyLen+1)} {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}
