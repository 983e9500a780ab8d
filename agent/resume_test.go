package agent_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// Resume tests upload a file of resumeParts parts of 5 MiB (the smallest S3
// allows), one part at a time (--concurrency 1), so that which parts S3
// holds when the upload is cut off is known.
const (
	resumePart  = 5 << 20
	resumeParts = 5
)

// partCounter is a proxy in front of the agent's S3 (the AWS shim) that
// counts the UploadPart requests that reached S3 and their body bytes, and
// the parts S3 accepted. fail, when it returns true for a part number,
// answers 500 instead, without forwarding.
type partCounter struct {
	endpoint string
	sent     atomic.Int64 // body bytes of UploadPart requests forwarded
	accepted atomic.Int64 // parts S3 answered 200
	fail     func(part string) bool
}

func newPartCounter(h *harness) *partCounter {
	c := &partCounter{fail: func(string) bool { return false }}
	c.endpoint = faultyS3(h.t, h.st.AWSShimEndpoint(h.t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		part := r.URL.Query().Get("partNumber")
		if r.Method != http.MethodPut || part == "" {
			return false
		}
		if c.fail(part) {
			http.Error(w, "injected", http.StatusInternalServerError)
			return true
		}
		c.sent.Add(r.ContentLength)
		// The recorder would keep a 100 Continue as the status.
		r.Header.Del("Expect")
		rec := httptest.NewRecorder()
		forward.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			c.accepted.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return true
	})
	return c
}

// startCommand runs the real offload-agent against S3 at endpoint, with
// one part in flight at a time and the extra flags.
func startCommand(h *harness, endpoint string, extra ...string) *exec.Cmd {
	h.t.Helper()
	args := append([]string{"run", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive, "--key-prefix", h.cfg.Mapping.KeyPrefix,
		"--quiet", "200ms", "--part-size", "5MiB", "--concurrency", "1", "--host", "test-host"}, extra...)
	cmd := exec.Command(buildAgent(h.t), args...)
	cmd.Env = h.commandEnv(stacktest.Agent, "AWS_ENDPOINT_URL_S3="+endpoint)
	cmd.Stdout, cmd.Stderr = testWriter{h.t}, testWriter{h.t}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// killAfterParts starts the command slowed by --bwlimit, SIGKILLs it once
// S3 has accepted parts parts of the file, and returns.
func killAfterParts(h *harness, c *partCounter, parts int64) {
	h.t.Helper()
	first := startCommand(h, c.endpoint, "--bwlimit", "8M")
	h.waitFor("parts accepted", time.Minute, func() bool { return c.accepted.Load() >= parts })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatal(err)
	}
	first.Wait()
	if got := c.accepted.Load(); got >= resumeParts {
		h.t.Fatalf("the upload finished before the kill (%d parts)", got)
	}
}

// finish runs the command again, with the extra flags, until rel is
// archived, and stops it.
func finish(h *harness, c *partCounter, rel string, extra ...string) {
	h.t.Helper()
	second := startCommand(h, c.endpoint, extra...)
	h.waitFor(rel+" archived after the restart", time.Minute, func() bool { return h.archived(rel) })
	second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		h.t.Errorf("agent exit after SIGTERM: %v; want status 0", err)
	}
	if up := h.multipartUploads(); len(up) != 0 {
		h.t.Errorf("multipart uploads left: %v", up)
	}
	if left, _ := os.ReadDir(filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads")); len(left) != 0 {
		h.t.Errorf("upload records left: %v", left)
	}
}

// resumeCase makes a harness with a file of resumeParts parts written to
// rel (bytes from seed), and a part counter in front of its S3.
func resumeCase(t *testing.T, rel string, seed byte) (*harness, []byte, *partCounter) {
	t.Helper()
	h := newHarness(t)
	data := randomBytes(resumeParts*resumePart, seed)
	h.write(rel, data)
	return h, data, newPartCounter(h)
}

// TestResumeAfterKill: the agent is killed with parts of a multipart
// upload in S3; the next run resumes that upload and sends only the parts
// S3 does not hold. The object is whole and proven, as after a fresh upload.
func TestResumeAfterKill(t *testing.T) {
	t.Parallel()
	h, data, c := resumeCase(t, "raw.cr3", 11)
	killAfterParts(h, c, 2)
	held := c.accepted.Load()
	before := c.sent.Load()
	finish(h, c, "raw.cr3")
	h.assertOffloaded("raw.cr3", data)
	after := c.sent.Load() - before
	t.Logf("parts in S3 at the kill: %d; UploadPart bytes after the restart: %d of %d", held, after, len(data))
	if want := int64(len(data)) - held*resumePart; after > want {
		t.Errorf("sent %d bytes of parts after the restart; want at most %d (the %d parts S3 held not sent again)", after, want, held)
	}
}

