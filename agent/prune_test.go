package agent_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
)

// pruneWorld offloads one archived file per case of prune's rules, then
// plants each case behind the agent's back with the stack's root
// credentials: every ledger item but young.jpg's is made 60 days old.
//   - good.jpg, sub/good.jpg: ledger, S3 and archive agree: removed.
//   - no-item.jpg: its ledger item is deleted: kept (not_in_ledger).
//   - replaced.jpg: the recorded version is deleted and other bytes stored
//     under the key: S3 no longer holds the recorded version (s3_missing).
//   - tampered.jpg: the ledger names a version that holds other bytes
//     (s3_differs).
//   - altered.jpg: the archived copy was changed (local_differs).
//   - young.jpg: recorded a moment ago (young).
//   - erased.jpg: a tombstone (erased): the erasure poller removes it.
//
// It returns the files' bytes by name.
func pruneWorld(t *testing.T, h *harness) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	files := map[string][]byte{}
	for i, rel := range []string{"good.jpg", "sub/good.jpg", "no-item.jpg", "replaced.jpg", "tampered.jpg", "altered.jpg", "young.jpg", "erased.jpg"} {
		files[rel] = randomBytes(1000+100*i, byte(i))
		h.write(rel, files[rel])
	}
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	record := func(r offload.Record) {
		t.Helper()
		if _, err := h.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(h.cfg.Table), Item: r.Item()}); err != nil {
			t.Fatal(err)
		}
	}
	putOther := func(rel string) string {
		t.Helper()
		out, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key(rel)),
			Body: bytes.NewReader(randomBytes(len(files[rel]), 99)), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.VersionId)
	}
	old := time.Now().Add(-60 * 24 * time.Hour).UTC()
	for rel := range files {
		if rel == "young.jpg" {
			continue
		}
		rec := h.ledgerItem(rel)
		rec.UploadedAt = old
		switch rel {
		case "tampered.jpg":
			rec.VersionID = putOther(rel)
		case "erased.jpg":
			rec.Erasure = &offload.Erasure{At: time.Now().UTC(), By: "test", Why: "prune must leave it to the poller"}
		case "replaced.jpg":
			if _, err := h.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key(rel)), VersionId: aws.String(rec.VersionID)}); err != nil {
				t.Fatal(err)
			}
			putOther(rel)
		}
		record(rec)
	}
	if _, err := h.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(h.cfg.Table),
		Key: map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: h.key("no-item.jpg")}}}); err != nil {
		t.Fatal(err)
	}
	altered := slices.Clone(files["altered.jpg"])
	altered[0] ^= 1
	if err := os.WriteFile(filepath.Join(h.cfg.Archive, "altered.jpg"), altered, 0o644); err != nil {
		t.Fatal(err)
	}
	return files
}

// wantKept is what pruneWorld's files are kept for.
var wantKept = map[string]string{
	"no-item.jpg":  agent.KeptNotInLedger,
	"replaced.jpg": agent.KeptS3Missing,
	"tampered.jpg": agent.KeptS3Differs,
	"altered.jpg":  agent.KeptLocalDiffers,
	"young.jpg":    agent.KeptYoung,
	"erased.jpg":   agent.KeptErased,
}

