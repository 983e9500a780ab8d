package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/loopback"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestOutageKeepsFilesLocal: while S3, then DynamoDB, is unreachable
// (Toxiproxy turned off), files stay in the watch folder; when it is back
// they go through, with nothing lost or doubled.
func TestOutageKeepsFilesLocal(t *testing.T) {
	t.Parallel()
	for _, service := range []string{"s3", "dynamodb"} {
		t.Run(service, func(t *testing.T) {
			h := newHarness(t)
			var proxy = h.st.Proxy(t, h.st.S3Endpoint)
			if service == "s3" {
				h.agentS3 = h.agentS3At(proxy.Endpoint)
			} else {
				proxy = h.st.Proxy(t, h.st.DynamoDBEndpoint)
				h.agentDB = h.st.DynamoDBAt(t, proxy.Endpoint)
			}
			proxy.SetEnabled(false)
			a, stop := h.runDaemon(h.cfg)
			data := randomBytes(7<<20, 4)
			h.write("outage.jpg", data)
			h.waitFor("a failed attempt", 30*time.Second, func() bool { return a.Stats().Failures.Load() > 0 })
			checkFailureCauses(t, a, service)
			if h.archived("outage.jpg") {
				t.Fatalf("archived while %s was down", service)
			}
			if _, err := os.Stat(filepath.Join(h.cfg.Watch, "outage.jpg")); err != nil {
				t.Fatalf("local file gone while %s was down: %v", service, err)
			}
			proxy.SetEnabled(true)
			h.waitFor("archived after the outage", 90*time.Second, func() bool { return h.archived("outage.jpg") })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			h.assertOffloaded("outage.jpg", data)
			if n := h.ledgerCount(); n != 1 {
				t.Errorf("ledger items under the prefix = %d; want 1", n)
			}
		})
	}
}

