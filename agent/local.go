package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileID identifies one version of a local file. If any field changed, the
// bytes may have changed too.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	ctime    time.Time
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  fi.Size(),
		mtime: fi.ModTime(),
		ctime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
	}, true
}

// sameVersion reports whether two IDs name the same bytes on disk. ctime is
// left out on purpose: archiving or a chmod changes it, not the bytes.
func (a fileID) sameVersion(b fileID) bool {
	return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime.Equal(b.mtime)
}

// exactly reports whether two IDs are the same version in every field,
// ctime included: what is compared between the read and the claim, where
// nothing of ours touches the file, so any change is someone else's (a
// same-size rewrite within the timestamp granularity still sets ctime: the
// kernel gives a fine-grained ctime to a file whose times were read since).
func (a fileID) exactly(b fileID) bool {
	return a.sameVersion(b) && a.ctime.Equal(b.ctime)
}

// errNotRegular refuses symlinks, folders, devices, FIFOs and sockets.
var errNotRegular = errors.New("not a regular file")

// lastLook is what unlinkIfStill found under a name just before it would
// unlink it.
type lastLook int

const (
	lookUnlinked lastLook = iota // the very file judged: now unlinked
	lookGone                     // nothing under the name any more
	lookChanged                  // the file changed, or another is there now: kept
)

// unlinkIfStill is the last step of a removal that judged a file first
// (prune, the erasure poller): the name is unlinked only when a last
// lstat, which does not follow a symlink, finds exactly the file judged
// (device, inode, size, modification and change times). A file changed or
// swapped in since the judgement is kept, never removed on a verdict about
// another. lstat is errNotRegular for anything but a regular file.
func unlinkIfStill(lstat func() (fileID, error), unlink func() error, judged fileID) (lastLook, error) {
	switch now, err := lstat(); {
	case errors.Is(err, fs.ErrNotExist):
		return lookGone, nil
	case errors.Is(err, errNotRegular):
		return lookChanged, nil
	case err != nil:
		return lookGone, err
	case !now.exactly(judged):
		return lookChanged, nil
	}
	switch err := unlink(); {
	case errors.Is(err, fs.ErrNotExist):
		return lookGone, nil
	case err != nil:
		return lookGone, err
	}
	return lookUnlinked, nil
}

// openLocal opens rel under root for reading without following a symlink
// (O_NOFOLLOW on the last name; os.Root refuses to leave the folder through
// one on the way) and returns the open file with its identity.
func openLocal(root *os.Root, rel string) (*os.File, fileID, error) {
	// Lstat first so that a symlink or a FIFO is named as such (and a FIFO
	// is never opened); O_NOFOLLOW and the check after opening close the
	// race with a file swapped in between.
	lfi, err := root.Lstat(rel)
	if err != nil {
		return nil, fileID{}, err
	}
	if !lfi.Mode().IsRegular() {
		return nil, fileID{}, fmt.Errorf("%s: %w (%s)", rel, errNotRegular, lfi.Mode().Type())
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fileID{}, fmt.Errorf("%s: %w (a symlink)", rel, errNotRegular)
		}
		return nil, fileID{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileID{}, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fileID{}, fmt.Errorf("%s: %w (%s)", rel, errNotRegular, fi.Mode().Type())
	}
	id, ok := idOf(fi)
	if !ok {
		f.Close()
		return nil, fileID{}, fmt.Errorf("%s: no inode information", rel)
	}
	return f, id, nil
}

// stillSame reports whether the open file and the name in the folder are
// still exactly the version that was read: same inode under the name, same
// size, mtime and ctime. It is checked before an upload is committed and
// again just before the local step. ctime is what catches a same-size
// rewrite whose writer put the mtime back (touch -d, touch -r, a restore
// that keeps times): the kernel sets it on every write and every change of
// the times, and no call sets it to a chosen value. Nothing of ours touches the file
// between the read and these checks, so any change is someone else's.
func stillSame(root *os.Root, rel string, f *os.File, read fileID) error {
	return still(root, rel, f, read, fileID.exactly)
}

// still checks the open file and the name against the version read with
// same.
func still(root *os.Root, rel string, f *os.File, read fileID, same func(a, b fileID) bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if now, _ := idOf(fi); !same(now, read) {
		return fmt.Errorf("%s: %w since it was read (ctime %s, now %s)", rel, errChanged,
			read.ctime.Format(time.RFC3339Nano), now.ctime.Format(time.RFC3339Nano))
	}
	lfi, err := root.Lstat(rel)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", rel, errChanged, err)
	}
	if named, _ := idOf(lfi); !same(named, read) {
		return fmt.Errorf("%s: %w: the name now points at other bytes", rel, errChanged)
	}
	return nil
}

// errWriterHasIt: some process has the file open for writing, so it may not
// be finished; it is looked at again after a quiet period.
var errWriterHasIt = errors.New("a writer has it open")

// errChanged means the file changed after it was judged settled; it is
// retried once it settles again.
var errChanged = errors.New("file changed")

// openForWriting reports whether some process holds the file open for
// writing, where the kernel can tell: a read lease is refused (EAGAIN) while
// a writer has the file open. The lease is dropped at once, so a writer that
// opens the file later is not held up. sure is false where leases say
// nothing: not the owner without CAP_LEASE, and on network and FUSE file
// systems (see sharedFS), where a lease covers only this host's openers and
// NFSv4, SMB and EFS answer EAGAIN whenever the client holds no delegation,
// writer or not. Then writing is false and the quiet period alone decides.
func openForWriting(f *os.File) (writing, sure bool) {
	l, err := holdLease(f)
	if err != nil {
		return true, true
	}
	sure = l.held
	l.end()
	return false, sure
}

