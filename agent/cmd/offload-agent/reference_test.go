package main

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// cliReference is docs/reference/cli.md: every command's own help, as the
// binary prints it (helpFor, from the same flag definitions and settings
// table the commands parse with).
func cliReference() []byte {
	var b bytes.Buffer
	b.WriteString("# offload-agent: command reference\n\n")
	b.WriteString("Generated from the binary's own help (`offload-agent help COMMAND`); do not edit.\n")
	b.WriteString("`make docs` writes it again; `make test` fails while it is stale.\n\n")
	var overview bytes.Buffer
	dispatch([]string{"help"}, func(string) string { return "" }, &overview, &overview)
	fmt.Fprintf(&b, "## offload-agent\n\n```\n%s```\n", overview.String())
	names := commandNames()
	slices.Sort(names)
	for _, n := range names {
		if n == "help" {
			continue
		}
		var help bytes.Buffer
		helpFor(n, &help, &help)
		fmt.Fprintf(&b, "\n## offload-agent %s\n\n```\n%s```\n", n, help.String())
	}
	return b.Bytes()
}

// TestCLIReferenceIsCurrent: the checked-in command reference is what the
// binary's help says now. OFFLOAD_UPDATE_DOCS=1 (make docs) writes it.
func TestCLIReferenceIsCurrent(t *testing.T) {
	stacktest.GeneratedDoc(t, "docs/reference/cli.md", cliReference(), "the binary's help")
}
