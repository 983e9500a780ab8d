package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
	var reads <-chan batch = batches // nil once the watch failed
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			evs, err := readEvents(w.in, buf)
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
		case b := <-reads:
			for _, ev := range b.evs {
				w.handle(ctx, ev)
			}
			switch {
			case b.err == nil:
			case errors.Is(b.err, errOverflow):
				w.rescan(ctx, "event queue overflow")
			case errors.Is(b.err, unix.EINTR):
			default:
				// The reader has stopped. Rescans go on, so every file is
				// still found, a rescan period late at worst.
				if ctx.Err() == nil {
					w.a.log.Error("watch failed; only the periodic rescan finds new files now", "rescan", w.a.cfg.Rescan, "err", b.err)
					w.a.track.watchFailed(b.err)
				}
				reads = nil
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
				if ctx.Err() == nil {
					w.a.log.Warn("scan of new folder failed; the periodic rescan tries again", "folder", rel, "err", err)
					w.a.track.scanFailed(err)
				}
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
		if ctx.Err() == nil {
			w.a.log.Warn("rescan failed", "why", why, "err", err)
			w.a.track.scanFailed(err)
		}
		return
	}
	w.a.track.scanFailed(nil)
	w.a.log.Debug("rescanned", "why", why, "duration", time.Since(start))
}

// scanBatch is how many names of a folder the scan reads at a time. The
// walk holds at most this many names for each folder it is inside, never a
// whole folder's listing (a flat folder of a million originals would be
// about 100 MB of names), and takes them in the order the file system
// gives, unsorted. Together with the scheduler's bound (maxPending), which
// blocks the walk while it is full, this keeps the agent's memory flat
// however many files the folder holds.
const scanBatch = 512

// maxNamedUnreadable is how many unreadable folders a scan error names.
const maxNamedUnreadable = 10

// unreadableError is a scan that could not read some folders: the files in
// them were not looked at. The rest of the walk went on.
type unreadableError struct {
	folders []string // the first maxNamedUnreadable, relative
	n       int
	first   error
}

func (e *unreadableError) Error() string {
	more := ""
	if e.n > len(e.folders) {
		more = fmt.Sprintf(" and %d more", e.n-len(e.folders))
	}
	return fmt.Sprintf("could not read %d folders, their files were not looked at: %s%s (%v)",
		e.n, strings.Join(e.folders, ", "), more, e.first)
}

// scan walks the folder rel (relative to the watch folder), adds an
// inotify watch on every folder, and sends every non-folder as a
// candidate. It does not follow symlinks and skips dot-folders and ignored
// names. Sending blocks while the scheduler is full, which pauses the walk
// where it is. A folder it cannot read is skipped and named in the
// *unreadableError it returns after walking the rest.
func (w *watcher) scan(ctx context.Context, rel string) error {
	var bad unreadableError
	root := filepath.Join(w.a.cfg.Watch, filepath.FromSlash(rel))
	dir, err := openDir(unix.AT_FDCWD, root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // vanished before we looked
	}
	if err != nil {
		bad.add(rel, err)
	} else if err := w.walk(ctx, dir, root, rel, &bad); err != nil {
		return err
	}
	if bad.n > 0 {
		return &bad
	}
	return nil
}

func (e *unreadableError) add(rel string, err error) {
	if e.n == 0 {
		e.first = err
	}
	if len(e.folders) < maxNamedUnreadable {
		e.folders = append(e.folders, rel)
	}
	e.n++
}

// walk watches and reads the open folder dir (path, absolute; rel, relative
// to the watch folder), descending into each subfolder as it meets it, and
// closes it. Subfolders are opened relative to their parent and never
// through a symlink, so a folder swapped for a symlink mid-walk is not
// followed out of the watch folder.
func (w *watcher) walk(ctx context.Context, dir *os.File, path, rel string, bad *unreadableError) error {
	defer dir.Close()
	if w.in != nil {
		if err := w.in.add(path); err != nil {
			w.a.log.Warn("cannot watch folder; the periodic scan covers it", "folder", path, "err", err)
		}
	}
	for {
		ents, err := dir.ReadDir(scanBatch)
		for _, d := range ents {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r := d.Name()
			if rel != "." {
				r = rel + "/" + r
			}
			if !d.IsDir() {
				w.send(ctx, candidate{rel: r})
				continue
			}
			if ignored(r, w.a.cfg.Ignore) {
				continue
			}
			sub, err := openDir(int(dir.Fd()), d.Name())
			switch {
			case errors.Is(err, fs.ErrNotExist):
				continue // vanished while we walked
			case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
				w.send(ctx, candidate{rel: r}) // replaced by a file or a symlink: the scheduler looks
				continue
			case err != nil:
				w.a.log.Warn("scan: cannot read folder", "folder", r, "err", err)
				bad.add(r, err)
				continue
			}
			if err := w.walk(ctx, sub, filepath.Join(path, d.Name()), r, bad); err != nil {
				return err
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			w.a.log.Warn("scan: cannot read folder", "folder", rel, "err", err)
			bad.add(rel, err)
			return nil
		}
	}
}

// readEvents is inotify.read; tests swap it to make the watch fail.
var readEvents = (*inotify).read

// openat is unix.Openat; tests swap it to make a folder unreadable, which
// permissions cannot do for root.
var openat = unix.Openat

// openDir opens the folder name (relative to the folder at, or absolute)
// for reading, refusing a symlink.
func openDir(at int, name string) (*os.File, error) {
	for {
		fd, err := openat(at, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
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
