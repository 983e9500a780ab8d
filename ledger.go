package offload

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// LedgerPartitionKey is the ledger table's partition key: a string attribute
// holding the object key. Not "key", which is a DynamoDB reserved word and
// would need an expression placeholder in every condition.
const LedgerPartitionKey = "pk"

// Record is the ledger's item for one original: written by the agent once
// S3 has proved it holds the bytes, read by the resolver before it presigns.
type Record struct {
	Key         string    // object key (the partition key, attribute "pk")
	Size        int64     // bytes
	CRC64NVME   string    // full-object checksum, base64 as S3 reports it
	ETag        string    // as S3 returned it, quotes included
	VersionID   string    // empty when the bucket is not versioned
	ContentType string    // what the object was stored with
	Host        string    // the web host whose agent uploaded it
	Path        string    // path relative to that host's watch folder
	UploadedAt  time.Time // when the agent recorded it (UTC)
}

// SameObject reports whether two records describe the same original: the same
// key, size and checksum. Who uploaded it and when do not matter, so two hosts
// recording identical bytes under one name agree.
func (r Record) SameObject(o Record) bool {
	return r.Key == o.Key && r.Size == o.Size && r.CRC64NVME == o.CRC64NVME
}

// SameVersion reports whether two records name the same object version:
// the same object (SameObject) under the same version id. The resolver
// presigns the version the ledger names, so an item is proof of an object
// only while it names the version S3 holds; in a bucket that is not
// versioned both ids are empty and SameObject decides.
func (r Record) SameVersion(o Record) bool {
	return r.SameObject(o) && r.VersionID == o.VersionID
}

// Item encodes the record as a DynamoDB item.
func (r Record) Item() map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		LedgerPartitionKey: &types.AttributeValueMemberS{Value: r.Key},
		"size":             &types.AttributeValueMemberN{Value: strconv.FormatInt(r.Size, 10)},
		"crc64nvme":        &types.AttributeValueMemberS{Value: r.CRC64NVME},
		"uploaded_at":      &types.AttributeValueMemberS{Value: r.UploadedAt.UTC().Format(time.RFC3339Nano)},
	}
	// DynamoDB refuses empty strings in key attributes only, but absent is
	// clearer than empty for the optional ones.
	for name, v := range map[string]string{"etag": r.ETag, "version_id": r.VersionID, "content_type": r.ContentType, "host": r.Host, "path": r.Path} {
		if v != "" {
			item[name] = &types.AttributeValueMemberS{Value: v}
		}
	}
	return item
}

// RecordFromItem decodes what Item encodes.
func RecordFromItem(item map[string]types.AttributeValue) (Record, error) {
	str := func(name string) string {
		if v, ok := item[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	r := Record{
		Key: str(LedgerPartitionKey), CRC64NVME: str("crc64nvme"), ETag: str("etag"), VersionID: str("version_id"),
		ContentType: str("content_type"), Host: str("host"), Path: str("path"),
	}
	if r.Key == "" {
		return r, fmt.Errorf("ledger item has no %q attribute", LedgerPartitionKey)
	}
	n, ok := item["size"].(*types.AttributeValueMemberN)
	if !ok {
		return r, fmt.Errorf("ledger item %q has no size", r.Key)
	}
	var err error
	if r.Size, err = strconv.ParseInt(n.Value, 10, 64); err != nil {
		return r, fmt.Errorf("ledger item %q: size: %w", r.Key, err)
	}
	if at := str("uploaded_at"); at != "" {
		if r.UploadedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return r, fmt.Errorf("ledger item %q: uploaded_at: %w", r.Key, err)
		}
	}
	return r, nil
}

// ItemGetter is the one DynamoDB call GetRecord makes; *dynamodb.Client
// satisfies it.
type ItemGetter interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}

// GetRecord reads the ledger item of an object key, strongly consistent (so
// a file recorded a moment ago is found). A missing item is ErrNotFound.
func GetRecord(ctx context.Context, db ItemGetter, table, key string) (Record, error) {
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{LedgerPartitionKey: &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Record{}, fmt.Errorf("ledger get %s: %w", key, err)
	}
	if out.Item == nil {
		return Record{}, fmt.Errorf("ledger get %s: %w", key, ErrNotFound)
	}
	return RecordFromItem(out.Item)
}
