package scripts

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// docs/deploy.md (issue 21) cannot drift from the code: it names every
// environment variable the server and the relays read, every metric the
// server exports, and the load balancer configuration the scale-out test
// runs.

var envNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)

// isEnvCall reports whether a call's function is an environment reader:
// getenv, os.Getenv, retentionEnv, ConfigFromEnv and the like.
func isEnvCall(call *ast.CallExpr) bool {
	var name string
	switch f := call.Fun.(type) {
	case *ast.Ident:
		name = f.Name
	case *ast.SelectorExpr:
		name = f.Sel.Name
	}
	return strings.Contains(strings.ToLower(name), "env")
}

// envNames are the environment variables a Go file reads: the string
// arguments of its environment readers (getenv("PORT")), and, in a file
// that reads the environment at all, every string that is spelled like a
// variable (names kept in tables, such as the LYVE_* list warned about).
func envNames(f *ast.File) []string {
	var names []string
	readsEnv := false
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || !isEnvCall(call) {
			return true
		}
		readsEnv = true
		for _, a := range call.Args {
			if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(s) {
					names = append(names, s)
				}
			}
		}
		return true
	})
	if readsEnv {
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && envNameRE.MatchString(s) {
					names = append(names, s)
				}
			}
			return true
		})
	}
	return names
}

// metricNames are the Prometheus series a Go file registers: the
// Name: "jetty_..." fields of its metric options.
func metricNames(f *ast.File) []string {
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		kv, ok := n.(*ast.KeyValueExpr)
		if !ok {
			return true
		}
		if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "Name" {
			return true
		}
		if lit, ok := kv.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "jetty_") {
				names = append(names, s)
			}
		}
		return true
	})
	return names
}

// serverSources are the Go files of the server and the relay as built
// into jetty: every non-test file of every package of the module that
// server/app and server/relay are built from (linux, no cgo), and the
// commands that run them (cmd/jetty's server.go, server_jobs.go, edge.go).
func serverSources(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,Module", "./server/app", "./server/relay")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"../cmd/jetty/server.go", "../cmd/jetty/server_jobs.go", "../cmd/jetty/edge.go"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir     string
			GoFiles []string
			Module  *struct{ Main bool }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, f := range p.GoFiles {
			files = append(files, filepath.Join(p.Dir, f))
		}
	}
	return files
}

