package agent

import "testing"

// TestSharedFSTypes: the statfs types of file systems that other hosts (or a
// user-space server) write to behind this kernel's back are shared; local
// ones are not. Values above 0x7fffffff arrive sign-extended where f_type is
// a 32-bit signed word.
func TestSharedFSTypes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fsType int64
		shared bool
	}{
		{"NFS", 0x6969, true},
		{"SMB", 0x517b, true},
		{"SMB2", 0xfe534d42, true},
		{"CIFS", 0xff534d42, true},
		{"CephFS", 0x00c36400, true},
		{"9p", 0x01021997, true},
		{"AFS", 0x5346414f, true},
		{"kAFS", 0x6b414653, true},
		{"Coda", 0x73757245, true},
		{"OCFS2", 0x7461636f, true},
		{"GFS2", 0x01161970, true},
		{"Lustre", 0x0bd00bd0, true},
		{"FUSE", 0x65735546, true},
		{"GPFS (IBM Storage Scale)", 0x47504653, true},
		{"BeeGFS (FhGFS)", 0x19830326, true},
		{"OrangeFS (PVFS2)", 0x20030528, true},
		{"PanFS", 0xaad7aaea, true},
		{"PanFS, sign-extended", int64(int32(-0x55285516)), true},
		{"IBRIX", 0x013111a8, true},
		{"Oracle ACFS", 0x61636673, true},
		{"StorNext", 0xbeefdead, true},
		{"VxFS", 0xa501fcf5, true},
		{"ext4", 0xef53, false},
		{"XFS", 0x58465342, false},
		{"btrfs", 0x9123683e, false},
		{"btrfs, sign-extended", int64(int32(-0x6edc97c2)), false},
		{"tmpfs", 0x01021994, false},
		{"ZFS", 0x2fc12fc1, false},
		{"bcachefs", 0xca451a4e, false},
		{"overlayfs", 0x794c7630, false},
	} {
		if got := sharedFS(tt.fsType); got != tt.shared {
			t.Errorf("sharedFS(%s, %#x) = %v; want %v", tt.name, uint32(tt.fsType), got, tt.shared)
		}
	}
}
