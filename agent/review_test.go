package agent_test

import (
	"fmt"
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
