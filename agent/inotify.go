package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify watches folders (not recursively: the watcher adds each one).
// It is the kernel's interface with no layer in between because the agent
// needs one thing a portable library does not say: whether a name appeared
// by a rename into it (IN_MOVED_TO) rather than by a create. A back-end
// that writes to a temporary name and renames has published a finished
// file, which then need not wait out the quiet period.
type inotify struct {
	f *os.File // non-blocking, so Close wakes a blocked read
	// fd is f's descriptor for adding and removing watches, kept apart:
	// f.Fd() would race with a Close and put f in blocking mode.
	fd int

	mu     sync.Mutex
	closed bool             // fd must not be used any more
	paths  map[int32]string // watch descriptor → folder
	wds    map[string]int32
}

// fsEvent is one event about a name in a watched folder.
type fsEvent struct {
	path     string // absolute
	dir      bool   // the name is a folder
	movedIn  bool   // it appeared by rename (IN_MOVED_TO)
	movedOut bool   // it left by rename or was deleted
}

// errOverflow means the kernel dropped events: only a full scan is sure.
var errOverflow = errors.New("inotify event queue overflowed")

// watchMask: what changes a name or the bytes behind it. IN_CLOSE_WRITE is
// not a sign of a finished file (a writer may reopen it), only of a change.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_ATTRIB | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_DELETE_SELF |
	unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	return &inotify{
		f:     os.NewFile(uintptr(fd), "inotify"),
		fd:    fd,
		paths: map[int32]string{},
		wds:   map[string]int32{},
	}, nil
}

// add watches the folder dir. Adding a folder again (also under a new name
// after it was moved) only updates its name.
func (in *inotify) add(dir string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return os.ErrClosed
	}
	wd, err := unix.InotifyAddWatch(in.fd, dir, watchMask)
	if err != nil {
		return fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	if old, ok := in.paths[int32(wd)]; ok && old != dir {
		delete(in.wds, old)
	}
	in.paths[int32(wd)] = dir
	in.wds[dir] = int32(wd)
	return nil
}

// forget stops watching dir and every folder below it (it was moved away;
// if it was moved within the watch, the scan of its new name adds it back).
func (in *inotify) forget(dir string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	for p, wd := range in.wds {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			_, _ = unix.InotifyRmWatch(in.fd, uint32(wd))
			delete(in.wds, p)
			delete(in.paths, wd)
		}
	}
}

// read blocks for the next batch of events. It returns errOverflow when the
// kernel dropped some (the events before it are still returned), and
// os.ErrClosed once close was called.
func (in *inotify) read(buf []byte) ([]fsEvent, error) {
	n, err := in.f.Read(buf)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var evs []fsEvent
	var overflow error
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
		off += unix.SizeofInotifyEvent + int(raw.Len)
		mask := raw.Mask
		if mask&unix.IN_Q_OVERFLOW != 0 {
			overflow = errOverflow
			continue
		}
		dir, ok := in.paths[raw.Wd]
		if !ok {
			continue
		}
		if mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF) != 0 {
			delete(in.paths, raw.Wd)
			if in.wds[dir] == raw.Wd {
				delete(in.wds, dir)
			}
			continue
		}
		name := string(bytes.TrimRight(nameBytes, "\x00"))
		if name == "" {
			continue // an event about the folder itself
		}
		evs = append(evs, fsEvent{
			path:     filepath.Join(dir, name),
			dir:      mask&unix.IN_ISDIR != 0,
			movedIn:  mask&unix.IN_MOVED_TO != 0,
			movedOut: mask&(unix.IN_MOVED_FROM|unix.IN_DELETE) != 0,
		})
	}
	return evs, overflow
}

func (in *inotify) close() error {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
	return in.f.Close()
}
