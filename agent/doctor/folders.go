package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload/agent"
)

// Folders checks the watch and archive folders as the process's own user:
// run it as the service user (doctor re-executes itself as that user when
// it runs as root). Every file it makes is a dot-name (the agent's scan
// skips dot-names) and is removed before it returns.
type Folders struct {
	Watch, Archive string
	// ForeignFile, when set, is a file in the watch folder that another
	// user (root) owns, made by the parent doctor: the lease check takes a
	// read lease on it, which the kernel grants only with CAP_LEASE.
	ForeignFile string
}

// probePrefix names the files the folder checks make.
const probePrefix = ".offload-doctor-"

func probeFile(dir string) string { return filepath.Join(dir, probePrefix+probeName()) }

// Check runs the folder checks.
func (f Folders) Check() []Result {
	who := fmt.Sprintf("uid %d gid %d", os.Geteuid(), os.Getegid())
	var out []Result
	watchOK := true
	if r := checkDir("watch-folder", f.Watch, who, true); r.Status != OK {
		watchOK = false
		out = append(out, r)
	} else {
		out = append(out, r)
	}
	archiveOK := true
	if f.Archive == "" {
		archiveOK = false
		out = append(out, skip("archive-folder", "no --archive (OFFLOAD_ARCHIVE): the agent keeps or deletes files instead"))
	} else {
		r := checkDir("archive-folder", f.Archive, who, false)
		archiveOK = r.Status == OK
		out = append(out, r)
	}
	switch {
	case watchOK && archiveOK:
		out = append(out, checkRename(f.Watch, f.Archive))
	default:
		out = append(out, skip("rename", "needs a usable watch and archive folder"))
	}
	for _, d := range []struct{ name, path string }{{"watch", f.Watch}, {"archive", f.Archive}} {
		if d.path != "" {
			out = append(out, checkInheritance(d.name+"-setgid-acl", d.path))
		}
	}
	out = append(out, checkFS(f.Watch))
	if watchOK {
		out = append(out, f.checkLeases())
	} else {
		out = append(out, skip("leases", "no usable watch folder"))
	}
	return out
}

// checkDir checks that dir is a folder this user can list and write in (and
// read a file of its own in, for the watch folder).
func checkDir(name, dir, who string, read bool) Result {
	fix := fmt.Sprintf("make %s the agent's group's and writable by it: chgrp -R offload %s && chmod -R g+rwX %s && find %s -type d -exec chmod g+s {} + (or run offload-agent init)", dir, dir, dir, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return fail(name, fix, "%s as %s: %v", dir, who, err)
	}
	if !fi.IsDir() {
		return fail(name, "point it at a folder", "%s is not a folder", dir)
	}
	if read {
		if _, err := os.ReadDir(dir); err != nil {
			return fail(name, fix, "%s is not readable as %s: %v", dir, who, err)
		}
	}
	p := probeFile(dir)
	w, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(name, fix, "%s is not writable as %s: %v", dir, who, err)
	}
	w.Close()
	defer os.Remove(p)
	if err := os.Remove(p); err != nil {
		return fail(name, fix, "%s: a file made there cannot be removed as %s: %v", dir, who, err)
	}
	if read {
		return ok(name, "%s readable and writable as %s", dir, who)
	}
	return ok(name, "%s writable as %s", dir, who)
}

// checkRename moves a file of its own from the watch folder to the archive,
// as the agent's archive step does: a rename on one file system, a copy
// and a removal across two (agent/archive.go, EXDEV).
func checkRename(watch, archive string) Result {
	src, dst := probeFile(watch), probeFile(archive)
	w, err := os.OpenFile(src, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail("rename", "see the error", "%v", err)
	}
	w.Close()
	defer os.Remove(src)
	err = os.Rename(src, dst)
	switch {
	case err == nil:
		os.Remove(dst)
		return ok("rename", "watch → archive is a rename (one file system)")
	case errors.Is(err, unix.EXDEV):
		return Result{Status: Warn, Name: "rename", Detail: "watch and archive are on different file systems: the agent copies each file, syncs it and removes the original, which is slower and writes every byte twice",
			Fix: "put the archive on the watch folder's file system"}
	default:
		return fail("rename", "give the agent's group write access to both folders (and the setgid bit on the folders the back-end makes)", "rename from the watch folder to the archive: %v", err)
	}
}

// The posix_acl xattr format (linux/posix_acl_xattr.h): a 4-byte version
// (2), then 8-byte entries: tag (u16), permissions (u16), id (u32).
const (
	aclXattrDefault = "system.posix_acl_default"
	aclGroupTag     = 0x08 // ACL_GROUP: a named group
)

// checkInheritance checks what keeps folders the back-end makes later open
// to the agent (docs/install.md, "Folder permissions"): the setgid bit, which keeps the folder's
// group on new folders, and a default ACL that gives a group rwx on new
// files and folders.
func checkInheritance(name, dir string) Result {
	fi, err := os.Stat(dir)
	if err != nil {
		return skip(name, "%v", err)
	}
	fix := fmt.Sprintf("chmod g+s %s && setfacl -d -m g:offload:rwX %s (for existing subfolders: find %s -type d -exec chmod g+s {} + and setfacl -R -d ...; or run offload-agent init)", dir, dir, dir)
	if fi.Mode()&os.ModeSetgid == 0 {
		return fail(name, fix, "%s has no setgid bit: folders the back-end makes there get the back-end's group, and their files stay out of the agent's reach", dir)
	}
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(dir, aclXattrDefault, buf)
	if err != nil {
		return Result{Status: Warn, Name: name, Detail: fmt.Sprintf("%s is setgid but has no default ACL (%v): files the back-end writes with umask 022 are read-only to the agent's group, so they are uploaded but not archived", dir, err),
			Fix: fix + "; or run the back-end with umask 002"}
	}
	st := fi.Sys().(*syscall.Stat_t)
	groups := aclGroups(buf[:n])
	for gid, perm := range groups {
		if perm&7 == 7 && (gid == st.Gid || gid == uint32(os.Getegid())) {
			return ok(name, "%s is setgid, default ACL gives group %d rwx", dir, gid)
		}
	}
	return Result{Status: Warn, Name: name, Detail: fmt.Sprintf("%s is setgid with a default ACL, but it gives neither the folder's group (%d) nor the agent's (%d) rwx", dir, st.Gid, os.Getegid()), Fix: fix}
}

