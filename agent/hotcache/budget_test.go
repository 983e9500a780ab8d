package hotcache

import (
	"testing"
	"time"
)

// TestFetchBudget: the budget starts full, refills at its size per window
// and never holds more; what a failed fetch did not download comes back.
func TestFetchBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	b := newFetchBudget(1000, 10*time.Minute, t0)
	if !b.take(600, t0) || !b.take(400, t0) {
		t.Fatal("a full budget of 1000 refused 600 then 400")
	}
	if b.take(1, t0) {
		t.Error("an empty budget gave a byte")
	}
	if got := b.left(t0.Add(time.Minute)); got != 100 {
		t.Errorf("a tenth of a window later: %d left; want 100", got)
	}
	if b.allows(200, t0.Add(time.Minute)) || !b.allows(200, t0.Add(2*time.Minute)) {
		t.Error("200 bytes: want refused after 1 min, allowed after 2")
	}
	if got := b.left(t0.Add(time.Hour)); got != 1000 {
		t.Errorf("six windows later: %d left; want the budget, 1000, no more", got)
	}
	b.take(700, t0.Add(time.Hour))
	b.giveBack(500)
	if got := b.left(t0.Add(time.Hour)); got != 800 {
		t.Errorf("after taking 700 and giving back 500: %d left; want 800", got)
	}
	b.giveBack(5000)
	if got := b.left(t0.Add(time.Hour)); got != 1000 {
		t.Errorf("after giving back more than was taken: %d left; want 1000", got)
	}
}
