package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
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

// TestPruneCommand: the real command, as the offload-prune unit runs it
// (the agent's credentials, its settings from the environment): without a
// minimum age, or with 0 or a unit Go durations lack, it refuses in one line
// (exit 2); --dry-run lists what it would remove and removes nothing;
// OFFLOAD_PRUNE_MIN_AGE runs it for real; --metrics-textfile writes the
// run's metrics for node_exporter.
func TestPruneCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	files := pruneWorld(t, h)
	prune := func(env []string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"prune", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive,
			"--key-prefix", h.cfg.Mapping.KeyPrefix}, args...)...)
		cmd.Env = h.commandEnv(stacktest.Agent, env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errOut, testWriter{t})
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "--min-age"},
		{[]string{"--min-age", "0s"}, "more than 0"},
		{[]string{"--min-age", "30d"}, "720h"},
		{[]string{"--min-age", "720h", "--metrics-textfile", "prune.txt"}, ".prom"},
		{[]string{"--min-age", "720h", "--part-size", "1MiB"}, "unknown flag --part-size"},
	} {
		out, errOut, code := prune(nil, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("prune %q: exit %d, stdout %q, stderr %q; want 2, nothing on stdout, one line naming %q", tt.args, code, out, errOut, tt.want)
		}
	}

	textfile := filepath.Join(t.TempDir(), "offload_prune.prom")
	out, _, code := prune(nil, "--min-age", "720h", "--dry-run", "--metrics-textfile", textfile)
	for _, want := range []string{"would remove good.jpg", "would remove sub/good.jpg", "kept replaced.jpg: s3_missing",
		"kept tampered.jpg: s3_differs", "kept no-item.jpg: not_in_ledger", "kept altered.jpg: local_differs",
		"looked at 8 archived files; would remove 2 (2100 bytes)"} {
		if !strings.Contains(out, want) {
			t.Errorf("prune --dry-run: output lacks %q", want)
		}
	}
	if code != 0 || len(files) != 8 {
		t.Errorf("prune --dry-run: exit %d; want 0", code)
	}
	for rel := range files {
		if !h.archived(rel) {
			t.Errorf("prune --dry-run removed %s", rel)
		}
	}
	t.Logf("prune --dry-run:\n%s", out)
	metrics, err := os.ReadFile(textfile)
	if err != nil || !strings.Contains(string(metrics), "offload_prune_removed_files 0\n") {
		t.Errorf("dry run's metrics: %v\n%s\nwant offload_prune_removed_files 0: a dry run frees nothing", err, metrics)
	}

	out, _, code = prune([]string{"OFFLOAD_PRUNE_MIN_AGE=720h", "OFFLOAD_PRUNE_METRICS_TEXTFILE=" + textfile})
	if code != 0 || !strings.Contains(out, "removed good.jpg") || !strings.Contains(out, "removed sub/good.jpg") ||
		!strings.Contains(out, "looked at 8 archived files; removed 2 (2100 bytes freed)") {
		t.Errorf("prune: exit %d, output:\n%s", code, out)
	}
	if h.archived("good.jpg") || !h.archived("replaced.jpg") {
		t.Errorf("after prune: good.jpg archived %v, replaced.jpg %v; want removed, kept", h.archived("good.jpg"), h.archived("replaced.jpg"))
	}
	metrics, err = os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"offload_prune_removed_files 2\n", "offload_prune_removed_bytes 2100\n",
		`offload_prune_kept_files{reason="young"} 1` + "\n", `offload_prune_kept_files{reason="s3_missing"} 1` + "\n",
		`offload_prune_kept_files{reason="s3_differs"} 1` + "\n", `offload_prune_kept_files{reason="not_in_ledger"} 1` + "\n",
		`offload_prune_kept_files{reason="local_differs"} 1` + "\n", `offload_prune_kept_files{reason="erased"} 1` + "\n",
		`offload_prune_kept_files{reason="error"} 0` + "\n",
		"# TYPE offload_prune_duration_seconds gauge\n", "# TYPE offload_prune_last_run_timestamp_seconds gauge\n",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics textfile lacks %q:\n%s", want, metrics)
		}
	}

	// --json: each file listed as a line, then the summary.
	out, _, code = prune(nil, "--min-age", "720h", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var final struct {
		Summary agent.PruneSummary `json:"summary"`
	}
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &final) != nil || final.Summary.Files != 6 || final.Summary.Kept[agent.KeptS3Missing] != 1 {
		t.Errorf("prune --json: exit %d, output:\n%s", code, out)
	}
}

// TestPruneKeepsAVersionNoLongerCurrent: the archived copy is the second
// copy of an original whose recorded version S3 still holds, but no longer
// as the key's current version: a plain DELETE put a delete marker on top
// (marker.jpg), or a write around the agent put a new version on top
// (overwritten.jpg). That version is then noncurrent, which a lifecycle
// rule (NoncurrentVersionExpiration) expires: S3 does not hold it safely,
// and the archive may be the only copy that stays. Both are kept
// (s3_not_current); an untouched file beside them is removed.
func TestPruneKeepsAVersionNoLongerCurrent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.requireAWSAnswers()
	ctx := context.Background()
	names := []string{"good.jpg", "marker.jpg", "overwritten.jpg"}
	for i, rel := range names {
		h.write(rel, randomBytes(1500+i, byte(40+i)))
	}
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	for _, rel := range names {
		rec := h.ledgerItem(rel)
		rec.UploadedAt = time.Now().Add(-60 * 24 * time.Hour).UTC()
		if _, err := h.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(h.cfg.Table), Item: rec.Item()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("marker.jpg"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("overwritten.jpg")),
		Body: bytes.NewReader(randomBytes(10, 1)), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme}); err != nil {
		t.Fatal(err)
	}
	got := map[string]agent.PruneResult{}
	if _, err := h.newAgent(h.cfg).Prune(ctx, agent.PruneOptions{MinAge: time.Hour}, func(r agent.PruneResult) { got[r.Path] = r }); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if r := got["good.jpg"]; !r.Removed || h.archived("good.jpg") {
		t.Errorf("good.jpg: %+v, archived %v; want removed", r, h.archived("good.jpg"))
	}
	for _, rel := range []string{"marker.jpg", "overwritten.jpg"} {
		if r := got[rel]; r.Removed || r.Kept != agent.KeptS3NotCurrent || !h.archived(rel) {
			t.Errorf("%s, its recorded version no longer current: %+v, archived %v; want kept (%s)", rel, r, h.archived(rel), agent.KeptS3NotCurrent)
		}
	}
}
