package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestObjectRecordedWhenFileGoesBeforeRetry: S3 accepts the upload, the
// ledger write fails (DynamoDB cut off by Toxiproxy), and before the retry
// the back-end deletes the file, or rewrites it with other bytes. The
// object S3 holds must still get its ledger item, naming the version S3
// accepted: the retry cannot prove it again from the file, so the proof
// S3 gave is what is recorded. In "restarted" the agent stops while
// DynamoDB is still cut off, as a crash would leave it (nothing of the
// proof survives in memory), and a new one runs once after the file went.
func TestObjectRecordedWhenFileGoesBeforeRetry(t *testing.T) {
	t.Parallel()
	for _, change := range []string{"deleted", "rewritten", "restarted"} {
		t.Run(change, func(t *testing.T) {
			h := newHarness(t)
			proxy := h.st.Proxy(t, h.st.DynamoDBEndpoint)
			h.agentDB = h.st.DynamoDBAt(t, proxy.Endpoint)
			proxy.SetEnabled(false)
			a, stop := h.runDaemon(h.cfg)
			data := randomBytes(300<<10, 1)
			h.write("photo.jpg", data)
			h.waitFor("the object in S3 and a failed ledger write", time.Minute, func() bool {
				return a.Stats().Failures.Load() > 0 && h.objectExists("photo.jpg")
			})
			checkFailureCauses(t, a, "dynamodb")
			head, err := h.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("photo.jpg"))})
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(head.VersionId) == "" {
				t.Fatal("the stack's bucket gave no version id: it must be versioned, as template.yaml's is")
			}

			rewritten := randomBytes(200<<10, 2)
			switch change {
			case "deleted":
				if err := os.Remove(filepath.Join(h.cfg.Watch, "photo.jpg")); err != nil {
					t.Fatal(err)
				}
			case "rewritten":
				h.write("photo.jpg", rewritten)
			case "restarted":
				if err := stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if err := os.Remove(filepath.Join(h.cfg.Watch, "photo.jpg")); err != nil {
					t.Fatal(err)
				}
				h.agentDB = h.db
				if err := h.once(); err != nil {
					t.Fatalf("once after the restart: %v; want nil, the object recorded", err)
				}
			}
			proxy.SetEnabled(true)
			h.waitFor("a ledger item for the object S3 holds", time.Minute, func() bool { return h.hasLedgerItem("photo.jpg") })
			if change == "rewritten" {
				h.waitFor("the rewritten file reported as a conflict", time.Minute, func() bool { return a.Stats().Conflicts.Load() > 0 })
			}
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}

			rec := h.ledgerItem("photo.jpg")
			if rec.VersionID != aws.ToString(head.VersionId) || rec.Size != int64(len(data)) || rec.CRC64NVME != checksum(data) {
				t.Errorf("ledger item: version %q, %d bytes, crc64nvme %s; want the object S3 accepted: version %q, %d bytes, crc64nvme %s",
					rec.VersionID, rec.Size, rec.CRC64NVME, aws.ToString(head.VersionId), len(data), checksum(data))
			}
			if left, _ := filepath.Glob(filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads", "*.proof")); len(left) != 0 {
				t.Errorf("proofs still pending after the item was written: %v", left)
			}
			if change == "rewritten" {
				// Other bytes under a name S3 already holds: never
				// overwritten, left in place for a human.
				got, err := os.ReadFile(filepath.Join(h.cfg.Watch, "photo.jpg"))
				if err != nil || !bytes.Equal(got, rewritten) {
					t.Errorf("the rewritten file: %d bytes, %v; want it left in the watch folder", len(got), err)
				}
				if h.archived("photo.jpg") {
					t.Error("the rewritten file was archived")
				}
			}
		})
	}
}

