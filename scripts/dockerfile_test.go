package scripts

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// The container image recipe (issue 21): no container runtime runs here,
// so the Dockerfile is parsed with BuildKit's own parser (the one `docker
// build` uses) and checked for what the image promises: a build stage on
// go.mod's Go version with cgo off, a final stage on distroless or
// scratch that runs as a non-root user, jetty as the entrypoint, every
// COPY from the build context present and not left out by .dockerignore.

// goModVersion is the Go version go.mod pins: its toolchain line when it
// has one (go1.26.8 → 1.26.8), else its go line.
func goModVersion(gomod string) (string, error) {
	var goLine, toolchain string
	sc := bufio.NewScanner(strings.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "go" {
			goLine = f[1]
		}
		if len(f) == 2 && f[0] == "toolchain" {
			toolchain = strings.TrimPrefix(f[1], "go")
		}
	}
	switch {
	case toolchain != "":
		return toolchain, nil
	case goLine != "":
		return goLine, nil
	}
	return "", errors.New("go.mod has neither a go nor a toolchain line")
}

// imageRef splits an image reference into name, tag and digest
// ("golang:1.26.8-bookworm@sha256:ab…" → golang, 1.26.8-bookworm, sha256:ab…).
func imageRef(ref string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}

var (
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	goTagRE    = regexp.MustCompile(`^(\d+\.\d+(?:\.\d+)?)(?:-[a-z0-9.]+)?$`)
	distroless = regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?$`)
)

// dockerfileFacts is what checkDockerfile learned, for the other checks.
type dockerfileFacts struct {
	contextSources []string // COPY/ADD sources from the build context
}

// checkDockerfile parses src and returns every way it breaks the image's
// promises. goVersion is go.mod's; exists says whether a path of the build
// context exists.
func checkDockerfile(src, goVersion string, exists func(string) bool) (dockerfileFacts, []error) {
	var facts dockerfileFacts
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	res, err := parser.Parse(strings.NewReader(src))
	if err != nil {
		return facts, []error{fmt.Errorf("parse: %w", err)}
	}
	for _, w := range res.Warnings {
		fail("parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		fail("lint %s (line %d): %s", rule, line, msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return facts, append(errs, fmt.Errorf("instructions: %w", err))
	}
	if len(metaArgs) > 0 {
		fail("ARG before the first FROM: base images must be written out, so that this test reads them")
	}
	if len(stages) < 2 {
		return facts, append(errs, fmt.Errorf("%d stage(s): want a multi-stage build (build the binary, then a final image without the toolchain)", len(stages)))
	}
	byName := map[string]*instructions.Stage{}
	for i := range stages {
		if stages[i].Name != "" {
			byName[strings.ToLower(stages[i].Name)] = &stages[i]
		}
	}

	final := stages[len(stages)-1]
	name, tag, digest := imageRef(final.BaseName)
	switch {
	case final.BaseName == "scratch":
	case distroless.MatchString(name):
		if !strings.HasPrefix(tag, "nonroot") {
			fail("final stage FROM %s: use the :nonroot variant of distroless", final.BaseName)
		}
	default:
		fail("final stage FROM %s: want scratch or gcr.io/distroless/static (no shell, no package manager)", final.BaseName)
	}
	if digest != "" && !digestRE.MatchString(digest) {
		fail("final stage FROM %s: malformed digest %q", final.BaseName, digest)
	}

	// The final stage: who it runs as, what it runs, what it copies.
	var user string
	var entrypoint, cmd []string
	env := map[string]string{}
	var exposed []string
	copiedTo := map[string]string{} // build-stage path → final path
	var buildStage *instructions.Stage
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				fail("ENTRYPOINT in shell form: the final image has no shell; use the exec form [\"/path/jetty\"]")
			}
			entrypoint = c.CmdLine
		case *instructions.CmdCommand:
			if c.PrependShell {
				fail("CMD in shell form: the final image has no shell; use the exec form [\"server\"]")
			}
			cmd = c.CmdLine
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env[kv.Key] = kv.Value
			}
		case *instructions.ExposeCommand:
			exposed = append(exposed, c.Ports...)
		case *instructions.RunCommand:
			if final.BaseName == "scratch" || distroless.MatchString(name) {
				fail("RUN in the final stage: %s has no shell to run it", final.BaseName)
			}
		case *instructions.CopyCommand:
			if c.From == "" {
				continue
			}
			st, ok := byName[strings.ToLower(c.From)]
			if !ok {
				fail("COPY --from=%s: no stage of that name", c.From)
				continue
			}
			if buildStage == nil {
				buildStage = st
			}
			for _, s := range c.SourcePaths {
				copiedTo[path.Clean(s)] = c.DestPath
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	switch uid {
	case "":
		fail("final stage has no USER: the container would run as root")
	case "0", "root":
		fail("final stage runs as USER %s: want a non-root user (distroless's nonroot is 65532)", user)
	}
	if len(entrypoint) == 0 || path.Base(entrypoint[0]) != "jetty" {
		fail("ENTRYPOINT %q: want the jetty binary", entrypoint)
	}
	if !slices.Equal(cmd, []string{"server"}) {
		fail("CMD %q: want [\"server\"] (docker run IMAGE starts the server; docker run IMAGE edge ... a relay)", cmd)
	}
	if p := env["PORT"]; p == "" || !slices.ContainsFunc(exposed, func(e string) bool { return strings.TrimSuffix(e, "/tcp") == p }) {
		fail("ENV PORT=%q and EXPOSE %q disagree: the server must listen on every interface (:$PORT) on the exposed port", p, exposed)
	}

	// The build stage: the one the final stage copies from.
	if buildStage == nil {
		return facts, append(errs, errors.New("the final stage copies nothing from a build stage"))
	}
	bname, btag, bdigest := imageRef(buildStage.BaseName)
	if m := goTagRE.FindStringSubmatch(btag); bname != "golang" || m == nil {
		fail("build stage FROM %s: want golang:<go.mod's version>", buildStage.BaseName)
	} else if m[1] != goVersion {
		fail("build stage FROM %s is Go %s, go.mod says %s", buildStage.BaseName, m[1], goVersion)
	}
	if bdigest != "" && !digestRE.MatchString(bdigest) {
		fail("build stage FROM %s: malformed digest %q", buildStage.BaseName, bdigest)
	}
	benv := map[string]string{}
	built := ""
	for _, c := range buildStage.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				benv[kv.Key] = kv.Value
			}
		case *instructions.RunCommand:
			line := strings.Join(c.CmdLine, " ")
			if !strings.Contains(line, "go build") {
				continue
			}
			if !strings.Contains(line, "./cmd/jetty") {
				fail("RUN %q builds something other than ./cmd/jetty", line)
			}
			cgo := benv["CGO_ENABLED"]
			if m := regexp.MustCompile(`\bCGO_ENABLED=(\S+)\s+go build`).FindStringSubmatch(line); m != nil {
				cgo = m[1]
			}
			if cgo != "0" {
				fail("the go build runs with CGO_ENABLED=%q: want 0 (a static binary; the SQLite driver is pure Go)", cgo)
			}
			if benv["GOTOOLCHAIN"] != "local" {
				fail("build stage GOTOOLCHAIN=%q: want local, so the image's Go builds it and nothing is downloaded", benv["GOTOOLCHAIN"])
			}
			if m := regexp.MustCompile(`\s-o\s+(\S+)`).FindStringSubmatch(line); m != nil {
				built = path.Clean(m[1])
			}
		}
	}
	for _, st := range stages {
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.AddCommand:
				fail("ADD %q in stage %q: use COPY (ADD fetches URLs and unpacks archives)", c.SourcePaths, st.Name)
			case *instructions.CopyCommand:
				if c.From == "" {
					facts.contextSources = append(facts.contextSources, c.SourcePaths...)
				}
			}
		}
	}
	if built == "" {
		fail("the build stage has no RUN go build -o <path> ./cmd/jetty")
	} else if dest, ok := copiedTo[built]; !ok {
		fail("the final stage does not copy the binary %s from the build stage", built)
	} else if len(entrypoint) > 0 && dest != entrypoint[0] && path.Join(dest, path.Base(built)) != entrypoint[0] {
		fail("the binary is copied to %s, but ENTRYPOINT runs %s", dest, entrypoint[0])
	}
	for _, s := range facts.contextSources {
		if !exists(s) {
			fail("COPY %s: no such file or directory in the repository", s)
		}
	}
	return facts, errs
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func repoPathExists(p string) bool {
	_, err := os.Stat(filepath.Join("..", filepath.FromSlash(p)))
	return err == nil
}

// TestDockerfile: the image recipe at the repository's root parses and
// keeps its promises (see checkDockerfile).
func TestDockerfile(t *testing.T) {
	gover, err := goModVersion(readRepoFile(t, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	facts, errs := checkDockerfile(readRepoFile(t, "Dockerfile"), gover, repoPathExists)
	for _, err := range errs {
		t.Error(err)
	}
	if len(facts.contextSources) == 0 && len(errs) == 0 {
		t.Error("the build stage copies nothing from the build context")
	}
}

// TestDockerfileChecksCatch: each broken recipe is refused for the reason
// it breaks, so TestDockerfile cannot pass on a check that looks at
// nothing.
func TestDockerfileChecksCatch(t *testing.T) {
	good := `FROM golang:1.26.8-bookworm AS build
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
COPY . .
RUN go build -o /out/jetty ./cmd/jetty
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/jetty /usr/local/bin/jetty
ENV PORT=3001
USER 65532:65532
EXPOSE 3001
ENTRYPOINT ["/usr/local/bin/jetty"]
CMD ["server"]
`
	exists := func(p string) bool { return p == "." || p == "go.mod" || p == "go.sum" }
	if _, errs := checkDockerfile(good, "1.26.8", exists); len(errs) > 0 {
		t.Fatalf("the good recipe is refused: %v", errs)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"single stage", good[:strings.Index(good, "FROM gcr.io")], "", "multi-stage"},
		{"final stage with a shell", "gcr.io/distroless/static-debian12:nonroot", "debian:bookworm-slim", "want scratch or gcr.io/distroless"},
		{"distroless as root", "static-debian12:nonroot", "static-debian12:latest", ":nonroot"},
		{"no USER", "USER 65532:65532\n", "", "no USER"},
		{"USER root", "USER 65532:65532", "USER root", "non-root"},
		{"another Go", "golang:1.26.8-bookworm", "golang:1.25.3-bookworm", "go.mod says 1.26.8"},
		{"cgo on", "ENV CGO_ENABLED=0 GOTOOLCHAIN=local", "ENV GOTOOLCHAIN=local", "CGO_ENABLED"},
		{"cgo on in the RUN", "RUN go build", "RUN CGO_ENABLED=1 go build", "CGO_ENABLED=\"1\""},
		{"toolchain download", "ENV CGO_ENABLED=0 GOTOOLCHAIN=local", "ENV CGO_ENABLED=0", "GOTOOLCHAIN"},
		{"another entrypoint", `ENTRYPOINT ["/usr/local/bin/jetty"]`, `ENTRYPOINT ["/bin/sh"]`, "want the jetty binary"},
		{"shell-form entrypoint", `ENTRYPOINT ["/usr/local/bin/jetty"]`, `ENTRYPOINT /usr/local/bin/jetty`, "shell form"},
		{"binary not copied", "COPY --from=build /out/jetty /usr/local/bin/jetty", "COPY --from=build /out/other /usr/local/bin/jetty", "does not copy the binary"},
		{"missing COPY source", "COPY go.mod go.sum ./", "COPY go.mod go.work ./", "COPY go.work"},
		{"ADD", "COPY . .", "ADD . .", "use COPY"},
		{"port mismatch", "EXPOSE 3001", "EXPOSE 8080", "disagree"},
		{"no CMD", "CMD [\"server\"]\n", "", "CMD"},
		{"lint", "AS build", "as build", "FromAsCasing"},
		{"RUN in distroless", "USER 65532:65532", "RUN mkdir /data\nUSER 65532:65532", "no shell"},
	} {
		bad := strings.Replace(good, c.from, c.to, 1)
		if bad == good {
			t.Fatalf("%s: the replacement %q matched nothing", c.name, c.from)
		}
		_, errs := checkDockerfile(bad, "1.26.8", exists)
		if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), c.want) }) {
			t.Errorf("%s: want an error saying %q, got %v", c.name, c.want, errs)
		}
	}
	if v, err := goModVersion("module x\n\ngo 1.26.0\n\ntoolchain go1.26.8\n"); err != nil || v != "1.26.8" {
		t.Errorf("goModVersion with a toolchain line = %q, %v; want 1.26.8", v, err)
	}
}

// TestDockerignoreKeepsTheBuild: .dockerignore leaves in everything the
// image's build reads: go.mod, go.sum and every file of every package of
// the module that ./cmd/jetty is built from (for linux, without cgo), its
// embedded migrations included. Docker's own matcher decides.
func TestDockerignoreKeepsTheBuild(t *testing.T) {
	patterns, err := ignorefile.ReadAll(strings.NewReader(readRepoFile(t, ".dockerignore")))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/jetty")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Main bool }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 50 || !slices.Contains(needed, "cmd/jetty/main.go") {
		t.Fatalf("go list found only %d files to build ./cmd/jetty: %v", len(needed), needed)
	}
	for _, f := range needed {
		if left, err := pm.MatchesOrParentMatches(f); err != nil {
			t.Fatal(err)
		} else if left {
			t.Errorf(".dockerignore leaves out %s, which the build needs", f)
		}
	}
	// And it does leave out what it says (the repository's history, test
	// data), so the context stays small.
	for _, f := range []string{".git/HEAD", "engine/testdata/x", "engine/engine_test.go", "docs/deploy.md"} {
		if left, _ := pm.MatchesOrParentMatches(f); !left {
			t.Errorf(".dockerignore keeps %s in the build context", f)
		}
	}
}
