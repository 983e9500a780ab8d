package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// itemTaken is record's answer when the key's item names another object
// version, or other bytes, than the record to write. It is ErrConflict to
// errors.Is; the caller decides from S3 which of the two is true (see
// recordObject).
type itemTaken struct {
	existing, ours offload.Record
}

func (e *itemTaken) Error() string {
	return fmt.Sprintf("ledger has %s version %q with %d bytes, crc64nvme %s (from %s); ours is version %q with %d bytes, crc64nvme %s",
		e.existing.Key, e.existing.VersionID, e.existing.Size, e.existing.CRC64NVME, e.existing.Host, e.ours.VersionID, e.ours.Size, e.ours.CRC64NVME)
}

func (e *itemTaken) Unwrap() error { return offload.ErrConflict }

// errErased is record's answer when the key's item is a tombstone: the
// original was erased, and a file under its name is never recorded (nor
// archived as if it were), whatever S3 holds now. It is ErrConflict to
// errors.Is: the file's own failure, kept in place for a human (or for the
// host's erasure poller, which removes it).
var errErased = fmt.Errorf("the original was erased; a file under its name is never recorded again: %w", offload.ErrConflict)

// record writes the item unless the key already has one. Idempotent: an
// existing item for the same object version (key, size, checksum, version
// id) is success, so a resumed run or a second host that found the object
// agrees; an item for another version or other bytes is an *itemTaken and
// is left as it is; a tombstone is errErased, whatever it names.
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
	if e := existing.Erasure; e != nil {
		return fmt.Errorf("ledger %s (erased at %s by %q): %w", r.Key, e.At.Format(time.RFC3339), e.By, errErased)
	}
	if !existing.SameVersion(r) {
		return &itemTaken{existing: existing, ours: r}
	}
	return nil
}

// replace writes r over the key's item only if the item still names the
// version and bytes of old, so that of two agents replacing one stale item
// the second finds the first's and decides again. A failed condition is
// DynamoDB's ConditionalCheckFailedException
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html);
// it is returned as an error to retry, not as a conflict.
func (l *dynamoLedger) replace(ctx context.Context, old, r offload.Record) error {
	// "size" is a DynamoDB reserved word, hence the names. A tombstone
	// keeps the erased item's size, checksum and version: an erasure that
	// came after this agent read the item fails the condition too.
	cond := "#crc = :crc AND #size = :size AND attribute_not_exists(#erased)"
	names := map[string]string{"#crc": "crc64nvme", "#size": "size", "#version": "version_id", "#erased": offload.ErasedAtAttr}
	values := map[string]types.AttributeValue{
		":crc":  &types.AttributeValueMemberS{Value: old.CRC64NVME},
		":size": &types.AttributeValueMemberN{Value: strconv.FormatInt(old.Size, 10)},
	}
	if old.VersionID == "" {
		cond += " AND attribute_not_exists(#version)"
	} else {
		cond += " AND #version = :version"
		values[":version"] = &types.AttributeValueMemberS{Value: old.VersionID}
	}
	cctx, cancel := context.WithTimeout(ctx, l.callTimeout)
	defer cancel()
	_, err := l.client.PutItem(cctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(l.table),
		Item:                      r.Item(),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return fmt.Errorf("ledger replace %s: the item changed since it was read; the next attempt reads it again", r.Key)
	}
	if err != nil {
		return fmt.Errorf("ledger replace %s: %w", r.Key, err)
	}
	return nil
}

// get reads the ledger item of key, strongly consistent.
func (l *dynamoLedger) get(ctx context.Context, key string) (offload.Record, error) {
	cctx, cancel := context.WithTimeout(ctx, l.callTimeout)
	defer cancel()
	return offload.GetRecord(cctx, l.client, l.table, key)
}