// TestOutageEndRetriesFailedFilesSoon: the end of an outage, end to end.
// S3 is cut off (Toxiproxy off) while a few files fail on it (fewer than
// the 5 that open the breaker, so the breaker plays no part), until one of
// them waits out a backoff that ends well after S3 will be back. Then S3
// returns and a new file is published: the first file offloaded after at
// least 10 s without one. Every file that failed on S3 is then retried at
// once instead of at the end of its backoff, so each is archived before its
// own retry was due. The test waits for the archive, bounded by that due
// time, not for a guessed number of seconds.
func TestOutageEndRetriesFailedFilesSoon(t *testing.T) {
	t.Parallel()
	const (
		failing = 3 // different files failing in a row: the breaker needs 5
		// quietGap is docs/architecture.md's "at least 10 s without one".
		quietGap = 10 * time.Second
		// ahead: a file's own retry must be due this long after S3 is back
		// for the test to tell it from the brought-forward one (within 2 s).
		ahead = 15 * time.Second
	)
	h := newHarness(t)
	proxy := h.st.Proxy(t, h.st.S3Endpoint)
	h.agentS3 = h.agentS3At(proxy.Endpoint)
	proxy.SetEnabled(false)
	data := map[string][]byte{}
	for i := range failing {
		rel := fmt.Sprintf("failed-%d.jpg", i)
		data[rel] = randomBytes(2000+i, byte(i))
		h.write(rel, data[rel])
	}
	a, stop := h.runDaemon(h.cfg)

	// Each failure doubles a file's backoff (with jitter), so the wait
	// ends once one retry is due far enough ahead, with every file waiting
	// out a backoff (none in the middle of an attempt).
	var far map[string]time.Time // file -> when its own retry is due
	h.waitFor(fmt.Sprintf("a retry due %s ahead, after %s without a success", ahead, quietGap), 3*time.Minute, func() bool {
		st, now := a.Status(), time.Now()
		far = map[string]time.Time{}
		failed := 0
		// The gap is counted from when the agent first saw a file, not
		// from the test's start: the agent's start (its last success, for
		// the gap) comes after its start-up sweep, which waits on the
		// SDK's retries while S3 is away.
		seen := now
		for _, w := range st.Waiting {
			if w.Attempts > 0 {
				failed++
			}
			if w.RetryAt.Sub(now) >= ahead {
				far[w.Path] = w.RetryAt
			}
			if w.Since.Before(seen) {
				seen = w.Since
			}
		}
		return len(far) > 0 && failed == failing && now.Sub(seen) > quietGap
	})
	if st := a.Status(); st.Breaker.Trips != 0 || st.Offloaded != 0 {
		t.Fatalf("before S3 is back: breaker %+v, %d offloaded; want a breaker that never opened, none offloaded", st.Breaker, st.Offloaded)
	}
	for rel, due := range far {
		t.Logf("%s: its own retry is due in %s", rel, time.Until(due).Round(time.Millisecond))
	}

	proxy.SetEnabled(true)
	back := time.Now()
	trigger := randomBytes(3000, 9)
	h.write("trigger.jpg", trigger)
	for rel, due := range far {
		for !h.archived(rel) {
			if time.Now().After(due) {
				t.Fatalf("%s not offloaded before its own retry was due (%s after S3 came back): the end of the outage did not bring it forward", rel, due.Sub(back).Round(time.Millisecond))
			}
			time.Sleep(50 * time.Millisecond) // the pace of the polling only
		}
		t.Logf("%s: archived %s after S3 came back, %s before its own retry was due", rel, time.Since(back).Round(time.Millisecond), time.Until(due).Round(time.Millisecond))
	}
	h.waitFor("every file archived", 2*time.Minute, func() bool { return a.Stats().Uploaded.Load() == failing+1 })
	if st := a.Status(); st.Breaker.Trips != 0 {
		t.Errorf("breaker %+v; want it never opened (this is the recovery without it)", st.Breaker)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertOffloaded("trigger.jpg", trigger)
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
}

// TestOutageBreakerBoundsRequests: with many files waiting and S3 cut off
// (Toxiproxy turned off behind a relay that counts the PUTs reaching it),
// the breaker opens and the upload attempts over a measured window are
// bounded by the probe schedule, not by the number of files; once S3 is
// back every file is offloaded and the breaker closes.
//
// The window ends with the breaker's third failed probe after it began,
// and the bounds (on the PUTs, and on the probes themselves) are upper ones
// worked out from its length on the wall clock, so a starved CPU only
// loosens them. Without the breaker (threshold raised out of reach) no
// probe ever fails and every worker keeps retrying its own file; with
// probes that come too fast the window is short and holds more probes than
// the schedule allows.
func TestOutageBreakerBoundsRequests(t *testing.T) {
	t.Parallel()
	const (
		files        = 200
		workers      = 16
		windowProbes = 3
		// sdkAttempts: the test's clients use the SDK's standard retryer.
		sdkAttempts = retry.DefaultMaxAttempts
	)
	h := newHarness(t)
	h.cfg.Workers = workers
	proxy := h.st.Proxy(t, h.st.S3Endpoint)
	var puts atomic.Int64
	h.agentS3 = h.agentS3At(faultyS3(t, proxy.Endpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method == http.MethodPut {
			puts.Add(1)
		}
		return false
	}))
	proxy.SetEnabled(false)
	data := map[string][]byte{}
	for i := range files {
		rel := fmt.Sprintf("d%d/outage-%03d.jpg", i%4, i)
		data[rel] = randomBytes(1000+i*10, byte(i))
		h.write(rel, data[rel])
	}
	a, stop := h.runDaemon(h.cfg)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	// The window starts once every worker has failed once: by then the
	// breaker has opened, and what was in flight when it did has finished
	// or is on its last attempt.
	h.waitFor("a failure per worker", 60*time.Second, func() bool { return a.Stats().Failures.Load() >= workers })
	start, before, probesBefore := time.Now(), puts.Load(), a.Status().Breaker.FailedProbes
	// The window ends with the third probe that fails after it began (7 to
	// 14 s on the probe schedule), an event of the breaker's own, and the
	// bound is worked out from the time it actually took.
	h.waitFor(fmt.Sprintf("%d more failed probes", windowProbes), time.Minute, func() bool {
		return a.Status().Breaker.FailedProbes >= probesBefore+windowProbes
	})
	took, sent := time.Since(start), puts.Load()-before
	st := a.Status()

	// Probes in the window: the interval after each failed probe is at
	// least 1 s, and at least half of 1 s doubled per failed probe up to
	// 30 s (the jitter takes off at most half).
	probes, at, interval := 1, time.Second, time.Second
	for at <= took {
		probes++
		interval = min(2*interval, 30*time.Second)
		at += max(time.Second, interval/2)
	}
	// One probe that failed in the window may have begun before it.
	if failed := st.Breaker.FailedProbes - probesBefore; failed > probes+1 {
		t.Errorf("%d probes failed in %s; want at most %d (the probe schedule, and one begun before)", failed, took.Round(time.Millisecond), probes+1)
	}
	bound := int64((workers + probes) * sdkAttempts)
	t.Logf("%d PUTs reached the relay in %s (bound %d: %d in flight at the trip and %d probes, %d attempts each); breaker %+v",
		sent, took.Round(time.Millisecond), bound, workers, probes, sdkAttempts, st.Breaker)
	if sent > bound {
		t.Errorf("%d PUTs in %s while S3 was down; want at most %d (the probe schedule)", sent, took.Round(time.Millisecond), bound)
	}
	if st.Breaker.State != "open" || st.Breaker.Trips != 1 || st.Breaker.Cause != "s3" || st.Pending+len(st.InFlight) != files {
		t.Errorf("status during the outage: breaker %+v, pending %d, in flight %d; want open, 1 trip, cause s3, %d pending or probing", st.Breaker, st.Pending, len(st.InFlight), files)
	}
	if _, text := get(t, srv, "/metrics"); metricValue(t, text, "offload_breaker_open") != 1 || metricValue(t, text, "offload_breaker_trips_total") != 1 {
		t.Errorf("metrics during the outage: offload_breaker_open %v, offload_breaker_trips_total %v; want 1 and 1",
			metricValue(t, text, "offload_breaker_open"), metricValue(t, text, "offload_breaker_trips_total"))
	}
	for rel := range data {
		if h.archived(rel) {
			t.Fatalf("%s archived while S3 was down", rel)
		}
	}

	// The stack's dynalite is shared: another test that aborts a request
	// mid-body kills it, and its supervisor restarts it a moment later. A
	// trip of the breaker then is right, not an extra trip of this outage.
	dynaliteBefore := len(h.st.DynaliteRestarts(t))
	proxy.SetEnabled(true)
	h.waitFor("every file archived after the outage", 2*time.Minute, func() bool {
		return a.Stats().Uploaded.Load() == files
	})
	st = a.Status()
	wantTrips := int64(1)
	if restarts := h.st.DynaliteRestarts(t)[dynaliteBefore:]; len(restarts) > 0 {
		t.Logf("dynalite restarted %d times during the recovery (%+v): each may trip the breaker once more", len(restarts), restarts)
		wantTrips += int64(len(restarts))
	}
	if st.Breaker.State != "closed" || st.Breaker.Trips < 1 || st.Breaker.Trips > wantTrips {
		t.Errorf("breaker after the outage = %+v; want closed after 1 trip (%d with dynalite's restarts)", st.Breaker, wantTrips)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for rel, b := range data {
		h.assertOffloaded(rel, b)
	}
	if n := h.ledgerCount(); n != files {
		t.Errorf("ledger items = %d; want %d", n, files)
	}
}

// TestOnceOverDeadS3Ends: Once with S3 unreachable for the whole run does
// not try every file onceAttempts times: the breaker opens, its probe fails
// onceAttempts times, and Once reports every file as not offloaded, with
// the files left where they were.
func TestOnceOverDeadS3Ends(t *testing.T) {
	t.Parallel()
	const files = 50
	h := newHarness(t)
	proxy := h.st.Proxy(t, h.st.S3Endpoint)
	h.agentS3 = h.agentS3At(proxy.Endpoint)
	proxy.SetEnabled(false)
	for i := range files {
		h.write(fmt.Sprintf("dead-%02d.jpg", i), randomBytes(500+i, byte(i)))
	}
	a := h.newAgent(h.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := a.Once(ctx)
	if !errors.Is(err, agent.ErrIncomplete) || !strings.Contains(err.Error(), fmt.Sprintf("%d files", files)) {
		t.Fatalf("Once = %v; want ErrIncomplete for all %d files", err, files)
	}
	if st := a.Status(); st.Breaker.State != "open" || st.Breaker.FailedProbes < 3 {
		t.Errorf("breaker = %+v; want open after 3 failed probes", st.Breaker)
	}
	if n := a.Stats().Failures.Load(); n >= 3*files {
		t.Errorf("%d failed attempts; want far fewer than every file tried 3 times", n)
	}
	entries, _ := os.ReadDir(h.cfg.Watch)
	if len(entries) != files {
		t.Errorf("%d files left in the watch folder; want all %d", len(entries), files)
	}
}

// TestShutdownDrains: on cancel (SIGTERM in the command), an upload in
// flight finishes within the grace period; past the grace period it is cut
// off and the file stays local, its multipart upload kept, and recorded,
// for the next run to resume (TestResumeAfterKill resumes one).
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		grace    time.Duration
		finishes bool
	}{{"finishes within grace", time.Minute, true}, {"aborted after grace", 200 * time.Millisecond, false}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			proxy := h.st.Proxy(t, h.st.S3Endpoint)
			// 4 MB/s: the 12 MiB file takes about 3 s to send.
			proxy.AddToxic("slow", "bandwidth", "upstream", map[string]any{"rate": 4000})
			h.agentS3 = h.agentS3At(proxy.Endpoint)
			h.cfg.Grace = tt.grace
			_, stop := h.runDaemon(h.cfg)
			data := randomBytes(12<<20, 5)
			h.write("drain.jpg", data)
			h.waitFor("the upload to start", 30*time.Second, func() bool { return len(h.multipartUploads()) > 0 })
			start := time.Now()
			if err := stop(); err != nil {
				t.Fatalf("Run returned %v; want nil on shutdown", err)
			}
			t.Logf("Run returned %s after cancel", time.Since(start).Round(time.Millisecond))
			if tt.finishes {
				h.assertOffloaded("drain.jpg", data)
				return
			}
			if h.objectExists("drain.jpg") || h.archived("drain.jpg") {
				t.Errorf("aborted upload left an object or an archived file")
			}
			if _, err := os.Stat(filepath.Join(h.cfg.Watch, "drain.jpg")); err != nil {
				t.Errorf("local file gone after an aborted upload: %v", err)
			}
			records, _ := os.ReadDir(filepath.Join(h.cfg.Watch, ".offload-claim", ".uploads"))
			if up := h.multipartUploads(); len(up) != 1 || len(records) != 1 {
				t.Errorf("after shutdown: multipart uploads %v, records %d; want the one upload, kept and recorded for the next run", up, len(records))
			}
		})
	}
}

