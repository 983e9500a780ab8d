package agent

import (
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