// aclGroups returns the named-group entries of a posix_acl xattr value.
func aclGroups(b []byte) map[uint32]uint16 {
	out := map[uint32]uint16{}
	if len(b) < 4 {
		return out
	}
	for e := b[4:]; len(e) >= 8; e = e[8:] {
		if binary.LittleEndian.Uint16(e[0:2]) == aclGroupTag {
			out[binary.LittleEndian.Uint32(e[4:8])] = binary.LittleEndian.Uint16(e[2:4])
		}
	}
	return out
}

// fsNames are the file systems a web root is likely on, by statfs f_type.
var fsNames = map[uint32]string{
	unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
	unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlay", unix.NFS_SUPER_MAGIC: "nfs",
	unix.F2FS_SUPER_MAGIC: "f2fs", unix.FUSE_SUPER_MAGIC: "fuse",
	unix.CIFS_SUPER_MAGIC: "cifs", unix.SMB2_SUPER_MAGIC: "smb2", unix.CEPH_SUPER_MAGIC: "ceph",
	unix.V9FS_MAGIC: "9p", zfsSuperMagic: "zfs",
}

// checkFS names the watch folder's file system, with a warning where the
// agent works worse: a shared file system (the agent uses no leases there
// and waits the quiet period for every file; inotify sees no other host's
// writes) and overlay (a container's writable layer: leases and inotify
// follow the upper layer only; a bind-mounted volume is what a web root
// wants).
func checkFS(dir string) Result {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return skip("file-system", "%s: %v", dir, err)
	}
	kind, known := fsNames[uint32(s.Type)]
	if !known {
		kind = fmt.Sprintf("0x%x", uint32(s.Type))
	}
	switch {
	case agent.SharedFS(int64(s.Type)):
		return Result{Status: Warn, Name: "file-system", Detail: fmt.Sprintf("%s is on %s, shared between hosts: the agent takes no read leases there, so every file waits the quiet period, and it sees other hosts' writes only by rescanning", dir, kind),
			Fix: "run the agent on the host that writes the files, on a local file system, if you can"}
	case uint32(s.Type) == unix.OVERLAYFS_SUPER_MAGIC:
		return Result{Status: Warn, Name: "file-system", Detail: fmt.Sprintf("%s is on overlay (a container's layer): leases and inotify see the upper layer only", dir),
			Fix: "mount the web root as a volume (a bind mount of the host's file system)"}
	}
	return ok("file-system", "%s is on %s", dir, kind)
}

// checkLeases asks the kernel for a read lease on a file of this user's own
// in the watch folder (leases enabled, the file system supports them), and
// on ForeignFile, another user's, which needs CAP_LEASE (fcntl(2),
// F_SETLEASE: "EACCES ... the caller ... does not have the CAP_LEASE
// capability"): the web server's user writes the files the agent leases.
func (f Folders) checkLeases() Result {
	p := probeFile(f.Watch)
	w, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail("leases", "see the error", "%v", err)
	}
	w.Close()
	defer os.Remove(p)
	r, err := os.Open(p)
	if err != nil {
		return fail("leases", "see the error", "%v", err)
	}
	err = agent.LeaseProbe(r)
	r.Close()
	if err != nil {
		return Result{Status: Warn, Name: "leases", Detail: fmt.Sprintf("the kernel grants no read lease even on the agent's own file (%v): leases disabled (fs.leases-enable) or not supported here; every file waits the quiet period", err),
			Fix: "sysctl fs.leases-enable=1, or a local file system"}
	}
	if f.ForeignFile == "" && os.Geteuid() == 0 {
		return ok("leases", "read lease granted; running as root, which holds CAP_LEASE")
	}
	if f.ForeignFile == "" {
		return Result{Status: Skip, Name: "leases", Detail: "granted on the agent's own file; on another user's (the web server's uploads) not tested: run doctor as root to test as the service user with CAP_LEASE"}
	}
	// Others write in the watch folder and may have swapped the file: a
	// link is not followed, and a fifo (whose open would wait for a
	// writer) is opened without waiting and refused.
	r, err = os.OpenFile(f.ForeignFile, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fail("leases", "see the error", "%v", err)
	}
	defer r.Close()
	if fi, err := r.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fail("leases", "run doctor again; remove whatever replaced the file", "%s is no longer the regular file doctor made (replaced by another user?)", f.ForeignFile)
	}
	if err := agent.LeaseProbe(r); err != nil {
		return Result{Status: Warn, Name: "leases", Detail: fmt.Sprintf("no read lease on another user's file (%v): without CAP_LEASE the agent cannot tell whether the web server still writes a file, so every file waits the quiet period", err),
			Fix: "keep AmbientCapabilities=CAP_LEASE and CapabilityBoundingSet=CAP_LEASE in the unit"}
	}
	return ok("leases", "read lease granted on the agent's own file and on another user's (CAP_LEASE)")
}

// zfsSuperMagic is ZFS's f_type (OpenZFS, include/sys/fs/zfs.h, ZFS_SUPER_MAGIC),
// which x/sys/unix does not name.
const zfsSuperMagic = 0x2fc12fc1