// TestReuploadAfterObjectDeletedRecordsNewVersion: an operator deletes an
// offloaded object in S3 but leaves its ledger item, and the back-end puts
// the file back. The re-upload makes a new version; the ledger must then
// name it, since the resolver presigns the version the ledger names, and
// the item of a version S3 no longer serves under the key is no proof.
// Deleted two ways: the version itself (gone for good), or the key (a
// delete marker hides the old version, which stays as a noncurrent one).
func TestReuploadAfterObjectDeletedRecordsNewVersion(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"version deleted", "delete marker"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t)
			h.requireAWSAnswers()
			ctx := context.Background()
			data := randomBytes(200<<10, 3)
			h.write("v.jpg", data)
			if err := h.once(); err != nil {
				t.Fatalf("first run: %v", err)
			}
			first := h.ledgerItem("v.jpg")
			if first.VersionID == "" {
				t.Fatal("the ledger item has no version id: the stack's bucket must be versioned, as template.yaml's is")
			}
			del := &s3.DeleteObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("v.jpg"))}
			if how == "version deleted" {
				del.VersionId = aws.String(first.VersionID)
			}
			if _, err := h.s3.DeleteObject(ctx, del); err != nil {
				t.Fatal(err)
			}

			h.write("v.jpg", data) // the back-end puts the file back
			if err := h.once(); err != nil {
				t.Fatalf("second run: %v", err)
			}
			h.assertOffloaded("v.jpg", data)
			rec := h.ledgerItem("v.jpg")
			head, err := h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("v.jpg"))})
			if err != nil {
				t.Fatal(err)
			}
			if cur := aws.ToString(head.VersionId); rec.VersionID != cur || cur == first.VersionID {
				t.Errorf("ledger names version %q; want the new current version %q (the deleted one was %q)", rec.VersionID, cur, first.VersionID)
			}
			// What the resolver presigns: a GET of the version the ledger names.
			got, err := h.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("v.jpg")), VersionId: aws.String(rec.VersionID)})
			if err != nil {
				t.Fatalf("GET of the version the ledger names (what the resolver presigns): %v", err)
			}
			body, _ := io.ReadAll(got.Body)
			got.Body.Close()
			if !bytes.Equal(body, data) {
				t.Errorf("the version the ledger names holds %d bytes that differ from the %d written", len(body), len(data))
			}
		})
	}
}

// hasLedgerItem reports whether rel has a ledger item.
func (h *harness) hasLedgerItem(rel string) bool {
	h.t.Helper()
	out, err := h.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(h.st.Table),
		Key:            map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: h.key(rel)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		h.t.Fatalf("%s: ledger GetItem: %v", rel, err)
	}
	return out.Item != nil
}

// TestKill9BetweenUploadAndLedgerWrite runs the real command and kills it
// with SIGKILL while its ledger write is in flight (a proxy in front of
// dynalite holds every PutItem unanswered), after S3 accepted the object;
// then the back-end deletes the file. The next run must record the object
// from the proof the killed one kept: the file can no longer prove it.
func TestKill9BetweenUploadAndLedgerWrite(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	putting := make(chan struct{}, 1)
	db := faultyS3(t, h.st.DynamoDBEndpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Header.Get("X-Amz-Target") != "DynamoDB_20120810.PutItem" {
			return false
		}
		// The ledger write of the file, not the daemon's heartbeat.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"`+offload.HostItemPrefix)) {
			return false
		}
		select {
		case putting <- struct{}{}:
		default:
		}
		// Held until the killed agent's connection closes.
		<-r.Context().Done()
		return true
	})
	data := randomBytes(300<<10, 5)
	h.write("photo.jpg", data)
	cmd := exec.Command(bin, "run", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive,
		"--key-prefix", h.cfg.Mapping.KeyPrefix, "--quiet", "200ms", "--host", "test-host")
	cmd.Env = h.commandEnv(stacktest.Agent, "AWS_ENDPOINT_URL_DYNAMODB="+db)
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	select {
	case <-putting:
	case <-time.After(time.Minute):
		t.Fatal("timed out after 1m0s waiting for the agent's ledger write")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	head, err := h.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("photo.jpg"))})
	if err != nil {
		t.Fatalf("the object S3 accepted before the ledger write: %v", err)
	}
	if h.hasLedgerItem("photo.jpg") {
		t.Fatal("the ledger item was written though every PutItem was held")
	}
	if err := os.Remove(filepath.Join(h.cfg.Watch, "photo.jpg")); err != nil {
		t.Fatal(err)
	}

	if err := h.once(); err != nil {
		t.Fatalf("once after the kill: %v; want nil, the object recorded", err)
	}
	if !h.hasLedgerItem("photo.jpg") {
		t.Fatal("no ledger item for the object S3 accepted before the kill")
	}
	if rec := h.ledgerItem("photo.jpg"); rec.VersionID != aws.ToString(head.VersionId) || rec.CRC64NVME != checksum(data) || rec.Path != "photo.jpg" {
		t.Errorf("ledger item: version %q, crc64nvme %s, path %q; want version %q, crc64nvme %s, path photo.jpg",
			rec.VersionID, rec.CRC64NVME, rec.Path, aws.ToString(head.VersionId), checksum(data))
	}
}

