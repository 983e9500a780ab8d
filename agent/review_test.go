package agent_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
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
