package doctor

import (
	"strings"
	"testing"
)

// TestStorageClassCheck: no class is fine (S3's Standard); a class the
// resolver cannot serve without a restore fails, as the agent would refuse
// to start; the classes with a 128 KB minimum billable size pass with a
// warning that small files cost more there; the others pass.
func TestStorageClassCheck(t *testing.T) {
	for _, tt := range []struct {
		class  string
		status Status
		detail string
	}{
		{"", OK, "none: S3 stores STANDARD"},
		{"INTELLIGENT_TIERING", OK, "INTELLIGENT_TIERING"},
		{"GLACIER_IR", Warn, "billed as 128 KB"},
		{"STANDARD_IA", Warn, "billed as 128 KB"},
		{"ONEZONE_IA", Warn, "billed as 128 KB"},
		{"DEEP_ARCHIVE", Fail, "must be restored before a GET"},
		{"glacier_ir", Fail, "not an S3 storage class"},
	} {
		r := StorageClass(tt.class)
		if r.Status != tt.status || r.Name != "storage-class" || !strings.Contains(r.Detail, tt.detail) {
			t.Errorf("StorageClass(%q) = %+v; want %s with %q", tt.class, r, tt.status, tt.detail)
		}
		if (r.Status == Fail || r.Status == Warn) && r.Fix == "" {
			t.Errorf("StorageClass(%q): %s without a fix", tt.class, r.Status)
		}
	}
}
