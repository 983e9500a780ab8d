package agent

import (
	"strings"
	"testing"
	"time"
)

// TestLivenessStalled: the loop is judged only while it runs; then a turn
// older than the limit is a stall, which names how long.
func TestLivenessStalled(t *testing.T) {
	l := newLiveness()
	now := time.Now()
	if err := l.stalled(now.Add(time.Hour), time.Second); err != nil {
		t.Errorf("before the loop starts: %v; want nil (start-up is not judged)", err)
	}
	select {
	case <-l.running:
		t.Fatal("running closed before the loop started")
	default:
	}
	l.start()
	<-l.running
	l.tick(now)
	if err := l.stalled(now.Add(500*time.Millisecond), time.Second); err != nil {
		t.Errorf("turned 0.5 s ago, limit 1 s: %v; want nil", err)
	}
	err := l.stalled(now.Add(90*time.Second), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "has not turned for 1m30s") {
		t.Errorf("turned 90 s ago, limit 1 min: %v; want a stall of 1m30s", err)
	}
	l.end()
	if err := l.stalled(now.Add(time.Hour), time.Second); err != nil {
		t.Errorf("after the loop ended (draining): %v; want nil", err)
	}
}
