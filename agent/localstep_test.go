package agent_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
)

// countRequests puts counting proxies in front of the agent's S3 (the AWS
// shim) and DynamoDB. s3 counts the requests for key (the periodic
// multipart sweep lists the bucket; that is not a request for the file),
// db every ledger request.
func countRequests(h *harness, key string) (s3, db *atomic.Int64) {
	h.t.Helper()
	s3, db = &atomic.Int64{}, &atomic.Int64{}
	h.agentS3 = h.agentS3At(faultyS3(h.t, h.st.AWSShimEndpoint(h.t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if strings.Contains(r.URL.Path, key) {
			s3.Add(1)
		}
		return false
	}))
	h.agentDB = h.st.DynamoDBAt(h.t, faultyS3(h.t, h.st.DynamoDBEndpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		db.Add(1)
		return false
	}))
	return s3, db
}

// TestArchiveFailureRetriesOnlyTheLocalStep: when S3 proved the file and
// the ledger recorded it but the archive failed (here a plain file stands
// where the archive needs a folder), every retry makes no request to S3 or
// DynamoDB: it goes straight to the local step, which succeeds once the
// obstacle is gone.
func TestArchiveFailureRetriesOnlyTheLocalStep(t *testing.T) {
	h := newHarness(t)
	const rel = "blocked/photo.jpg"
	data := randomBytes(20_000, 7)
	s3Requests, dbRequests := countRequests(h, h.key(rel))
	obstacle := filepath.Join(h.cfg.Archive, "blocked")
	if err := os.WriteFile(obstacle, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.write(rel, data)
	a, _ := h.runDaemon(h.cfg)

	h.waitFor("the first failed archive", 30*time.Second, func() bool { return a.Stats().Failures.Load() >= 1 })
	s3First, dbFirst := s3Requests.Load(), dbRequests.Load()
	if s3First == 0 || dbFirst == 0 {
		t.Fatalf("first attempt: %d S3 and %d DynamoDB requests; want both above 0", s3First, dbFirst)
	}
	h.waitFor("two retries", time.Minute, func() bool { return a.Stats().Failures.Load() >= 3 })
	if s3, db := s3Requests.Load()-s3First, dbRequests.Load()-dbFirst; s3 != 0 || db != 0 {
		t.Errorf("the retries of the local step made %d S3 and %d DynamoDB requests; want 0", s3, db)
	}
	if err := os.Remove(obstacle); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the file archived", time.Minute, func() bool { return h.archived(rel) })
	h.assertOffloaded(rel, data)
	if s3, db := s3Requests.Load()-s3First, dbRequests.Load()-dbFirst; s3 != 0 || db != 0 {
		t.Errorf("after the first attempt, %d S3 and %d DynamoDB requests; want 0", s3, db)
	}
	t.Logf("first attempt: %d S3 and %d DynamoDB requests; %d failed attempts in all", s3First, dbFirst, a.Stats().Failures.Load())
}

// TestRecordsWhatS3HoldsWhenTheFileChanges: the file vanishes, or is
// replaced by other bytes, after S3 accepted the upload and before the
// ledger write. The ledger still records the object S3 holds, so no object
// is left unrecorded; only the local step waits for the file.
func TestRecordsWhatS3HoldsWhenTheFileChanges(t *testing.T) {
	for _, how := range []string{"deleted", "replaced"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t)
			rel := how + ".jpg"
			data, other := randomBytes(9000, 3), randomBytes(9000, 4)
			path := filepath.Join(h.cfg.Watch, rel)
			var changed atomic.Bool
			h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
				if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, rel) || changed.Load() {
					return false
				}
				// S3 takes the upload; the file changes before the agent
				// hears the answer.
				rec := httptest.NewRecorder()
				forward.ServeHTTP(rec, r)
				switch how {
				case "deleted":
					os.Remove(path)
				case "replaced":
					os.WriteFile(path+".tmp", other, 0o644)
					os.Rename(path+".tmp", path)
				}
				changed.Store(true)
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
				return true
			}))
			h.write(rel, data)
			a, _ := h.runDaemon(h.cfg)
			h.waitFor("the upload", 30*time.Second, changed.Load)
			h.waitFor("the ledger item", 30*time.Second, func() bool {
				return a.Stats().Conflicts.Load() > 0 || (how == "deleted" && h.objectExists(rel) && ledgerHas(h, rel))
			})
			rec := h.ledgerItem(rel)
			if rec.CRC64NVME != checksum(data) || rec.Size != int64(len(data)) {
				t.Errorf("ledger records %d bytes with crc64nvme %s; want the uploaded %d bytes, %s", rec.Size, rec.CRC64NVME, len(data), checksum(data))
			}
			if h.archived(rel) {
				t.Error("archived a file that changed after the upload")
			}
			if how == "replaced" {
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, other) {
					t.Errorf("the new bytes under the name: %v; want them left in place", err)
				}
			}
		})
	}
}

