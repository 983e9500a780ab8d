package agent

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// candidate is a name (relative, slash-separated) the scheduler should look
// at. It is only a hint; the scheduler looks at the file itself.
type candidate struct {
	rel     string
	movedIn bool // it just appeared under this name by a rename
}

// watcher feeds the scheduler with candidates: from inotify events, from a
// full scan at start, after an event-queue overflow and every Rescan.
type watcher struct {
	a      *Agent
	in     *inotify // nil in once mode
	out    chan<- candidate
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWatcher starts the watcher. The first full scan's end is reported on
// scanned. In once mode there is only that scan.
func (a *Agent) startWatcher(ctx context.Context, out chan<- candidate, scanned chan<- error, once bool) (*watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{a: a, out: out, cancel: cancel}
	if !once {
		in, err := newInotify()
		if err != nil {
			cancel()
			return nil, err
		}
		w.in = in
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		// Watches first, then the scan: a file created in between is seen
		// by both, never by neither.
		err := w.scan(ctx, ".")
		scanned <- err
		if w.in == nil {
			return
		}
		if err == nil {
			w.a.log.Debug("watching", "folder", w.a.cfg.Watch)
		}
		w.events(ctx)
	}()
	return w, nil
}

func (w *watcher) close() {
	w.cancel()
	if w.in != nil {
		w.in.close()
	}
	w.wg.Wait()
}

// events handles inotify events until ctx ends, with periodic rescans.
// The reads happen on their own goroutine so that a rescan is never
// delayed by a quiet folder.
func (w *watcher) events(ctx context.Context) {
	type batch struct {
		evs []fsEvent
		err error
	}
	batches := make(chan batch)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			evs, err := w.in.read(buf)
			select {
			case batches <- batch{evs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !errors.Is(err, errOverflow) && !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	rescan := time.NewTicker(w.a.cfg.Rescan)
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescan.C:
			w.rescan(ctx, "periodic")
		case b := <-batches:
			for _, ev := range b.evs {
				w.handle(ctx, ev)
			}
			switch {
			case b.err == nil:
			case errors.Is(b.err, errOverflow):
				w.rescan(ctx, "event queue overflow")
			case errors.Is(b.err, unix.EINTR):
			default:
				if ctx.Err() == nil {
					w.a.log.Error("watch failed; only the periodic scan finds new files now", "err", b.err)
				}
				return
			}
		}
	}
}

// handle turns one event into candidates. A folder that appears (created or
// moved in) is watched and scanned: files may have landed in it before the
// watch existed. A folder moved away is no longer watched.
func (w *watcher) handle(ctx context.Context, ev fsEvent) {
	rel, ok := w.rel(ev.path)
	if !ok {
		return
	}
	if ev.dir {
		switch {
		case ev.movedOut:
			w.in.forget(ev.path)
		case ignored(rel, w.a.cfg.Ignore):
		default:
			if err := w.scan(ctx, rel); err != nil {
				w.a.log.Warn("scan of new folder failed", "folder", rel, "err", err)
			} else {
				w.a.log.Debug("watching new folder", "folder", rel)
			}
		}
		return
	}
	w.send(ctx, candidate{rel: rel, movedIn: ev.movedIn})
}

func (w *watcher) rescan(ctx context.Context, why string) {
	start := time.Now()
	if err := w.scan(ctx, "."); err != nil {
		w.a.log.Warn("rescan failed", "why", why, "err", err)
		return
	}
	w.a.log.Debug("rescanned", "why", why, "duration", time.Since(start))
}

// scan walks the folder rel (relative to the watch folder), adds an
// inotify watch on every folder, and sends every non-folder as a
// candidate. It does not follow symlinks and skips dot-folders.
func (w *watcher) scan(ctx context.Context, rel string) error {
	root := filepath.Join(w.a.cfg.Watch, filepath.FromSlash(rel))
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // vanished while we walked
			}
			w.a.log.Warn("scan: cannot read", "path", p, "err", err)
			return nil
		}
		r, ok := w.rel(p)
		if d.IsDir() {
			if ok && ignored(r, w.a.cfg.Ignore) {
				return filepath.SkipDir
			}
			if w.in != nil {
				if err := w.in.add(p); err != nil {
					w.a.log.Warn("cannot watch folder; the periodic scan covers it", "folder", p, "err", err)
				}
			}
			return nil
		}
		if ok {
			w.send(ctx, candidate{rel: r})
		}
		return nil
	})
}

// rel turns an absolute path under the watch folder into a candidate name.
func (w *watcher) rel(p string) (string, bool) {
	r, err := filepath.Rel(w.a.cfg.Watch, p)
	if err != nil || r == "." || r == ".." || strings.HasPrefix(r, "../") {
		return "", false
	}
	return filepath.ToSlash(r), true
}

func (w *watcher) send(ctx context.Context, c candidate) {
	select {
	case w.out <- c:
	case <-ctx.Done():
	}
}
