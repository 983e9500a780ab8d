package agent

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestReplaceNeverOverwritesATombstone: an agent read the item (and found
// it stale) just before an operator erased it; its replace, conditional on
// the old item's size, checksum and version, all of which the tombstone
// keeps, must still fail rather than write a live item over the erasure.
// Before the condition named erased_at, the tombstone was replaced and the
// key left the erasures index.
func TestReplaceNeverOverwritesATombstone(t *testing.T) {
	st := stacktest.Require(t)
	db := st.DynamoDB(t)
	ctx := context.Background()
	prefix := stacktest.Prefix(t)
	key := prefix + "a.jpg"
	l := &dynamoLedger{client: db, table: st.Table, callTimeout: 10 * time.Second}
	old := offload.Record{Key: key, Size: 3, CRC64NVME: "AAAAAAAAAAA=", VersionID: "v1", Host: "a", UploadedAt: time.Now()}
	if err := l.record(ctx, old); err != nil {
		t.Fatal(err)
	}
	// The mark, as erase writes it.
	if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(st.Table),
		Key:                       map[string]types.AttributeValue{offload.LedgerPartitionKey: &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:          aws.String("SET #at = :at, #in = :in"),
		ExpressionAttributeNames:  map[string]string{"#at": offload.ErasedAtAttr, "#in": offload.ErasedInAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":at": &types.AttributeValueMemberS{Value: offload.FormatErasedAt(time.Now())}, ":in": &types.AttributeValueMemberS{Value: offload.ErasedPartition(prefix)}},
	}); err != nil {
		t.Fatal(err)
	}
	newer := offload.Record{Key: key, Size: 4, CRC64NVME: "BBBBBBBBBBB=", VersionID: "v2", Host: "b", UploadedAt: time.Now()}
	err := l.replace(ctx, old, newer)
	got, gerr := l.get(ctx, key)
	if gerr != nil {
		t.Fatal(gerr)
	}
	if err == nil || !got.Erased() || got.VersionID != "v1" {
		t.Errorf("replace over a tombstone: err %v; the item now erased=%v version %q; want an error and the tombstone kept", err, got.Erased(), got.VersionID)
	}
}
