package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload/agent"
)

// TestPruneInABucketWhoseVersioningChanged: prune's proof is one HEAD of
// the key, which must name the recorded version. In a bucket never
// versioned (no version recorded), and in one whose versioning was
// suspended after an upload (that upload's version recorded; the later
// one's null version as S3 answers it, which MinIO does with no version
// at all), each archived file whose object S3 holds as recorded is
// removed: neither is taken for a noncurrent version.
func TestPruneInABucketWhoseVersioningChanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const bucket = "prune-versioning"
	_, root := h.onPrivateMinIO(bucket)
	ctx := context.Background()
	versioning := func(status s3types.BucketVersioningStatus) {
		t.Helper()
		if _, err := root.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: status}}); err != nil {
			t.Fatal(err)
		}
	}
	offload := func(rel string, seed byte) {
		t.Helper()
		h.write(rel, randomBytes(1500, seed))
		if err := h.once(); err != nil {
			t.Fatalf("Once (%s): %v", rel, err)
		}
	}
	offload("never-versioned.jpg", 1)
	versioning(s3types.BucketVersioningStatusEnabled)
	offload("versioned.jpg", 2)
	versioning(s3types.BucketVersioningStatusSuspended)
	offload("suspended.jpg", 3)
	names := []string{"never-versioned.jpg", "versioned.jpg", "suspended.jpg"}
	for _, rel := range names {
		rec := h.ledgerItem(rel)
		t.Logf("%s: recorded version %q", rel, rec.VersionID)
		rec.UploadedAt = time.Now().Add(-60 * 24 * time.Hour).UTC()
		if _, err := h.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(h.cfg.Table), Item: rec.Item()}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]agent.PruneResult{}
	if _, err := h.newAgent(h.cfg).Prune(ctx, agent.PruneOptions{MinAge: time.Hour}, func(r agent.PruneResult) { got[r.Path] = r }); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	for _, rel := range names {
		if r := got[rel]; !r.Removed || h.archived(rel) {
			t.Errorf("%s: %+v, archived %v; want removed", rel, r, h.archived(rel))
		}
	}
}