// TestKill9MidUploadThenRestart runs the real command, kills it with
// SIGKILL in the middle of a multipart upload, and starts it again: every
// file ends offloaded, once, with no orphaned multipart upload.
func TestKill9MidUploadThenRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	proxy := h.st.Proxy(t, h.st.S3Endpoint)
	proxy.AddToxic("slow", "bandwidth", "upstream", map[string]any{"rate": 3000})
	files := map[string][]byte{"big.jpg": randomBytes(16<<20, 1), "small.jpg": randomBytes(2000, 2)}
	for rel, data := range files {
		h.write(rel, data)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive,
			"--key-prefix", h.cfg.Mapping.KeyPrefix, "--quiet", "200ms", "--part-size", "5MiB", "--host", "test-host")
		cmd.Env = h.commandEnv(stacktest.Agent, "AWS_ENDPOINT_URL_S3="+proxy.Endpoint)
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	first := start()
	// Killed once S3 holds a part of big.jpg and the rest are still being
	// sent (about 4 s more through the 3 MB/s toxic).
	h.waitFor("a part of big.jpg stored", 30*time.Second, func() bool { return h.partsStored("big.jpg") > 0 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	if _, err := os.Stat(filepath.Join(h.cfg.Watch, "big.jpg")); err != nil {
		t.Fatalf("big.jpg left the watch folder before its upload finished: %v", err)
	}
	proxy.RemoveToxic("slow")

	second := start()
	h.waitFor("every file archived after the restart", 60*time.Second, func() bool {
		return h.archived("big.jpg") && h.archived("small.jpg")
	})
	second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v; want status 0", err)
	}
	for rel, data := range files {
		h.assertOffloaded(rel, data)
	}
	if n := h.ledgerCount(); n != len(files) {
		t.Errorf("ledger items = %d; want %d", n, len(files))
	}
	if up := h.multipartUploads(); len(up) != 0 {
		t.Errorf("orphaned multipart uploads after the restart: %v", up)
	}
}

