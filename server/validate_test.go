package server

import (
	"strings"
	"testing"
)

func TestValidateUserID(t *testing.T) {
	for _, ok := range []string{"usr_test_123", "test-user-123", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "a.b", "A", strings.Repeat("x", MaxUserIDLen)} {
		if err := ValidateUserID(ok); err != nil {
			t.Errorf("ValidateUserID(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "../etc", "a/b", `a\b`, "..", ".a", "a.", "a..b", "a b", "a\x00b", "a\nb", "é", strings.Repeat("x", MaxUserIDLen+1), strings.Repeat("x", 10<<10)} {
		err := ValidateUserID(bad)
		if ErrorCode(err) != EInvalidUserID {
			t.Errorf("ValidateUserID(%q) = %v, want %s", bad, err, EInvalidUserID)
		}
		if len(err.Error()) > 300 {
			t.Errorf("error for %d-byte id is %d bytes long: it must not echo the input", len(bad), len(err.Error()))
		}
	}
}

func TestValidateEmail(t *testing.T) {
	if err := ValidateEmail("test@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "not an email", "A <a@example.com>", "a@example.com\r\nBcc: x@y.z", strings.Repeat("a", 250) + "@example.com"} {
		if ErrorCode(ValidateEmail(bad)) != EInvalid {
			t.Errorf("ValidateEmail(%q) accepted", bad)
		}
	}
}

func TestErrorHelpers(t *testing.T) {
	err := Errorf(EQuotaExceeded, "over by %d", 5)
	if ErrorCode(err) != EQuotaExceeded || ErrorMessage(err) != "over by 5" {
		t.Fatalf("got %q %q", ErrorCode(err), ErrorMessage(err))
	}
	plain := strings.NewReader("").UnreadByte() // any non-*Error error
	if ErrorCode(plain) != EInternal || ErrorMessage(plain) != "internal error" {
		t.Fatalf("plain error: %q %q", ErrorCode(plain), ErrorMessage(plain))
	}
	if ErrorCode(nil) != "" {
		t.Fatal("nil error has a code")
	}
	var tier Tier = Tier{StorageQuotaGB: 20, BandwidthQuotaGB: 50, MaxFileSizeMB: 500}
	if tier.StorageQuotaBytes() != 20<<30 || tier.BandwidthQuotaBytes() != 50<<30 || tier.MaxFileSizeBytes() != 500<<20 {
		t.Fatal("tier byte conversions wrong")
	}
}
