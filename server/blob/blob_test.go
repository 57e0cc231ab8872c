package blob

import (
	"context"
	"errors"
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

func TestContextReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ContextReader(ctx, strings.NewReader("abc"))
	b := make([]byte, 1)
	if n, err := r.Read(b); n != 1 || err != nil {
		t.Fatalf("read before cancel: %d %v", n, err)
	}
	cancel()
	if _, err := r.Read(b); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}
