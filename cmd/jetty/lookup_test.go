package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestLsCacheKeyAndPipeline (issue 19): `jetty upload --cache-key
// --pipeline-id` records both on every path (a small file in one request,
// a big file through a session, manifest first or pipelined, and stdin as
// a stream), and `jetty ls --cache-key` / `--pipeline-id` find exactly the
// account's own files.
func TestLsCacheKeyAndPipeline(t *testing.T) {
	const (
		pipe  = "123e4567-e89b-12d3-a456-426614174000"
		other = "9b2f6c1e-0d4a-4f3b-8c7d-5e6f7a8b9c0d"
	)
	srv := testServer(t)
	env := account(t, srv, "usr_lookup_cli", "enterprise")
	envB := account(t, srv, "usr_lookup_cli_b", "enterprise")
	dir := t.TempDir()
	small, _ := randomFile(t, dir, "small.bin", 1, 1000)
	big, _ := randomFile(t, dir, "big.bin", 2, 6<<20+5)
	big2, _ := randomFile(t, dir, "big2.bin", 3, 6<<20+7)
	ctx := context.Background()

	upload := func(env map[string]string, stdin string, args ...string) string {
		t.Helper()
		r := runTransfer(t, ctx, env, stdin, false, append([]string{"upload", "--json", "--no-index", "--edges", "origin"}, args...)...)
		if r.code != 0 {
			t.Fatalf("jetty upload %v: exit %d\n%s", args, r.code, r.err)
		}
		lines := parseUploadLines(t, r.out)
		if len(lines) != 1 {
			t.Fatalf("jetty upload %v: %s", args, r.out)
		}
		return lines[0].Asset.ID
	}
	want := map[string][]string{}
	// Upper case on the command line: recorded canonical.
	id := upload(env, "", small, "--cache-key", "img", "--pipeline-id", strings.ToUpper(pipe))
	want["img"], want[pipe] = append(want["img"], id), append(want[pipe], id)
	id = upload(env, "", big, "--cache-key", "img", "--pipeline-id", pipe, "--hash-first")
	want["img"], want[pipe] = append(want["img"], id), append(want[pipe], id)
	id = upload(env, "", big2, "--cache-key", "vid", "--pipeline-id", pipe) // the pipelined path
	want["vid"], want[pipe] = append(want["vid"], id), append(want[pipe], id)
	id = upload(env, strings.Repeat("stream ", 1000), "-", "--name", "s.txt", "--cache-key", "img", "--pipeline-id", other)
	want["img"], want[other] = append(want["img"], id), append(want[other], id)
	upload(env, "", filepath.Join(dir, "small.bin"), "--name", "plain.bin") // no key, no pipeline
	// Account b's file under the same key and pipeline never shows.
	upload(envB, "", small, "--cache-key", "img", "--pipeline-id", pipe)

	ls := func(args ...string) []map[string]any {
		t.Helper()
		out, errOut, code := runJetty(t, env, "", append([]string{"ls", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("jetty ls %v: exit %d %s", args, code, errOut)
		}
		var as []map[string]any
		if err := json.Unmarshal([]byte(out), &as); err != nil {
			t.Fatalf("jetty ls %v: %v\n%s", args, err, out)
		}
		return as
	}
	ids := func(as []map[string]any) string {
		var out []string
		for _, a := range as {
			out = append(out, a["id"].(string))
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	sorted := func(s []string) string {
		s = append([]string(nil), s...)
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cache-key", "img"}, sorted(want["img"])},
		{[]string{"--cache-key", "vid"}, sorted(want["vid"])},
		{[]string{"--pipeline-id", pipe}, sorted(want[pipe])},
		{[]string{"--pipeline-id", strings.ToUpper(other)}, sorted(want[other])},
		{[]string{"--pipeline-id", pipe, "--cache-key", "img"}, sorted(want["img"][:2])},
		{[]string{"--cache-key", "IMG"}, ""},
	} {
		as := ls(c.args...)
		if got := ids(as); got != c.want {
			t.Errorf("jetty ls %v = %s, want %s", c.args, got, c.want)
		}
		for _, a := range as {
			if p, _ := a["agentcache_pipeline_id"].(string); len(c.args) > 0 && c.args[0] == "--pipeline-id" && p != strings.ToLower(c.args[1]) {
				t.Errorf("jetty ls %v listed an asset of pipeline %q", c.args, p)
			}
		}
	}
	// --limit with a filter: the newest match.
	if as := ls("--cache-key", "img", "--limit", "1"); len(as) != 1 || as[0]["id"] != want["img"][len(want["img"])-1] {
		t.Errorf("jetty ls --cache-key img --limit 1 = %v", as)
	}
	// The table says when nothing matches.
	out, _, code := runJetty(t, env, "", "ls", "--cache-key", "nothing")
	if code != 0 || !strings.Contains(out, "No files match") {
		t.Errorf("jetty ls --cache-key nothing: %d %q", code, out)
	}
	// Malformed values are usage errors, before any call.
	for _, args := range [][]string{
		{"ls", "--pipeline-id", "pipeline-7"},
		{"ls", "--pipeline-id", ""},
		{"ls", "--cache-key", ""},
		{"upload", small, "--pipeline-id", "nope"},
	} {
		if r := runTransfer(t, ctx, env, "", false, args...); r.code != ExitUsage {
			t.Errorf("jetty %v: exit %d, want %d (%s)", args, r.code, ExitUsage, r.err)
		}
	}
}
