package seclint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// secretName matches identifiers that hold a secret or something derived
// from one that an attacker could probe byte by byte.
// Content hashes (a chunk's SHA-256) are public and not matched.
var secretName = regexp.MustCompile(`(?i)(secret|password|passwd|token|hmac|signature|apikey|api_key|^mac$|^sig$)`)

// harmless operands: comparing a secret with a constant ("", nil, a
// literal) or its length leaks nothing worth having.
func harmless(e ast.Expr) bool {
	switch v := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return v.Name == "nil" || v.Name == "true" || v.Name == "false"
	case *ast.CallExpr:
		if id, ok := v.Fun.(*ast.Ident); ok && (id.Name == "len" || id.Name == "cap") {
			return true
		}
	}
	return false
}

// name is the last identifier of an operand: x, a.b.c, f(), x[i].
func name(e ast.Expr) string {
	switch v := e.(type) {
	case *ast.Ident:
		return v.Name
	case *ast.SelectorExpr:
		return v.Sel.Name
	case *ast.IndexExpr:
		return name(v.X)
	case *ast.CallExpr:
		// string(mac), []byte(secret): the converted value's name.
		if id, ok := v.Fun.(*ast.Ident); ok && id.Name == "string" && len(v.Args) == 1 {
			return name(v.Args[0])
		}
		if _, ok := v.Fun.(*ast.ArrayType); ok && len(v.Args) == 1 {
			return name(v.Args[0])
		}
		return name(v.Fun)
	case *ast.StarExpr:
		return name(v.X)
	case *ast.ParenExpr:
		return name(v.X)
	}
	return ""
}

// allowed lists comparisons the check flags by name but that compare
// no secret (file:line text must contain the given snippet). Keep it
// short and say why for each.
var allowed = map[string]string{}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// findings lists the plain comparisons of secret-like operands in f.
func findings(fset *token.FileSet, f *ast.File, rel string) []string {
	var found []string
	ast.Inspect(f, func(n ast.Node) bool {
		b, ok := n.(*ast.BinaryExpr)
		if !ok || (b.Op != token.EQL && b.Op != token.NEQ) {
			return true
		}
		if harmless(b.X) || harmless(b.Y) {
			return true
		}
		nx, ny := name(b.X), name(b.Y)
		if !secretName.MatchString(nx) && !secretName.MatchString(ny) {
			return true
		}
		if _, ok := allowed[rel+": "+nx+" "+b.Op.String()+" "+ny]; ok {
			return true
		}
		found = append(found, rel+":"+strconv.Itoa(fset.Position(b.Pos()).Line)+": "+nx+" "+b.Op.String()+" "+ny)
		return true
	})
	return found
}

// TestNoPlainSecretComparison parses every non-test Go file and fails on
// == or != between two operands when either is named like a secret and
// neither is a constant. Comparisons that are not about secrets but trip
// the name rule go in allowed with a reason.
func TestNoPlainSecretComparison(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	var found []string
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "dist", "bin", "testdata", "node_modules",
				// Test support compiled into non-test files: they compare
				// what a test stored with what it read back.
				"storetest", "kvtest", "blobtest", "testenv":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		found = append(found, findings(fset, f, rel)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("checked only %d files: the walk is broken", files)
	}
	for _, f := range found {
		t.Errorf("plain comparison of a secret-like value: %s (use subtle.ConstantTimeCompare / hmac.Equal, or add it to allowed with the reason)", f)
	}
}

// TestCheckFindsPlainComparisons shows the check catches what it is for
// and lets constants through.
func TestCheckFindsPlainComparisons(t *testing.T) {
	src := `package p
func f(token, want string, a struct{ APISecret string }, mac, expected []byte, sum string) bool {
	if token == want { return true }
	if a.APISecret != want { return true }
	if string(mac) == string(expected) { return true }
	if token == "" || len(token) == 0 || a.APISecret != "" { return false }
	return sum == want
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := findings(fset, f, "p.go")
	want := []string{"p.go:3: token == want", "p.go:4: APISecret != want", "p.go:5: mac == expected"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("findings = %q, want %q", got, want)
	}
}