// TestCommandRefusesBadConfig: the command says what is wrong, in one line,
// with exit status 2, before touching anything; so it does for a
// concurrency or worker count beyond 1,024 and a memory budget (part size ×
// concurrency) beyond the machine's memory.
func TestCommandRefusesBadConfig(t *testing.T) {
	t.Parallel()
	bin := buildAgent(t)
	watch, archive := t.TempDir(), t.TempDir()
	nested := filepath.Join(watch, "archive")
	os.Mkdir(nested, 0o755)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"once", "--watch", watch, "--archive", archive, "--table", "offload-ledger"}, "bucket: required"},
		{[]string{"once", "--watch", "/nonexistent", "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger"}, "watch:"},
		{[]string{"once", "--watch", watch, "--archive", nested, "--bucket", "offload-test", "--table", "offload-ledger"}, "must not contain one another"},
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--after", "move"}, "after:"},
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--part-size", "1MiB"}, "part size"},
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--key-prefix", "../"}, "key prefix"},
		{[]string{"once", "--quiet", "soon"}, "--quiet"},
		{[]string{"sync"}, "unknown command"},
		// The caps: what a typo (or the fuzzer's 99999999999) asks for is
		// refused before any buffer or worker exists.
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--concurrency", "1025"}, "concurrency: 1025 is outside 1 to 1024"},
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--concurrency", "99999999999"}, "concurrency: 99999999999 is outside 1 to 1024"},
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--transfers", "1025"}, "workers: 1025 is outside 1 to 1024"},
		{[]string{"once", "--watch", watch, "--archive", archive, "--bucket", "offload-test", "--table", "offload-ledger", "--part-size", "5GiB", "--concurrency", "1024"}, "part size × concurrency: a memory budget of 5242880 MiB"},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 2 || !strings.Contains(string(out), tt.want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("offload-agent %q: status %d, output %q; want status 2 and one line containing %q", tt.args, code, out, tt.want)
		}
	}
	if out, err := exec.Command(bin, "help").CombinedOutput(); err != nil || !strings.Contains(string(out), "OFFLOAD_BUCKET") {
		t.Errorf("offload-agent help: %v\n%s", err, out)
	}
}

