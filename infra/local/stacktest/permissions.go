package stacktest

import (
	"strings"
	"testing"
)

// PermissionCommands returns the three commands of docs/install.md that
// give the agent's group the watch and archive folders (chgrp/chmod, the
// setgid find, setfacl: what "offload-agent init" does for a packaged
// install), without sudo, for these folders and group (a name or a number).
func PermissionCommands(t testing.TB, watch, archive, group string) []string {
	t.Helper()
	section := DocSection(t, "docs/install.md", "Folder permissions without the package")
	var cmds []string
	for _, line := range strings.Split(section, "\n") {
		line = strings.TrimSpace(line)
		if !(strings.HasPrefix(line, "sudo chgrp -R offload /srv/www/static") ||
			strings.HasPrefix(line, "sudo find /srv/www/static") ||
			strings.HasPrefix(line, "sudo setfacl")) {
			continue
		}
		line = strings.ReplaceAll(line, "sudo ", "")
		line = strings.ReplaceAll(line, "/srv/www/static", watch)
		line = strings.ReplaceAll(line, "/srv/www/archive", archive)
		line = strings.ReplaceAll(line, "g:offload:", "g:"+group+":")
		line = strings.ReplaceAll(line, "chgrp -R offload", "chgrp -R "+group)
		cmds = append(cmds, line)
	}
	if len(cmds) != 3 {
		t.Fatalf("found %d of docs/install.md's 3 permission commands (chgrp/chmod, find/chmod g+s, setfacl): %q", len(cmds), cmds)
	}
	return cmds
}
