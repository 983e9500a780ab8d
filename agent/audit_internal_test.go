package agent

import (
	"testing"
	"time"

	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
)

// TestIsHeartbeat: the audit's ledger pass tells a host's heartbeat item
// from an original's item or a tombstone by its key alone.
func TestIsHeartbeat(t *testing.T) {
	s := func(v string) dbtypes.AttributeValue { return &dbtypes.AttributeValueMemberS{Value: v} }
	recorded := offload.Record{Key: "p/a.jpg", Size: 3, CRC64NVME: "AAAAAAAAAAA=", UploadedAt: time.Unix(1, 0).UTC()}
	erased := recorded
	erased.Erasure = &offload.Erasure{At: time.Unix(2, 0).UTC()}
	for _, tt := range []struct {
		name string
		item map[string]dbtypes.AttributeValue
		want bool
	}{
		{"recorded", recorded.Item(), false},
		{"tombstone", erased.Item(), false},
		{"heartbeat", offload.Heartbeat{Host: "web1", KeyPrefix: "p/", SeenAt: time.Unix(3, 0)}.Item(), true},
		{"heartbeat without attributes", map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: s(offload.HostItemPrefix + "web1")}, true},
		{"no key", map[string]dbtypes.AttributeValue{"host": s("web1")}, false},
	} {
		if got := isHeartbeat(tt.item); got != tt.want {
			t.Errorf("%s: isHeartbeat = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestHostList: each host that has not acknowledged an erasure is named
// live, or down since its last heartbeat (UTC, to the second).
func TestHostList(t *testing.T) {
	seen := time.Date(2026, 12, 6, 18, 0, 0, 500, time.FixedZone("CET", 3600))
	got := hostList([]ErasureHost{{Host: "web1", SeenAt: seen}, {Host: "web2", Live: true, SeenAt: seen}})
	if want := "web1 (down since 2026-12-06T17:00:00Z), web2 (live)"; got != want {
		t.Errorf("hostList = %q; want %q", got, want)
	}
}