// checkFailureCauses: every failed attempt so far is counted under cause in
// offload_failures_total, and none under another cause. Taken from one
// scrape, and compared with the failures status lists from the same moment
// on, so a retry in between only adds to the status side.
func checkFailureCauses(t *testing.T, a *agent.Agent, cause string) {
	t.Helper()
	samples := metricSamples(t, scrape(t, a))
	st := a.Status()
	for _, c := range []string{"s3", "dynamodb", "local", "archive"} {
		got := samples[`offload_failures_total{cause="`+c+`"}`]
		if c == cause && (got < 1 || got > float64(st.FailedAttempts)) {
			t.Errorf(`offload_failures_total{cause=%q} = %v; want from 1 to the %d failed attempts status counts`, c, got, st.FailedAttempts)
		}
		if c != cause && got != 0 {
			t.Errorf(`offload_failures_total{cause=%q} = %v; want 0 (every failure was %s's)`, c, got, cause)
		}
	}
	for _, f := range st.RecentFailures {
		if f.Cause != cause {
			t.Errorf("status lists a failure of cause %q (%s); want only %q", f.Cause, f.Error, cause)
		}
	}
}

// partsStored counts the parts S3 holds of the unfinished multipart
// uploads of rel.
func (h *harness) partsStored(rel string) int {
	h.t.Helper()
	ctx := context.Background()
	ups, err := h.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(h.st.Bucket), Prefix: aws.String(h.key(rel))})
	if err != nil {
		h.t.Fatalf("ListMultipartUploads: %v", err)
	}
	n := 0
	for _, u := range ups.Uploads {
		if aws.ToString(u.Key) != h.key(rel) {
			continue
		}
		parts, err := h.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(h.st.Bucket), Key: u.Key, UploadId: u.UploadId})
		if err != nil {
			h.t.Fatalf("ListParts: %v", err)
		}
		n += len(parts.Parts)
	}
	return n
}

// ledgerCount counts the ledger items under the test's key prefix.
func (h *harness) ledgerCount() int {
	h.t.Helper()
	n := 0
	p := dynamodb.NewScanPaginator(h.db, &dynamodb.ScanInput{
		TableName:                 aws.String(h.st.Table),
		FilterExpression:          aws.String("begins_with(" + offload.LedgerPartitionKey + ", :p)"),
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{":p": &dbtypes.AttributeValueMemberS{Value: h.cfg.Mapping.KeyPrefix}},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			h.t.Fatalf("scan ledger: %v", err)
		}
		n += int(page.Count)
	}
	return n
}

