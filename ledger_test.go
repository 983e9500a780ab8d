package offload

import (
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestRecordItemRoundTrip(t *testing.T) {
	tests := []Record{
		{Key: "original/a.jpg", Size: 0, CRC64NVME: "AAAAAAAAAAA=", UploadedAt: time.Date(2026, 11, 25, 4, 0, 0, 123, time.UTC)},
		{Key: "original/é b.jpg", Size: 1 << 40, CRC64NVME: "rosUhgp5mIg=", ETag: `"abc-3"`, VersionID: "v1",
			ContentType: "image/jpeg", Host: "web1", Path: "é b.jpg", UploadedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		// Uploaded with a storage class (--storage-class).
		{Key: "original/d.jpg", Size: 5, CRC64NVME: "rosUhgp5mIg=", StorageClass: "GLACIER_IR", UploadedAt: time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)},
		// A tombstone of a recorded original, erasure finished and
		// acknowledged by two hosts.
		{Key: "original/c.jpg", Size: 9, CRC64NVME: "rosUhgp5mIg=", VersionID: "v2", UploadedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Erasure: &Erasure{At: time.Date(2026, 12, 6, 1, 2, 3, 4, time.UTC), By: "ops@example.com", Why: "request 42",
				Done: time.Date(2026, 12, 6, 1, 2, 4, 0, time.UTC), AckedBy: []string{"web1", "web2"}}},
		// A tombstone of a key never recorded: no size, nothing but the mark.
		{Key: "original/never.jpg", Erasure: &Erasure{At: time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)}},
	}
	for _, want := range tests {
		got, err := RecordFromItem(want.Item())
		if err != nil {
			t.Fatalf("RecordFromItem(%+v): %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip = %+v (erasure %+v); want %+v (erasure %+v)", got, got.Erasure, want, want.Erasure)
		}
		if got.Erased() != (want.Erasure != nil) {
			t.Errorf("%s: Erased() = %v", want.Key, got.Erased())
		}
	}
}

// TestErasedAtSortsAsTime: the erasures index sorts erased_at as a
// string, so the written strings must sort as the times do, also when one
// falls on a whole second (time.RFC3339Nano drops trailing zeros, and
// "…:05Z" sorts after "…:05.1Z").
func TestErasedAtSortsAsTime(t *testing.T) {
	base := time.Date(2026, 12, 6, 1, 2, 5, 0, time.UTC)
	times := []time.Time{base, base.Add(time.Nanosecond), base.Add(100 * time.Millisecond), base.Add(time.Second), base.Add(time.Second + 20*time.Microsecond)}
	var prev string
	for i, at := range times {
		item := Record{Key: "k", Erasure: &Erasure{At: at}}.Item()
		s := item[ErasedAtAttr].(*types.AttributeValueMemberS).Value
		if i > 0 && !(prev < s) {
			t.Errorf("%s = %q sorts before or with %q, the earlier time's", ErasedAtAttr, s, prev)
		}
		if s != FormatErasedAt(at) {
			t.Errorf("Item's %s = %q; FormatErasedAt = %q", ErasedAtAttr, s, FormatErasedAt(at))
		}
		prev = s
	}
}

// TestRecordStorageClass: the storage class is the attribute
// StorageClassAttr, absent for S3's default (STANDARD, which a HEAD does
// not name either), so an item written before the attribute existed reads
// as STANDARD, which every original then was.
func TestRecordStorageClass(t *testing.T) {
	old := map[string]types.AttributeValue{
		LedgerPartitionKey: &types.AttributeValueMemberS{Value: "original/old.jpg"},
		"size":             &types.AttributeValueMemberN{Value: "7"},
		"crc64nvme":        &types.AttributeValueMemberS{Value: "rosUhgp5mIg="},
	}
	r, err := RecordFromItem(old)
	if err != nil || r.StorageClass != "" {
		t.Errorf("an item without %s: %+v, %v; want StorageClass \"\" (STANDARD)", StorageClassAttr, r, err)
	}
	if _, ok := (Record{Key: "k"}).Item()[StorageClassAttr]; ok {
		t.Errorf("a record in STANDARD (StorageClass \"\") writes %s; want it absent", StorageClassAttr)
	}
	item := Record{Key: "k", StorageClass: "INTELLIGENT_TIERING"}.Item()
	if v, ok := item[StorageClassAttr].(*types.AttributeValueMemberS); !ok || v.Value != "INTELLIGENT_TIERING" {
		t.Errorf("%s = %#v; want the string INTELLIGENT_TIERING", StorageClassAttr, item[StorageClassAttr])
	}
}

func TestRecordFromBadItem(t *testing.T) {
	for name, item := range map[string]map[string]types.AttributeValue{
		"no key":           {"size": &types.AttributeValueMemberN{Value: "1"}},
		"no size":          {LedgerPartitionKey: &types.AttributeValueMemberS{Value: "k"}},
		"bad size":         {LedgerPartitionKey: &types.AttributeValueMemberS{Value: "k"}, "size": &types.AttributeValueMemberN{Value: "x"}},
		"bad time":         {LedgerPartitionKey: &types.AttributeValueMemberS{Value: "k"}, "size": &types.AttributeValueMemberN{Value: "1"}, "uploaded_at": &types.AttributeValueMemberS{Value: "yesterday"}},
		"bad erasure time": {LedgerPartitionKey: &types.AttributeValueMemberS{Value: "k"}, ErasedAtAttr: &types.AttributeValueMemberS{Value: "today"}},
	} {
		if r, err := RecordFromItem(item); err == nil {
			t.Errorf("%s: RecordFromItem = %+v, nil; want an error", name, r)
		}
	}
}

func TestSameObject(t *testing.T) {
	a := Record{Key: "k", Size: 3, CRC64NVME: "x", Host: "web1", UploadedAt: time.Unix(1, 0)}
	b := Record{Key: "k", Size: 3, CRC64NVME: "x", Host: "web2", UploadedAt: time.Unix(2, 0)}
	if !a.SameObject(b) {
		t.Errorf("records differing only in host and time: SameObject = false")
	}
	for _, c := range []Record{{Key: "k", Size: 4, CRC64NVME: "x"}, {Key: "k", Size: 3, CRC64NVME: "y"}, {Key: "j", Size: 3, CRC64NVME: "x"}} {
		if a.SameObject(c) {
			t.Errorf("SameObject(%+v, %+v) = true", a, c)
		}
	}
}

func TestSameVersion(t *testing.T) {
	a := Record{Key: "k", Size: 3, CRC64NVME: "x", VersionID: "v1", Host: "web1", UploadedAt: time.Unix(1, 0)}
	for _, tt := range []struct {
		o    Record
		want bool
	}{
		{Record{Key: "k", Size: 3, CRC64NVME: "x", VersionID: "v1", Host: "web2"}, true},
		{Record{Key: "k", Size: 3, CRC64NVME: "x", VersionID: "v2"}, false}, // the same bytes, re-uploaded after a delete
		{Record{Key: "k", Size: 3, CRC64NVME: "x"}, false},
		{Record{Key: "k", Size: 3, CRC64NVME: "y", VersionID: "v1"}, false},
	} {
		if got := a.SameVersion(tt.o); got != tt.want {
			t.Errorf("SameVersion(%+v, %+v) = %v; want %v", a, tt.o, got, tt.want)
		}
	}
	unversioned := Record{Key: "k", Size: 3, CRC64NVME: "x"}
	if !unversioned.SameVersion(Record{Key: "k", Size: 3, CRC64NVME: "x", ETag: `"e"`}) {
		t.Error("two records of the same bytes without version ids: SameVersion = false")
	}
}