// TestResumeNotIntoAChangedFile: the file changed while the agent was
// down: its old upload is aborted, never resumed, and the new version is
// uploaded whole and correct.
func TestResumeNotIntoAChangedFile(t *testing.T) {
	t.Parallel()
	h, _, c := resumeCase(t, "video.mov", 12)
	killAfterParts(h, c, 2)
	changed := randomBytes(resumeParts*resumePart, 13) // same size, other bytes
	h.write("video.mov", changed)
	before := c.sent.Load()
	finish(h, c, "video.mov")
	h.assertOffloaded("video.mov", changed)
	if after := c.sent.Load() - before; after != int64(len(changed)) {
		t.Errorf("sent %d bytes of parts for the changed file; want all %d", after, len(changed))
	}
}

// TestResumeNotUnderAnotherClass: the agent restarts with another
// --storage-class while an upload begun in the old one (STANDARD, none
// sent) waits to be resumed. S3 fixes the class at CreateMultipartUpload,
// so resuming would store the file in the old class: the old upload is
// aborted, the file goes whole in a new one, and S3 holds it in the new
// class, which the ledger records.
func TestResumeNotUnderAnotherClass(t *testing.T) {
	t.Parallel()
	h, data, c := resumeCase(t, "pano.jpg", 17)
	killAfterParts(h, c, 2)
	before := c.sent.Load()
	finish(h, c, "pano.jpg", "--storage-class", "REDUCED_REDUNDANCY")
	h.assertOffloaded("pano.jpg", data)
	if after := c.sent.Load() - before; after != int64(len(data)) {
		t.Errorf("sent %d bytes of parts under the new class; want all %d (nothing of the upload begun in STANDARD reused)", after, len(data))
	}
	head, err := h.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("pano.jpg"))})
	if err != nil || head.StorageClass != s3types.StorageClassReducedRedundancy {
		t.Errorf("HEAD after the restart: class %q, %v; want REDUCED_REDUNDANCY", head.StorageClass, err)
	}
	if rec := h.ledgerItem("pano.jpg"); rec.StorageClass != "REDUCED_REDUNDANCY" {
		t.Errorf("ledger storage class %q; want REDUCED_REDUNDANCY", rec.StorageClass)
	}
}

// TestResumeResendsAPartThatDiffers: a part S3 holds for the upload does
// not match the file's bytes (its checksum differs): the resumed upload
// sends it again, and the object is correct.
func TestResumeResendsAPartThatDiffers(t *testing.T) {
	t.Parallel()
	h, data, c := resumeCase(t, "scan.tif", 14)
	killAfterParts(h, c, 2)
	// Part 1 of the upload in S3 is replaced by other bytes.
	ctx := context.Background()
	list, err := h.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(h.st.Bucket), Prefix: aws.String(h.key("scan.tif"))})
	if err != nil || len(list.Uploads) != 1 {
		t.Fatalf("the upload the kill left: %v, %v", list, err)
	}
	other := randomBytes(resumePart, 15)
	if _, err := h.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("scan.tif")),
		UploadId: list.Uploads[0].UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(other),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme}); err != nil {
		t.Fatal(err)
	}
	held := c.accepted.Load()
	before := c.sent.Load()
	finish(h, c, "scan.tif")
	h.assertOffloaded("scan.tif", data)
	if after, want := c.sent.Load()-before, int64(len(data))-(held-1)*resumePart; after != want {
		t.Errorf("sent %d bytes after the restart; want %d (every part but the %d good ones S3 held)", after, want, held-1)
	}
}

// TestResumeNeverAnotherHostsUpload: an upload of the same key that this
// host did not record (another host's, even with the very same bytes in its
// parts) is never resumed: the file goes whole in an upload of its own.
func TestResumeNeverAnotherHostsUpload(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	data := randomBytes(resumeParts*resumePart, 16)
	ctx := context.Background()
	key := h.key("shared.mov")
	up, err := h.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme, ChecksumType: s3types.ChecksumTypeFullObject})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), UploadId: up.UploadId})
	})
	for i := range int32(2) {
		if _, err := h.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(i + 1), Body: bytes.NewReader(data[int(i)*resumePart : int(i+1)*resumePart]),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme}); err != nil {
			t.Fatal(err)
		}
	}
	h.write("shared.mov", data)
	c := newPartCounter(h)
	h.agentS3 = h.agentS3At(c.endpoint)
	h.cfg.PartSize, h.cfg.Concurrency = resumePart, 1
	if err := h.once(); err != nil {
		t.Fatal(err)
	}
	h.assertOffloaded("shared.mov", data)
	if got := c.sent.Load(); got != int64(len(data)) {
		t.Errorf("sent %d bytes of parts; want all %d: another host's upload must not be resumed", got, len(data))
	}
}

