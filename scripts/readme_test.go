package scripts

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/protocol"
)

func readmeText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section is the README's text from the heading title up to the next
// heading of the same or a higher level (lines in code blocks are not
// headings).
func section(t *testing.T, readme, title string) string {
	t.Helper()
	level := strings.Index(title, " ") // "## x" → 2
	var out []string
	in, code := false, false
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "```") {
			code = !code
		}
		if !code && strings.HasPrefix(line, "#") {
			l := strings.Index(line, " ")
			switch {
			case line == title:
				in = true
				continue
			case in && l > 0 && l <= level && strings.Trim(line[:l], "#") == "":
				return strings.Join(out, "\n")
			}
		}
		if in {
			out = append(out, line)
		}
	}
	if !in {
		t.Fatalf("README has no section %q", title)
	}
	return strings.Join(out, "\n")
}

// TestReadmeListsEveryDoc: every document under docs/ is linked from the
// README, and so are the command reference and the terminal captures.
func TestReadmeListsEveryDoc(t *testing.T) {
	readme := readmeText(t)
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	links := []string{"docs/cli/jetty.md", "docs/cli/captures/README.md"}
	for _, d := range docs {
		links = append(links, "docs/"+filepath.Base(d))
	}
	for _, l := range links {
		if !strings.Contains(readme, "]("+l+")") {
			t.Errorf("README does not link %s: add it to the Documentation list", l)
		}
	}
}

// TestReadmeSpeaksPlainly: no project-internal jargon a reader cannot know
// ("seed 000's curl": the seeds are the project's history, not the user's).
func TestReadmeSpeaksPlainly(t *testing.T) {
	readme := readmeText(t)
	for _, re := range []string{`(?i)\bseeds?\b`} {
		if m := regexp.MustCompile(re).FindString(readme); m != "" {
			t.Errorf("README says %q: say what is meant instead", m)
		}
	}
}

// TestReadmeDevKeys: the walkthrough against the dev server shows the key
// prefix the dev server issues (TestServerDev in cmd/jetty checks that it
// issues protocol.TestKeyPrefix), never the production one.
func TestReadmeDevKeys(t *testing.T) {
	walk := section(t, readmeText(t), "## Using jetty")
	walk = walk[:strings.Index(walk+"\n### ", "\n### ")] // up to "In CI"
	examples := regexp.MustCompile(`jt_[a-z]+_\.\.\.`).FindAllString(walk, -1)
	if len(examples) == 0 {
		t.Fatalf("the dev-server walkthrough shows no key (%s...)", protocol.TestKeyPrefix)
	}
	for _, e := range examples {
		if e != protocol.TestKeyPrefix+"..." {
			t.Errorf("the dev-server walkthrough shows %s, but the dev server issues %s keys", e, protocol.TestKeyPrefix)
		}
	}
}

// TestReadmeMakeTest: the README's account of `make test` names every
// step scripts/test.sh runs.
func TestReadmeMakeTest(t *testing.T) {
	b, err := os.ReadFile("test.sh")
	if err != nil {
		t.Fatal(err)
	}
	steps := regexp.MustCompile(`(?m)^for step in (.*); do$`).FindStringSubmatch(string(b))
	if steps == nil {
		t.Fatal("scripts/test.sh has no `for step in ...; do` loop of setup steps")
	}
	var scripts []string
	for _, s := range strings.Fields(steps[1]) {
		scripts = append(scripts, "scripts/"+s+".sh")
	}
	for _, m := range regexp.MustCompile(`(?m)^\./(scripts/[a-z-]+\.sh)`).FindAllStringSubmatch(string(b), -1) {
		scripts = append(scripts, m[1])
	}
	readme := readmeText(t)
	for _, s := range scripts {
		if !strings.Contains(readme, s) {
			t.Errorf("make test runs %s, which the README does not mention", s)
		}
	}
	for _, want := range []string{"toxiproxy", "apt-get", "JETTY_REQUIRE_SERVICES=1", "keychain"} {
		if !strings.Contains(readme, want) {
			t.Errorf("the README's account of make test does not mention %s", want)
		}
	}
}

// TestReadmeShellCompletion: the README says what each shell needs.
func TestReadmeShellCompletion(t *testing.T) {
	s := section(t, readmeText(t), "### Shell completion")
	for _, want := range []string{
		"bash-completion",
		"jetty completion bash > ~/.local/share/bash-completion/completions/jetty",
		"jetty completion zsh", "compinit",
		"jetty completion fish > ~/.config/fish/completions/jetty.fish",
		"jetty completion powershell",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the Shell completion section does not say %q", want)
		}
	}
}
