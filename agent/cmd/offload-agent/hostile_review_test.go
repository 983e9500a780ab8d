package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// A local user who can write in the watch folder (the web back-end's user,
// a member of group offload) plants a symbolic link where doctor, as root,
// makes its "foreign" file for the lease check: doctor must neither
// truncate nor chown the file the link points to.
func TestDoctorForeignFileFollowsNoPlantedLink(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
	watch := t.TempDir()
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("secret"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(victim, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// The name doctor used: predictable from its process id.
	link := filepath.Join(watch, ".offload-doctor-foreign-"+strconv.Itoa(os.Getpid()))
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	// A cancelled context: the child is never started; the foreign file is
	// made before it would be.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	folderChecks(ctx, "nobody", watch, "")

	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(victim, &st); err != nil {
		t.Fatal(err)
	}
	if string(b) != "secret" || st.Uid != 65534 {
		t.Fatalf("doctor followed a planted link: the file it points to now holds %q, owner uid %d (want %q, uid 65534)", b, st.Uid, "secret")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the planted link: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(watch, ".offload-doctor-foreign-*"))
	if len(left) != 1 {
		t.Errorf("doctor left files behind in the watch folder: %v", left)
	}
}
