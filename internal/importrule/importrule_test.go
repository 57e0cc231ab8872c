package importrule

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/jettythunder/jetty"

// side says which side of the rule a package of the module is on.
type side int

const (
	unclassified side = iota
	leaf              // protocol: imports nothing of the module
	client            // never imports a server package
	server            // never imports a client package
	neutral           // shared helpers: import neither side
	harness           // tests of the whole (e2e, benchmarks, test helpers): may import anything
	binary            // cmd/jetty: both, file by file (serverFiles)
)

// sideOf classifies a package path relative to the module.
func sideOf(rel string) side {
	under := func(p string) bool { return rel == p || strings.HasPrefix(rel, p+"/") }
	switch {
	case under("protocol"):
		return leaf
	case under("server"):
		return server
	case under("engine"), under("edges"), under("keychain"),
		rel == "internal/iostreams", rel == "internal/safefile":
		return client
	case rel == "internal/units", rel == "internal/connguard", rel == "internal/idleread", rel == "internal/secrets":
		return neutral
	case rel == "internal/e2e", rel == "internal/testenv", rel == "internal/seclint", rel == "internal/importrule", rel == "bench",
		under("scripts"): // tests of the tooling and docs, the terminal captures
		return harness
	case rel == "cmd/jetty":
		return binary
	}
	return unclassified
}

// narrow holds packages to fewer of the module's packages than their
// side allows: each may depend on the ones listed and no other.
var narrow = map[string][]string{
	// The local upload index is a leaf of the client: the engine
	// imports it, never the reverse.
	"engine/upindex": {"protocol", "internal/safefile"},
}

// serverFiles are the files of cmd/jetty that may import server packages:
// the commands that run a server or a relay.
var serverFiles = []string{"server.go", "server_jobs.go", "edge.go"}

// pkg is what go list says of a package.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Deps       []string
}

// violations applies the rule to packages (their transitive dependencies)
// and, for cmd/jetty, to the direct imports of each file (imports).
func violations(pkgs []pkg, imports func(dir, file string) ([]string, error)) []string {
	var out []string
	rel := func(p string) (string, bool) {
		if p == module {
			return "", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		s := sideOf(r)
		if s == unclassified {
			out = append(out, fmt.Sprintf("%s is on no side of the import rule: classify it in internal/importrule (sideOf)", r))
			continue
		}
		for _, d := range p.Deps {
			dr, ok := rel(d)
			if !ok {
				continue
			}
			ds := sideOf(dr)
			bad := false
			switch s {
			case leaf:
				bad = ds != leaf
			case client:
				bad = ds == server
			case server:
				bad = ds == client
			case neutral:
				bad = ds == client || ds == server
			}
			if bad {
				out = append(out, fmt.Sprintf("%s imports %s (directly or through its dependencies): client and server packages meet only in protocol", r, dr))
			} else if allowed, ok := narrow[r]; ok && !slices.Contains(allowed, dr) {
				out = append(out, fmt.Sprintf("%s imports %s (directly or through its dependencies): it may import only %s", r, dr, strings.Join(allowed, ", ")))
			}
		}
		if s != binary {
			continue
		}
		for _, f := range p.GoFiles {
			if slices.Contains(serverFiles, f) {
				continue
			}
			imps, err := imports(p.Dir, f)
			if err != nil {
				out = append(out, err.Error())
				continue
			}
			for _, imp := range imps {
				if ir, ok := rel(imp); ok && sideOf(ir) == server {
					out = append(out, fmt.Sprintf("cmd/jetty/%s imports %s: only the server and edge commands (%s) may", f, ir, strings.Join(serverFiles, ", ")))
				}
			}
		}
	}
	return out
}

// fileImports lists the imports of one Go file.
func fileImports(dir, file string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, file), nil, parser.ImportsOnly)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		out = append(out, p)
	}
	return out, nil
}

// TestImportRule lists every package of the module with go list and
// applies the rule.
func TestImportRule(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Dir,GoFiles,Deps", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages of the module", len(pkgs))
	}
	for _, v := range violations(pkgs, fileImports) {
		t.Error(v)
	}
	for r := range narrow { // a moved package must not leave its rule behind
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == module+"/"+r }) {
			t.Errorf("narrow names %s, which go list does not list", r)
		}
	}
}

// TestImportRuleCatchesViolations: each way of breaking the rule is
// reported, and a clean graph is not.
func TestImportRuleCatchesViolations(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	noFiles := func(dir, file string) ([]string, error) { return nil, nil }
	clean := []pkg{
		{ImportPath: m("protocol")},
		{ImportPath: m("engine"), Deps: []string{m("protocol"), m("internal/safefile"), m("engine/upindex"), "net/http"}},
		{ImportPath: m("engine/upindex"), Deps: []string{m("protocol"), m("internal/safefile"), "os"}},
		{ImportPath: m("server/api"), Deps: []string{m("protocol"), m("server"), m("internal/connguard")}},
	}
	if v := violations(clean, noFiles); len(v) != 0 {
		t.Fatalf("clean graph: %v", v)
	}
	if sideOf("engine/upindex") != client {
		t.Error("engine/upindex is not on the client side")
	}
	for name, tc := range map[string]struct {
		pkgs []pkg
		want string
	}{
		"server imports the engine":     {[]pkg{{ImportPath: m("server/api"), Deps: []string{m("engine")}}}, "server/api imports engine"},
		"client imports the server":     {[]pkg{{ImportPath: m("edges"), Deps: []string{m("server/blob")}}}, "edges imports server/blob"},
		"protocol imports the module":   {[]pkg{{ImportPath: m("protocol"), Deps: []string{m("internal/units")}}}, "protocol imports internal/units"},
		"neutral helper imports a side": {[]pkg{{ImportPath: m("internal/units"), Deps: []string{m("engine")}}}, "internal/units imports engine"},
		"unclassified package":          {[]pkg{{ImportPath: m("newthing")}}, "newthing is on no side"},
		"upindex imports the engine":    {[]pkg{{ImportPath: m("engine/upindex"), Deps: []string{m("protocol"), m("engine")}}}, "engine/upindex imports engine (directly or through its dependencies): it may import only"},
	} {
		v := violations(tc.pkgs, noFiles)
		if len(v) != 1 || !strings.Contains(v[0], tc.want) {
			t.Errorf("%s: %v, want one violation containing %q", name, v, tc.want)
		}
	}
	// A client command file of cmd/jetty importing a server package.
	cli := []pkg{{ImportPath: m("cmd/jetty"), GoFiles: []string{"login.go", "server.go"}}}
	v := violations(cli, func(dir, file string) ([]string, error) { return []string{m("server/apikey")}, nil })
	if len(v) != 1 || !strings.Contains(v[0], "cmd/jetty/login.go imports server/apikey") {
		t.Errorf("cmd/jetty: %v", v)
	}
}