// serverNames collects what pick finds in every server source, sorted and
// without repeats.
func serverNames(t *testing.T, pick func(*ast.File) []string) []string {
	t.Helper()
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range serverSources(t) {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range pick(f) {
			seen[n] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func deployDoc(t *testing.T) string {
	t.Helper()
	return readRepoFile(t, "docs/deploy.md")
}

// mentions reports whether doc names word as a whole word
// (AGENTCACHE_WEBHOOK_SECRET is not found inside
// AGENTCACHE_WEBHOOK_SECRET_PREVIOUS).
func mentions(doc, word string) bool {
	return regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(word) + `($|[^A-Za-z0-9_])`).MatchString(doc)
}

// TestDeployDocNamesEveryVariable: docs/deploy.md names every environment
// variable that jetty server, jetty server jobs and jetty edge read.
func TestDeployDocNamesEveryVariable(t *testing.T) {
	doc := deployDoc(t)
	vars := serverNames(t, envNames)
	for _, known := range []string{"DATABASE_URL", "REDIS_URL", "PORT", "JETTY_EDGE_SECRET", "JETTY_TOKEN_SECRET", "LYVE_ACCESS_KEY", "JETTY_WEBHOOK_POLL", "AWS_CA_BUNDLE"} {
		if !slices.Contains(vars, known) {
			t.Fatalf("the scan of the server's sources missed %s (found %v): fix the scan", known, vars)
		}
	}
	for _, v := range vars {
		if !mentions(doc, v) {
			t.Errorf("docs/deploy.md does not name %s, which the server or the relay reads: add it to the environment tables", v)
		}
	}
}

// TestDeployDocNamesEveryMetric: docs/deploy.md's "What to watch" names
// every series the server exports.
func TestDeployDocNamesEveryMetric(t *testing.T) {
	doc := deployDoc(t)
	metrics := serverNames(t, metricNames)
	if !slices.Contains(metrics, "jetty_http_requests_total") || !slices.Contains(metrics, "jetty_chunks_total") {
		t.Fatalf("the scan of the server's sources missed metrics (found %v): fix the scan", metrics)
	}
	for _, m := range metrics {
		if !mentions(doc, m) {
			t.Errorf("docs/deploy.md does not name the metric %s: add it to What to watch, with what an alert on it means", m)
		}
	}
}

// TestDeployDocLoadBalancer: docs/deploy.md links the HAProxy
// configuration the scale-out test runs and names every variable it reads.
func TestDeployDocLoadBalancer(t *testing.T) {
	b, err := os.ReadFile("../deploy/haproxy.cfg")
	if os.IsNotExist(err) {
		t.Skip("deploy/haproxy.cfg is absent (it comes with the scale-out test): nothing to link yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	doc := deployDoc(t)
	if !strings.Contains(doc, "](../deploy/haproxy.cfg)") {
		t.Error("docs/deploy.md does not link ../deploy/haproxy.cfg")
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)\}?|defined\(([A-Z][A-Z0-9_]*)\)`).FindAllStringSubmatch(haproxyConfig(string(b)), -1) {
		vars[m[1]+m[2]] = true
	}
	if len(vars) == 0 {
		t.Fatal("deploy/haproxy.cfg reads no environment variable: the doc's account of it is stale")
	}
	for v := range vars {
		if !mentions(doc, v) {
			t.Errorf("docs/deploy.md does not name %s, which deploy/haproxy.cfg reads", v)
		}
	}
}

// haproxyConfig is an HAProxy configuration without its comments: a #
// outside double quotes starts one (the header names "${VAR}" as an
// example, which is not a variable the file reads).
func haproxyConfig(cfg string) string {
	var b strings.Builder
	for _, line := range strings.Split(cfg, "\n") {
		quoted := false
		for i, r := range line {
			if r == '"' {
				quoted = !quoted
			}
			if r == '#' && !quoted {
				line = line[:i]
				break
			}
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// TestDeployDocScansCatch: the scans find variables and metrics however
// the code reads or registers them.
func TestDeployDocScansCatch(t *testing.T) {
	src := `package x

import "os"

func f(getenv func(string) string) {
	_ = getenv("PORT")
	_ = os.Getenv("ONE_VAR")
	_ = retentionEnv(getenv, "TWO_VAR", nil)
	for _, n := range []string{"THREE_VAR"} {
		_ = getenv(n)
	}
	_ = prometheus.CounterOpts{Name: "jetty_things_total", Help: "NOT_A_METRIC"}
}
`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := envNames(f)
	for _, want := range []string{"PORT", "ONE_VAR", "TWO_VAR", "THREE_VAR"} {
		if !slices.Contains(got, want) {
			t.Errorf("envNames missed %s: %v", want, got)
		}
	}
	if m := metricNames(f); !slices.Equal(m, []string{"jetty_things_total"}) {
		t.Errorf("metricNames = %v, want [jetty_things_total]", m)
	}
	if mentions("AGENTCACHE_WEBHOOK_SECRET_PREVIOUS", "AGENTCACHE_WEBHOOK_SECRET") || !mentions("`PORT` is", "PORT") {
		t.Error("mentions does not match whole words")
	}
	cfg := haproxyConfig("# expands \"${VAR}\" in quotes\n\tbind \"${JETTY_LB_BIND}\" # \"${NOT_THIS}\"\n.if defined(JETTY_LB_STATS)\n")
	if strings.Contains(cfg, "VAR") || strings.Contains(cfg, "NOT_THIS") || !strings.Contains(cfg, "${JETTY_LB_BIND}") || !strings.Contains(cfg, "JETTY_LB_STATS") {
		t.Errorf("haproxyConfig kept comments or lost settings: %q", cfg)
	}
	// A file that reads no environment contributes no names.
	f, _ = parser.ParseFile(token.NewFileSet(), "y.go", "package y\nvar s = \"LOOKS_LIKE_ONE\"\n", 0)
	if got := envNames(f); len(got) != 0 {
		t.Errorf("envNames of a file that reads no environment = %v", got)
	}
}
