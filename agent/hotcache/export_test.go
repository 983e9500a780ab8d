package hotcache

import "time"

// Hooks for the tests of package hotcache_test. Set them before Run.

// OnFetchDone makes c send on the returned channel the key of each fetch
// once it has ended, whatever came of it, and the key is no longer in
// flight: a redirect after that is judged afresh.
func OnFetchDone(c *Cache) <-chan string {
	ch := make(chan string, 1024)
	c.fetchDone = func(key string) { ch <- key }
	return ch
}

// OnBeforePublish makes c call f with the key of each verified download
// just before it is published; f may block to hold the fetch there.
func OnBeforePublish(c *Cache, f func(key string)) { c.beforePublish = f }

// SetClock makes c read the time from now.
func SetClock(c *Cache, now func() time.Time) { c.now = now }

// The back-off after a failed fetch.
const (
	FetchBackoffFirst = fetchBackoffFirst
	FetchBackoffMax   = fetchBackoffMax
)

// FailRemove makes every unlink c makes fail with err until the returned
// func is called.
func FailRemove(c *Cache, err error) (restore func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remove = func(string) error { return err }
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.remove = c.root.Remove
	}
}

// OnSyncFolder makes c call f with the path (under the cache root) of
// each folder it fsyncs.
func OnSyncFolder(c *Cache, f func(name string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sync := c.syncFolder
	c.syncFolder = func(name string) error { f(name); return sync(name) }
}
