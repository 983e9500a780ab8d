package agent

import (
	"testing"

	"golang.org/x/sys/unix"
)

// SimulateLeasesRefused makes the kernel refuse every read lease with
// errno, as it does with EACCES to an agent without CAP_LEASE on a file
// another user owns, or with EINVAL where leases are disabled
// (fs.leases-enable = 0), until the test ends. Not for parallel tests: it
// swaps the package's system call.
func SimulateLeasesRefused(t *testing.T, errno unix.Errno) {
	t.Helper()
	old := setLease
	setLease = func(fd, lease int) error {
		if lease == unix.F_UNLCK {
			return old(fd, lease)
		}
		return errno
	}
	t.Cleanup(func() { setLease = old })
}

// SimulateNoCapLease takes CAP_LEASE away from the agent, as far as its
// start-up check can tell, until the test ends. Not for parallel tests.
func SimulateNoCapLease(t *testing.T) {
	t.Helper()
	old := haveCapLease
	haveCapLease = func() bool { return false }
	t.Cleanup(func() { haveCapLease = old })
}
