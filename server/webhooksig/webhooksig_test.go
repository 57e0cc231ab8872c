package webhooksig

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"user_id":"usr_1","email":"a@b.c","tier":"pro"}`)
	h := Sign("whsec_1", now, "POST", "/api/agentcache/provision", body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") || len(h) != len("t=1800000000,v1=")+64 {
		t.Fatalf("header %q", h)
	}
	if _, err := Verify(h, []string{"whsec_1"}, now, "POST", "/api/agentcache/provision", body); err != nil {
		t.Fatalf("own signature refused: %v", err)
	}
	cases := map[string]struct {
		h       string
		secrets []string
		now     time.Time
		method  string
		path    string
		body    []byte
		want    error
	}{
		"other secret":      {h, []string{"whsec_2"}, now, "POST", "/api/agentcache/provision", body, ErrMismatch},
		"no secret":         {h, []string{""}, now, "POST", "/api/agentcache/provision", body, ErrMismatch},
		"other body":        {h, []string{"whsec_1"}, now, "POST", "/api/agentcache/provision", append(body, ' '), ErrMismatch},
		"other path":        {h, []string{"whsec_1"}, now, "POST", "/api/agentcache/delete", body, ErrMismatch},
		"other method":      {h, []string{"whsec_1"}, now, "PUT", "/api/agentcache/provision", body, ErrMismatch},
		"301 s later":       {h, []string{"whsec_1"}, now.Add(301 * time.Second), "POST", "/api/agentcache/provision", body, ErrStale},
		"301 s earlier":     {h, []string{"whsec_1"}, now.Add(-301 * time.Second), "POST", "/api/agentcache/provision", body, ErrStale},
		"timestamp changed": {strings.Replace(h, "t=1800000000", "t=1800000001", 1), []string{"whsec_1"}, now, "POST", "/api/agentcache/provision", body, ErrMismatch},
		"empty":             {"", []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"no v1":             {"t=1800000000", []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"no t":              {"v1=" + strings.Repeat("0", 64), []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"short v1":          {"t=1800000000,v1=abcd", []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"not hex":           {"t=1800000000,v1=" + strings.Repeat("z", 64), []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"negative t":        {"t=-5,v1=" + strings.Repeat("0", 64), []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"two t":             {"t=1,t=2,v1=" + strings.Repeat("0", 64), []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"huge":              {"t=1800000000,v1=" + strings.Repeat("0", 2000), []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"garbage":           {"Bearer whsec_1", []string{"whsec_1"}, now, "POST", "/", body, ErrMalformed},
		"overflowing t":     {"t=999999999999,v1=" + strings.Repeat("0", 64), []string{"whsec_1"}, now, "POST", "/", body, ErrStale},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Verify(c.h, c.secrets, c.now, c.method, c.path, c.body); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestRotationAndReplayKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{}`)
	// A partner mid-rotation signs with both secrets; a server that knows
	// either one accepts.
	old := Sign("whsec_old", now, "POST", "/p", body)
	cur := Sign("whsec_new", now, "POST", "/p", body)
	both := old + ",v1=" + strings.SplitN(cur, "v1=", 2)[1]
	a, err := Verify(both, []string{"whsec_new"}, now, "POST", "/p", body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Verify(old, []string{"whsec_new", "whsec_old"}, now, "POST", "/p", body)
	if err != nil {
		t.Fatal(err)
	}
	// Dropping one of the two signatures does not make a new request.
	if a.ReplayKey() == "" || a.ReplayKey() != b.ReplayKey() {
		t.Fatalf("replay keys differ for the same request: %q %q", a.ReplayKey(), b.ReplayKey())
	}
	c, err := Verify(Sign("whsec_new", now.Add(time.Second), "POST", "/p", body), []string{"whsec_new"}, now, "POST", "/p", body)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReplayKey() == a.ReplayKey() {
		t.Fatal("a request signed at another second has the same replay key")
	}
	if (Signature{}).ReplayKey() != "" {
		t.Fatal("an unverified signature has a replay key")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("t=1800000000,v1=" + strings.Repeat("ab", 32))
	f.Add("t=1,v1=" + strings.Repeat("0", 64) + ",v1=" + strings.Repeat("f", 64))
	f.Add("t=,v1=")
	f.Add("v0=x,t=5,v1=" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, h string) {
		s, err := Parse(h)
		if err != nil {
			return
		}
		if len(s.V1) == 0 || len(s.V1) > 4 || s.Timestamp < 0 {
			t.Fatalf("accepted %q as %+v", h, s)
		}
		for _, v := range s.V1 {
			if len(v) != 32 {
				t.Fatalf("accepted a %d-byte MAC from %q", len(v), h)
			}
		}
	})
}
