package agent

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// errNotFolder: where the agent walks through or creates one of its own
// folders (the claim folder and the folders under it, the upload records,
// the watch folder's subfolders it renames between, the archive's folders
// and its copy folder) stands a symlink or something other than a folder.
// The agent refuses to act through it: anyone who can write in the watch
// folder could otherwise redirect its renames and deletions (a claim folder
// made a symlink to the archive had the archive step delete the very file
// it had just claimed).
var errNotFolder = errors.New("not a folder, refused: the agent renames and deletes only inside real folders")

// folder is an open folder. Every name in it is acted on relative to it
// (openat, mkdirat, renameat, unlinkat), never by a path, and folders below
// it are opened one name at a time without following symlinks: a symlink
// planted on the way is refused, and one planted after a folder was opened
// redirects nothing (no check-then-act race on paths).
type folder struct {
	f    *os.File
	path string // for messages and the dirSyncer; never opened again by it here
}

// openFolder opens a folder the operator configured (the watch folder, the
// archive) by its path; a symlink in that path is the operator's own, and
// followed. What is below it is opened with sub.
func openFolder(path string) (*folder, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &folder{f: os.NewFile(uintptr(fd), path), path: path}, nil
}

func (d *folder) fd() int { return int(d.f.Fd()) }

// Close closes the folder.
func (d *folder) Close() error { return d.f.Close() }

// name is the path of name in d, for messages.
func (d *folder) name(name string) string { return filepath.Join(d.path, name) }

// sub opens the folder rel (slash-separated; "" or "." is d itself) below
// d, one name at a time with O_NOFOLLOW|O_DIRECTORY, so a symlink or a
// non-folder anywhere on the way is errNotFolder. With create, a missing
// folder is made with mode perm and fsynced into its parent at once, so a
// file renamed into it cannot vanish with it in a crash.
func (d *folder) sub(rel string, create bool, perm uint32) (*folder, error) {
	cur, curPath := d.fd(), d.path
	own := -1 // the descriptor sub opened last, closed when it moves on
	fail := func(err error) (*folder, error) {
		if own >= 0 {
			unix.Close(own)
		}
		return nil, err
	}
	for _, name := range strings.Split(rel, "/") {
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			return fail(fmt.Errorf("%s: %w (..)", filepath.Join(curPath, name), errNotFolder))
		}
		next, err := openDirAt(cur, name)
		if errors.Is(err, unix.ENOENT) && create {
			switch err = unix.Mkdirat(cur, name, perm); {
			case err == nil:
				if err := syncDirFD(cur, curPath); err != nil {
					return fail(&os.PathError{Op: "fsync", Path: curPath, Err: err})
				}
			case errors.Is(err, unix.EEXIST): // made meanwhile: opened below
			default:
				return fail(&os.PathError{Op: "mkdir", Path: filepath.Join(curPath, name), Err: err})
			}
			next, err = openDirAt(cur, name)
		}
		if err != nil {
			return fail(notFolder(cur, curPath, name, err))
		}
		if own >= 0 {
			unix.Close(own)
		}
		own, cur, curPath = next, next, filepath.Join(curPath, name)
	}
	if own < 0 {
		fd, err := unix.FcntlInt(uintptr(d.fd()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "dup", Path: d.path, Err: err}
		}
		own = fd
	}
	return &folder{f: os.NewFile(uintptr(own), curPath), path: curPath}, nil
}

func openDirAt(dir int, name string) (int, error) {
	return unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// notFolder turns the failure to open name in dir as a folder into an
// error that says what stands there: errNotFolder for a symlink (open
// answers ENOTDIR or ELOOP) or another kind of file.
func notFolder(dir int, dirPath, name string, err error) error {
	p := filepath.Join(dirPath, name)
	if !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	var st unix.Stat_t
	if serr := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s: a symlink: %w", p, errNotFolder)
	}
	return fmt.Errorf("%s: a %s: %w", p, kindOf(st.Mode), errNotFolder)
}

// kindOf names the kind of file a stat mode is, for messages.
func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	case unix.S_IFDIR:
		return "folder"
	}
	return "file of another kind"
}

// lstat returns the identity of name in d, not following a symlink.
func (d *folder) lstat(name string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileID{}, &os.PathError{Op: "lstat", Path: d.name(name), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileID{}, fmt.Errorf("%s: %w (a %s)", d.name(name), errNotRegular, kindOf(st.Mode))
	}
	return fileID{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size,
		mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), ctime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
	}, nil
}

// open opens the regular file name in d for reading, without following a
// symlink and without blocking on a FIFO; anything but a regular file is
// errNotRegular.
func (d *folder) open(name string) (*os.File, error) {
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s: %w (a symlink)", d.name(name), errNotRegular)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.name(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.name(name))
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%s)", d.name(name), errNotRegular, fi.Mode().Type())
	}
	return f, nil
}

// readFile returns the bytes of the regular file name in d.
func (d *folder) readFile(name string) ([]byte, error) {
	f, err := d.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// createTemp creates a new file in d named prefix and a random suffix,
// for writing, never through an existing name (O_EXCL|O_NOFOLLOW).
func (d *folder) createTemp(prefix string, perm uint32) (*os.File, string, error) {
	for range 100 {
		name := prefix + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := unix.Openat(d.fd(), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, "", &os.PathError{Op: "create", Path: d.name(name), Err: err}
		}
		return os.NewFile(uintptr(fd), d.name(name)), name, nil
	}
	return nil, "", &os.PathError{Op: "create", Path: d.name(prefix + "*"), Err: unix.EEXIST}
}

// remove unlinks name in d (a file, or the symlink itself, never its
// target).
func (d *folder) remove(name string) error {
	if err := unix.Unlinkat(d.fd(), name, 0); err != nil {
		return &os.PathError{Op: "remove", Path: d.name(name), Err: err}
	}
	return nil
}

// sync fsyncs the folder, making the names in it durable.
func (d *folder) sync() error {
	if err := syncDirFD(d.fd(), d.path); err != nil {
		return &os.PathError{Op: "fsync", Path: d.path, Err: err}
	}
	return nil
}

// renameNoReplace renames name in from to name in to, never replacing an
// existing file (EEXIST) and never following a symlink (rename acts on the
// names themselves).
func renameNoReplace(from *folder, fromName string, to *folder, toName string) error {
	if err := unix.Renameat2(from.fd(), fromName, to.fd(), toName, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: from.name(fromName), New: to.name(toName), Err: err}
	}
	return nil
}

// syncDirFD fsyncs an open folder; a variable so that a test can see which
// folders are synced (by path).
var syncDirFD = func(fd int, path string) error { return unix.Fsync(fd) }
