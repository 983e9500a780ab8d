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
	// StorageClass is the S3 storage class the object was stored in when
	// it was recorded (attribute StorageClassAttr): "" is STANDARD, S3's
	// default, which a HEAD does not name either. An item written before
	// the attribute existed reads as "": every original was STANDARD
	// then. A lifecycle rule may move the object to another class later
	// (see template.yaml); the ledger keeps the class it was uploaded in.
	StorageClass string

	// Erasure is set once an operator erased the original ("offload-agent
	// erase"): the item stays as a tombstone that nothing may serve, fetch
	// or record over, and that every host acknowledges once its own copies
	// are gone. A tombstone of a key never recorded has no size or checksum.
	Erasure *Erasure
}

// Erasure is what the ledger records about an erased original.
type Erasure struct {
	At      time.Time // when it was marked (UTC, S3's clock); a re-run stamps it again
	By, Why string    // who asked, and why, as the operator said
	// Done is when every version, delete marker and open upload of the
	// key was gone from S3; zero while some remain (a re-run finishes).
	Done time.Time
	// AckedBy are the hosts that removed their own copies (watch folder,
	// archive, hot cache, upload records).
	AckedBy []string
}

// Erased reports whether the original was erased: a tombstone.
func (r Record) Erased() bool { return r.Erasure != nil }

// The ledger's erasure attributes and the sparse index over them. Only a
// tombstone carries ErasedInAttr, so the index "erasures" holds nothing
// else, and a host finds the erasures since its last look with one Query
// (partition ErasedPartition(prefix), sort ErasedAtAttr) instead of a Scan.
const (
	ErasuresIndex  = "erasures"
	ErasedInAttr   = "erased_in"  // S: ErasedPartition(key prefix)
	ErasedAtAttr   = "erased_at"  // S: FormatErasedAt (fixed width, UTC): sorts as time
	ErasedByAttr   = "erased_by"  // S
	ErasedWhyAttr  = "erased_why" // S
	EraseDoneAttr  = "erase_done" // S: RFC 3339, set when S3 holds nothing of the key
	AckedByAttr    = "acked_by"   // SS: host names
	HostItemPrefix = "/host/"     // heartbeat items: no object key starts with "/"

	StorageClassAttr = "storage_class" // S: Record.StorageClass; absent for STANDARD

	// EraseNothingAttr (S, "true") is set with EraseDoneAttr when that run
	// of erase found nothing of the key (no record, no version, no
	// upload): a name nothing knew, which a later run reports so again.
	EraseNothingAttr = "erase_nothing"
)

// ErasedAtLayout is how ErasedAtAttr is written: RFC 3339 in UTC with all
// nine fraction digits. The index sorts the strings, and only a fixed width
// sorts as time: time.RFC3339Nano drops trailing zeros, so "…:05Z" would
// sort after "…:05.1Z". time.RFC3339Nano parses it.
const ErasedAtLayout = "2006-01-02T15:04:05.000000000Z"

// FormatErasedAt is t as ErasedAtAttr holds it (ErasedAtLayout, UTC). Every
// writer of the attribute (erase's mark, a query's bound) uses it.
func FormatErasedAt(t time.Time) string { return t.UTC().Format(ErasedAtLayout) }

// ErasedPartition is the erasures index's partition value for the keys
// under one key prefix: sites (and the tests) that share a table stay apart.
func ErasedPartition(keyPrefix string) string { return "erased#" + keyPrefix }

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
	for name, v := range map[string]string{"etag": r.ETag, "version_id": r.VersionID, "content_type": r.ContentType, "host": r.Host, "path": r.Path,
		StorageClassAttr: r.StorageClass} {
		if v != "" {
			item[name] = &types.AttributeValueMemberS{Value: v}
		}
	}
	if e := r.Erasure; e != nil {
		item[ErasedAtAttr] = &types.AttributeValueMemberS{Value: FormatErasedAt(e.At)}
		for name, v := range map[string]string{ErasedByAttr: e.By, ErasedWhyAttr: e.Why} {
			if v != "" {
				item[name] = &types.AttributeValueMemberS{Value: v}
			}
		}
		if !e.Done.IsZero() {
			item[EraseDoneAttr] = &types.AttributeValueMemberS{Value: e.Done.UTC().Format(time.RFC3339Nano)}
		}
		if len(e.AckedBy) > 0 {
			item[AckedByAttr] = &types.AttributeValueMemberSS{Value: e.AckedBy}
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
		ContentType: str("content_type"), Host: str("host"), Path: str("path"), StorageClass: str(StorageClassAttr),
	}
	if r.Key == "" {
		return r, fmt.Errorf("ledger item has no %q attribute", LedgerPartitionKey)
	}
	var err error
	if at := str(ErasedAtAttr); at != "" {
		e := &Erasure{By: str(ErasedByAttr), Why: str(ErasedWhyAttr)}
		if e.At, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return r, fmt.Errorf("ledger item %q: %s: %w", r.Key, ErasedAtAttr, err)
		}
		if done := str(EraseDoneAttr); done != "" {
			if e.Done, err = time.Parse(time.RFC3339Nano, done); err != nil {
				return r, fmt.Errorf("ledger item %q: %s: %w", r.Key, EraseDoneAttr, err)
			}
		}
		if ss, ok := item[AckedByAttr].(*types.AttributeValueMemberSS); ok {
			e.AckedBy = ss.Value
		}
		r.Erasure = e
	}
	n, ok := item["size"].(*types.AttributeValueMemberN)
	if !ok {
		if r.Erased() { // a tombstone of a key never recorded
			return r, nil
		}
		return r, fmt.Errorf("ledger item %q has no size", r.Key)
	}
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
