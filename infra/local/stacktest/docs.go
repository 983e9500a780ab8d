package stacktest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DocSection returns the part of a Markdown file of the repository (file is
// a path from the repository's root, such as "docs/install.md") under the
// heading whose text is heading, up to the next heading of the same or a
// higher level. Tests that run a documented command read it from here, so
// the page and the test cannot drift apart.
func DocSection(t testing.TB, file, heading string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(RepoRoot(t), file))
	if err != nil {
		t.Fatal(err)
	}
	level, fenced := 0, false
	var section []string
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "#") {
			hashes := len(line) - len(strings.TrimLeft(line, "#"))
			if level > 0 && hashes <= level {
				break
			}
			if level == 0 && strings.TrimSpace(line[hashes:]) == heading {
				level = hashes
				continue
			}
		}
		if level > 0 {
			section = append(section, line)
		}
	}
	if level == 0 {
		t.Fatalf("%s has no heading %q", file, heading)
	}
	return strings.Join(section, "\n") + "\n"
}

// DocBlocks returns the fenced code blocks of a Markdown text, each ending
// in a newline.
func DocBlocks(text string) []string {
	var blocks []string
	var block []string
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			if fenced {
				blocks = append(blocks, strings.Join(block, "\n")+"\n")
				block = nil
			}
			fenced = !fenced
			continue
		}
		if fenced {
			block = append(block, line)
		}
	}
	return blocks
}

// GeneratedDoc checks that the generated page file (a path from the
// repository's root) holds want, and says to run make docs when it does not
// (what names what changed, such as "a metric"). With OFFLOAD_UPDATE_DOCS=1,
// which make docs sets, it writes the page instead.
func GeneratedDoc(t testing.TB, file string, want []byte, what string) {
	t.Helper()
	path := filepath.Join(RepoRoot(t), file)
	if os.Getenv("OFFLOAD_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run make docs", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: %s changed; run make docs and commit it", file, what)
	}
}
