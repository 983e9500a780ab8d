package hotcache

import (
	"fmt"
	"testing"
	"time"
)

func TestDemandCountsWithinWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		misses []time.Duration // offsets from t0
		want   []int           // count after each
	}{
		{"quick misses", []time.Duration{0, time.Second, 2 * time.Second}, []int{1, 2, 3}},
		{"the window restarts at the first late miss", []time.Duration{0, 6 * time.Minute, 11 * time.Minute, 12 * time.Minute}, []int{1, 2, 1, 2}},
		{"the count goes on past any threshold", []time.Duration{0, 1, 2, 3, 4, 5}, []int{1, 2, 3, 4, 5, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDemand(10*time.Minute, 100)
			for i, off := range tc.misses {
				if got, _ := d.miss("k", t0.Add(off)); got != tc.want[i] {
					t.Errorf("miss %d at +%s: count %d, want %d", i+1, off, got, tc.want[i])
				}
			}
		})
	}
}

func TestDemandForgetSizedQuiet(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := newDemand(time.Minute, 100)
	d.miss("k", t0)
	d.sized("k", 1234)
	if n, size := d.miss("k", t0); n != 2 || size != 1234 {
		t.Errorf("after sized: count %d, size %d; want 2 and 1234", n, size)
	}
	d.forget("k")
	if n, size := d.miss("k", t0); n != 1 || size != 0 {
		t.Errorf("after forget: count %d, size %d; want a fresh count", n, size)
	}
	d.quiet("q", t0.Add(time.Minute))
	if n, _ := d.miss("q", t0.Add(30*time.Second)); n != 0 {
		t.Errorf("while quiet: count %d; want 0", n)
	}
	if n, _ := d.miss("q", t0.Add(61*time.Second)); n != 1 {
		t.Errorf("after the quiet period: count %d; want 1", n)
	}
}

// TestDemandBounded: however many distinct paths miss, at most max are
// counted, and the least recently missed one is the one forgotten.
func TestDemandBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := newDemand(time.Hour, 50)
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
	d2 := newDemand(time.Hour, 50)
	d2.miss("kept", t0)
	for i := range 9 {
		d2.miss(fmt.Sprintf("scan/%d", i), t0)
	}
	if n, _ := d2.miss("kept", t0); n != 2 {
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
	d := newDemand(time.Hour, b.N+1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.miss(keys[i], t0)
	}
}

// TestDemandBackOff: each failure in a row doubles the time a path's
// misses count for nothing, up to the bound; forgetting (the path was
// cached) starts it again.
func TestDemandBackOff(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	d := newDemand(10*time.Minute, 100)
	now := t0
	for i, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour} {
		if got := d.backOff("k", now, 30*time.Second, time.Hour); got != want {
			t.Fatalf("failure %d: back-off %s, want %s", i+1, got, want)
		}
		if n, _ := d.miss("k", now.Add(want-time.Second)); n != 0 {
			t.Fatalf("failure %d: a miss within the back-off counted %d; want 0", i+1, n)
		}
		now = now.Add(want + time.Second)
		if n, _ := d.miss("k", now); n != 1 {
			t.Fatalf("failure %d: the first miss after the back-off counted %d; want 1", i+1, n)
		}
	}
	d.forget("k")
	if got := d.backOff("k", now, 30*time.Second, time.Hour); got != 30*time.Second {
		t.Errorf("after forget: back-off %s; want the first again", got)
	}
}
