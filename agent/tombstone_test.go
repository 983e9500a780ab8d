package agent_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
)

// markErased turns key's ledger item into a tombstone the way "offload-agent
// erase" marks it: an UpdateItem with no condition (a key never recorded
// gets one too), erased_in naming the key prefix's partition of the index.
func (h *harness) markErased(keyPrefix, key string, at time.Time) {
	h.t.Helper()
	_, err := h.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:        aws.String(h.st.Table),
		Key:              map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key}},
		UpdateExpression: aws.String("SET #at = :at, #in = :in, #by = :by"),
		ExpressionAttributeNames: map[string]string{
			"#at": offload.ErasedAtAttr, "#in": offload.ErasedInAttr, "#by": offload.ErasedByAttr,
		},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{
			":at": &dbtypes.AttributeValueMemberS{Value: offload.FormatErasedAt(at)},
			":in": &dbtypes.AttributeValueMemberS{Value: offload.ErasedPartition(keyPrefix)},
			":by": &dbtypes.AttributeValueMemberS{Value: "test"},
		},
	})
	if err != nil {
		h.t.Fatalf("mark %s erased: %v", key, err)
	}
}

// TestErasuresIndexFindsTombstones: the ledger table has the sparse index
// "erasures" (the stack creates it as template.yaml declares it), and one
// Query on it finds exactly one key prefix's tombstones, oldest first,
// without the recorded items that are not erased.
func TestErasuresIndexFindsTombstones(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ours, other := h.cfg.Mapping.KeyPrefix, h.cfg.Mapping.KeyPrefix+"other/"
	// A whole second and half a second later: the order must hold where
	// a trimmed fraction would sort the other way.
	t0 := time.Now().UTC().Truncate(time.Second)
	if _, err := h.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(h.st.Table),
		Item: offload.Record{Key: ours + "kept.jpg", Size: 1, CRC64NVME: "AAAAAAAAAAA=", UploadedAt: t0}.Item()}); err != nil {
		t.Fatal(err)
	}
	h.markErased(ours, ours+"later.jpg", t0.Add(500*time.Millisecond))
	h.markErased(ours, ours+"first.jpg", t0)
	h.markErased(other, other+"elsewhere.jpg", t0.Add(time.Second))

	out, err := h.db.Query(ctx, &dynamodb.QueryInput{
		TableName:              aws.String(h.st.Table),
		IndexName:              aws.String(offload.ErasuresIndex),
		KeyConditionExpression: aws.String("#in = :in AND #at >= :since"),
		ExpressionAttributeNames: map[string]string{
			"#in": offload.ErasedInAttr, "#at": offload.ErasedAtAttr,
		},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{
			":in":    &dbtypes.AttributeValueMemberS{Value: offload.ErasedPartition(ours)},
			":since": &dbtypes.AttributeValueMemberS{Value: offload.FormatErasedAt(t0.Add(-time.Minute))},
		},
	})
	if err != nil {
		t.Fatalf("Query on index %s: %v", offload.ErasuresIndex, err)
	}
	var got []string
	for _, item := range out.Items {
		k, _ := item[offload.LedgerPartitionKey].(*dbtypes.AttributeValueMemberS)
		if k == nil {
			t.Fatalf("index item without %s: %v", offload.LedgerPartitionKey, item)
		}
		got = append(got, k.Value)
	}
	if want := []string{ours + "first.jpg", ours + "later.jpg"}; !slices.Equal(got, want) {
		t.Errorf("erasures of %s = %q; want %q", ours, got, want)
	}
}
