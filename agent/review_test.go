package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/photosleeve/offload/agent"
)

// TestRefusedEverywhereOpensTheBreaker: S3 refusing every key alike (403
// AccessDenied on the whole prefix: the agent's role lost s3:PutObject, a
// bucket policy or the bucket's KMS key now refuses everything) is the
// service failing for every file, not one file's fault. Each file was
// classified as failing for its own reason, so the breaker never opened
// and every file went on being opened, read and sent on its own backoff.
func TestRefusedEverywhereOpensTheBreaker(t *testing.T) {
	t.Parallel()
	const files = 40
	h := newHarness(t)
	h.refuseUnder("")
	h.cfg.Workers = 4
	for i := range files {
		h.write(fmt.Sprintf("all/f%02d.jpg", i), randomBytes(200+i, byte(i)))
	}
	a, stop := h.runDaemon(h.cfg)
	// Either the breaker opens, or the files go on failing: three failures
	// a file on average, which their own backoff (1 s, 2 s, 4 s at most)
	// allows within seconds.
	h.waitFor("the breaker open, or three failures a file", time.Minute, func() bool {
		return a.Status().Breaker.Trips > 0 || a.Stats().Failures.Load() >= 3*files
	})
	st := a.Status()
	t.Logf("failures %d for %d files, breaker %+v", a.Stats().Failures.Load(), files, st.Breaker)
	if st.Breaker.Trips == 0 {
		t.Errorf("every one of %d files refused alike, %d failed attempts, and the breaker never opened: %+v",
			files, a.Stats().Failures.Load(), st.Breaker)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestExpiredTokenOnLargeFilesOpensTheBreaker: the agent's session token
// has expired, so S3 refuses every request: 400 ExpiredToken
// (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList).
// A file larger than a part is first asked for with a HEAD, and a HEAD's
// error has no body: "it returns a generic code, such as 400 Bad Request
// ... It's not possible to retrieve the exact exception"
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
// The proxy answers as AWS does. With only large files waiting, every
// failure is that bare 400, which fileFault takes for the file's own, so
// the breaker never opens however long the credentials stay expired.
func TestExpiredTokenOnLargeFilesOpensTheBreaker(t *testing.T) {
	t.Parallel()
	const files = 8
	h := newHarness(t)
	h.cfg.Workers = 4
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		w.Header().Set("x-amz-request-id", "r")
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusBadRequest)
			return true
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message><RequestId>r</RequestId></Error>`)
		return true
	}))
	for i := range files {
		h.write(fmt.Sprintf("big/v%02d.mp4", i), randomBytes(int(h.cfg.PartSize)+1000+i, byte(i)))
	}
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("the breaker open, or three failures a file", time.Minute, func() bool {
		return a.Status().Breaker.Trips > 0 || a.Stats().Failures.Load() >= 3*files
	})
	st := a.Status()
	t.Logf("failures %d for %d files, breaker %+v", a.Stats().Failures.Load(), files, st.Breaker)
	if st.Breaker.Trips == 0 {
		t.Errorf("every request refused with ExpiredToken, %d failed attempts of %d files, and the breaker never opened: %+v",
			a.Stats().Failures.Load(), files, st.Breaker)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestArchiveRetryDuringOutageKeepsTheBreakerOpen: a file that S3 and the
// ledger took but the archive refused (a plain file stands where its
// archive folder should be) retries only the local step, with no request to
// S3 or DynamoDB. Its result says nothing about them, yet it counted as
// their answer: with S3 down and the breaker open, the retry of that file
// closed the breaker, and the waiting files would go out against the dead
// S3. With many such files the breaker bounds nothing.
func TestArchiveRetryDuringOutageKeepsTheBreakerOpen(t *testing.T) {
	t.Parallel()
	const healthy = 5 // breakerThreshold
	h := newHarness(t)
	h.cfg.Workers = 4
	var down atomic.Bool
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if !down.Load() {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>down</Message><RequestId>r</RequestId></Error>`)
		return true
	}))
	if err := os.WriteFile(filepath.Join(h.cfg.Archive, "blocked"), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	const blocked = "blocked/photo.jpg"
	h.write(blocked, randomBytes(20_000, 7))
	a, stop := h.runDaemon(h.cfg)
	archiveFailures := func() int {
		return strings.Count(h.logs.String(), `msg="failed, will retry" file=`+blocked+" ")
	}
	h.waitFor("the blocked file proven, its archive failed", 30*time.Second, func() bool { return archiveFailures() >= 1 })

	// S3 goes down; five new files fail on it and open the breaker. Then
	// they leave the folder, so the blocked file is the only one left to
	// probe.
	down.Store(true)
	for i := range healthy {
		h.write(fmt.Sprintf("ok/h%02d.jpg", i), randomBytes(300+i, byte(i)))
	}
	h.waitFor("the breaker open", time.Minute, func() bool { return a.Status().Breaker.Trips >= 1 })
	for i := range healthy {
		if err := os.Remove(filepath.Join(h.cfg.Watch, "ok", fmt.Sprintf("h%02d.jpg", i))); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("only the blocked file pending", time.Minute, func() bool {
		st := a.Status()
		return st.Pending == 1 && len(st.InFlight) == 0
	})
	at := archiveFailures()
	h.waitFor("the blocked file tried again", 2*time.Minute, func() bool { return archiveFailures() > at })
	st := a.Status()
	t.Logf("archive failures of %s: %d, then %d; breaker %+v", blocked, at, archiveFailures(), st.Breaker)
	if st.Breaker.State != "open" || st.Breaker.Trips != 1 {
		t.Errorf("S3 down throughout, and the breaker = %+v; want open since its first trip: a retry of the archive alone asks neither S3 nor DynamoDB", st.Breaker)
	}
	down.Store(false)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestFileThatMadeRoomKeepsItsProof: files S3 and the ledger took but the
// archive refuses, more of them than the agent holds. Each retries only the
// local step while held (TestArchiveFailureRetriesOnlyTheLocalStep), but
// one that makes room for another (see scheduler.makeRoom) came back
// without its proof: held again, it was read, uploaded and recorded again
// (the PUT refused by If-None-Match, a HEAD, the ledger), on every
// return, though nothing but the archive was ever in the way.
func TestFileThatMadeRoomKeepsItsProof(t *testing.T) {
	t.Parallel()
	const limit, blocked = 4, 6
	h := newHarness(t)
	var requests atomic.Int64 // S3 requests for the blocked files
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if strings.Contains(r.URL.Path, "/blocked/") {
			requests.Add(1)
		}
		return false
	}))
	if err := os.WriteFile(filepath.Join(h.cfg.Archive, "blocked"), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range blocked {
		h.write(fmt.Sprintf("blocked/b%02d.jpg", i), randomBytes(20_000+i, byte(i)))
	}
	a := h.newAgent(h.cfg)
	agent.SetPendingLimit(a, limit)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	failures := func() (files, attempts int) {
		logs := h.logs.String()
		for i := range blocked {
			n := strings.Count(logs, fmt.Sprintf(`msg="failed, will retry" file=blocked/b%02d.jpg `, i))
			if n > 0 {
				files++
			}
			attempts += n
		}
		return files, attempts
	}
	h.waitFor("every blocked file proven and failed on the archive", time.Minute, func() bool {
		files, _ := failures()
		return files == blocked
	})
	first := requests.Load()
	_, at := failures()
	h.waitFor("three retries a file", 2*time.Minute, func() bool {
		_, n := failures()
		return n >= at+3*blocked
	})
	_, now := failures()
	t.Logf("%d S3 requests for the first attempts; %d more for %d retries", first, requests.Load()-first, now-at)
	if n := requests.Load() - first; n != 0 {
		t.Errorf("%d retries of the archive alone made %d S3 requests; want 0: a file that made room came back without its proof", now-at, n)
	}
}

