package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
)

// dynamoLedger records originals in the DynamoDB ledger table.
type dynamoLedger struct {
	client      *dynamodb.Client
	table       string
	callTimeout time.Duration
}

// record writes the item unless the key already has one. Idempotent: an
// existing item for the same object (key, size, checksum) is success, so a
// resumed run or a second host with identical bytes agrees; an item for
// other bytes is ErrConflict and is left as it is.
func (l *dynamoLedger) record(ctx context.Context, r offload.Record) error {
	cctx, cancel := context.WithTimeout(ctx, l.callTimeout)
	defer cancel()
	_, err := l.client.PutItem(cctx, &dynamodb.PutItemInput{
		TableName:           aws.String(l.table),
		Item:                r.Item(),
		ConditionExpression: aws.String("attribute_not_exists(" + offload.LedgerPartitionKey + ")"),
	})
	var failed *types.ConditionalCheckFailedException
	if !errors.As(err, &failed) {
		if err != nil {
			return fmt.Errorf("ledger put %s: %w", r.Key, err)
		}
		return nil
	}
	existing, err := l.get(ctx, r.Key)
	if err != nil {
		return err
	}
	if !existing.SameObject(r) {
		return fmt.Errorf("ledger has %s with %d bytes, crc64nvme %s (from %s); ours has %d bytes, crc64nvme %s: %w",
			r.Key, existing.Size, existing.CRC64NVME, existing.Host, r.Size, r.CRC64NVME, offload.ErrConflict)
	}
	return nil
}

// get reads the ledger item of key, strongly consistent.
func (l *dynamoLedger) get(ctx context.Context, key string) (offload.Record, error) {
	cctx, cancel := context.WithTimeout(ctx, l.callTimeout)
	defer cancel()
	return offload.GetRecord(cctx, l.client, l.table, key)
}
