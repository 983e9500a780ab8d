package doctor

import (
	"encoding/binary"
	"testing"
)

// TestACLGroups reads the named-group entries of a posix_acl xattr value
// (linux/posix_acl_xattr.h: version 2, then tag, perm, id entries).
func TestACLGroups(t *testing.T) {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 7, 0xffffffff}, {0x08, 7, 1001}, {0x08, 5, 33}, {0x20, 5, 0xffffffff}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	got := aclGroups(b)
	if len(got) != 2 || got[1001] != 7 || got[33] != 5 {
		t.Errorf("aclGroups = %v; want map[1001:7 33:5]", got)
	}
}