// lease is a read lease held on an open file (see holdLease), or nothing
// where leases say nothing (network and FUSE file systems, no CAP_LEASE).
type lease struct {
	fd   int
	held bool
}

// holdLease takes a read lease on f. It fails with errWriterHasIt while a
// writer has the file open. While it is held, a process that opens the file
// for writing breaks it (its open waits for us, up to the kernel's
// lease-break-time), which end reports. Where no lease can be had, it
// returns one that holds nothing, and the checks around it decide.
func holdLease(f *os.File) (*lease, error) {
	fd := int(f.Fd())
	if fsType, err := fsTypeOf(fd); err == nil && sharedFS(fsType) {
		return &lease{}, nil
	}
	switch err := setLease(fd, unix.F_RDLCK); {
	case err == nil:
		return &lease{fd: fd, held: true}, nil
	case errors.Is(err, unix.EAGAIN):
		return nil, errWriterHasIt
	default:
		return &lease{}, nil
	}
}

// end drops the lease and reports errChanged if a writer opened the file
// while it was held. Only the first call checks; later ones do nothing.
func (l *lease) end() error {
	if !l.held {
		return nil
	}
	l.held = false
	state, err := getLease(l.fd)
	_ = setLease(l.fd, unix.F_UNLCK)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if state != unix.F_RDLCK {
		// Breaking, towards F_UNLCK: a writer's open is waiting for us.
		return fmt.Errorf("%w: opened for writing while it was claimed", errChanged)
	}
	return nil
}

// fsTypeOf, setLease and getLease are the system calls the lease checks
// make; variables so that a test can inject what a network file system
// answers.
var (
	getLease = func(fd int) (int, error) {
		return unix.FcntlInt(uintptr(fd), unix.F_GETLEASE, 0)
	}
	fsTypeOf = func(fd int) (int64, error) {
		var st unix.Statfs_t
		err := unix.Fstatfs(fd, &st)
		return int64(st.Type), err
	}
	setLease = func(fd, lease int) error {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, lease)
		return err
	}
)

// sharedFS reports whether a statfs f_type is a file system other hosts
// (or a user-space server) may write to behind this kernel's back: there a
// lease proves nothing about writers elsewhere, and inotify does not see
// their writes (the periodic rescan finds those files). In doubt a type is
// shared: that only costs the quiet period for renamed files, while a
// cluster file system taken for a local one would trust a lease that sees
// this host's writers alone.
func sharedFS(fsType int64) bool {
	switch uint32(fsType) { // a 32-bit f_type arrives sign-extended
	case unix.NFS_SUPER_MAGIC, // NFSv3/v4, and EFS, which is NFSv4.1
		unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC,
		unix.CEPH_SUPER_MAGIC, unix.V9FS_MAGIC, unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC,
		unix.CODA_SUPER_MAGIC, unix.OCFS2_SUPER_MAGIC, gfs2SuperMagic, lustreSuperMagic,
		gpfsSuperMagic, beegfsMagic, orangefsSuperMagic,
		panfsSuperMagic, ibrixSuperMagic, acfsSuperMagic, snfsSuperMagic, vxfsSuperMagic,
		unix.FUSE_SUPER_MAGIC: // sshfs, s3fs, GlusterFS, Quobyte, MooseFS...
		return true
	}
	return false
}

// File system magic numbers golang.org/x/sys/unix does not name: the
// f_type each reports in statfs, where its kernel module sets s_magic.
const (
	gfs2SuperMagic   = 0x01161970 // Linux include/uapi/linux/gfs2_ondisk.h, GFS2_MAGIC
	lustreSuperMagic = 0x0bd00bd0 // LL_SUPER_MAGIC in Lustre's lustre_user.h ("for statfs()")
	// IBM Storage Scale (GPFS): "GPFS" in ASCII, GPFS_SUPER_MAGIC in gpfs.h
	// (https://www.ibm.com/docs/en/storage-scale/6.0.1?topic=cga-determining-if-file-system-is-controlled-by-gpfs).
	gpfsSuperMagic = 0x47504653
	// BeeGFS, formerly FhGFS: BEEGFS_MAGIC in its client's
	// client_module/source/filesystem/FhgfsOpsSuper.h
	// (https://git.beegfs.io/pub/v7/-/blob/master/client_module/source/filesystem/FhgfsOpsSuper.h).
	beegfsMagic = 0x19830326
	// OrangeFS, formerly PVFS2: ORANGEFS_SUPER_MAGIC in the Linux kernel's
	// fs/orangefs/protocol.h, which orangefs_statfs reports.
	orangefsSuperMagic = 0x20030528
	// Panasas PanFS, HPE IBRIX, Oracle ACFS, Quantum StorNext and Veritas
	// VxFS (shared in its cluster mode): the types GNU coreutils' stat
	// marks "remote" (src/stat.c, human_fstype), the list tail uses to
	// stop trusting inotify.
	panfsSuperMagic = 0xaad7aaea
	ibrixSuperMagic = 0x013111a8
	acfsSuperMagic  = 0x61636673
	snfsSuperMagic  = 0xbeefdead
	vxfsSuperMagic  = 0xa501fcf5
)

// ignored reports whether a path relative to the watch folder is skipped:
// any segment that is a dotfile or dot-folder, or a base name matching one
// of the globs.
func ignored(rel string, globs []string) bool {
	for _, seg := range strings.Split(rel, "/") {
		if len(seg) > 0 && seg[0] == '.' {
			return true
		}
	}
	base := path.Base(rel)
	for _, g := range globs {
		if ok, _ := path.Match(g, base); ok {
			return true
		}
	}
	return false
}
