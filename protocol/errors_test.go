package protocol

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestEveryCodeHasItsStatus parses errors.go: every Code constant has an
// entry in the one status map, no two constants share a value, and an
// unknown code is a 500.
func TestEveryCodeHasItsStatus(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				code, _ := strconv.Unquote(lit.Value)
				if other, dup := seen[code]; dup {
					t.Errorf("%s and %s are both %q", name.Name, other, code)
				}
				seen[code] = name.Name
				if _, ok := statusByCode[code]; !ok {
					t.Errorf("%s (%q) has no HTTP status in statusByCode", name.Name, code)
				}
			}
		}
	}
	if len(seen) < 30 || len(seen) != len(statusByCode) {
		t.Errorf("%d codes declared, %d in the status map", len(seen), len(statusByCode))
	}
	if st := StatusFor("no_such_code"); st != http.StatusInternalServerError {
		t.Errorf("unknown code: %d, want 500", st)
	}
	for code, want := range map[string]int{CodeChunksMissing: 409, CodeInsufficientStorage: 507, CodeEdgeDraining: 503, CodeEdgeBusy: 503, CodeBadGateway: 502, CodeTooLarge: 413, CodeTokenExpired: 401, CodeSessionGone: 410} {
		if got := StatusFor(code); got != want {
			t.Errorf("StatusFor(%q) = %d, want %d", code, got, want)
		}
	}
}
