package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server/app"
)

// TestUploadJettySpeedOff: against a server with JETTYSPEED_ENABLED=false
// `jetty upload` sends a file too big for the single request it uses for
// small files whole in one verified request after the session is refused,
// with a warning, and the asset is right; a stream (stdin) fails with
// what to do; `jetty quota` reports JettySpeed off.
func TestUploadJettySpeedOff(t *testing.T) {
	a, stop, err := app.Start(app.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), WebhookSecret: cmdSecret,
		TokenSecret: "tok_0fa6c9e239bb526f825d0863c7218ffd", LiveKeys: true, JettySpeedDisabled: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	env := account(t, a.URL(), "usr_nojs", "pro")
	ctx := context.Background()
	file, sum := randomFile(t, t.TempDir(), "big.bin", 7, 12<<20+5)

	for _, extra := range [][]string{nil, {"--hash-first"}} {
		args := append([]string{"upload", file, "--json", "--chunk-size", "5MiB"}, extra...)
		r := runTransfer(t, ctx, env, "", false, args...)
		if r.code != 0 {
			t.Fatalf("upload %v: exit %d\n%s", extra, r.code, r.err)
		}
		if !strings.Contains(r.err, "chunked uploads (JettySpeed) turned off") || !strings.Contains(r.err, "one request") {
			t.Errorf("upload %v: no warning on stderr:\n%s", extra, r.err)
		}
		var line struct {
			Asset struct {
				Size int64  `json:"size"`
				Hash string `json:"hash"`
			} `json:"asset"`
			Method    string `json:"method"`
			BytesSent int64  `json:"bytes_sent"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(r.out)), &line); err != nil {
			t.Fatalf("upload %v: %v\n%s", extra, err, r.out)
		}
		if line.Asset.Hash != sum || line.Asset.Size != 12<<20+5 || line.Method != "whole_request" || line.BytesSent != 12<<20+5 {
			t.Errorf("upload %v: %s", extra, r.out)
		}
	}

	r := runTransfer(t, ctx, env, strings.Repeat("x", 100), false, "upload", "-", "--name", "piped.txt")
	if r.code == 0 || !strings.Contains(r.err, "save it to a file") {
		t.Errorf("stdin upload: exit %d\n%s", r.code, r.err)
	}

	out, errOut, code := runJetty(t, env, "", "quota")
	if code != 0 || !strings.Contains(out, "JettySpeed no") {
		t.Errorf("quota: exit %d\n%s%s", code, out, errOut)
	}
}