// buildAgent builds offload-agent once per test binary run.
func buildAgent(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "offload-agent-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtAgent = filepath.Join(dir, "offload-agent")
		out, err := exec.Command("go", "build", "-o", builtAgent, "./cmd/offload-agent").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build offload-agent: %v", buildErr)
	}
	return builtAgent
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if builtAgent != "" {
		os.RemoveAll(filepath.Dir(builtAgent))
	}
	os.Exit(code)
}

// TestNoOrphanAfterFailedAbortOrLostCreate: the soak's first finding. An
// upload whose own abort could not reach S3, and one made by a create
// whose response was lost (the SDK retried it), are both gone once the
// file is offloaded.
func TestNoOrphanAfterFailedAbortOrLostCreate(t *testing.T) {
	t.Parallel()
	for _, tt := range []string{"failed abort", "lost create response"} {
		t.Run(tt, func(t *testing.T) {
			h := newHarness(t)
			data := randomBytes(12<<20, 9)
			if tt == "lost create response" {
				var dropped atomic.Bool
				h.agentS3 = h.agentS3At(faultyS3(t, h.st.S3Endpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
					if r.Method == http.MethodPost && r.URL.Query().Has("uploads") && dropped.CompareAndSwap(false, true) {
						forward.ServeHTTP(httptest.NewRecorder(), r)
						panic(http.ErrAbortHandler) // S3 made the upload; the answer never arrives
					}
					return false
				}))
			} else {
				// S3 refuses a part (400: not worth resuming, so the
				// agent aborts the upload), and every abort fails (503) with
				// every attempt the SDK makes (3); then S3 is back.
				var abortsFailed atomic.Int32
				h.agentS3 = h.agentS3At(faultyS3(t, h.st.S3Endpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
					if abortsFailed.Load() >= 3 || !r.URL.Query().Has("uploadId") {
						return false
					}
					if r.Method == http.MethodDelete {
						abortsFailed.Add(1)
						http.Error(w, "", http.StatusServiceUnavailable)
						return true
					}
					if r.Method == http.MethodPut {
						http.Error(w, "", http.StatusBadRequest)
						return true
					}
					return false
				}))
			}
			h.write("orphan.jpg", data)
			if err := h.once(); err != nil {
				t.Fatalf("Once: %v", err)
			}
			h.assertOffloaded("orphan.jpg", data)
			if up := h.multipartUploads(); len(up) != 0 {
				t.Errorf("multipart uploads left: %v", up)
			}
		})
	}
}

// TestNoOrphanAfterEveryCreateAnswerLost: the daemon has been running a
// while when S3 makes an upload for each of the SDK's attempts (3) at a
// create and no answer arrives, so the attempt fails outright; the next
// attempt succeeds. The three uploads were started by this agent, after
// it started, and nobody knows their ids (the short soak found two, MinIO
// killed mid-answer with the SDK's retry quota spent). Once the object is
// stored they are aborted.
func TestNoOrphanAfterEveryCreateAnswerLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var dropped atomic.Int32
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.S3Endpoint, func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method == http.MethodPost && r.URL.Query().Has("uploads") && dropped.Add(1) <= 3 {
			forward.ServeHTTP(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler)
		}
		return false
	}))
	_, stop := h.runDaemon(h.cfg)
	data := randomBytes(12<<20, 12)
	h.write("lost-creates.jpg", data)
	h.waitFor("lost-creates.jpg archived", time.Minute, func() bool { return h.archived("lost-creates.jpg") })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	h.assertOffloaded("lost-creates.jpg", data)
	if n := dropped.Load(); n < 4 {
		t.Fatalf("%d creates; want the 3 lost and one answered", n)
	}
	if up := h.multipartUploads(); len(up) != 0 {
		t.Errorf("multipart uploads left: %v", up)
	}
}

// TestSweepAbortsStrayUploadOfStoredKey: a multipart upload left for a key
// that already holds its object (the soak's second orphan: made by a run
// that was then killed, and whose start-up abort could not reach S3) is
// aborted by the running agent's periodic sweep.
func TestSweepAbortsStrayUploadOfStoredKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	data := randomBytes(3000, 11)
	_, stop := h.runDaemon(h.cfg)
	h.write("stored.jpg", data)
	h.waitFor("stored.jpg archived", 30*time.Second, func() bool { return h.archived("stored.jpg") })
	if _, err := h.s3.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{
		Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("stored.jpg"))}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the stray upload aborted by a sweep", 30*time.Second, func() bool { return len(h.multipartUploads()) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	h.assertOffloaded("stored.jpg", data)
}

