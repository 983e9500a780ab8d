package setup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"
)

// POSIX ACLs are read and written as the kernel's extended attributes
// (include/uapi/linux/posix_acl_xattr.h), not with setfacl: init compares
// the exact default ACL a folder has with the one it wants, so a second
// run knows "unchanged" without parsing getfacl's text, and --dry-run can
// say what setfacl would change. The result is what "setfacl -d -m
// g:GROUP:rwX" makes (the integration test compares both with getfacl).
const (
	xattrDefaultACL = "system.posix_acl_default"
	xattrAccessACL  = "system.posix_acl_access"
	aclXattrVersion = 2

	tagUserObj  = 0x01
	tagUser     = 0x02
	tagGroupObj = 0x04
	tagGroup    = 0x08
	tagMask     = 0x10
	tagOther    = 0x20

	undefinedID = 0xffffffff
)

type aclEntry struct {
	tag  uint16
	perm uint16
	id   uint32
}

type acl []aclEntry

func decodeACL(b []byte) (acl, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != aclXattrVersion {
		return nil, fmt.Errorf("unexpected ACL attribute (%d bytes)", len(b))
	}
	var a acl
	for p := b[4:]; len(p) > 0; p = p[8:] {
		a = append(a, aclEntry{binary.LittleEndian.Uint16(p), binary.LittleEndian.Uint16(p[2:]), binary.LittleEndian.Uint32(p[4:])})
	}
	return a, nil
}

func (a acl) encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, aclXattrVersion)
	for _, e := range a {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// withGroup returns the ACL with a named-group entry gid:perm (added or
// replaced) and its mask recomputed as the union of the group class, the
// entries sorted as the kernel requires (posix_acl_valid).
func (a acl) withGroup(gid uint32, perm uint16) acl {
	out := slices.DeleteFunc(slices.Clone(a), func(e aclEntry) bool {
		return e.tag == tagMask || e.tag == tagGroup && e.id == gid
	})
	out = append(out, aclEntry{tagGroup, perm, gid})
	var mask uint16
	for _, e := range out {
		if e.tag == tagGroupObj || e.tag == tagGroup || e.tag == tagUser {
			mask |= e.perm
		}
	}
	out = append(out, aclEntry{tagMask, mask, undefinedID})
	slices.SortFunc(out, func(x, y aclEntry) int {
		if x.tag != y.tag {
			return int(x.tag) - int(y.tag)
		}
		return int(int64(x.id) - int64(y.id))
	})
	return out
}

// aclFromMode is the minimal ACL a mode stands for.
func aclFromMode(mode uint32) acl {
	return acl{
		{tagUserObj, uint16(mode>>6) & 7, undefinedID},
		{tagGroupObj, uint16(mode>>3) & 7, undefinedID},
		{tagOther, uint16(mode) & 7, undefinedID},
	}
}

// readACL returns a file's ACL of one kind, nil if it has none.
func readACL(path, attr string) (acl, error) {
	buf := make([]byte, 4+8*32)
	for {
		n, err := syscall.Getxattr(path, attr, buf)
		switch {
		case errors.Is(err, syscall.ENODATA):
			return nil, nil
		case errors.Is(err, syscall.ERANGE):
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return nil, fmt.Errorf("read ACL of %s: %w", path, err)
		}
		return decodeACL(buf[:n])
	}
}

// wantDefaultACL is the default ACL "setfacl -d -m g:GID:rwx" leaves on a
// folder: the one it has with the entry added, or, when it has none, the
// base entries of its access ACL (or mode) plus the entry.
func wantDefaultACL(path string, mode uint32, gid uint32) (have, want acl, err error) {
	have, err = readACL(path, xattrDefaultACL)
	if err != nil {
		return nil, nil, err
	}
	base := have
	if base == nil {
		access, err := readACL(path, xattrAccessACL)
		if err != nil {
			return nil, nil, err
		}
		base = aclFromMode(mode)
		for _, e := range access {
			for i := range base {
				if base[i].tag == e.tag {
					base[i].perm = e.perm
				}
			}
		}
	}
	return have, base.withGroup(gid, 7), nil
}

func writeDefaultACL(path string, a acl) error {
	if err := syscall.Setxattr(path, xattrDefaultACL, a.encode(), 0); err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			return fmt.Errorf("set default ACL on %s: the file system does not support POSIX ACLs (mount it with acl, or run the back-end with umask 002): %w", path, err)
		}
		return fmt.Errorf("set default ACL on %s: %w", path, err)
	}
	return nil
}

func (a acl) equal(b acl) bool { return slices.Equal(a, b) }
