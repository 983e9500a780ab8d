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
