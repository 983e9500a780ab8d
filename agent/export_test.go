package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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

// SimulateWatchFailure makes every inotify read fail with EIO until the
// test ends. Not for parallel tests.
func SimulateWatchFailure(t *testing.T) {
	t.Helper()
	old := readEvents
	readEvents = func(*inotify, []byte) ([]fsEvent, error) { return nil, unix.EIO }
	t.Cleanup(func() { readEvents = old })
}

// SimulateWriterAtClaim plays a writer that opens the first file the agent
// claims for writing at the worst moment, just before the claim (after the
// last check), and appends data: at once if the open is refused because the
// agent holds a lease (the open broke it; the writer then waits for it, as
// a blocking open does), else once the agent's local step is over: when it
// has unlinked the file (the test runs with --after delete), or after 30 s.
// The writer holds the file by inode from before the claim, as a process
// whose open had begun would. Its error, nil once data is written, arrives
// on the channel. Not for parallel tests.
func SimulateWriterAtClaim(t *testing.T, data []byte) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	var once sync.Once
	old := beforeClaim
	beforeClaim = func(path string) {
		once.Do(func() {
			pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				done <- err
				return
			}
			byInode := fmt.Sprintf("/proc/self/fd/%d", pfd)
			write := func(f *os.File) {
				_, err := f.Write(data)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				unix.Close(pfd)
				done <- err
			}
			f, err := os.OpenFile(byInode, os.O_WRONLY|os.O_APPEND|unix.O_NONBLOCK, 0)
			switch {
			case errors.Is(err, unix.EWOULDBLOCK):
				go func() {
					f, err := os.OpenFile(byInode, os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						done <- err
						return
					}
					write(f)
				}()
			case err != nil:
				done <- err
			default:
				go func() {
					var st unix.Stat_t
					for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
						if unix.Fstat(pfd, &st) != nil || st.Nlink == 0 {
							break
						}
					}
					write(f)
				}()
			}
		})
	}
	t.Cleanup(func() { beforeClaim = old })
	return done
}

// SimulateChangeBeforePruneUnlink calls change with each file's path after
// prune checked it and just before its last look and unlink, until the
// test ends. Not for parallel tests.
func SimulateChangeBeforePruneUnlink(t *testing.T, change func(path string)) {
	t.Helper()
	old := beforePruneUnlink
	beforePruneUnlink = change
	t.Cleanup(func() { beforePruneUnlink = old })
}

// SimulateChangeBeforeForgetUnlink makes the erasure poller call change
// with a file's path after it judged the file the erased original and
// just before its last look and the unlink, until the test ends. Not for
// parallel tests.
func SimulateChangeBeforeForgetUnlink(t *testing.T, change func(path string)) {
	t.Helper()
	old := beforeForgetUnlink
	beforeForgetUnlink = change
	t.Cleanup(func() { beforeForgetUnlink = old })
}

// PlantUploadRecord saves host's upload record of key in the watch
// folder for the file rel there as it is now, as a multipart upload in
// progress leaves it (the sweep keeps it while the file is unchanged).
func PlantUploadRecord(t *testing.T, watch, host, key, rel string) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(watch, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := idOf(fi)
	rec := uploadRecord{Key: key, UploadID: "planted", Host: host, Dev: id.dev, Ino: id.ino, Size: id.size, Mtime: id.mtime, PartSize: 5 << 20}
	if err := newResumeRecords(watch, host).save(rec); err != nil {
		t.Fatal(err)
	}
}

// HasUploadRecord reports whether host has an upload record of key in the
// watch folder.
func HasUploadRecord(watch, host, key string) bool {
	_, ok := newResumeRecords(watch, host).load(key)
	return ok
}

// SetEraserClock replaces the eraser's own clock, which it reads only when
// S3's answer has no Date.
func SetEraserClock(e *Eraser, now func() time.Time) { e.now = now }

// RefreshErasuresBeforeEveryUpload makes cfg's agent query the erasures
// index before every upload, instead of at most once per erasedFreshness.
func RefreshErasuresBeforeEveryUpload(cfg Config) Config {
	cfg.erasedFreshness = -1
	return cfg
}
