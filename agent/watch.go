package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher feeds the scheduler with candidate paths (relative, slash-separated):
// from fsnotify events, from a full scan at start, after an event-queue
// overflow and every Rescan. A candidate is only a hint; the scheduler
// looks at the file itself.
type watcher struct {
	a      *Agent
	fsw    *fsnotify.Watcher // nil in once mode
	out    chan<- string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWatcher starts the watcher. The first full scan's end is reported on
// scanned. In once mode there is only that scan.
func (a *Agent) startWatcher(ctx context.Context, out chan<- string, scanned chan<- error, once bool) (*watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{a: a, out: out, cancel: cancel}
	if !once {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			cancel()
			return nil, err
		}
		w.fsw = fsw
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		// Watches first, then the scan: a file created in between is seen
		// by both, never by neither.
		scanned <- w.scan(ctx, ".")
		if w.fsw == nil {
			return
		}
		w.events(ctx)
	}()
	return w, nil
}

func (w *watcher) close() {
	w.cancel()
	if w.fsw != nil {
		w.fsw.Close()
	}
	w.wg.Wait()
}

// events handles fsnotify events until ctx ends, with periodic rescans.
func (w *watcher) events(ctx context.Context) {
	rescan := time.NewTicker(w.a.cfg.Rescan)
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescan.C:
			w.rescan(ctx, "periodic")
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.rescan(ctx, "event queue overflow")
			} else {
				w.a.log.Warn("watch error", "err", err)
			}
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			rel, ok := w.rel(ev.Name)
			if !ok {
				continue
			}
			if ev.Has(fsnotify.Create) {
				// A new folder (or one moved in) is watched and scanned:
				// files may have landed in it before the watch existed.
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					if err := w.scan(ctx, rel); err != nil {
						w.a.log.Warn("scan of new folder failed", "folder", rel, "err", err)
					}
					continue
				}
			}
			w.send(ctx, rel)
		}
	}
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
// fsnotify watch on every folder, and sends every non-folder as a
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
			if w.fsw != nil {
				if err := w.fsw.Add(p); err != nil {
					w.a.log.Warn("cannot watch folder; the periodic scan covers it", "folder", p, "err", err)
				}
			}
			return nil
		}
		if ok {
			w.send(ctx, r)
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

func (w *watcher) send(ctx context.Context, rel string) {
	select {
	case w.out <- rel:
	case <-ctx.Done():
	}
}