// TestArchiveUnwritableAtStart: an archive folder that cannot be written
// when the agent starts is logged, not fatal; files are uploaded and
// recorded, stay local meanwhile, and are archived once it can be written.
func TestArchiveUnwritableAtStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	lock, unlock := exec.Command("chmod", "0555", h.cfg.Archive), exec.Command("chmod", "0755", h.cfg.Archive)
	if os.Geteuid() == 0 { // root writes through permission bits
		lock, unlock = exec.Command("chattr", "+i", h.cfg.Archive), exec.Command("chattr", "-i", h.cfg.Archive)
	}
	if out, err := lock.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v %s", lock.Args, err, out)
	}
	unlocked := false
	t.Cleanup(func() {
		if !unlocked {
			unlock.Run()
		}
	})
	data := randomBytes(2000, 12)
	h.write("waiting.jpg", data)
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("a failed archive attempt", 30*time.Second, func() bool { return a.Stats().Failures.Load() > 0 })
	checkFailureCauses(t, a, "archive")
	if !strings.Contains(h.logs.String(), "archive folder is not writable") {
		t.Errorf("no start-up error about the archive folder")
	}
	if !h.objectExists("waiting.jpg") {
		t.Errorf("not uploaded while the archive was unwritable")
	}
	if _, err := os.Stat(filepath.Join(h.cfg.Watch, "waiting.jpg")); err != nil {
		t.Errorf("the local file left the watch folder: %v", err)
	}
	if out, err := unlock.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v %s", unlock.Args, err, out)
	}
	unlocked = true
	h.waitFor("archived once the archive is writable", 60*time.Second, func() bool { return h.archived("waiting.jpg") })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	h.assertOffloaded("waiting.jpg", data)
}

// faultyS3 starts a reverse proxy to the S3 endpoint in which fault may
// answer a request itself (returning true) or let it through.
func faultyS3(t *testing.T, upstream string, fault func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool) string {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = stacktest.HTTPClient(t).Transport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fault(w, r, proxy) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestStatusCommand runs the real command with --metrics-addr and a bandwidth
// limit, so that a multipart upload stays in flight, and asks "offload-agent status"
// (text and --json) what it is doing: the upload with its progress, a file
// held open by its writer waiting, and the totals once all is done.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	h.write("big.jpg", randomBytes(16<<20, 1))
	h.write("small.jpg", randomBytes(2000, 2))
	held, err := os.Create(filepath.Join(h.cfg.Watch, "held.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write(randomBytes(5000, 3))
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive, "--metrics-addr", addr,
		"--key-prefix", h.cfg.Mapping.KeyPrefix, "--quiet", "200ms", "--part-size", "5MiB", "--bwlimit", "4M", "--host", "test-host")
	cmd.Env = h.commandEnv(stacktest.Agent)
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	status := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"status", "--metrics-addr", addr}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("status %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	var st agent.Status
	h.waitFor("big.jpg in flight, partly sent", 30*time.Second, func() bool {
		if err := loopback.WaitListening(context.Background(), addr, time.Second); err != nil {
			return false
		}
		if err := json.Unmarshal([]byte(status("--json")), &st); err != nil {
			t.Fatalf("status --json: %v", err)
		}
		return len(st.InFlight) == 1 && st.InFlight[0].Path == "big.jpg" && st.InFlight[0].Sent > 0 && st.Pending == 1
	})
	if f := st.InFlight[0]; f.Bytes != 16<<20 || f.Sent >= f.Bytes || f.Read < f.Sent {
		t.Errorf("in flight = %+v; want big.jpg, 16 MiB, partly sent, read ≥ sent", f)
	}
	text := status()
	for _, want := range []string{"pending: 1 files", "held.jpg", "open for writing", "in flight: 1", "big.jpg", "/ 16.0 MiB", "MiB/s", "ETA"} {
		if !strings.Contains(text, want) {
			t.Errorf("status output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("status while uploading:\n%s", text)

	h.waitFor("both files archived", 60*time.Second, func() bool { return h.archived("big.jpg") && h.archived("small.jpg") })
	h.waitFor("status totals", 30*time.Second, func() bool { return strings.Contains(status(), "totals: 2 offloaded (16.0 MiB)") })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v; want status 0", err)
	}
}
