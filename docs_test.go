package offload_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// markdownLink is an inline link or image target: [text](target "title").
var markdownLink = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)

// TestDocLinks: every relative link in the project's Markdown (README.md,
// BENCHMARKS.md, CHANGELOG.md and docs/) reaches a file of this repository,
// and every #anchor a heading of the file it names, as GitHub renders them.
// A link out of the repository (../) is refused: a clone has nothing there.
func TestDocLinks(t *testing.T) {
	files := []string{"README.md", "BENCHMARKS.md", "CHANGELOG.md"}
	filepath.WalkDir("docs", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, link := range docLinks(string(text)) {
			if err := checkDocLink(f, link); err != "" {
				t.Errorf("%s: link %q: %s", f, link, err)
			}
		}
	}
}

// docLinks returns the link targets of a Markdown text outside its code
// (fenced blocks and `spans`).
func docLinks(text string) []string {
	var out []string
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		line = regexp.MustCompile("`[^`]*`").ReplaceAllString(line, "")
		for _, m := range markdownLink.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// checkDocLink says what is wrong with a link from file, "" if nothing.
func checkDocLink(file, link string) string {
	if regexp.MustCompile(`^[a-z]+:`).MatchString(link) {
		return "" // http:, https:, mailto:: not checked here (no network)
	}
	target, anchor, _ := strings.Cut(link, "#")
	path := file
	if target != "" {
		path = filepath.Join(filepath.Dir(file), target)
		if strings.HasPrefix(filepath.Clean(path), "..") {
			return "leaves the repository"
		}
		if _, err := os.Stat(path); err != nil {
			return "no such file"
		}
	}
	if anchor == "" {
		return ""
	}
	if !strings.HasSuffix(path, ".md") {
		return "an anchor into a file that is not Markdown"
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if !headingAnchors(string(text))[anchor] {
		return "no heading has the anchor #" + anchor
	}
	return ""
}

// headingAnchors are the anchors GitHub gives a Markdown file's headings:
// lower case, punctuation but - and _ dropped, spaces made -, and a repeated
// one numbered -1, -2...
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		a := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		if n := seen[a]; n > 0 {
			anchors[a+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

// userDocs are the pages written for users of offload: the README and
// docs/, without the generated reference.
func userDocs(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	err := filepath.WalkDir("docs", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join("docs", "reference") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// blockMarker is the comment line before a fenced block that says what it
// is: a command a test runs, one no test runs (and why), an example of
// output, or a diagram.
var blockMarker = regexp.MustCompile(`^<!-- (run by: (\S+)(?: in (\S+))?.*|not run: \S.*|output|diagram) -->$`)

// TestDocBlocksSayWhetherTheyRun: every fenced block of the user docs has
// a marker line before it. "run by: TestName in FILE" must name a test that
// FILE defines; "run by: .ci/run" a block whose every line .ci/run runs.
// So a reader knows which commands are proven, and a renamed test or a
// changed CI script breaks the page's claim loudly.
func TestDocBlocksSayWhetherTheyRun(t *testing.T) {
	ci, err := os.ReadFile(filepath.Join(".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range userDocs(t) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(text), "\n")
		fenced := false
		for i, line := range lines {
			if !strings.HasPrefix(line, "```") {
				continue
			}
			fenced = !fenced
			if !fenced {
				continue
			}
			prev := ""
			for j := i - 1; j >= 0 && prev == ""; j-- {
				prev = strings.TrimSpace(lines[j])
			}
			m := blockMarker.FindStringSubmatch(prev)
			if m == nil {
				t.Errorf("%s:%d: a fenced block without a marker line before it (<!-- run by: TestName in FILE -->, <!-- not run: why -->, <!-- output -->, <!-- diagram -->)", f, i+1)
				continue
			}
			switch by, file := m[2], m[3]; {
			case by == ".ci/run":
				for _, cmd := range lines[i+1:] {
					if strings.HasPrefix(cmd, "```") {
						break
					}
					if !strings.Contains(string(ci), "\n"+strings.TrimSpace(cmd)+"\n") {
						t.Errorf("%s:%d: says .ci/run runs %q; it does not", f, i+1, cmd)
					}
				}
			case by != "":
				src, err := os.ReadFile(file)
				if err != nil || !strings.Contains(string(src), "\nfunc "+by+"(t *testing.T) {") {
					t.Errorf("%s:%d: says %s in %s runs the block; there is no such test", f, i+1, by, file)
				}
			}
		}
	}
}

// testName is a Go test, fuzz target or benchmark's name.
var testName = regexp.MustCompile(`\b(Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*`)

// TestUserDocsNameNoTests: a user's page explains behaviour; which test
// proves it is for docs/reliability.md and docs/development.md (and for
// the markers before command blocks, which are not rendered).
func TestUserDocsNameNoTests(t *testing.T) {
	comment := regexp.MustCompile(`(?s)<!--.*?-->`)
	for _, f := range userDocs(t) {
		if f == filepath.Join("docs", "reliability.md") || f == filepath.Join("docs", "development.md") {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(comment.ReplaceAllString(string(text), ""), "\n") {
			if names := testName.FindAllString(line, -1); names != nil {
				t.Errorf("%s: line %d names %v: point at the test file, or move it to docs/reliability.md", f, i+1, names)
			}
		}
	}
}

// runbookBase is where the alerts' runbook_url annotations point: the
// repository's docs/operations.md as GitHub renders it.
const runbookBase = "https://github.com/photosleeve/offload/blob/main/docs/operations.md"

// TestEveryAlertHasARunbookEntry: each rule in infra/grafana/alerts.yaml
// has a "### NAME" entry in docs/operations.md saying what to do, and a
// runbook_url annotation (the name Prometheus's and Grafana's own rules use)
// that links to that entry's anchor, so the page opens where the alert is.
func TestEveryAlertHasARunbookEntry(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("infra", "grafana", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile(filepath.Join("docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)$`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) == 0 {
		t.Fatal("no alert found in alerts.yaml")
	}
	for _, a := range alerts {
		if !strings.Contains(string(ops), "\n### "+a[1]+"\n") {
			t.Errorf("alert %s has no \"### %s\" entry in docs/operations.md", a[1], a[1])
		}
	}
	anchors := headingAnchors(string(ops))
	rule := regexp.MustCompile(`(?m)^\s*- alert: `)
	runbook := regexp.MustCompile(`(?m)^\s*runbook_url: "?([^"\s]+)"?\s*$`)
	for _, r := range rule.Split(string(rules), -1)[1:] {
		name, _, _ := strings.Cut(r, "\n")
		m := runbook.FindStringSubmatch(r)
		if m == nil {
			t.Errorf("alert %s has no runbook_url annotation", name)
			continue
		}
		want := runbookBase + "#" + strings.ToLower(name)
		if m[1] != want {
			t.Errorf("alert %s: runbook_url %s, want %s", name, m[1], want)
		}
		if !anchors[strings.ToLower(name)] {
			t.Errorf("alert %s: docs/operations.md has no anchor #%s", name, strings.ToLower(name))
		}
	}
}

// TestReadmeFirstDayIsTheTestedOne: the README's install commands are the
// very block of docs/install.md that the first-day test runs.
func TestReadmeFirstDayIsTheTestedOne(t *testing.T) {
	const marker = "<!-- run by: TestPackageFirstDay in infra/package/firstday_test.go -->\n```\n"
	block := func(file string) string {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(text), marker)
		if !ok {
			t.Fatalf("%s has no block marked as run by TestPackageFirstDay", file)
		}
		b, _, _ := strings.Cut(rest, "```")
		return b
	}
	if got, want := block("README.md"), block(filepath.Join("docs", "install.md")); got != want {
		t.Errorf("README.md's install commands:\n%s\ndocs/install.md's, which the test runs:\n%s", got, want)
	}
}

// TestChangelogIsKeepAChangelog: CHANGELOG.md has the shape Keep a
// Changelog 1.1.0 gives it (https://keepachangelog.com/en/1.1.0/): second-level
// headings only "[Unreleased]" or "[X.Y.Z] - YYYY-MM-DD", each with its link
// reference at the foot; third-level headings only its six kinds of change,
// each once a version and in its order.
func TestChangelogIsKeepAChangelog(t *testing.T) {
	text, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`^## \[(Unreleased|\d+\.\d+\.\d+)\]( - \d{4}-\d{2}-\d{2})?$`)
	// kinds are Keep a Changelog's kinds of change, in its order.
	kinds := map[string]int{"Added": 1, "Changed": 2, "Deprecated": 3, "Removed": 4, "Fixed": 5, "Security": 6}
	versions, lastKind := 0, 0
	for i, line := range strings.Split(string(text), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			m := version.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("CHANGELOG.md:%d: %q is not \"## [Unreleased]\" or \"## [X.Y.Z] - YYYY-MM-DD\"", i+1, line)
				continue
			}
			if (m[1] == "Unreleased") != (m[2] == "") {
				t.Errorf("CHANGELOG.md:%d: %q: a release has a date, [Unreleased] none", i+1, line)
			}
			if !strings.Contains(string(text), "\n["+m[1]+"]: http") {
				t.Errorf("CHANGELOG.md:%d: %q has no link reference \"[%s]: URL\" at the foot", i+1, line, m[1])
			}
			versions, lastKind = versions+1, 0
		case strings.HasPrefix(line, "### "):
			k := kinds[strings.TrimPrefix(line, "### ")]
			switch {
			case k == 0:
				t.Errorf("CHANGELOG.md:%d: %q is not one of Added, Changed, Deprecated, Removed, Fixed, Security", i+1, line)
			case k <= lastKind:
				t.Errorf("CHANGELOG.md:%d: %q is out of order or repeated: Added, Changed, Deprecated, Removed, Fixed, Security, each once", i+1, line)
			default:
				lastKind = k
			}
		}
	}
	if versions == 0 {
		t.Error("CHANGELOG.md has no \"## [Unreleased]\" or version heading")
	}
}
