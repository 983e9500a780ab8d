package agent

import (
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// dirSyncInterval is how long a same-file-system rename may wait for the
// fsync of its folders. A folder fsync makes every rename in it so far
// durable, so syncing each touched folder once per interval replaces three
// fsyncs per file (the source, claim and archive folders) with three per
// interval: with 2,000 small files in one folder, the fsyncs took about a
// fifth of the run (BENCHMARKS.md).
const dirSyncInterval = 100 * time.Millisecond

// dirSyncer fsyncs folders in groups. Safety never waits for it: a rename
// that a crash loses puts the file back under its name (or in the claim
// folder, which the next start empties), and the pipeline, being
// idempotent, finishes it again. Where a later step depends on durability
// (a copy across file systems before its source is unlinked) the folder is
// synced at once instead (copyAcross).
type dirSyncer struct {
	log  *slog.Logger
	mu   sync.Mutex
	dirs map[string]bool
}

func newDirSyncer(log *slog.Logger) *dirSyncer {
	return &dirSyncer{log: log, dirs: map[string]bool{}}
}

// later queues folders for the next flush.
func (s *dirSyncer) later(dirs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range dirs {
		s.dirs[d] = true
	}
}

// flush fsyncs every queued folder. A failure is logged, not retried: a
// folder that cannot be opened would otherwise log every interval, and
// nothing depends on it (see dirSyncer); the next rename there queues it
// again. A folder that vanished is dropped quietly.
func (s *dirSyncer) flush() {
	s.mu.Lock()
	dirs := s.dirs
	s.dirs = map[string]bool{}
	s.mu.Unlock()
	for d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("fsync of folder failed", "folder", d, "err", err)
		}
	}
}

// run flushes every dirSyncInterval until stop is closed, then once more.
func (s *dirSyncer) run(stop <-chan struct{}) {
	t := time.NewTicker(dirSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.flush()
		case <-stop:
			s.flush()
			return
		}
	}
}
