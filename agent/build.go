package agent

import (
	"runtime"
	"runtime/debug"
)

// Build says which build of the agent is running, as the Go toolchain
// stamped it into the binary: a build from a git checkout carries the
// module version (the tag it was built from, or a pseudo-version naming
// the commit) and the revision; "(devel)" and no revision otherwise.
type Build struct {
	Version   string // e.g. v1.2.0, or v0.0.0-20261206041500-2f6337e1b2c3, "+dirty" when modified
	Revision  string // the git commit, "" when unknown
	Modified  bool   // built from a checkout with uncommitted changes
	GoVersion string
}

// ReadBuild returns the running binary's Build.
func ReadBuild() Build {
	b := Build{Version: "(devel)", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if info.Main.Version != "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