// ledgerHas reports whether the ledger has an item for rel.
func ledgerHas(h *harness, rel string) bool {
	out, err := h.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(h.st.Table),
		Key:            map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: h.key(rel)}},
		ConsistentRead: aws.Bool(true),
	})
	return err == nil && out.Item != nil
}

// TestWriterAtTheClaimLosesNothing: with --after delete, a writer opens
// the file between the last check and the claim and appends. The agent
// holds a read lease through the claim, so the writer's open breaks it; the
// file goes back under its name, with the writer's bytes, and is never
// deleted (its new bytes then conflict with the object, for a human).
func TestWriterAtTheClaimLosesNothing(t *testing.T) {
	h := newHarness(t)
	h.cfg.After = agent.AfterDelete
	const rel = "appended.jpg"
	data, more := randomBytes(5000, 9), []byte("bytes a writer appended at the claim")
	wrote := agent.SimulateWriterAtClaim(t, more)
	h.write(rel, data)
	a, _ := h.runDaemon(h.cfg)
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("the writer: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent never claimed the file")
	}
	// A conflict once it looks at the changed file; counted offloaded
	// (deleted, with the writer's bytes) if the lease did not hold it.
	h.waitFor("the agent to look at the changed file", 30*time.Second, func() bool {
		return a.Stats().Conflicts.Load() > 0 || a.Stats().Uploaded.Load() > 0
	})
	got, err := os.ReadFile(filepath.Join(h.cfg.Watch, rel))
	if want := append(append([]byte{}, data...), more...); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file after a writer appended at the claim: %d bytes, %v; want the %d bytes with the writer's, under its name", len(got), err, len(want))
	}
	if rec := h.ledgerItem(rel); rec.CRC64NVME != checksum(data) {
		t.Errorf("ledger: %s; want the uploaded version %s", rec.CRC64NVME, checksum(data))
	}
	if n := a.Stats().Uploaded.Load(); n != 0 {
		t.Errorf("%d files counted offloaded; want 0", n)
	}
}

// TestSameSizeRewriteDuringTheReadIsNotCommitted: while a multipart upload
// reads the file, it is rewritten in place with other bytes of the same
// size and its mtime is put back (touch -d): size, mtime and inode are
// unchanged, only the ctime tells. The torn object (the first part's old
// bytes, the rest new) must never be committed: the upload is dropped, the
// file is tried again, and S3, the ledger and the archive end with the new
// bytes.
func TestSameSizeRewriteDuringTheReadIsNotCommitted(t *testing.T) {
	h := newHarness(t)
	// A memory budget of one part: part 2 is read only after part 1 was
	// sent, so a rewrite while part 1 is on its way lands in the read.
	h.cfg.Concurrency = 1
	const rel = "rewritten.jpg"
	data, other := randomBytes(11<<20, 5), randomBytes(11<<20, 6)
	path := filepath.Join(h.cfg.Watch, rel)
	var rewrote atomic.Bool
	rewrite := func() error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(other, 0); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Chtimes(path, fi.ModTime(), fi.ModTime())
	}
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, rel) || r.URL.Query().Get("partNumber") != "1" || rewrote.Load() {
			return false
		}
		if err := rewrite(); err != nil {
			t.Errorf("rewriting the file: %v", err)
		}
		rewrote.Store(true)
		return false
	}))
	h.write(rel, data)
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("the rewrite during the read", time.Minute, rewrote.Load)
	h.waitFor("the file offloaded, or in conflict", 2*time.Minute, func() bool {
		return a.Stats().Uploaded.Load() > 0 || a.Stats().Conflicts.Load() > 0
	})
	if n := a.Stats().Conflicts.Load(); n != 0 {
		t.Errorf("%d conflicts; want 0 (a torn object was committed, then the file's real bytes conflicted with it)", n)
	}
	h.assertOffloaded(rel, other)
}
