package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestArchiveSyncsTheFoldersItCreates: a file archived to a path whose
// folders do not exist yet: each new folder is fsynced into its parent
// before the call returns, so a crash after the source is gone cannot lose
// the folder the archived copy is in.
func TestArchiveSyncsTheFoldersItCreates(t *testing.T) {
	var synced []string
	old := syncDirFD
	syncDirFD = func(fd int, dir string) error { synced = append(synced, dir); return old(fd, dir) }
	defer func() { syncDirFD = old }()
	watch, archive := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(watch, "claimed.jpg"), "photo")
	if err := archiveFile(openTestFolder(t, watch), "claimed.jpg", archive, "2026/11/30/photo.jpg", syncNow); err != nil {
		t.Fatal(err)
	}
	for _, parent := range []string{archive, filepath.Join(archive, "2026"), filepath.Join(archive, "2026/11")} {
		if !slices.Contains(synced, parent) {
			t.Errorf("%s not fsynced after a folder was created in it (synced: %v)", parent, synced)
		}
	}
}

// TestCopiesACrashLeftAreRemovedAtStart: a copy across file systems is
// written in the archive's .offload-copy folder, never beside the archived
// file, and what a crash left there is removed when the agent starts.
func TestCopiesACrashLeftAreRemovedAtStart(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "offload-archive-")
	if err != nil {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatalf("no /dev/shm to archive across file systems: %v", err)
		}
		t.Skipf("no /dev/shm to archive across file systems: %v", err)
	}
	defer os.RemoveAll(shm)
	watch := t.TempDir()
	writeFile(t, filepath.Join(watch, "claimed.jpg"), "photo")
	if err := archiveFile(openTestFolder(t, watch), "claimed.jpg", shm, "a/photo.jpg", syncNow); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(shm, copyDir)); len(left) != 0 {
		t.Errorf("copies left after a finished archive: %v", left)
	}
	if beside, _ := os.ReadDir(filepath.Join(shm, "a")); len(beside) != 1 {
		t.Errorf("the archived file's folder holds %d names; want only the file", len(beside))
	}

	// What a run killed mid-copy leaves.
	writeFile(t, filepath.Join(shm, copyDir, "copy-123456"), "half a photo")
	n, err := removeCopies(shm)
	if err != nil || n != 1 {
		t.Fatalf("removeCopies = %d, %v; want 1", n, err)
	}
	if left, _ := os.ReadDir(filepath.Join(shm, copyDir)); len(left) != 0 {
		t.Errorf("left after removeCopies: %v", left)
	}
}

// openTestFolder opens dir as a folder, closed when the test ends.
func openTestFolder(t *testing.T, dir string) *folder {
	t.Helper()
	d, err := openFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestSendTimeoutCoversAPartBeyondTheBudget: under --bwlimit the call
// timeout covers the memory budget in flight; a part larger than the
// budget (a file beyond 10,000 budget-sized parts) goes alone and gets the
// time it needs at the limit on top, so it is not cut off every time.
func TestSendTimeoutCoversAPartBeyondTheBudget(t *testing.T) {
	s := newS3Store(nil, "b", 8<<20, 8, 2*time.Minute) // budget 64 MiB
	if got := s.sendTimeout(1 << 30); got != 2*time.Minute {
		t.Errorf("no limit: %s; want the call timeout", got)
	}
	s.bandwidth = newBandwidth(1 << 20) // 1 MiB/s
	if got := s.sendTimeout(8 << 20); got != 2*time.Minute {
		t.Errorf("a part within the budget: %s; want the call timeout", got)
	}
	if got, want := s.sendTimeout(100<<20), 2*time.Minute+100*time.Second; got != want {
		t.Errorf("a 100 MiB part at 1 MiB/s: %s; want %s", got, want)
	}
}
