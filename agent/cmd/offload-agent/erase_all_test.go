package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestEraseAllStopsWhenItsReaderDoes: a reader of eraseAll's reports
// that stops after the first (a range that breaks) stops the erasing
// too: eraseAll returns without handing out the keys not yet begun, so
// none of them is marked. With one key at a time, the second may have
// begun; the other eighteen must not.
func TestEraseAllStopsWhenItsReaderDoes(t *testing.T) {
	st := stacktest.Require(t)
	prefix := stacktest.Prefix(t)
	db := st.DynamoDB(t)
	e := &agent.Eraser{S3: st.S3For(t, stacktest.Eraser, st.AWSShimEndpoint(t)), DB: db,
		Bucket: st.Bucket, Table: st.Table, KeyPrefix: prefix, By: "tester", Why: "test"}
	var keys []string
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("%sbreak/%02d.jpg", prefix, i))
	}
	for r := range eraseAll(context.Background(), e, keys, 1) {
		if r.Key != keys[0] {
			t.Errorf("first report of %s; want %s", r.Key, keys[0])
		}
		break
	}
	var marked []string
	for _, key := range keys {
		out, err := db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(st.Table),
			Key: map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key}}, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		if out.Item != nil {
			marked = append(marked, key)
		}
	}
	if len(marked) > 2 {
		t.Errorf("after the reader stopped at the first report, %d of %d keys were marked erased: %v; want at most the first two", len(marked), len(keys), marked)
	}
}
