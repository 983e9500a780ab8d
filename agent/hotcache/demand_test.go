package hotcache

import (
	"fmt"
	"testing"
	"time"
)

func TestDemandCrossesThresholdWithinWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		misses []time.Duration // offsets from t0
		want   []bool          // hot after each
	}{
		{"three quick misses", []time.Duration{0, time.Second, 2 * time.Second}, []bool{false, false, true}},
		{"spread over more than the window", []time.Duration{0, 6 * time.Minute, 11 * time.Minute, 12 * time.Minute}, []bool{false, false, false, false}},
		{"window restarts at the first late miss", []time.Duration{0, 11 * time.Minute, 12 * time.Minute, 13 * time.Minute}, []bool{false, false, false, true}},
		{"counted again after crossing", []time.Duration{0, 1, 2, 3, 4, 5}, []bool{false, false, true, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDemand(3, 10*time.Minute, 100)
			for i, off := range tc.misses {
				if got := d.miss("k", t0.Add(off)); got != tc.want[i] {
					t.Errorf("miss %d at +%s: hot = %v, want %v", i+1, off, got, tc.want[i])
				}
			}
		})
	}
}

func TestDemandQuiet(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := newDemand(1, time.Minute, 100)
	d.quiet("k", t0.Add(time.Minute))
	if d.miss("k", t0.Add(30*time.Second)) {
		t.Error("hot while quiet; want not counted until the quiet period ends")
	}
	if !d.miss("k", t0.Add(61*time.Second)) {
		t.Error("not hot after the quiet period with threshold 1")
	}
}

// TestDemandBounded: however many distinct paths miss, at most max are
// counted, and the least recently missed one is the one forgotten.
func TestDemandBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := newDemand(2, time.Hour, 50)
	d.miss("kept", t0)
	for i := range 10_000 {
		d.miss(fmt.Sprintf("scan/%d", i), t0)
		if i%10 == 0 {
			d.miss("kept", t0) // stays recent
		}
		if got := d.tracked(); got > 50 {
			t.Fatalf("after %d distinct paths: %d tracked, want at most 50", i+1, got)
		}
	}
	if _, ok := d.entries["scan/0"]; ok {
		t.Error("the least recently missed path is still tracked")
	}
	d2 := newDemand(2, time.Hour, 50)
	d2.miss("kept", t0)
	for i := range 9 {
		d2.miss(fmt.Sprintf("scan/%d", i), t0)
	}
	if !d2.miss("kept", t0) {
		t.Error("a path that stayed among the recent ones lost its count")
	}
}

// BenchmarkDemandEntry measures the memory of one tracked path (a 60-byte
// key), which maxTracked multiplies.
func BenchmarkDemandEntry(b *testing.B) {
	t0 := time.Now()
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("original/2026/11/30/IMG_%08d-some-longer-name-here.jpg", i)
	}
	d := newDemand(1<<30, time.Hour, b.N+1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.miss(keys[i], t0)
	}
}