// TestPruneRemovesOnlyWhatS3Holds: prune removes an archived file only when
// its ledger item is old enough and S3 holds the recorded version with the
// recorded size and CRC64NVME, the same as the file's; every other file is
// kept, for its reason. A dry run reports the same and removes nothing. The
// agent runs with AgentPolicy's grants, through the AWS shim.
func TestPruneRemovesOnlyWhatS3Holds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.requireAWSAnswers()
	files := pruneWorld(t, h)
	ctx := context.Background()
	run := func(dry bool) (removed []string, kept map[string]string, sum agent.PruneSummary) {
		t.Helper()
		kept = map[string]string{}
		sum, err := h.newAgent(h.cfg).Prune(ctx, agent.PruneOptions{MinAge: 720 * time.Hour, DryRun: dry}, func(r agent.PruneResult) {
			if r.Removed {
				removed = append(removed, r.Path)
			} else {
				kept[r.Path] = r.Kept
			}
			t.Logf("dry %v: %+v", dry, r)
		})
		if err != nil {
			t.Fatalf("Prune (dry run %v): %v", dry, err)
		}
		slices.Sort(removed)
		return removed, kept, sum
	}
	wantRemoved := []string{"good.jpg", "sub/good.jpg"}
	wantBytes := int64(len(files["good.jpg"]) + len(files["sub/good.jpg"]))
	check := func(dry bool) {
		t.Helper()
		removed, kept, sum := run(dry)
		if !slices.Equal(removed, wantRemoved) {
			t.Errorf("dry run %v: removed %q; want %q", dry, removed, wantRemoved)
		}
		for rel, why := range wantKept {
			if kept[rel] != why {
				t.Errorf("dry run %v: %s kept for %q; want %q", dry, rel, kept[rel], why)
			}
		}
		if sum.Files != len(files) || sum.Removed != 2 || sum.RemovedBytes != wantBytes || sum.DryRun != dry {
			t.Errorf("dry run %v: summary %+v; want %d files, 2 removed, %d bytes", dry, sum, len(files), wantBytes)
		}
		for _, why := range wantKept {
			if sum.Kept[why] != 1 {
				t.Errorf("dry run %v: summary kept %v; want 1 for each of %v", dry, sum.Kept, wantKept)
				break
			}
		}
	}

	check(true)
	for rel := range files {
		if !h.archived(rel) {
			t.Errorf("a dry run removed %s", rel)
		}
	}

	check(false)
	for rel := range files {
		if got, want := h.archived(rel), !slices.Contains(wantRemoved, rel); got != want {
			t.Errorf("%s in the archive after prune: %v; want %v", rel, got, want)
		}
	}
	// The folder emptied is left; S3 and the ledger are untouched.
	if fi, err := os.Stat(filepath.Join(h.cfg.Archive, "sub")); err != nil || !fi.IsDir() {
		t.Errorf("the emptied folder sub: %v; want it left", err)
	}
	if !h.objectExists("good.jpg") || h.ledgerItem("good.jpg").Size != int64(len(files["good.jpg"])) {
		t.Errorf("prune touched S3 or the ledger of good.jpg")
	}
}

// TestPruneKeepsAFileChangedAfterItsCheck: a file replaced between its
// checksum and its unlink (here by a rename over it, as a restore would) is
// kept: prune removes only the inode it read. Not parallel: it sets a
// package hook.
func TestPruneKeepsAFileChangedAfterItsCheck(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(2000, 1)
	h.write("racy.jpg", data)
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	rec := h.ledgerItem("racy.jpg")
	rec.UploadedAt = time.Now().Add(-60 * 24 * time.Hour).UTC()
	if _, err := h.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(h.cfg.Table), Item: rec.Item()}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.cfg.Archive, "racy.jpg")
	agent.SimulateChangeBeforePruneUnlink(t, func(path string) {
		if path != p {
			return
		}
		tmp := p + ".new"
		os.WriteFile(tmp, data, 0o644) // the same bytes, another inode
		if err := os.Rename(tmp, p); err != nil {
			t.Error(err)
		}
	})
	var got agent.PruneResult
	if _, err := h.newAgent(h.cfg).Prune(context.Background(), agent.PruneOptions{MinAge: time.Hour}, func(r agent.PruneResult) { got = r }); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if got.Removed || got.Kept != agent.KeptLocalDiffers || !h.archived("racy.jpg") {
		t.Errorf("a file replaced after its check: %+v, archived %v; want kept (%s)", got, h.archived("racy.jpg"), agent.KeptLocalDiffers)
	}
}
