package agent

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// erasedKeys is what this process knows of the erasures under its key
// prefix, so that a file under an erased name is never uploaded without a
// ledger read before every upload: every tombstone the erasures index held
// when it was loaded at start (loadErased), every one the erasure poller
// has seen since (forgetter.look), and every one a refresh before an
// upload found (refreshErased: a query of the index since the last read,
// at most once per erasedFreshness).
//
// A key in it, or any key while it is not loaded (DynamoDB did not answer
// at start), is looked up in the ledger before its upload (notErased); any
// other key costs no call. What it can miss: an erasure marked within
// erasedFreshness before the upload, or not in the index yet (reads of a
// global secondary index are eventually consistent, and "Write operations
// propagate to a GSI within 1 second" under normal conditions:
// https://repost.aws/knowledge-center/dynamodb-missing-table-items-gsi),
// or while the index does not answer. A file under
// that name uploaded meanwhile is refused by the record step, which never
// writes over a tombstone, so the resolver never serves it; its object
// stays in S3 unless the erasure's own last listing came after the upload,
// until the audit's erased-object-present finds it and erase is run again.
//
// It holds one string per erasure of the key prefix, ever: erasures are
// rare next to uploads (a site erasing a million originals holds some
// 100 MB here).
type erasedKeys struct {
	mu     sync.Mutex
	loaded bool
	keys   map[string]struct{}
	// readAt is when the last read of the index that answered began,
	// triedAt when the last one began (answered or not).
	readAt, triedAt time.Time
	// refreshing is held by the one upload refreshing the set; the others
	// go on with the set as it is.
	refreshing sync.Mutex
}

// erasedFreshness is how old the set may be when an upload asks it: older,
// the upload first queries the index for the erasures since the last read
// (one small Query, at most this often, whatever the number of uploads).
const erasedFreshness = time.Second

// mayBe says whether key may be erased as far as this process knows: it
// is in the set, or the set is not loaded.
func (e *erasedKeys) mayBe(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		return true
	}
	_, ok := e.keys[key]
	return ok
}

// add records the erasure of key.
func (e *erasedKeys) add(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keys == nil {
		e.keys = map[string]struct{}{}
	}
	e.keys[key] = struct{}{}
}

// isLoaded says whether every erasure the index held at one time is in
// the set.
func (e *erasedKeys) isLoaded() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loaded
}

// loadErased reads every tombstone of the key prefix from the erasures
// index into a.erased, once; until it succeeds, every upload is preceded
// by a ledger read (notErased). Each page waits at most erasedLookTimeout:
// a table that does not answer must not hold the start for a whole call
// timeout.
func (a *Agent) loadErased(ctx context.Context) error {
	if a.erased.isLoaded() {
		return nil
	}
	began := time.Now()
	all, err := a.queryErasures(ctx, a.ledgerClient, time.Time{}, min(a.cfg.CallTimeout, erasedLookTimeout))
	if err != nil {
		return fmt.Errorf("read every erasure of the key prefix (until it succeeds, each upload reads its ledger item first): %w", err)
	}
	a.erased.loadAll(all, began)
	return nil
}

// loadAll adds every erasure the index held at one time, all, read from
// began on, and marks the set loaded.
func (e *erasedKeys) loadAll(all []erasure, began time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keys == nil {
		e.keys = make(map[string]struct{}, len(all))
	}
	for _, x := range all {
		e.keys[x.key] = struct{}{}
	}
	e.loaded = true
	if began.After(e.readAt) {
		e.readAt = began
	}
	if began.After(e.triedAt) {
		e.triedAt = began
	}
}

// mayBeErased says whether key may be erased, with the set refreshed first
// when it is older than erasedFreshness (refreshErased).
func (a *Agent) mayBeErased(ctx context.Context, key string) bool {
	a.refreshErased(ctx)
	return a.erased.mayBe(key)
}

// refreshErased queries the index for the erasures since the last read
// that answered, less erasureOverlap (stamps are S3's clock, this is the
// host's, and the index lags), when the last try is older than
// erasedFreshness. One upload refreshes at a time; the others do not wait
// for it. A query that fails is tried again a second later; the uploads
// meanwhile go with the set as it is (the record step still refuses a
// tombstone).
func (a *Agent) refreshErased(ctx context.Context) {
	e := &a.erased
	if !e.refreshing.TryLock() {
		return
	}
	defer e.refreshing.Unlock()
	e.mu.Lock()
	fresh := erasedFreshness
	if a.cfg.erasedFreshness != 0 {
		fresh = max(a.cfg.erasedFreshness, 0)
	}
	loaded, readAt, due := e.loaded, e.readAt, time.Since(e.triedAt) >= fresh
	began := time.Now()
	if due && loaded {
		e.triedAt = began
	}
	e.mu.Unlock()
	if !loaded || !due {
		return
	}
	got, err := a.queryErasures(ctx, a.ledgerClient, readAt.Add(-erasureOverlap), min(a.cfg.CallTimeout, erasedLookTimeout))
	if err != nil {
		a.log.Debug("could not refresh the erasures before an upload; the record step still refuses a tombstone", "err", err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range got {
		e.keys[x.key] = struct{}{}
	}
	if began.After(e.readAt) {
		e.readAt = began
	}
}