// TestResumeWithinARun: S3 fails one part through every SDK retry, so the
// attempt fails with two parts in S3; the file's next attempt in the same
// run resumes the upload. Every part reaches S3 once, and the metric counts
// the bytes not sent again.
func TestResumeWithinARun(t *testing.T) {
	t.Parallel()
	h, data, c := resumeCase(t, "clip.mp4", 17)
	var failing atomic.Bool
	failing.Store(true)
	c.fail = func(part string) bool { return part == "3" && failing.Load() }
	h.agentS3 = h.agentS3At(c.endpoint)
	h.cfg.PartSize, h.cfg.Concurrency = resumePart, 1
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("the attempt that failed on part 3", time.Minute, func() bool { return a.Stats().Failures.Load() >= 1 })
	failing.Store(false)
	h.waitFor("clip.mp4 archived", 2*time.Minute, func() bool { return h.archived("clip.mp4") })
	h.assertOffloaded("clip.mp4", data)
	if got := c.sent.Load(); got != int64(len(data)) {
		t.Errorf("sent %d bytes of parts to S3; want %d, each part once", got, len(data))
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	_, text := get(t, srv, "/metrics")
	if got := metricValue(t, text, "offload_resumed_bytes_total"); got != 2*resumePart {
		t.Errorf("offload_resumed_bytes_total = %v; want %d (the two parts S3 held)", got, 2*resumePart)
	}
	if !strings.Contains(h.logs.String(), "upload part 3") {
		t.Error("no failure of part 3 logged")
	}
}

// TestResumeRecordGoesWhenTheUploadCompleted: S3 completes the upload but
// the agent never hears so (its answer is lost through every SDK retry, as
// when the agent is killed right after Complete). The next attempt finds
// the object, proves it and archives the file, and the upload's record is
// removed, not left behind in the watch folder.
func TestResumeRecordGoesWhenTheUploadCompleted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	data := randomBytes(resumeParts*resumePart, 18)
	h.write("done.mov", data)
	var completes atomic.Int32
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method != http.MethodPost || !r.URL.Query().Has("uploadId") {
			return false
		}
		if completes.Add(1) == 1 {
			forward.ServeHTTP(httptest.NewRecorder(), r) // S3 completes it
		}
		http.Error(w, "", http.StatusServiceUnavailable) // the agent hears a failure
		return true
	}))
	h.cfg.PartSize = resumePart
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	h.assertOffloaded("done.mov", data)
	if left, _ := os.ReadDir(filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads")); len(left) != 0 {
		t.Errorf("upload records left after the file was offloaded: %v", left)
	}
}

// TestResumeWaitsForS3ToListParts: while S3 cannot list the parts of a
// recorded upload (503 through every SDK retry), the attempt fails and the
// record stays; no second upload of the key is started. Once S3 answers,
// the upload is resumed: one upload in all, each part sent once.
func TestResumeWaitsForS3ToListParts(t *testing.T) {
	t.Parallel()
	h, data, c := resumeCase(t, "wait.mov", 19)
	var failPart, failList atomic.Bool
	failPart.Store(true)
	failList.Store(true)
	c.fail = func(part string) bool { return part == "3" && failPart.Load() }
	var creates, lists atomic.Int32
	h.agentS3 = h.agentS3At(faultyS3(t, c.endpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPost && q.Has("uploads"):
			creates.Add(1)
		case r.Method == http.MethodGet && q.Has("uploadId") && failList.Load():
			lists.Add(1)
			http.Error(w, "", http.StatusServiceUnavailable)
			return true
		}
		return false
	}))
	h.cfg.PartSize, h.cfg.Concurrency = resumePart, 1
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("the attempt that failed on part 3", time.Minute, func() bool { return a.Stats().Failures.Load() >= 1 })
	failPart.Store(false)
	h.waitFor("an attempt failed on listing the parts", time.Minute, func() bool { return lists.Load() > 0 && a.Stats().Failures.Load() >= 2 })
	failList.Store(false)
	h.waitFor("wait.mov archived", 2*time.Minute, func() bool { return h.archived("wait.mov") })
	h.assertOffloaded("wait.mov", data)
	if n := creates.Load(); n != 1 {
		t.Errorf("%d multipart uploads created; want 1, resumed once S3 listed its parts", n)
	}
	if got := c.sent.Load(); got != int64(len(data)) {
		t.Errorf("sent %d bytes of parts; want %d, each part once", got, len(data))
	}
}
