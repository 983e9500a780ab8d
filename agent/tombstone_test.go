package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
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

// deleteVersions removes every version and delete marker of exactly key
// with the stack's root client, as erase will.
func (h *harness) deleteVersions(key string) {
	h.t.Helper()
	ctx := context.Background()
	out, err := h.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(h.st.Bucket), Prefix: aws.String(key)})
	if err != nil {
		h.t.Fatalf("ListObjectVersions %s: %v", key, err)
	}
	var ids []string
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key {
			ids = append(ids, aws.ToString(v.VersionId))
		}
	}
	for _, m := range out.DeleteMarkers {
		if aws.ToString(m.Key) == key {
			ids = append(ids, aws.ToString(m.VersionId))
		}
	}
	if len(ids) == 0 {
		h.t.Fatalf("%s has no versions to delete", key)
	}
	for _, id := range ids {
		if _, err := h.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), VersionId: aws.String(id)}); err != nil {
			h.t.Fatalf("delete %s version %s: %v", key, id, err)
		}
	}
}

// eraseOffloaded does to an offloaded file what an erasure does: marks its
// item, deletes every version, and removes the archived copy (as the
// host's erasure poller will).
func (h *harness) eraseOffloaded(rel string) {
	h.t.Helper()
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key(rel), time.Now())
	h.deleteVersions(h.key(rel))
	if err := os.Remove(filepath.Join(h.cfg.Archive, filepath.FromSlash(rel))); err != nil {
		h.t.Fatal(err)
	}
}

// TestAuditSkipsTombstones: an erased original's item, and the tombstone
// of a key never recorded (no size), are not "ledger-object-missing":
// their objects are meant to be gone. The audit neither fails on them nor
// counts them as ledger items; erase finished both (erase_done) and the one
// host of the key prefix acknowledged both, so both erasures are complete.
func TestAuditSkipsTombstones(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.write("kept.jpg", randomBytes(1000, 1))
	h.write("erased.jpg", randomBytes(1001, 2))
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	h.eraseOffloaded("erased.jpg")
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("never.jpg"), time.Now())
	h.eraseDone(h.key("erased.jpg"))
	h.eraseDone(h.key("never.jpg"))
	host := h.hostName("web")
	h.writeHeartbeat(h.cfg.Mapping.KeyPrefix, host, time.Now())
	h.ack(h.key("erased.jpg"), host)
	h.ack(h.key("never.jpg"), host)

	h.agentS3 = h.st.S3For(t, stacktest.Audit, h.st.AWSShimEndpoint(t))
	var got []string
	sum, err := h.newAgent(h.cfg).Audit(context.Background(), agent.AuditOptions{}, func(d agent.Discrepancy) { got = append(got, d.Kind+" "+d.Key) })
	if err != nil {
		t.Errorf("Audit: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("audit found %q; want nothing", got)
	}
	if sum.LedgerItems != 1 || sum.Erasures != 2 || sum.ErasuresComplete != 2 {
		t.Errorf("summary %+v; want 1 ledger item (kept.jpg) and 2 erasures, complete", sum)
	}
}

// TestErasedNameIsNotRecordedAgain: after an erasure, the same name
// written again is neither uploaded (S3 holds no version, so If-None-Match
// would let it in; the agent looks for the tombstone first) nor recorded:
// the file is not archived, the tombstone stays as it was, and the failure
// shows in the status.
func TestErasedNameIsNotRecordedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	data := randomBytes(2000, 3)
	h.write("photo.jpg", data)
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	before := h.ledgerItem("photo.jpg")
	h.eraseOffloaded("photo.jpg")
	marked := h.ledgerItem("photo.jpg")

	h.write("photo.jpg", data)
	a := h.newAgent(h.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Once(ctx); !errors.Is(err, agent.ErrIncomplete) {
		t.Errorf("Once = %v; want ErrIncomplete", err)
	}
	if h.archived("photo.jpg") {
		t.Errorf("photo.jpg archived after its erasure")
	}
	if _, err := os.Stat(filepath.Join(h.cfg.Watch, "photo.jpg")); err != nil {
		t.Errorf("photo.jpg left the watch folder: %v", err)
	}
	if h.objectExists("photo.jpg") {
		t.Errorf("photo.jpg uploaded again after its erasure")
	}
	after := h.ledgerItem("photo.jpg")
	if !after.Erased() || after.VersionID != before.VersionID || !after.UploadedAt.Equal(before.UploadedAt) || !after.Erasure.At.Equal(marked.Erasure.At) {
		t.Errorf("ledger item after the second write = %+v (erasure %+v); want the tombstone %+v as it was", after, after.Erasure, marked)
	}
	st := a.Status()
	if st.Offloaded != 0 || len(st.RecentFailures) != 1 || st.RecentFailures[0].Path != "photo.jpg" || !strings.Contains(st.RecentFailures[0].Error, "erased") {
		t.Errorf("status: %d offloaded, failures %+v; want none offloaded and photo.jpg's failure naming the erasure", st.Offloaded, st.RecentFailures)
	}
}

