package agent

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// SimulateNetworkFS makes the agent see every file as on NFS whose server
// refuses a lease to a client without a delegation (EAGAIN), as NFSv4, SMB
// and EFS do, until the test ends. Not for parallel tests: it swaps the
// package's system calls.
func SimulateNetworkFS(t *testing.T) {
	t.Helper()
	oldType, oldLease := fsTypeOf, setLease
	fsTypeOf = func(int) (int64, error) { return unix.NFS_SUPER_MAGIC, nil }
	setLease = func(int, int) error { return unix.EAGAIN }
	t.Cleanup(func() { fsTypeOf, setLease = oldType, oldLease })
}

// SetPendingLimit lowers the most files a's scheduler holds (maxPending),
// so a test can fill it with a few hundred files.
func SetPendingLimit(a *Agent, n int) { a.pendingLimit = n }

// PeakPending is the most files a's last Run or Once held at once.
func PeakPending(a *Agent) int { return int(a.peakPending.Load()) }

// SimulateUnreadableFolder makes every folder named name unreadable to the
// scan (EACCES), as permissions would for a non-root agent, until the test
// ends. Not for parallel tests.
func SimulateUnreadableFolder(t *testing.T, name string) {
	t.Helper()
	old := openat
	openat = func(dirfd int, path string, flags int, mode uint32) (int, error) {
		if filepath.Base(path) == name {
			return -1, unix.EACCES
		}
		return old(dirfd, path, flags, mode)
	}
	t.Cleanup(func() { openat = old })
}
