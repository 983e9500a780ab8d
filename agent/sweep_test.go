package agent_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
)

// otherHostsUpload starts a multipart upload of rel's key as another host
// would, and returns a function that reports whether it is still open.
// The listing names the whole key, which MinIO answers from its disk.
func otherHostsUpload(h *harness, rel string) (open func() bool) {
	h.t.Helper()
	ctx := context.Background()
	out, err := h.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key(rel))})
	if err != nil {
		h.t.Fatal(err)
	}
	id := aws.ToString(out.UploadId)
	h.t.Cleanup(func() {
		h.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key(rel)), UploadId: aws.String(id)})
	})
	return func() bool {
		list, err := h.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(h.st.Bucket), Prefix: aws.String(h.key(rel))})
		if err != nil {
			h.t.Fatal(err)
		}
		for _, u := range list.Uploads {
			if aws.ToString(u.UploadId) == id {
				return true
			}
		}
		return false
	}
}

// TestSweepLeavesAnotherHostsUploadOnANetworkFS: on a network file system
// another host may be uploading a file of the shared folder when this
// agent starts. Its upload, initiated before the start, is not aborted for
// that (on a local folder it would be a dead run's): only --orphan-age or
// an object under its key would end it.
func TestSweepLeavesAnotherHostsUploadOnANetworkFS(t *testing.T) {
	h := newHarness(t)
	agent.SimulateNetworkFS(t)
	h.cfg.Quiet = time.Hour // the file is never offloaded here: only the sweep acts
	h.write("shared/big.mov", []byte("being uploaded by another host"))
	open := otherHostsUpload(h, "shared/big.mov")
	a, _ := h.runDaemon(h.cfg)
	// The start-up sweep runs before the first scan; the periodic one
	// after every rescan (1 s here).
	h.waitFor("the start-up sweep and two periodic ones", 30*time.Second, func() bool { return a.Stats().Sweeps.Load() >= 3 })
	if n := a.Stats().Orphans.Load(); n != 0 || !open() {
		t.Logf("uploads aborted: %d", n)
		t.Fatal("another host's live upload was aborted")
	}
}

// TestSweepAgesUploadsOnS3sClock: an upload's age for --orphan-age is
// taken from S3's clock (the Date of its answer), never this host's, so a
// host clock a day ahead aborts no one's upload. Here the listing's Date
// says S3's clock is two days ahead of this host's: the agent asks to abort
// the day-old upload. (The abort itself then fails: the SDK signs it with
// the skew it saw, which the real MinIO refuses; what counts here is the
// decision, which the proxy sees.)
func TestSweepAgesUploadsOnS3sClock(t *testing.T) {
	h := newHarness(t)
	h.cfg.OrphanAge = 24 * time.Hour
	const rel = "elsewhere/not-in-this-folder.jpg"
	var aborts atomic.Int64
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method == http.MethodDelete && r.URL.Query().Has("uploadId") && strings.HasSuffix(r.URL.Path, rel) {
			aborts.Add(1)
		}
		if !(r.Method == http.MethodGet && r.URL.Query().Has("uploads")) {
			return false
		}
		rec := httptest.NewRecorder()
		forward.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Date", time.Now().Add(48*time.Hour).UTC().Format(http.TimeFormat))
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return true
	}))
	otherHostsUpload(h, rel)
	if err := h.once(); err != nil {
		t.Fatal(err)
	}
	if aborts.Load() == 0 {
		t.Error("an upload two days old on S3's clock was not aborted with --orphan-age 24h")
	}
}
