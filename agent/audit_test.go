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
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestAuditFindsEveryKind: after a clean offload, one discrepancy of each
// kind is planted behind the agent's back; the audit reports exactly those,
// and nothing about the files that are fine. With a grace period, young
// files and objects are pending, not discrepancies.
func TestAuditFindsEveryKind(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for i, rel := range []string{"fine-1.jpg", "sub/fine-2.jpg", "lost.jpg", "mismatch.jpg", "stale.jpg"} {
		h.write(rel, randomBytes(1000+i, byte(i)))
	}
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	ctx := context.Background()
	put := func(rel string, data []byte) {
		t.Helper()
		if _, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key(rel)), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	record := func(r offload.Record) {
		t.Helper()
		if _, err := h.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(h.cfg.Table), Item: r.Item()}); err != nil {
			t.Fatal(err)
		}
	}
	// lost.jpg: its object is deleted: the ledger item and the archived
	// copy both point at nothing.
	if _, err := h.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("lost.jpg"))}); err != nil {
		t.Fatal(err)
	}
	// mismatch.jpg: the ledger says other bytes.
	rec := h.ledgerItem("mismatch.jpg")
	rec.CRC64NVME, rec.Size = "AAAAAAAAAAA=", 1
	record(rec)
	// stale.jpg: its version is deleted and the same bytes stored again:
	// the ledger names a version that is gone, which the resolver presigns.
	if _, err := h.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("stale.jpg")),
		VersionId: aws.String(h.ledgerItem("stale.jpg").VersionID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("stale.jpg")),
		Body: bytes.NewReader(randomBytes(1004, 4)), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme}); err != nil {
		t.Fatal(err)
	}
	// ghost.jpg: recorded, never uploaded.
	record(offload.Record{Key: h.key("ghost.jpg"), Size: 5, CRC64NVME: "AAAAAAAAAAA=", Host: "elsewhere", Path: "ghost.jpg", UploadedAt: time.Now().UTC()})
	// stray.jpg: an object nobody recorded.
	put("stray.jpg", []byte("stray"))
	// unsent.jpg: in the watch folder, never offloaded.
	os.WriteFile(filepath.Join(h.cfg.Watch, "unsent.jpg"), []byte("unsent"), 0o644)
	// A folder the agent ignores (it matches *.part) is not judged.
	os.MkdirAll(filepath.Join(h.cfg.Watch, "chunks.part"), 0o755)
	os.WriteFile(filepath.Join(h.cfg.Watch, "chunks.part", "piece.jpg"), []byte("piece"), 0o644)
	// smuggled.jpg: in the archive, never offloaded.
	os.WriteFile(filepath.Join(h.cfg.Archive, "smuggled.jpg"), []byte("smuggled"), 0o644)
	// fine-1.jpg's archived copy is altered: only the deep audit sees it.
	os.WriteFile(filepath.Join(h.cfg.Archive, "fine-1.jpg"), randomBytes(1000, 99), 0o644)

	// The audit runs as itself: AuditPolicy, read-only, with s3:ListBucket.
	h.agentS3 = h.st.S3For(t, stacktest.Audit, h.st.AWSShimEndpoint(t))
	run := func(opts agent.AuditOptions) ([]string, agent.AuditSummary) {
		t.Helper()
		var got []string
		sum, err := h.newAgent(h.cfg).Audit(ctx, opts, func(d agent.Discrepancy) { got = append(got, d.Kind+" "+d.Key) })
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		slices.Sort(got)
		return got, sum
	}
	want := []string{
		agent.ArchivedNotInS3 + " " + h.key("lost.jpg"),
		agent.ArchivedNotInS3 + " " + h.key("smuggled.jpg"),
		agent.ChecksumMismatch + " " + h.key("mismatch.jpg"),
		agent.LedgerObjectMissing + " " + h.key("ghost.jpg"),
		agent.LedgerObjectMissing + " " + h.key("lost.jpg"),
		agent.LedgerVersionStale + " " + h.key("stale.jpg"),
		agent.LocalNotInS3 + " " + h.key("unsent.jpg"),
		agent.ObjectWithoutLedger + " " + h.key("stray.jpg"),
	}
	got, sum := run(agent.AuditOptions{})
	if !slices.Equal(got, want) {
		t.Errorf("audit found:\n%q\nwant:\n%q", got, want)
	}
	if sum.LedgerItems != 6 || sum.Objects != 5 || sum.LocalFiles != 1 || sum.ArchivedFiles != 6 {
		t.Errorf("summary %+v; want 6 ledger items, 5 objects, 1 local file, 6 archived files", sum)
	}

	deep, _ := run(agent.AuditOptions{Deep: true})
	wantDeep := append(slices.Clone(want), agent.ChecksumMismatch+" "+h.key("fine-1.jpg"))
	slices.Sort(wantDeep)
	if !slices.Equal(deep, wantDeep) {
		t.Errorf("deep audit found:\n%q\nwant:\n%q", deep, wantDeep)
	}

	// With an hour's grace the young local file and the young stray object
	// may be mid-offload: pending, not wrong.
	young, ysum := run(agent.AuditOptions{Grace: time.Hour})
	for _, d := range young {
		if d == agent.LocalNotInS3+" "+h.key("unsent.jpg") || d == agent.ObjectWithoutLedger+" "+h.key("stray.jpg") {
			t.Errorf("with a grace period: %s", d)
		}
	}
	if ysum.Pending < 2 {
		t.Errorf("with a grace period: pending = %d; want at least 2", ysum.Pending)
	}
}