// TestLedgerRefusingEveryItemOpensTheBreaker: DynamoDB refusing every
// write alike (400 AccessDeniedException: the role lost dynamodb:PutItem
// on the table) is taken for each file's own failure, as a LeadingKeys
// condition refusing some keys would be. So the breaker never opens, and
// every file is uploaded to S3, left there without a ledger item, and on
// each retry read and sent again (If-None-Match refuses it, a HEAD, the
// ledger refuses again), each on its own backoff, for as long as it lasts.
// (8 files: 24 failures and 24 PUT requests in 4 s, never tripped.)
// 40 files, as in TestRefusedEverywhereOpensTheBreaker: refusals count
// towards the breaker only for many different files in a row (8 refused
// files are as well a few keys a condition refuses, which must not stop
// the others: TestRefusedKeysDoNotStopOthers).
func TestLedgerRefusingEveryItemOpensTheBreaker(t *testing.T) {
	t.Parallel()
	const files = 40
	h := newHarness(t)
	h.cfg.Workers = 4
	var puts atomic.Int64
	h.agentS3 = h.agentS3At(faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if r.Method == http.MethodPut {
			puts.Add(1)
		}
		return false
	}))
	h.agentDB = h.st.DynamoDBAt(t, faultyS3(t, h.st.DynamoDBEndpoint, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutItem") {
			return false
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"com.amazon.coral.service#AccessDeniedException","message":"User is not authorized to perform: dynamodb:PutItem"}`)
		return true
	}))
	for i := range files {
		h.write(fmt.Sprintf("l/f%02d.jpg", i), randomBytes(50_000+i, byte(i)))
	}
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("the breaker open, or three failures a file", time.Minute, func() bool {
		return a.Status().Breaker.Trips > 0 || a.Stats().Failures.Load() >= 3*files
	})
	st := a.Status()
	t.Logf("failures %d of %d files, %d PUT requests, breaker %+v", a.Stats().Failures.Load(), files, puts.Load(), st.Breaker)
	if st.Breaker.Trips == 0 {
		t.Errorf("every ledger write refused alike, %d failed attempts and %d PUT requests for %d files, and the breaker never opened: %+v",
			a.Stats().Failures.Load(), puts.Load(), files, st.Breaker)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
