package offload

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestHeartbeatItemRoundTrip(t *testing.T) {
	for _, want := range []Heartbeat{
		{Host: "web1", KeyPrefix: "original/", SeenAt: time.Date(2026, 12, 6, 1, 2, 3, 4, time.UTC)},
		{Host: "web-2.example", KeyPrefix: "p/", SeenAt: time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC),
			ErasuresThrough: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)},
	} {
		item := want.Item()
		if pk := item[LedgerPartitionKey].(*types.AttributeValueMemberS).Value; pk != "/host/"+want.Host || !IsHeartbeatKey(pk) {
			t.Errorf("%s: pk %q", want.Host, pk)
		}
		got, err := HeartbeatFromItem(item)
		if err != nil {
			t.Fatalf("HeartbeatFromItem(%+v): %v", want, err)
		}
		if got != want {
			t.Errorf("round trip = %+v; want %+v", got, want)
		}
	}
	if IsHeartbeatKey("original/host/x.jpg") {
		t.Error("an object key counted as a heartbeat's")
	}
	for name, item := range map[string]map[string]types.AttributeValue{
		"an object's item": (Record{Key: "original/a.jpg", Size: 1}).Item(),
		"another host":     {LedgerPartitionKey: &types.AttributeValueMemberS{Value: "/host/a"}, HeartbeatHostAttr: &types.AttributeValueMemberS{Value: "b"}, HeartbeatSeenAtAttr: &types.AttributeValueMemberS{Value: "2026-12-06T00:00:00Z"}},
		"no seen_at":       {LedgerPartitionKey: &types.AttributeValueMemberS{Value: "/host/a"}, HeartbeatHostAttr: &types.AttributeValueMemberS{Value: "a"}},
	} {
		if h, err := HeartbeatFromItem(item); err == nil {
			t.Errorf("%s: HeartbeatFromItem = %+v, nil; want an error", name, h)
		}
	}
}
