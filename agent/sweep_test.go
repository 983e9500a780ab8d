package agent_test

import (
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
// that: only --orphan-age or an object under its key would end it.
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

// TestSweepLeavesAnotherHostsUploadOfACopiedFile: where each host has its
// own copy of the web root (rsync), not a shared one, the same file is in
// both hosts' watch folders, and either may be uploading it. Here host
// test-host is uploading big.mov (slowly) when host other-host starts with
// the same file in its own folder: other-host's sweeps must leave the
// upload alone, as docs/architecture.md promises for another host's live
// upload.
func TestSweepLeavesAnotherHostsUploadOfACopiedFile(t *testing.T) {
	h := newHarness(t)
	proxy := h.st.Proxy(t, h.st.S3Endpoint)
	proxy.AddToxic("slow", "bandwidth", "upstream", map[string]any{"rate": 64}) // KB/s: a part takes over a minute
	h.agentS3 = h.agentS3At(proxy.Endpoint)
	const rel = "copied/big.mov"
	data := randomBytes(6<<20, 21) // two parts
	h.write(rel, data)
	h.runDaemon(h.cfg)
	h.waitFor("test-host's upload of big.mov begun", time.Minute, func() bool { return len(h.multipartUploads()) == 1 })

	other := h.cfg
	dir := t.TempDir()
	other.Watch, other.Archive, other.Host = filepath.Join(dir, "static"), filepath.Join(dir, "archive"), "other-host"
	other.Quiet = time.Hour // other-host never uploads its copy here: only its sweeps act
	for _, d := range []string{other.Watch, other.Archive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(other.Watch, "copied"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other.Watch, filepath.FromSlash(rel)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	h.agentS3 = h.agentS3At(h.st.AWSShimEndpoint(t)) // other-host's link is fast
	b, _ := h.runDaemon(other)
	h.waitFor("other-host's start-up sweep and a periodic one", time.Minute, func() bool { return b.Stats().Sweeps.Load() >= 2 })
	if n := b.Stats().Orphans.Load(); n != 0 || len(h.multipartUploads()) != 1 {
		t.Fatalf("other-host aborted %d uploads; test-host's live upload of %s was aborted", n, rel)
	}
	proxy.RemoveToxic("slow")
	h.waitFor("big.mov archived by test-host", 3*time.Minute, func() bool { return h.archived(rel) })
	h.assertOffloaded(rel, data)
}

// TestSweepKeepsAnUploadBegunAfterTheStart: S3 is unreachable when the
// agent starts, and another process begins an upload of a file in the
// watch folder after the agent started but before the agent's first
// listing succeeds. That upload is not a dead run's and must not be
// aborted. (The agent used to take its start from that first listing,
// later than the upload, which it then took for a dead run's.)
func TestSweepKeepsAnUploadBegunAfterTheStart(t *testing.T) {
	h := newHarness(t)
	proxy := h.st.Proxy(t, h.st.S3Endpoint)
	h.agentS3 = h.agentS3At(proxy.Endpoint)
	h.cfg.Quiet = time.Hour // the file is never offloaded here: only the sweep acts
	const rel = "later/big.mov"
	h.write(rel, []byte("its upload begins after the agent started"))
	proxy.SetEnabled(false)
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("the start-up sweep to fail", time.Minute, func() bool {
		return strings.Contains(h.logs.String(), "could not list multipart uploads")
	})
	open := otherHostsUpload(h, rel)
	proxy.SetEnabled(true)
	h.waitFor("two sweeps that listed every upload", time.Minute, func() bool { return a.Stats().Sweeps.Load() >= 2 })
	if n := a.Stats().Orphans.Load(); n != 0 || !open() {
		t.Fatalf("uploads aborted: %d; an upload begun after the agent started was aborted", n)
	}
}
