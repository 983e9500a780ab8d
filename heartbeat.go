package offload

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Heartbeat is a host's item in the ledger (partition key HostItemPrefix +
// host): each agent writes it every poll, so the audit knows which hosts
// exist, which are alive, and how far each has acknowledged erasures.
type Heartbeat struct {
	Host      string    // the agent's --host
	KeyPrefix string    // the keys it offloads under (sites may share a table)
	SeenAt    time.Time // when the agent last wrote it (UTC)
	// ErasuresThrough is the erased_at up to which this host has removed
	// its copies of every erasure and acknowledged it: where its next look
	// at the index starts (zero: from the beginning).
	ErasuresThrough time.Time
}

// The heartbeat item's attributes.
const (
	HeartbeatHostAttr    = "host"             // S
	HeartbeatPrefixAttr  = "key_prefix"       // S
	HeartbeatSeenAtAttr  = "seen_at"          // S: RFC 3339, UTC
	HeartbeatThroughAttr = "erasures_through" // S: FormatErasedAt
)

// HeartbeatKey is the partition key of host's heartbeat item.
func HeartbeatKey(host string) string { return HostItemPrefix + host }

// IsHeartbeatKey reports whether a ledger partition key is a heartbeat's,
// not an object's.
func IsHeartbeatKey(pk string) bool { return strings.HasPrefix(pk, HostItemPrefix) }

// Item encodes the heartbeat as a DynamoDB item.
func (h Heartbeat) Item() map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		LedgerPartitionKey:  &types.AttributeValueMemberS{Value: HeartbeatKey(h.Host)},
		HeartbeatHostAttr:   &types.AttributeValueMemberS{Value: h.Host},
		HeartbeatPrefixAttr: &types.AttributeValueMemberS{Value: h.KeyPrefix},
		HeartbeatSeenAtAttr: &types.AttributeValueMemberS{Value: h.SeenAt.UTC().Format(time.RFC3339Nano)},
	}
	if !h.ErasuresThrough.IsZero() {
		item[HeartbeatThroughAttr] = &types.AttributeValueMemberS{Value: FormatErasedAt(h.ErasuresThrough)}
	}
	return item
}

// HeartbeatFromItem decodes what Heartbeat.Item encodes.
func HeartbeatFromItem(item map[string]types.AttributeValue) (Heartbeat, error) {
	str := func(name string) string {
		if v, ok := item[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	pk := str(LedgerPartitionKey)
	if !IsHeartbeatKey(pk) {
		return Heartbeat{}, fmt.Errorf("ledger item %q is not a heartbeat", pk)
	}
	h := Heartbeat{Host: str(HeartbeatHostAttr), KeyPrefix: str(HeartbeatPrefixAttr)}
	if h.Host != strings.TrimPrefix(pk, HostItemPrefix) {
		return h, fmt.Errorf("heartbeat %q names host %q", pk, h.Host)
	}
	var err error
	if h.SeenAt, err = time.Parse(time.RFC3339Nano, str(HeartbeatSeenAtAttr)); err != nil {
		return h, fmt.Errorf("heartbeat %q: %s: %w", pk, HeartbeatSeenAtAttr, err)
	}
	if through := str(HeartbeatThroughAttr); through != "" {
		if h.ErasuresThrough, err = time.Parse(time.RFC3339Nano, through); err != nil {
			return h, fmt.Errorf("heartbeat %q: %s: %w", pk, HeartbeatThroughAttr, err)
		}
	}
	return h, nil
}
