package hotcache

import (
	"container/list"
	"time"
)

// maxTracked bounds the paths whose misses are counted at once, so memory
// stays bounded however many distinct paths the log shows (a crawler
// walking every photo, or a scanner inventing names): each costs 239 bytes
// beside its key (BenchmarkDemandEntry), so about 300 with a 60-byte key
// and 15 MiB in all; a scanner inventing 1 KiB names could make it 60 MiB. A hot path's count survives 50,000 newer distinct
// misses; one pushed out starts again, and if it is really hot it crosses
// the threshold again within a few more requests.
const maxTracked = 50_000

// demand counts each path's misses within a window. A path's window
// starts at its first miss and restarts at the first miss after it has
// passed, so "threshold misses within window" is counted from that first
// miss. The count goes on past the threshold until the path is cached
// (forget), since a path the cache would not yet admit (see admits) gets in
// once it has been asked for more often than what it would push out. The
// least recently missed path is forgotten first when the table is full.
// Not safe for concurrent use.
type demand struct {
	window time.Duration
	max    int

	entries map[string]*list.Element // key → element of recent
	recent  *list.List               // of *missCount, most recently missed first
}

type missCount struct {
	key   string
	first time.Time // start of the current window
	n     int       // misses since first
	// size is the original's size once a look-up has found it (0 before),
	// so a path not yet admitted is judged again without a look-up.
	size int64
	// quietUntil: a path that was not worth fetching (not in the ledger,
	// too large) or whose fetch failed is not counted again before this.
	quietUntil time.Time
	// failures counts its fetches that failed in a row, for backOff.
	failures int
}

func newDemand(window time.Duration, max int) *demand {
	return &demand{window: window, max: max, entries: make(map[string]*list.Element), recent: list.New()}
}

// miss counts one miss of key at now and returns the misses within its
// window, with its size if known; 0 while the key is quiet.
func (d *demand) miss(key string, now time.Time) (n int, size int64) {
	c := d.entry(key, now).Value.(*missCount)
	if now.Before(c.quietUntil) {
		return 0, c.size
	}
	if now.Sub(c.first) > d.window {
		c.first, c.n = now, 0
	}
	c.n++
	return c.n, c.size
}

// sized records the size a look-up found for key.
func (d *demand) sized(key string, size int64) {
	if e, ok := d.entries[key]; ok {
		e.Value.(*missCount).size = size
	}
}

// forget stops counting key: it is cached.
func (d *demand) forget(key string) {
	if e, ok := d.entries[key]; ok {
		d.recent.Remove(e)
		delete(d.entries, key)
	}
}

// quiet makes key's misses count for nothing until until: after a look-up
// found it not worth caching, a stream of requests for it costs one look-up
// per quiet period, not one per threshold misses.
func (d *demand) quiet(key string, until time.Time) {
	c := d.entry(key, until).Value.(*missCount)
	c.quietUntil, c.n, c.first = until, 0, until
}

// backOff makes key's misses count for nothing for a time that doubles
// with each call since key was last forgotten (cached), from first up to
// max, and returns that time.
func (d *demand) backOff(key string, now time.Time, first, max time.Duration) time.Duration {
	c := d.entry(key, now).Value.(*missCount)
	wait := first
	for i := 0; i < c.failures && wait < max; i++ {
		wait *= 2
	}
	wait = min(wait, max)
	c.failures++
	until := now.Add(wait)
	c.quietUntil, c.n, c.first = until, 0, until
	return wait
}

// entry returns key's count, most recently missed now, making it (with its
// window starting at now) and forgetting the least recent key if the table
// is full.
func (d *demand) entry(key string, now time.Time) *list.Element {
	if e, ok := d.entries[key]; ok {
		d.recent.MoveToFront(e)
		return e
	}
	if d.recent.Len() >= d.max {
		oldest := d.recent.Back()
		d.recent.Remove(oldest)
		delete(d.entries, oldest.Value.(*missCount).key)
	}
	e := d.recent.PushFront(&missCount{key: key, first: now})
	d.entries[key] = e
	return e
}

// tracked is how many paths are being counted.
func (d *demand) tracked() int { return d.recent.Len() }
