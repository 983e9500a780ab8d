package setup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fix is what one entry of a shared folder needs.
type fix struct {
	path    string
	chgrp   bool
	mode    uint32 // the mode to set, 0 if it is right
	acl     acl    // the default ACL to set, nil if it is right
	oldMode uint32
	// dev and ino are the entry the plan saw: applyFixes changes that
	// inode only, never what a name leads to later.
	dev uint64
	ino uint64
}

// sharedMode is the mode docs/install.md's "chmod -R g+rwX" and, on folders,
// "chmod g+s" leave: group read and write, group execute on folders and on
// files someone may execute, setgid on folders.
func sharedMode(mode uint32, dir bool) uint32 {
	m := mode | 0o060
	if dir || mode&0o111 != 0 {
		m |= 0o010
	}
	if dir {
		m |= syscall.S_ISGID
	}
	return m
}

// sharedFolder gives the agent's group what docs/install.md's commands
// give it, on the folder and everything in it: "chgrp -R GROUP",
// "chmod -R g+rwX", "chmod g+s" on every folder and "setfacl -R -d -m
// g:GROUP:rwX", so a folder the back-end makes later (umask 022) inherits
// the group (setgid) and gives it rwx (the default ACL), and the agent can
// move files out of it. A missing folder is made root:GROUP 2775 (as
// mkdir -p and those commands leave it). Symbolic links are neither
// followed nor changed, as chgrp -R does not traverse them.
func (p *planner) sharedFolder(rel, what string) item {
	path := p.at(rel)
	gid := p.id.gid
	it := item{path: path}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		it.created = true
		it.detail = fmt.Sprintf("%s folder, 2775 root:%s, setgid, default ACL g:%s:rwX", what, p.c.User, p.c.User)
		it.apply = func() error {
			if err := mkdirParents(filepath.Dir(path)); err != nil {
				return err
			}
			if err := os.Mkdir(path, 0o755); err != nil {
				return err
			}
			if err := chmodDir(path, 0o755); err != nil { // whatever the umask, as under 022
				return err
			}
			fixes, err := p.folderFixes(path)
			if err != nil {
				return err
			}
			return applyFixes(path, fixes, gid)
		}
		return it
	case err != nil:
		return p.fail(err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return p.fail(fmt.Errorf("%s folder %s is a symbolic link: pass the folder it points to", what, path))
	case !fi.IsDir():
		return p.fail(fmt.Errorf("%s folder %s is not a folder", what, path))
	}
	linked := len(p.linked)
	fixes, err := p.folderFixes(path)
	if err != nil {
		return p.fail(err)
	}
	note := ""
	if n := p.linked[linked:]; len(n) > 0 {
		note = fmt.Sprintf("; %s with more than one hard link left alone (a link may lead outside the folder: fix them by hand if they are the back-end's), e.g. %s", plural(len(n), "file", "files"), n[0])
	}
	var entries, nGrp, nMode, nACL int
	filepath.WalkDir(path, func(string, fs.DirEntry, error) error { entries++; return nil })
	for _, f := range fixes {
		if f.chgrp {
			nGrp++
		}
		if f.mode != 0 {
			nMode++
		}
		if f.acl != nil {
			nACL++
		}
	}
	want := fmt.Sprintf("group %s, g+rwX, setgid folders, default ACL g:%s:rwX", p.c.User, p.c.User)
	if len(fixes) == 0 {
		it.detail = fmt.Sprintf("%s folder: %s; %s%s", what, want, plural(entries, "entry", "entries"), note)
		return it
	}
	it.changed = true
	it.detail = fmt.Sprintf("%s folder: %s; %d of %d entries fixed (group %d, mode %d, default ACL %d)%s", what, want, len(fixes), entries, nGrp, nMode, nACL, note)
	it.apply = func() error { return applyFixes(path, fixes, gid) }
	return it
}

// folderFixes walks a shared folder and lists each entry that differs.
func (p *planner) folderFixes(root string) ([]fix, error) {
	var fixes []fix
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		dir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
		if !dir && st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return nil // sockets, fifos, devices: not the agent's
		}
		if !dir && st.Nlink > 1 {
			// A second name may be outside the folder: a local user may
			// link a file they can read and write but do not own
			// (fs.protected_hardlinks=1), any file under 0. Giving it to
			// the group would give that file away; it is left alone.
			p.linked = append(p.linked, path)
			return nil
		}
		f := fix{path: path, chgrp: st.Gid != p.id.gid, oldMode: st.Mode & 0o7777, dev: st.Dev, ino: st.Ino}
		mode := sharedMode(st.Mode&0o7777, dir)
		if mode != st.Mode&0o7777 {
			f.mode = mode
		}
		if dir {
			have, want, err := wantDefaultACL(path, mode, p.id.gid)
			if err != nil {
				return err
			}
			if !have.equal(want) {
				f.acl = want
			}
		}
		if f.chgrp || f.mode != 0 || f.acl != nil {
			fixes = append(fixes, f)
		}
		return nil
	})
	return fixes, err
}

