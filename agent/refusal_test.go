package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// refuseUnder gives the agent credentials that may do what template.yaml
// grants it, except anything on the keys under the test's prefix + sub:
// S3 answers 403 AccessDenied for those keys only, as it does for keys a
// bucket policy or a KMS key policy refuses. MinIO enforces the explicit
// Deny of the session policy for these temporary credentials, as AWS does
// (the intersection of the role's and the session's policies).
func (h *harness) refuseUnder(sub string) {
	h.t.Helper()
	if h.st.S3Kind == "versitygw" {
		stacktest.Unavailable(h.t, "versitygw enforces no IAM policy, so it cannot refuse some keys")
	}
	tmpl, err := os.ReadFile(templatepolicy.TemplatePath(stacktest.RepoRoot(h.t)))
	if err != nil {
		h.t.Fatal(err)
	}
	doc, err := templatepolicy.S3Policy(tmpl, templatepolicy.Agent, templatepolicy.Target{Bucket: h.st.Bucket})
	if err != nil {
		h.t.Fatal(err)
	}
	doc.Statement = append(doc.Statement, templatepolicy.Statement{
		Effect: "Deny", Action: []string{"s3:*"},
		Resource: []string{"arn:aws:s3:::" + h.st.Bucket + "/" + h.key(sub) + "*"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := templatepolicy.Assume(ctx, h.st.AWSConfig(h.t), h.st.S3Endpoint, templatepolicy.Agent, doc, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := h.st.AWSConfig(h.t)
	cfg.Credentials = credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	h.agentS3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = aws.String(h.st.AWSShimEndpoint(h.t))
	})
}

// writeHealthy writes n files under ok/ that S3 takes, and returns their
// bytes by name.
func (h *harness) writeHealthy(n int) map[string][]byte {
	data := map[string][]byte{}
	for i := range n {
		rel := fmt.Sprintf("ok/h%02d.jpg", i)
		data[rel] = randomBytes(200+i, byte(100+i))
		h.write(rel, data[rel])
	}
	return data
}

// allArchived reports whether every file of data is in the archive.
func (h *harness) allArchived(data map[string][]byte) bool {
	for rel := range data {
		if !h.archived(rel) {
			return false
		}
	}
	return true
}

// writeRefused writes n files under refused/ (see refuseUnder) and returns
// their names.
func (h *harness) writeRefused(n int) []string {
	var names []string
	for i := range n {
		rel := fmt.Sprintf("refused/r%02d.jpg", i)
		h.write(rel, randomBytes(100+i, byte(i)))
		names = append(names, rel)
	}
	return names
}

// TestRefusedKeysDoNotStopOthers: files whose keys S3 refuses (403
// AccessDenied, for these keys only) fail with no success between them,
// more of them than open the breaker, before any other file is written.
// A refusal is the file's, not S3 failing: the breaker stays closed, and
// every file written afterwards is offloaded while the refused ones stay
// local, retried on their own backoff. On main the five refusals opened
// the breaker, whose probe was always a refused file, and nothing else was
// ever offloaded.
func TestRefusedKeysDoNotStopOthers(t *testing.T) {
	t.Parallel()
	const refused, healthy = 6, 30
	h := newHarness(t)
	h.refuseUnder("refused/")
	h.cfg.Workers = 2
	refusedNames := h.writeRefused(refused)
	a, stop := h.runDaemon(h.cfg)
	// Every refused file fails at least once before anything else exists.
	h.waitFor("every refused file failed", time.Minute, func() bool {
		seen := map[string]bool{}
		for _, f := range a.Status().RecentFailures {
			seen[f.Path] = true
		}
		for _, rel := range refusedNames {
			if !seen[rel] {
				return false
			}
		}
		return true
	})
	data := h.writeHealthy(healthy)
	h.waitFor("every healthy file archived", time.Minute, func() bool { return h.allArchived(data) })
	st := a.Status()
	if st.Breaker.Trips != 0 || st.Breaker.State != "closed" {
		t.Errorf("breaker = %+v; want closed, never tripped: a refusal is the file's, not S3's", st.Breaker)
	}
	for _, f := range st.RecentFailures {
		if strings.HasPrefix(f.Path, "refused/") && (f.Cause != "s3" || !strings.Contains(f.Error, "AccessDenied")) {
			t.Errorf("failure of %s: cause %q, %q; want cause s3, AccessDenied", f.Path, f.Cause, f.Error)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
	for _, rel := range refusedNames {
		if _, err := os.Stat(filepath.Join(h.cfg.Watch, rel)); err != nil || h.objectExists(rel) {
			t.Errorf("%s: local copy %v, in S3 %v; want it local only", rel, err, h.objectExists(rel))
		}
	}
}

// TestOnceRefusedKeysDoNotGiveUpOthers: Once with refused keys tried first
// (one worker, the refused files older) offloads every other file and
// reports only the refused ones. On main the refusals opened the breaker,
// its three probes were refused files, and Once gave up every file.
func TestOnceRefusedKeysDoNotGiveUpOthers(t *testing.T) {
	t.Parallel()
	const refused, healthy = 6, 10
	h := newHarness(t)
	h.refuseUnder("refused/")
	h.cfg.Workers = 1
	// Renamed files wait for the quiet period after their ctime too, so
	// they come due in the order they were written: the refused first.
	h.cfg.QuietForRenamed = true
	h.writeRefused(refused)
	data := h.writeHealthy(healthy)
	a := h.newAgent(h.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := a.Once(ctx)
	if !errors.Is(err, agent.ErrIncomplete) || !strings.HasPrefix(err.Error(), fmt.Sprintf("%d files:", refused)) {
		t.Errorf("Once = %v; want ErrIncomplete for the %d refused files", err, refused)
	}
	if st := a.Status(); st.Breaker.Trips != 0 {
		t.Errorf("breaker = %+v; want never tripped", st.Breaker)
	}
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
}

// TestHeldSetFullOfRefusedFilesTakesNewOnes: when every file the agent
// holds fails for its own reason (here more refused files than it may
// hold), files written afterwards are still looked at and offloaded: a
// file that failed for its own reason makes room, and the rescan finds it
// again later. On main the scan waited for room that never came.
func TestHeldSetFullOfRefusedFilesTakesNewOnes(t *testing.T) {
	t.Parallel()
	const limit, refused, healthy = 8, 12, 10
	h := newHarness(t)
	h.refuseUnder("refused/")
	refusedNames := h.writeRefused(refused)
	a := h.newAgent(h.cfg)
	agent.SetPendingLimit(a, limit)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	defer stop()
	h.waitFor("the held set full of refused files, each failed", time.Minute, func() bool {
		st := a.Status()
		return st.Pending == limit && st.FailedAttempts >= limit
	})
	data := h.writeHealthy(healthy)
	h.waitFor("every new file archived", time.Minute, func() bool { return h.allArchived(data) })
	stop()
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
	if peak := agent.PeakPending(a); peak > limit {
		t.Errorf("held %d files at once; the limit is %d", peak, limit)
	}
	for _, rel := range refusedNames {
		if _, err := os.Stat(filepath.Join(h.cfg.Watch, rel)); err != nil {
			t.Errorf("%s: %v; want it still local", rel, err)
		}
	}
}

// TestThrottlingOpensTheBreaker: S3 throttling every upload (503
// SlowDown, as S3 answers a request rate it will not take) is the service
// failing, not the files: the breaker opens as in an outage, and closes
// with the first file offloaded once S3 takes uploads again.
func TestThrottlingOpensTheBreaker(t *testing.T) {
	t.Parallel()
	const files = 12
	h := newHarness(t)
	var throttle atomic.Bool
	throttle.Store(true)
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if !throttle.Load() || r.Method != http.MethodPut && r.Method != http.MethodPost {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>r</RequestId></Error>`)
		return true
	}))
	data := map[string][]byte{}
	for i := range files {
		rel := fmt.Sprintf("t%02d.jpg", i)
		data[rel] = randomBytes(300+i, byte(i))
		h.write(rel, data[rel])
	}
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("the breaker open", time.Minute, func() bool { return a.Status().Breaker.State == "open" })
	if st := a.Status(); st.Breaker.Cause != "s3" || st.Breaker.Trips != 1 {
		t.Errorf("breaker = %+v; want open on s3, 1 trip", st.Breaker)
	}
	throttle.Store(false)
	h.waitFor("every file archived", 2*time.Minute, func() bool { return a.Stats().Uploaded.Load() == files })
	if st := a.Status(); st.Breaker.State != "closed" || st.Breaker.Trips != 1 {
		t.Errorf("breaker after the throttling = %+v; want closed after 1 trip", st.Breaker)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
}

// TestHealthyFilesGoWhileEveryOtherIsRefused: S3 refuses every file tried
// (more refused files than open the breaker, nothing else waiting), so the
// breaker opens as in an outage and the refused files are no longer read
// and sent on their own backoff. Files written then, which S3 takes, are
// tried first by the probes, ahead of the refused files whose backoff
// ended, and the first of them closes the breaker: every one is offloaded.
func TestHealthyFilesGoWhileEveryOtherIsRefused(t *testing.T) {
	t.Parallel()
	const refused, healthy = 30, 10
	h := newHarness(t)
	h.refuseUnder("refused/")
	h.cfg.Workers = 4
	h.writeRefused(refused)
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("the breaker open, or three failures a file", time.Minute, func() bool {
		return a.Status().Breaker.Trips > 0 || a.Stats().Failures.Load() >= 3*refused
	})
	st := a.Status()
	if st.Breaker.State != "open" || st.Breaker.Cause != "s3-refused" {
		t.Fatalf("every one of %d files refused, %d failed attempts: breaker %+v; want open, cause s3-refused",
			refused, a.Stats().Failures.Load(), st.Breaker)
	}
	data := h.writeHealthy(healthy)
	written := time.Now()
	h.waitFor("every healthy file archived", 2*time.Minute, func() bool { return h.allArchived(data) })
	st = a.Status()
	t.Logf("healthy files archived %s after they were written; breaker %+v", time.Since(written).Round(time.Millisecond), st.Breaker)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
}

// TestOnceRefusedEverywhereReportsAndOffloadsTheRest: Once with more
// refused files tried first than open the breaker (one worker, the refused
// files older): the breaker opens, its probes take files never tried, so
// the others are offloaded; the refused files are given up and reported,
// not retried for ever.
func TestOnceRefusedEverywhereReportsAndOffloadsTheRest(t *testing.T) {
	t.Parallel()
	const refused, healthy = 26, 20
	h := newHarness(t)
	h.refuseUnder("refused/")
	h.cfg.Workers = 1
	h.cfg.QuietForRenamed = true // they come due in the order they were written
	h.writeRefused(refused)
	data := h.writeHealthy(healthy)
	a := h.newAgent(h.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := a.Once(ctx)
	st := a.Status()
	t.Logf("Once = %v; breaker %+v", err, st.Breaker)
	if !errors.Is(err, agent.ErrIncomplete) || !strings.HasPrefix(err.Error(), fmt.Sprintf("%d files:", refused)) {
		t.Errorf("Once = %v; want ErrIncomplete for the %d refused files", err, refused)
	}
	if st.Breaker.Trips == 0 {
		t.Errorf("breaker %+v; want opened: %d files refused in a row", st.Breaker, refused)
	}
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
}
