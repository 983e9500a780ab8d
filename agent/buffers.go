package agent

import (
	"context"
	"math/bits"
	"sync"

	"golang.org/x/sync/semaphore"
)

// minBufferClass is the smallest buffer handed out: below it a file costs
// more in bookkeeping than in bytes.
const minBufferClass = 4 << 10

// bufferPool hands out the buffers uploads read files into, and bounds
// the bytes of those in use by a budget: a PutObject of a 100 KiB file
// holds 128 KiB of it (its size class), a part holds its part size, so
// many small uploads fit where few parts do.
//
// Buffers come in size classes, powers of two from 4 KiB up to the part
// size, plus the part size itself, each class reused through its own
// sync.Pool: a stream of small files does not make a stream of garbage,
// and buffers nobody uses are collected. A buffer is charged its whole
// capacity, so the budget bounds the bytes actually held, not the bytes
// asked for. The one exception: a part larger than the whole budget (only
// in a file beyond 10,000 parts of the budget's size) is charged the whole
// budget, so it can go at all, alone.
//
// Waiters are served in order (semaphore.Weighted is FIFO), so a part
// waiting for its 8 MiB is not starved by a stream of small files.
type bufferPool struct {
	budget   *semaphore.Weighted
	total    int64
	partSize int64
	classes  [64]sync.Pool // by log2 of the capacity, below partSize
	parts    sync.Pool     // capacity partSize
}

func newBufferPool(total, partSize int64) *bufferPool {
	return &bufferPool{budget: semaphore.NewWeighted(total), total: total, partSize: partSize}
}

// class returns the capacity of the buffer that holds n bytes, and its pool
// (nil for a part larger than partSize, which is not kept).
func (p *bufferPool) class(n int64) (int64, *sync.Pool) {
	switch {
	case n > p.partSize:
		return n, nil
	case n <= minBufferClass:
		n = minBufferClass
	}
	shift := bits.Len64(uint64(n - 1)) // the smallest power of two ≥ n
	if c := int64(1) << shift; c < p.partSize {
		return c, &p.classes[shift]
	}
	return p.partSize, &p.parts
}

// charge is what a buffer of capacity c counts against the budget.
func (p *bufferPool) charge(c int64) int64 { return min(c, p.total) }

// get returns a buffer of length n once the budget has room for it, or
// ctx's error if it ends first. Every buffer goes back with put.
func (p *bufferPool) get(ctx context.Context, n int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	c, pool := p.class(n)
	if err := p.budget.Acquire(ctx, p.charge(c)); err != nil {
		return nil, err
	}
	if pool != nil {
		if b, ok := pool.Get().(*[]byte); ok {
			return (*b)[:n], nil
		}
	}
	return make([]byte, n, c), nil
}

// put gives back a buffer from get and its share of the budget.
func (p *bufferPool) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	c, pool := p.class(int64(cap(b)))
	if pool != nil {
		b = b[:0]
		pool.Put(&b)
	}
	p.budget.Release(p.charge(c))
}