// applyFixes does, per entry, what docs/install.md's commands do in their
// order: the group, then the mode (chown would clear a setgid bit set
// before it on a file), then the default ACL.
//
// Other users write in these folders (the back-end's user, and anyone in
// the group once it is fixed), and init runs as root: between the walk
// that planned the fixes and this, an entry, or a folder on its way, may
// have been swapped for a symbolic link to a file outside (/etc/shadow).
// So each entry is opened from root one component at a time with
// O_NOFOLLOW (O_PATH: no side effect of opening a device or a fifo),
// changed only if it is still the inode the plan saw, and changed through
// its descriptor, never by name. An entry that is gone or is no longer
// that inode is left alone (a second run sees what is there now).
func applyFixes(root string, fixes []fix, gid uint32) error {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	for _, f := range fixes {
		rel, err := filepath.Rel(root, f.path)
		if err != nil {
			return err
		}
		fd, err := openBeneath(rootFD, rel)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				continue // gone, or a link now: not what was planned
			}
			return fmt.Errorf("open %s: %w", f.path, err)
		}
		err = applyFix(fd, f, gid)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// applyFix changes the entry open as fd (O_PATH) if it is still f's inode.
func applyFix(fd int, f fix, gid uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", f.path, err)
	}
	if st.Dev != f.dev || st.Ino != f.ino {
		return nil // replaced since the plan: leave it
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG || t == unix.S_IFREG && st.Nlink > 1 {
		return nil // a second link may be outside (see folderFixes)
	}
	// chmod and setxattr take no O_PATH descriptor: its /proc/self/fd
	// name, a magic link to this very inode, not a path looked up again.
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	if f.chgrp {
		if err := unix.Fchownat(fd, "", -1, int(gid), unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chgrp %s: %w", f.path, err)
		}
	}
	if f.mode != 0 {
		if err := syscall.Chmod(proc, f.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", f.path, err)
		}
	}
	if f.acl != nil {
		if err := writeDefaultACL(proc, f.acl); err != nil {
			return fmt.Errorf("%s: %w", f.path, err)
		}
	}
	return nil
}

// chmodDir sets a folder's mode through a descriptor opened with
// O_NOFOLLOW: a link put at its name (its parent may be another user's)
// is refused, not followed.
func chmodDir(path string, mode uint32) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: not a folder (a symbolic link?): %w", path, err)
	}
	defer unix.Close(fd)
	return syscall.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// openBeneath opens rel under the folder open as dirFD, one component at a
// time, following no symbolic link on the way or at the end.
func openBeneath(dirFD int, rel string) (int, error) {
	fd, err := unix.Openat(dirFD, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil || rel == "." {
		return fd, err
	}
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= unix.O_DIRECTORY
		}
		next, err := unix.Openat(fd, name, flags, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// cacheFolder is the hot cache's folder as the unit's CacheDirectory=
// makes it: owned by the agent's user and group, 0755 so the web server
// reads it. systemd would chown it to the unit's User= and Group= at
// start anyway; init makes it now because the web server's configuration
// will not start without it.
func (p *planner) cacheFolder() item {
	path := p.at(p.c.CacheDir)
	it := item{path: path}
	owner := fmt.Sprintf("%s:%s", p.c.User, p.c.User)
	var st syscall.Stat_t
	err := syscall.Lstat(path, &st)
	switch {
	case errors.Is(err, syscall.ENOENT):
		it.created = true
		it.detail = "hot cache folder, 0755 " + owner
	case err != nil:
		return p.fail(fmt.Errorf("%s: %w", path, err))
	case st.Mode&syscall.S_IFMT != syscall.S_IFDIR:
		return p.fail(fmt.Errorf("cache folder %s is not a folder", path))
	default:
		var what []string
		if st.Uid != p.id.uid || st.Gid != p.id.gid {
			what = append(what, fmt.Sprintf("owner %d:%d -> %s", st.Uid, st.Gid, owner))
		}
		if m := st.Mode & 0o7777; m|0o755 != m {
			what = append(what, fmt.Sprintf("mode %04o -> %04o", m, m|0o755))
		}
		if len(what) == 0 {
			it.detail = "hot cache folder, " + owner + ", readable by the web server"
			return it
		}
		it.changed = true
		it.detail = "hot cache folder: " + joinSemi(what)
	}
	it.apply = func() error {
		if err := mkdirParents(filepath.Dir(path)); err != nil {
			return err
		}
		if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Through a descriptor of the folder itself: a link put at the
		// name since the plan is refused, not followed.
		fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cache folder %s: not a folder (a symbolic link?): %w", path, err)
		}
		defer unix.Close(fd)
		if err := unix.Fchownat(fd, "", int(p.id.uid), int(p.id.gid), unix.AT_EMPTY_PATH); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		return syscall.Chmod("/proc/self/fd/"+strconv.Itoa(fd), st.Mode&0o7777|0o755)
	}
	return it
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func joinSemi(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}
