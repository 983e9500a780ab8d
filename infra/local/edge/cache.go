package edge

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// cacheKey is what the cache policy keys an object by: the path as the
// viewer sent it and the whitelisted query strings, in the viewer's order
// and encoding; no header, no cookie, and none of CloudFront's own
// parameters (so every signed URL for one object shares one copy).
// The order counts, as on CloudFront: its guide suggests a function that
// sorts the query "to improve your cache hit ratio"
// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/example-function-normalize-query-string.html;
// and https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/QueryStringParameters.html).
type cacheKey struct {
	path  string // as sent, percent-encoded
	query string // the whitelisted parameters, raw, joined by &; "" if none
}

// String is the key as one string: the path, and "?" and the query if
// there is one. It is also what an invalidation path is matched against.
func (k cacheKey) String() string {
	if k.query == "" {
		return k.path
	}
	return k.path + "?" + k.query
}

// keyOf returns the cache key of a viewer's request under the policy.
func (p CachePolicy) keyOf(r *http.Request) (cacheKey, error) {
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if !strings.HasPrefix(path, "/") {
		path = r.URL.EscapedPath() // an absolute-form request-target
	}
	params, err := splitQuery(rawQuery)
	if err != nil {
		return cacheKey{}, err
	}
	var kept []string
	for _, q := range params {
		for _, name := range p.QueryStrings {
			if q.name == name {
				kept = append(kept, q.raw)
				break
			}
		}
	}
	return cacheKey{path: path, query: strings.Join(kept, "&")}, nil
}

// entry is one cached 200 from the origin: its body is a file.
type entry struct {
	key     cacheKey
	file    string
	header  http.Header // the origin's headers the edge passes on
	modTime time.Time   // Last-Modified, for conditional and range requests
	stored  time.Time
	expires time.Time
	// transient: not indexed (no TTL); its file goes once it is served.
	transient bool
}

// diskCache keeps bodies in files under dir and only their metadata in
// memory. Each fill writes a new file, so a viewer still reading an
// entry's file is not disturbed when the entry is replaced or invalidated
// (the file is unlinked, not overwritten).
//
// Limits: nothing is evicted for space (a test's objects are small and
// its temp folder goes with it); an expired entry is replaced when next
// asked for.
type diskCache struct {
	dir string

	mu      sync.Mutex
	entries map[cacheKey]*entry
	fills   map[cacheKey]*sync.Mutex // one fill per key at a time
	seq     int
}

func newDiskCache(dir string) (*diskCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &diskCache{dir: dir, entries: map[cacheKey]*entry{}, fills: map[cacheKey]*sync.Mutex{}}, nil
}

// get returns the fresh entry for k, or nil.
func (c *diskCache) get(k cacheKey, now time.Time) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

// fillLock returns the lock held while k is fetched from the origin, so
// that concurrent misses for one key make one origin request.
func (c *diskCache) fillLock(k cacheKey) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.fills[k]
	if l == nil {
		l = &sync.Mutex{}
		c.fills[k] = l
	}
	return l
}

// newFile creates a file for a body being fetched.
func (c *diskCache) newFile() (*os.File, error) {
	c.mu.Lock()
	c.seq++
	n := c.seq
	c.mu.Unlock()
	return os.Create(filepath.Join(c.dir, fmt.Sprintf("%08d.body", n)))
}

// put makes e the entry of its key, dropping the one it replaces.
func (c *diskCache) put(e *entry) {
	c.mu.Lock()
	old := c.entries[e.key]
	c.entries[e.key] = e
	c.mu.Unlock()
	if old != nil {
		os.Remove(old.file)
	}
}

// invalidate drops every entry an invalidation path matches and returns
// how many it dropped.
func (c *diskCache) invalidate(paths []string) int {
	c.mu.Lock()
	var gone []*entry
	for k, e := range c.entries {
		for _, p := range paths {
			if invalidationMatches(p, k) {
				gone = append(gone, e)
				delete(c.entries, k)
				break
			}
		}
	}
	c.mu.Unlock()
	for _, e := range gone {
		os.Remove(e.file)
	}
	return len(gone)
}

// invalidationMatches reports whether an invalidation path removes the
// object cached under k, as "What you need to know when invalidating
// files" describes it
// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/invalidation-specifying-objects.html):
//   - paths are case sensitive and compared percent-decoded (the page
//     asks for unsafe characters to be URL-encoded);
//   - a path that ends with * matches every cached object whose path and
//     query start with what comes before it ("/images/*", "/images/image*");
//     a * anywhere else is a literal character;
//   - query strings: "If client requests include five different query
//     strings for the same file, you can either invalidate the file five
//     times, once for each query string, or you can use the * wildcard":
//     a path without * removes only the object cached with exactly that
//     query (none, for a path without one). So "/KEY" leaves
//     "/KEY?versionId=V" cached; "/KEY*" removes every variant. The
//     query compared is the cached one, the cache policy's whitelisted
//     parameters.
func invalidationMatches(path string, k cacheKey) bool {
	have := decodedPath(k.path)
	if k.query != "" {
		have += "?" + k.query
	}
	if prefix, ok := strings.CutSuffix(path, "*"); ok {
		return strings.HasPrefix(have, decodedKey(prefix))
	}
	return have == decodedKey(path)
}

// decodedKey percent-decodes the path part of an invalidation path and
// leaves its query as written.
func decodedKey(p string) string {
	path, query, hasQuery := strings.Cut(p, "?")
	path = decodedPath(path)
	if hasQuery {
		return path + "?" + query
	}
	return path
}

func decodedPath(p string) string {
	if d, err := url.PathUnescape(p); err == nil {
		return d
	}
	return p
}
