package lambda

import (
	"sync"
	"time"
)

// notFoundTTL is how long the ledger's "not found" for a key stands. A
// request reaches the resolver only when the web host that got it has no
// local copy, and with several web hosts that is also a file another
// host's agent has not recorded yet: it may be recorded any second. So a
// miss is kept only long enough to spare the ledger a burst of requests
// for one missing name, and a file recorded meanwhile still 404s for at
// most this long from a warm resolver.
const notFoundTTL = time.Second

// recorded is what the resolver keeps of a ledger item: what goes into the
// presigned URL, or that the original was erased. An original is immutable
// once recorded, so the answer cannot go stale; only an operator's erasure
// changes it (a tombstone, or the item removed), and a positive answer
// outlives that by at most one signing window. A tombstone is final, so
// its answer is kept like any other.
type recorded struct {
	versionID   string // pinned in the URL; empty: the current version
	contentType string // judged by inlineType on every request
	gone        bool   // erased: answered 410, nothing signed
}

// windowCache is what the resolver learnt in the current signing window:
// the URLs it signed, the ledger's items it read, and, for notFoundTTL
// each, the keys the ledger did not know. A new window starts it over,
// so a ledger answer read in a window is used until that window ends and
// never longer. Errors are never kept: the next request asks again.
//
// Each map holds at most maxCachedEntries entries and starts over when full
// (a key is at most offload.MaxKeyBytes, a URL a few times that), which
// bounds the memory a flood of distinct names can take.
//
// Under Lambda one instance serves one request at a time; the local HTTP
// face serves many at once, hence the mutex. Two concurrent requests for a
// key not yet cached both ask the ledger: the same answer, stored twice.
type windowCache struct {
	mu      sync.Mutex
	window  time.Time
	urls    map[urlCacheKey]string
	records map[string]recorded  // object key → its ledger item
	misses  map[string]time.Time // object key → until when its "not found" stands
}

// urlCacheKey is everything a presigned URL depends on besides the window:
// the method (a GET URL answers a HEAD with 403), the object and version,
// how it is presented, and the credentials and life it is signed with.
type urlCacheKey struct {
	target
	accessKeyID string
	life        time.Duration
}

func (c *windowCache) url(window time.Time, k urlCacheKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.window.Equal(window) {
		return "", false
	}
	u, ok := c.urls[k]
	return u, ok
}

func (c *windowCache) putURL(window time.Time, k urlCacheKey, url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enter(window) {
		return
	}
	if len(c.urls) >= maxCachedEntries {
		c.urls = make(map[urlCacheKey]string)
	}
	c.urls[k] = url
}

// answer is the ledger's answer for key as cached in the window, if any:
// its item (found), or a "not found" still standing at now (not found).
// The item wins: a slow "not found" may be stored after a concurrent
// request read the item.
func (c *windowCache) answer(window, now time.Time, key string) (rec recorded, found, cached bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.window.Equal(window) {
		return recorded{}, false, false
	}
	if rec, ok := c.records[key]; ok {
		return rec, true, true
	}
	if until, ok := c.misses[key]; ok && now.Before(until) {
		return recorded{}, false, true
	}
	return recorded{}, false, false
}

// putRecord keeps the item of key, read in window, until the window ends.
func (c *windowCache) putRecord(window time.Time, key string, rec recorded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enter(window) {
		return
	}
	if len(c.records) >= maxCachedEntries {
		c.records = make(map[string]recorded)
	}
	c.records[key] = rec
	delete(c.misses, key)
}

// putMiss keeps the ledger's "not found" for key, read in window, until
// until (and never past the window).
func (c *windowCache) putMiss(window, until time.Time, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enter(window) {
		return
	}
	if len(c.misses) >= maxCachedEntries {
		c.misses = make(map[string]time.Time)
	}
	c.misses[key] = until
}

// enter moves the cache to window, emptied, when window is a later one, and
// reports whether window is the cache's (false: it has already passed, and
// what was learnt in it is dropped).
func (c *windowCache) enter(window time.Time) bool {
	if window.Before(c.window) {
		return false
	}
	if !c.window.Equal(window) || c.urls == nil {
		c.window = window
		c.urls = make(map[urlCacheKey]string)
		c.records = make(map[string]recorded)
		c.misses = make(map[string]time.Time)
	}
	return true
}