// TestAuditCommand: the real command says "no discrepancies" and exits 0 on
// a clean offload; with one planted it names it and exits 1; --json gives
// one object per line and a summary. Bad usage exits 2 with one line and
// no audit; an audit that could not look at everything (here the agent's
// credentials, which lack s3:ListBucket, so the bucket listing is refused)
// exits 3, says why, and still prints what it looked at.
func TestAuditCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	h.write("a.jpg", randomBytes(3000, 1))
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	auditAs := func(component string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"audit", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive,
			"--key-prefix", h.cfg.Mapping.KeyPrefix, "--grace", "0s"}, args...)...)
		cmd.Env = h.commandEnv(component)
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
	audit := func(args ...string) (string, int) {
		t.Helper()
		out, _, code := auditAs(stacktest.Audit, args...)
		return out, code
	}
	if out, code := audit(); code != 0 || !strings.Contains(out, "no discrepancies") {
		t.Errorf("clean audit: exit %d, output:\n%s", code, out)
	}
	if out, code := audit("--cache-dir", t.TempDir()); code != 0 || !strings.Contains(out, ", 0 in the cache;") {
		t.Errorf("clean audit with an empty cache: exit %d, output:\n%s; want the cache's count in the summary", code, out)
	}
	os.WriteFile(filepath.Join(h.cfg.Archive, "smuggled.jpg"), []byte("x"), 0o644)
	out, code := audit()
	if code != 1 || !strings.Contains(out, agent.ArchivedNotInS3+" ") || !strings.Contains(out, "1 discrepancies: "+agent.ArchivedNotInS3+" 1") {
		t.Errorf("audit with a planted file: exit %d, output:\n%s", code, out)
	}
	t.Logf("audit output:\n%s", out)
	out, code = audit("--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var d agent.Discrepancy
	var final struct {
		Summary agent.AuditSummary
		Error   string
	}
	if code != 1 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &d) != nil || json.Unmarshal([]byte(lines[1]), &final) != nil ||
		d.Kind != agent.ArchivedNotInS3 || d.Path != "smuggled.jpg" || final.Summary.Discrepancies[agent.ArchivedNotInS3] != 1 || final.Error != "" {
		t.Errorf("audit --json: exit %d, output:\n%s", code, out)
	}

	// Status 2: refused before anything is read, in one line.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--grace", "soon"}, "--grace"},
		{[]string{"--key-prefix", "../"}, "key prefix"},
		// Not audit's: --part-size says how to upload, not where to look.
		{[]string{"--part-size", "1MiB"}, "unknown flag --part-size"},
		{[]string{"--json=maybe"}, "--json"},
		// A mistyped cache folder would read as an empty, clean cache.
		{[]string{"--cache-dir", filepath.Join(t.TempDir(), "typo")}, "cache:"},
	} {
		out, errOut, code := auditAs(stacktest.Audit, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("audit %q: exit %d, stdout %q, stderr %q; want 2, nothing on stdout, one line naming %q", tt.args, code, out, errOut, tt.want)
		}
	}

	// Status 3: the listing is refused. The ledger pass ran, so the
	// summary counts its item; the exit status says the rest is unknown,
	// even though nothing wrong was found before it stopped.
	out, errOut, code := auditAs(stacktest.Agent)
	if code != 3 || !strings.Contains(errOut, "incomplete:") || !strings.Contains(errOut, "AccessDenied") || !strings.Contains(out, "looked at 1 ledger items") {
		t.Errorf("audit without s3:ListBucket: exit %d, stdout:\n%s\nstderr:\n%s\nwant 3, the summary so far, and \"incomplete:\" naming AccessDenied", code, out, errOut)
	}
	out, _, code = auditAs(stacktest.Agent, "--json")
	final.Error = ""
	if code != 3 || json.Unmarshal([]byte(strings.TrimSpace(out)), &final) != nil || !strings.Contains(final.Error, "AccessDenied") || final.Summary.LedgerItems != 1 {
		t.Errorf("audit --json without s3:ListBucket: exit %d, output:\n%s\nwant 3 and a summary with the error", code, out)
	}
}

