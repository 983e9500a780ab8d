package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// Numeric ids for the test's users: the back-end, the agent, and the
// group docs/install.md calls offload. No accounts are needed for them.
const (
	backendUID = 30001
	agentUID   = 30002
	offloadGID = 30003
	backendGID = 30004
)

// as runs a shell command as uid with the given groups (umask 022 unless
// the script sets its own).
func as(uid, gid int, groups []uint32, script string) error {
	cmd := exec.Command("sh", "-c", "umask 022; "+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// TestDocumentedPermissionsCoverNewFolders: after docs/install.md's commands, a
// folder the back-end creates later with its own umask (022) still lets
// the agent's group claim and archive the files in it; so does the
// docs/install.md's alternative, setgid and a back-end umask of 002. With the
// one-time chgrp and chmod alone it does not: the case the other lines are
// there for.
func TestDocumentedPermissionsCoverNewFolders(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatal("this test switches users and needs root")
		}
		t.Skip("switches users: needs root")
	}
	if _, err := exec.LookPath("setfacl"); err != nil {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatal("setfacl missing: the stack installs the acl package (infra/local/stack)")
		}
		t.Skip("setfacl missing (package acl)")
	}
	for _, tc := range []struct {
		name    string
		cmds    int    // how many of docs/install.md's commands run
		umask   string // the back-end's
		agentOK bool
	}{
		{"documented commands", 3, "022", true},
		{"setgid and a back-end umask of 002, no ACL", 2, "002", true},
		{"chgrp and chmod alone", 1, "022", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := os.MkdirTemp("", "offload-perm-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(base)
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			watch, archive := filepath.Join(base, "static"), filepath.Join(base, "archive")
			for _, d := range []string{watch, archive} {
				if err := os.Mkdir(d, 0o775); err != nil {
					t.Fatal(err)
				}
				// The back-end owns the web root, as on a real host.
				if err := os.Chown(d, backendUID, backendGID); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range stacktest.PermissionCommands(t, watch, archive, strconv.Itoa(offloadGID))[:tc.cmds] {
				if out, err := exec.Command("sh", "-c", c).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", c, err, out)
				}
			}
			// Later, the back-end makes a folder for the day and writes into it.
			if err := as(backendUID, backendGID, nil, fmt.Sprintf("umask %s; mkdir %s/2026-12 && echo photo > %s/2026-12/a.jpg", tc.umask, watch, watch)); err != nil {
				t.Fatalf("the back-end: %v", err)
			}
			// The agent claims the file and archives it, as finishLocal does.
			err = as(agentUID, offloadGID, []uint32{offloadGID}, fmt.Sprintf(
				"mkdir -p %[1]s/.offload-claim/2026-12 && mv %[1]s/2026-12/a.jpg %[1]s/.offload-claim/2026-12/a.jpg && mkdir -p %[2]s/2026-12 && mv %[1]s/.offload-claim/2026-12/a.jpg %[2]s/2026-12/a.jpg",
				watch, archive))
			switch {
			case tc.agentOK && err != nil:
				t.Errorf("the agent cannot archive from a folder the back-end made later: %v", err)
			case !tc.agentOK && err == nil:
				t.Error("the agent archived from a folder made later without setgid and the ACL: the documented extra lines would not be needed")
			}
		})
	}
}
