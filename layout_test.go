package offload_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentAndResolverShareOnlyTheRoot: the design's layout rule (see
// docs/architecture.md): what the agent and the resolver share lives in the
// root package, and no package of agent/ imports lambda/ or the reverse.
func TestAgentAndResolverShareOnlyTheRoot(t *testing.T) {
	const module = "github.com/photosleeve/offload/"
	for _, c := range []struct{ from, forbidden string }{
		{"./agent/...", module + "lambda"},
		{"./lambda/...", module + "agent"},
	} {
		out, err := exec.Command("go", "list", "-deps", c.from).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", c.from, err)
		}
		for _, pkg := range strings.Fields(string(out)) {
			if pkg == c.forbidden || strings.HasPrefix(pkg, c.forbidden+"/") {
				t.Errorf("%s depends on %s", c.from, pkg)
			}
		}
	}
}