// TestPendingProofOfErasedNameIsDropped: S3 accepted an upload whose
// ledger write failed (DynamoDB cut off), and the name was erased before
// the proof could be recorded. The next run drops the proof instead of
// recording it over the tombstone, says so, and leaves the file.
func TestPendingProofOfErasedNameIsDropped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	proxy := h.st.Proxy(t, h.st.DynamoDBEndpoint)
	h.agentDB = h.st.DynamoDBAt(t, proxy.Endpoint)
	proxy.SetEnabled(false)
	a, stop := h.runDaemon(h.cfg)
	h.write("photo.jpg", randomBytes(1000, 5))
	h.waitFor("the object in S3 and a failed ledger write", time.Minute, func() bool {
		return a.Stats().Failures.Load() > 0 && h.objectExists("photo.jpg")
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads", "*.proof")); len(left) != 1 {
		t.Fatalf("pending proofs %v; want the upload's", left)
	}
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("photo.jpg"), time.Now())

	h.agentDB = h.db
	if err := h.once(); !errors.Is(err, agent.ErrIncomplete) {
		t.Errorf("Once = %v; want ErrIncomplete (the file is refused)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads", "*.proof")); len(left) != 0 {
		t.Errorf("pending proofs %v after the run; want the proof dropped", left)
	}
	if rec := h.ledgerItem("photo.jpg"); !rec.Erased() || rec.Size != 0 {
		t.Errorf("ledger item %+v; want the tombstone as marked (no size)", rec)
	}
	if !strings.Contains(h.logs.String(), "under an erased name: nothing recorded") {
		t.Errorf("the log does not say the proof was dropped for the erasure")
	}
	if h.archived("photo.jpg") {
		t.Error("photo.jpg archived after its erasure")
	}
}

// TestErasedOriginalIsNotUploadedAgain: a host keeps its originals in the
// watch folder (--after keep) and is restarted after an erasure, before
// its erasure poller removed the file (here: once, which runs no poller).
// Its scan finds the erased original, and S3 holds no version of the key
// any more, so If-None-Match would let an upload in: the erased bytes
// would be back in S3, unrecorded, for a resolver without the ledger to
// serve. The agent must refuse the file before uploading it: S3 holds
// nothing of the key after the run, and the tombstone is as it was.
func TestErasedOriginalIsNotUploadedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.After = agent.AfterKeep
	h.write("photo.jpg", randomBytes(2000, 7))
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("photo.jpg"), time.Now())
	h.deleteVersions(h.key("photo.jpg"))
	marked := h.ledgerItem("photo.jpg")

	if err := h.once(); !errors.Is(err, agent.ErrIncomplete) {
		t.Errorf("Once after the erasure = %v; want ErrIncomplete (the file is refused)", err)
	}
	out, err := h.s3.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(h.cfg.Bucket), Prefix: aws.String(h.key("photo.jpg"))})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.Versions) + len(out.DeleteMarkers); n != 0 {
		t.Errorf("S3 holds %d versions of %s after a run that found its erased original in the watch folder; want none", n, h.key("photo.jpg"))
	}
	if rec := h.ledgerItem("photo.jpg"); !rec.Erased() || !rec.Erasure.At.Equal(marked.Erasure.At) {
		t.Errorf("ledger item %+v; want the tombstone as marked", rec)
	}
}

// TestUploadsReadNoLedgerItemFirst: looking for a tombstone before each
// upload costs no call for a key no erasure names. once reads the key
// prefix's erasures at start (the erasures index), then reads the ledger
// item only of a file under an erased name, which it refuses: 20 files and
// one erased name make one GetItem, not 21.
func TestUploadsReadNoLedgerItemFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var gets, queries atomic.Int64
	h.agentDB = h.st.DynamoDBAt(t, faultyS3(t, h.st.DynamoDBEndpoint, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		switch target := r.Header.Get("X-Amz-Target"); {
		case strings.HasSuffix(target, ".GetItem"):
			gets.Add(1)
		case strings.HasSuffix(target, ".Query"):
			queries.Add(1)
		}
		return false
	}))
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("gone.jpg"), time.Now())
	h.write("gone.jpg", randomBytes(2000, 9))
	const files = 20
	for i := range files {
		h.write(fmt.Sprintf("f%02d.jpg", i), randomBytes(3000+i, byte(i)))
	}
	if err := h.once(); !errors.Is(err, agent.ErrIncomplete) {
		t.Errorf("once = %v; want ErrIncomplete (gone.jpg refused)", err)
	}
	t.Logf("GetItem %d, Query %d", gets.Load(), queries.Load())
	if got := gets.Load(); got != 1 {
		t.Errorf("once over %d files and one under an erased name: %d GetItem requests; want 1 (the erased name's)", files, got)
	}
	if queries.Load() == 0 {
		t.Errorf("once never queried the erasures index")
	}
	if h.objectExists("gone.jpg") {
		t.Errorf("gone.jpg, under an erased name, was uploaded")
	}
	for i := range files {
		if rel := fmt.Sprintf("f%02d.jpg", i); !h.archived(rel) {
			t.Errorf("%s not archived", rel)
		}
	}
}
