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
// when it was loaded at start (loadErased), and every one the erasure
// poller has seen since (forgetter.look).
//
// A key in it, or any key while it is not loaded (DynamoDB did not answer
// at start), is looked up in the ledger before its upload (notErased); any
// other key costs no call. An erasure not in the index at the last look
// (marked after it, or not there yet: the index is eventually consistent)
// is not in it until the next poll (--erase-poll; once does not poll): a
// file under that name uploaded meanwhile is refused by the record step,
// which never writes over a tombstone, so the resolver never serves it;
// its object stays in S3 unless the erasure's own last listing came after
// the upload, until the audit's erased-object-present finds it and erase
// is run again.
//
// It holds one string per erasure of the key prefix, ever: erasures are
// rare next to uploads (a site erasing a million originals holds some
// 100 MB here).
type erasedKeys struct {
	mu     sync.Mutex
	loaded bool
	keys   map[string]struct{}
}

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
	all, err := a.queryErasures(ctx, a.ledgerClient, time.Time{}, min(a.cfg.CallTimeout, erasedLookTimeout))
	if err != nil {
		return fmt.Errorf("read every erasure of the key prefix (until it succeeds, each upload reads its ledger item first): %w", err)
	}
	a.erased.loadAll(all)
	return nil
}

// loadAll adds every erasure the index held at one time, all, and marks
// the set loaded.
func (e *erasedKeys) loadAll(all []erasure) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keys == nil {
		e.keys = make(map[string]struct{}, len(all))
	}
	for _, x := range all {
		e.keys[x.key] = struct{}{}
	}
	e.loaded = true
}
