package agent

import (
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// leaseProbePrefix names the file the start-up check of leases makes in
// the watch folder: a dot-name, which the scan never looks at.
const leaseProbePrefix = ".offload-lease-probe-"

// checkLeases finds out at start whether the kernel grants this agent the
// read leases that tell whether a writer has a file open and guard the
// claim window (see holdLease), says so in one warning when it does not,
// and keeps the answer for status and metrics (leases_available). The
// kernel grants a lease on a file whose owner is the agent's user, or to
// a holder of CAP_LEASE (fcntl(2), F_SETLEASE: EACCES otherwise; EINVAL
// where leases are disabled or the file system has none). So the check is
// a lease on a file of the agent's own, and CAP_LEASE where the watch
// folder belongs to another user, whose files the agent cannot lease
// without it. On a network file system leases are not used at all (see
// sharedFS; its own warning says so).
func (a *Agent) checkLeases(shared bool) {
	if shared || a.cfg.DryRun {
		return // a dry run creates nothing, not even the probe
	}
	err := probeLeases(a.root)
	if err == nil {
		err = a.capLeaseFor()
	}
	if err != nil {
		a.log.Warn("read leases are not available: whether a writer still has a file open cannot be checked, so every file, renamed ones too, waits for the quiet period, and a writer that opens a file just as it is claimed is not seen (give the agent CAP_LEASE, as the systemd unit does)",
			"err", err, "watch", a.cfg.Watch)
		return
	}
	a.leasesOK.Store(true)
}

// probeLeases takes a read lease on a file of the agent's own in the
// watch folder, and drops it.
func probeLeases(root *os.Root) error {
	name := fmt.Sprintf("%s%d-%x", leaseProbePrefix, os.Getpid(), rand.Uint64())
	w, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("lease probe: %w", err)
	}
	defer root.Remove(name)
	w.Close() // a read lease needs no writer, the agent included
	f, err := root.Open(name)
	if err != nil {
		return fmt.Errorf("lease probe: %w", err)
	}
	defer f.Close()
	if err := setLease(int(f.Fd()), unix.F_RDLCK); err != nil {
		return fmt.Errorf("F_SETLEASE on a file of the agent's own in the watch folder: %w", err)
	}
	return setLease(int(f.Fd()), unix.F_UNLCK)
}

// capLeaseFor says why the agent gets no lease on the files of the watch
// folder's owner, if that is another user and the agent lacks CAP_LEASE.
func (a *Agent) capLeaseFor() error {
	fi, err := a.root.Stat(".")
	if err != nil {
		return nil // the scan will say
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() || haveCapLease() {
		return nil
	}
	return fmt.Errorf("no CAP_LEASE, and the watch folder belongs to uid %d, not to the agent's uid %d: the kernel leases only the files the agent's user owns", st.Uid, os.Geteuid())
}

// haveCapLease reports whether the agent holds CAP_LEASE (capget(2));
// a variable so that a test can take it away. If it cannot tell, it says
// yes: the probe on a real file is what counts, and a warning should not
// cry wolf.
var haveCapLease = func() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return true
	}
	return data[unix.CAP_LEASE/32].Effective&(1<<(unix.CAP_LEASE%32)) != 0
}