// TestPlantedProofsRecordOnlyWhatS3Holds: whoever can write in the watch
// folder can put a claim folder of their own there, with proofs in it. A
// proof read back is checked against S3 before it is recorded, so a
// planted one can record nothing S3 does not hold: not another content
// type for a real object (the resolver would serve it as text/html), not a
// key its path does not map to, not other bytes than the version holds.
// Before the check each of the three was written to the ledger as given.
func TestPlantedProofsRecordOnlyWhatS3Holds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	put := func(rel string, data []byte) string {
		out, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key(rel)),
			Body: bytes.NewReader(data), ContentType: aws.String("image/jpeg"), ChecksumCRC64NVME: aws.String(checksum(data))})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.VersionId)
	}
	real, forged := randomBytes(10<<10, 4), randomBytes(10<<10, 5)
	realVersion := put("real.jpg", real)
	forgedVersion := put("forged.jpg", real)
	otherKey := "elsewhere/" + h.key("secret.jpg")
	proofs := []offload.Record{
		{Key: h.key("real.jpg"), Path: "real.jpg", Size: int64(len(real)), CRC64NVME: checksum(real), VersionID: realVersion, ContentType: "text/html"},
		{Key: otherKey, Path: "secret.jpg", Size: int64(len(real)), CRC64NVME: checksum(real), VersionID: realVersion, ContentType: "image/jpeg"},
		{Key: h.key("forged.jpg"), Path: "forged.jpg", Size: int64(len(forged)), CRC64NVME: checksum(forged), VersionID: forgedVersion, ContentType: "image/jpeg"},
	}
	dir := filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range proofs {
		p.Host, p.ETag, p.UploadedAt = h.cfg.Host, `"planted"`, time.Now().UTC()
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(h.cfg.Host + "\x00" + p.Key))
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:16])+".proof"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if err := h.once(); err != nil {
		t.Fatalf("once: %v; want nil: one proof recorded, two dropped", err)
	}
	rec := h.ledgerItem("real.jpg")
	if rec.ContentType != "image/jpeg" || rec.VersionID != realVersion || rec.ETag == `"planted"` {
		t.Errorf("real.jpg recorded with content type %q, version %q, ETag %s; want S3's: image/jpeg, %q, not the planted ETag",
			rec.ContentType, rec.VersionID, rec.ETag, realVersion)
	}
	out, err := h.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(h.st.Table), ConsistentRead: aws.Bool(true),
		Key: map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: otherKey}}})
	if err != nil || out.Item != nil {
		t.Errorf("a ledger item for %s, a key the proof's path does not map to (err %v); want none", otherKey, err)
	}
	if h.hasLedgerItem("forged.jpg") {
		t.Errorf("forged.jpg recorded: %+v; want nothing, the proof's bytes are not the version's", h.ledgerItem("forged.jpg"))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.proof")); len(left) != 0 {
		t.Errorf("proofs left: %v; want the two that S3 does not bear out dropped", left)
	}
}