// TestDryRunTouchesNothing: --dry-run says, for each file, what it would do
// (a new file: upload; one S3 already holds: record and archive; other
// bytes under its key: a conflict), and does none of it: no object, no
// ledger item, nothing moved, a dead run's multipart upload and claimed file
// left alone. S3 answers as AWS does under AgentPolicy: the HEAD of the new
// file's key is 403, which must read as "would upload", not as a failure.
func TestDryRunTouchesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.requireAWSAnswers()
	ctx := context.Background()
	same, other := randomBytes(3000, 2), randomBytes(4000, 3)
	h.write("new.jpg", randomBytes(2000, 1))
	h.write("same.jpg", same)
	h.write("other.jpg", other)
	for rel, data := range map[string][]byte{"same.jpg": same, "other.jpg": randomBytes(4000, 4)} {
		if _, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key(rel)),
			Body: bytes.NewReader(data), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("new.jpg"))}); err != nil {
		t.Fatal(err)
	}
	claimed := filepath.Join(h.cfg.Watch, ".offload-claim", "half.jpg")
	os.MkdirAll(filepath.Dir(claimed), 0o755)
	os.WriteFile(claimed, []byte("half"), 0o644)

	h.cfg.DryRun = true
	if err := h.once(); err != nil {
		t.Fatalf("Once --dry-run: %v", err)
	}
	logs := h.logs.String()
	for _, want := range []string{
		"file=new.jpg", "would upload 2000 bytes to " + h.key("new.jpg"),
		"file=same.jpg", h.key("same.jpg") + " already holds these bytes: would record it in the ledger",
		"file=other.jpg", "conflict: " + h.key("other.jpg") + " holds other bytes",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("dry run log lacks %q", want)
		}
	}
	for _, rel := range []string{"new.jpg", "same.jpg", "other.jpg"} {
		if _, err := os.Stat(filepath.Join(h.cfg.Watch, rel)); err != nil || h.archived(rel) {
			t.Errorf("%s moved by a dry run: %v", rel, err)
		}
	}
	if h.objectExists("new.jpg") || h.ledgerCount() != 0 {
		t.Errorf("dry run uploaded or recorded: object %v, ledger items %d", h.objectExists("new.jpg"), h.ledgerCount())
	}
	if up := h.multipartUploads(); len(up) != 1 {
		t.Errorf("multipart uploads after a dry run: %v; want the one left alone", up)
	}
	if _, err := os.Stat(claimed); err != nil {
		t.Errorf("claimed file moved by a dry run: %v", err)
	}
}

// TestAuditChecksTheCache: a file in the hot cache is served as the
// original, so the audit reads each one and reports any the ledger does
// not record, or records with other bytes; the good ones pass.
func TestAuditChecksTheCache(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	good, changed := randomBytes(3000, 1), randomBytes(2000, 2)
	h.write("good.jpg", good)
	h.write("sub/changed.jpg", changed)
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	cacheDir := t.TempDir()
	cached := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(cacheDir, "static", filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cached("good.jpg", good)
	cached("sub/changed.jpg", append(slices.Clone(changed[:1999]), changed[1999]^1))
	cached("never-offloaded.jpg", []byte("made up"))
	// Downloads in progress are not in any URL's path, and not judged.
	os.MkdirAll(filepath.Join(cacheDir, ".offload-fetch"), 0o700)
	os.WriteFile(filepath.Join(cacheDir, ".offload-fetch", "1.2"), []byte("half"), 0o600)

	h.agentS3 = h.st.S3For(t, stacktest.Audit, h.st.AWSShimEndpoint(t))
	var got []string
	sum, err := h.newAgent(h.cfg).Audit(context.Background(), agent.AuditOptions{CacheDir: cacheDir}, func(d agent.Discrepancy) { got = append(got, d.Kind+" "+d.Key) })
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	slices.Sort(got)
	want := []string{
		agent.CachedMismatch + " " + h.key("sub/changed.jpg"),
		agent.CachedNotInLedger + " " + h.key("never-offloaded.jpg"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit found:\n%q\nwant:\n%q", got, want)
	}
	if sum.CachedFiles != 3 {
		t.Errorf("summary %+v; want 3 cached files looked at", sum)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, ".offload-fetch", "1.2")); err != nil {
		t.Errorf("the audit touched a download in progress: %v", err)
	}
}
