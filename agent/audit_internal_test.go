package agent

import (
	"testing"
	"time"

	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
)

// TestRecordedOriginal: the audit's ledger pass judges only originals'
// records; a host's heartbeat item (no size) and tombstones, with or
// without a size, are skipped without an error.
func TestRecordedOriginal(t *testing.T) {
	s := func(v string) dbtypes.AttributeValue { return &dbtypes.AttributeValueMemberS{Value: v} }
	recorded := offload.Record{Key: "p/a.jpg", Size: 3, CRC64NVME: "AAAAAAAAAAA=", UploadedAt: time.Unix(1, 0).UTC()}
	erased := recorded
	erased.Erasure = &offload.Erasure{At: time.Unix(2, 0).UTC()}
	for _, tt := range []struct {
		name    string
		item    map[string]dbtypes.AttributeValue
		ok, err bool
	}{
		{"recorded", recorded.Item(), true, false},
		{"heartbeat", map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: s(offload.HostItemPrefix + "web1"), "host": s("web1")}, false, false},
		{"tombstone", erased.Item(), false, false},
		{"tombstone without size", map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: s("p/never.jpg"), offload.ErasedAtAttr: s(offload.FormatErasedAt(time.Unix(2, 0)))}, false, false},
		{"no size", map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: s("p/b.jpg")}, false, true},
	} {
		_, ok, err := recordedOriginal(tt.item)
		if ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("%s: ok %v, err %v; want ok %v, an error %v", tt.name, ok, err, tt.ok, tt.err)
		}
	}
}
