package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBufferClasses(t *testing.T) {
	const partSize = 8 << 20
	p := newBufferPool(partSize*8, partSize)
	for _, tc := range []struct {
		n, want int64
	}{
		{1, 4 << 10},
		{4 << 10, 4 << 10},
		{4<<10 + 1, 8 << 10},
		{100 << 10, 128 << 10},
		{4 << 20, 4 << 20},
		{5 << 20, partSize}, // the next power of two is the part size
		{partSize, partSize},
		{partSize + 1, partSize + 1}, // a larger part (a file beyond 10,000 parts): exact
	} {
		got, _ := p.class(tc.n)
		if got != tc.want {
			t.Errorf("class(%d) = %d, want %d", tc.n, got, tc.want)
		}
		b, err := p.get(context.Background(), tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != tc.n || int64(cap(b)) != tc.want {
			t.Errorf("get(%d): len %d cap %d, want len %d cap %d", tc.n, len(b), cap(b), tc.n, tc.want)
		}
		p.put(b)
	}

	// A part size that is not a power of two is a class of its own.
	p = newBufferPool(10<<20*8, 10<<20)
	for _, tc := range []struct{ n, want int64 }{{6 << 20, 8 << 20}, {9 << 20, 10 << 20}, {10 << 20, 10 << 20}} {
		if got, _ := p.class(tc.n); got != tc.want {
			t.Errorf("part size 10 MiB: class(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// The budget is counted in bytes: it holds 8 parts, or 512 small files.
func TestBufferBudgetInBytes(t *testing.T) {
	const partSize, concurrency = 8 << 20, 8
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		size      int64
		fit       int
		afterFull int64 // a size that must not fit while full
	}{
		{"100 KiB files", 100 << 10, 512, 1},
		{"8 MiB parts", partSize, concurrency, 1},
		{"5 MiB files take a part's class", 5 << 20, concurrency, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newBufferPool(partSize*concurrency, partSize)
			var held [][]byte
			for range tc.fit {
				b, err := p.get(ctx, tc.size)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, b)
			}
			if p.budget.TryAcquire(tc.afterFull) {
				t.Fatalf("after %d buffers of %d bytes, %d more bytes fit; want the budget full", tc.fit, tc.size, tc.afterFull)
			}
			p.put(held[0])
			p.dropIdle() // an idle part buffer keeps its charge until something waits
			if !p.budget.TryAcquire(tc.size) {
				t.Fatalf("after one buffer went back, %d bytes do not fit", tc.size)
			}
			p.budget.Release(tc.size)
			for _, b := range held[1:] {
				p.put(b)
			}
			p.dropIdle()
			if !p.budget.TryAcquire(partSize * concurrency) {
				t.Fatal("after every buffer went back, the whole budget is not free")
			}
		})
	}
}

// A part larger than the whole budget still goes, alone.
func TestBufferLargerThanBudget(t *testing.T) {
	p := newBufferPool(16<<20, 8<<20)
	b, err := p.get(context.Background(), 20<<20)
	if err != nil {
		t.Fatal(err)
	}
	if p.budget.TryAcquire(1) {
		t.Error("a 20 MiB part left room in a 16 MiB budget")
	}
	p.put(b)
	if !p.budget.TryAcquire(16 << 20) {
		t.Error("the 20 MiB part did not give the whole budget back")
	}
}

func TestBufferGetEndsWithContext(t *testing.T) {
	p := newBufferPool(8<<20, 8<<20)
	full, err := p.get(context.Background(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		b, err := p.get(ctx, 100<<10)
		if err == nil {
			p.put(b)
		}
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("get on a full budget after cancel: got %v, want context.Canceled", err)
	}
	p.put(full)
	p.dropIdle()
	if !p.budget.TryAcquire(8 << 20) {
		t.Error("a cancelled get kept part of the budget")
	}
}

// Buffers go back to their class and come out again, so a stream of small
// files does not allocate a buffer each.
func TestBufferReuse(t *testing.T) {
	p := newBufferPool(64<<20, 8<<20)
	ctx := context.Background()
	reused := 0
	for range 20 { // sync.Pool may drop an item (always may under -race)
		b, _ := p.get(ctx, 100<<10)
		b[0] = 1
		first := &b[:1][0]
		p.put(b)
		c, _ := p.get(ctx, 90<<10)
		if &c[:1][0] == first {
			reused++
		}
		p.put(c)
	}
	if reused == 0 {
		t.Error("no buffer of the 128 KiB class was reused in 20 rounds")
	}
}

// However many uploads ask at once and whatever their sizes, the capacity
// of the buffers held never exceeds the budget.
func TestBufferBudgetUnderLoad(t *testing.T) {
	const total, partSize = 32 << 20, 8 << 20
	p := newBufferPool(total, partSize)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				n := 1 + r.Int64N(partSize)
				if r.IntN(4) > 0 {
					n = 1 + r.Int64N(256<<10) // mostly small files
				}
				b, err := p.get(context.Background(), n)
				if err != nil {
					t.Error(err)
					return
				}
				now := held.Add(int64(cap(b)))
				for {
					old := peak.Load()
					if now <= old || peak.CompareAndSwap(old, now) {
						break
					}
				}
				held.Add(-int64(cap(b)))
				p.put(b)
			}
		}()
	}
	wg.Wait()
	if got := peak.Load(); got > total {
		t.Errorf("peak capacity held: %d bytes, more than the budget of %d", got, total)
	}
	if got := peak.Load(); got == 0 {
		t.Error("nothing was held")
	}
}

// Part buffers are kept for the next part, and give their share of the
// budget to smaller buffers that need it.
func TestBufferIdlePartsReusedAndYielded(t *testing.T) {
	const partSize, concurrency = 8 << 20, 4
	p := newBufferPool(partSize*concurrency, partSize)
	// The safety net of a broken pool is a hang; this turns it into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var parts [][]byte
	for range concurrency {
		b, err := p.get(ctx, partSize)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
	first := &parts[0][0]
	for _, b := range parts {
		p.put(b)
	}
	b, err := p.get(ctx, partSize)
	if err != nil {
		t.Fatal(err)
	}
	if got := &b[0]; got != first && got != &parts[1][0] && got != &parts[2][0] && got != &parts[3][0] {
		t.Error("a part after parts went back got a new buffer, not an idle one")
	}
	p.put(b)
	// Every part buffer is idle and charged; small files still get the
	// whole budget.
	var small [][]byte
	for range partSize * concurrency / (128 << 10) {
		b, err := p.get(ctx, 100<<10)
		if err != nil {
			t.Fatalf("small buffer %d: %v", len(small), err)
		}
		small = append(small, b)
	}
	if p.budget.TryAcquire(1) {
		t.Error("idle part buffers and small buffers together hold less than the budget")
	}
	if n := len(p.idle); n != 0 {
		t.Errorf("%d part buffers still idle while small buffers fill the budget", n)
	}
	for _, b := range small {
		p.put(b)
	}
}
