package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/photosleeve/offload/agent"
)

// TestVersionNamesTheBuild: the binary, built from this checkout, says
// which commit it is with "version" and "--version" alike, and exits 0.
// -buildvcs=true as make build has it: GOFLAGS=-buildvcs=false (set on
// these machines) leaves a binary without its version.
func TestVersionNamesTheBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "offload-agent")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (git rev-parse HEAD: %v): the build carries no revision to compare", err)
	}
	var lines []string
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("offload-agent %s: %v", arg, err)
		}
		lines = append(lines, strings.TrimSpace(string(out)))
	}
	if lines[0] != lines[1] {
		t.Errorf("version says %q, --version %q; want the same", lines[0], lines[1])
	}
	rev := strings.TrimSpace(string(head))
	if !strings.HasPrefix(lines[0], "offload-agent v") || !strings.Contains(lines[0], "revision "+rev) || !strings.Contains(lines[0], runtime.Version()) {
		t.Errorf("version = %q; want offload-agent vX.Y.Z… (revision %s…, %s)", lines[0], rev, runtime.Version())
	}
}

func TestVersionLine(t *testing.T) {
	for _, tt := range []struct {
		b    agent.Build
		want string
	}{
		{agent.Build{Version: "v1.2.0", Revision: "abc", GoVersion: "go1.26"}, "offload-agent v1.2.0 (revision abc, go1.26)"},
		{agent.Build{Version: "v0.0.0-20261206-abc+dirty", Revision: "abc", Modified: true, GoVersion: "go1.26"}, "offload-agent v0.0.0-20261206-abc+dirty (revision abc, modified, go1.26)"},
		{agent.Build{Version: "(devel)", GoVersion: "go1.26"}, "offload-agent (devel) (revision unknown, go1.26)"},
	} {
		if got := versionLine(tt.b); got != tt.want {
			t.Errorf("versionLine(%+v) = %q; want %q", tt.b, got, tt.want)
		}
	}
}
