package hotcache

import "time"

// fetchBudget bounds the bytes the cache fetches from S3. It is a bucket
// of bytes that holds at most max and refills at max per window, starting
// full; a fetch takes its size out before it starts, and what a failed
// fetch did not download is given back. Over any time T the fetches take
// at most max × (1 + T/window), whoever asks and however often. Not safe
// for concurrent use (Cache.mu guards it).
type fetchBudget struct {
	max    int64
	window time.Duration
	bytes  float64   // what may be fetched at `at`
	at     time.Time // when bytes was last brought up to date
}

func newFetchBudget(max int64, window time.Duration, now time.Time) *fetchBudget {
	return &fetchBudget{max: max, window: window, bytes: float64(max), at: now}
}

// refill adds what the time since the last look has earned.
func (b *fetchBudget) refill(now time.Time) {
	if !now.After(b.at) {
		return
	}
	b.bytes = min(float64(b.max), b.bytes+float64(b.max)*float64(now.Sub(b.at))/float64(b.window))
	b.at = now
}

// allows reports whether a fetch of n bytes could start at now.
func (b *fetchBudget) allows(n int64, now time.Time) bool {
	b.refill(now)
	return float64(n) <= b.bytes
}

// take takes n bytes out if the budget allows them at now.
func (b *fetchBudget) take(n int64, now time.Time) bool {
	if !b.allows(n, now) {
		return false
	}
	b.bytes -= float64(n)
	return true
}

// giveBack returns n bytes taken but not downloaded.
func (b *fetchBudget) giveBack(n int64) {
	b.bytes = min(float64(b.max), b.bytes+float64(n))
}

// left is what may be fetched at now.
func (b *fetchBudget) left(now time.Time) int64 {
	b.refill(now)
	return int64(b.bytes)
}
