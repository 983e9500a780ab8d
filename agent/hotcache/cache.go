package hotcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
)

// Defaults, each with the reason for its number.
const (
	// DefaultSize: a cache of 1 GiB holds a few hundred photos of a few
	// MiB; with Zipf-like demand the most requested few percent of the
	// originals take most views (see "Hot cache" in BENCHMARKS.md).
	DefaultSize = 1 << 30
	// DefaultThreshold misses within DefaultWindow make a path hot. A
	// fetch costs about what one view through S3 does (one GET and the
	// bytes), so it pays as soon as the path is viewed once more while
	// cached. Three views in ten minutes is a photo being passed around,
	// not a one-off visit (a single visitor's reload is two); the bench's
	// sweep of thresholds is in BENCHMARKS.md.
	DefaultThreshold = 3
	DefaultWindow    = 10 * time.Minute
	// DefaultIdle: a cached file no one has requested for a day has had its
	// moment; its disk goes back to the site, and if it comes back it costs
	// a fetch.
	DefaultIdle = 24 * time.Hour

	// fetchWorkers: fetches at once. A fetch is bounded by the host's
	// downlink; two keep it busy while one waits on a ledger read.
	fetchWorkers = 2
	// fetchBudgetTimesSize: unless told otherwise, the fetches may take
	// twice the cache's size per window. In make bench's Zipf stream an
	// empty cache fetched 1.3 to 1.5 times its size within one window
	// (BENCHMARKS.md, "Hot cache"), so twice lets a cold cache fill and
	// turn over at that pace, while whoever holds links to many originals
	// can make the host download at most 2 GiB per 10 min with the
	// defaults (and a burst of as much), not whatever they ask for.
	fetchBudgetTimesSize = 2
	// fetchQueue: hot paths waiting for a worker. When it is full a hot
	// path is dropped; it crosses the threshold again if it stays hot.
	fetchQueue = 64
	// maxFileShare: a file larger than the budget divided by this is never
	// cached, so one huge original cannot push out a quarter of the cache.
	maxFileShare = 4
	// minFreeShare: a fetch never leaves its file system with less than
	// this share free (1/20 = 5 %): the cache gives way to the site's own
	// writes, such as new uploads, whatever its budget says.
	minFreeShare = 20
	// fetchDir is the folder, inside the cache root but outside every URL
	// path, where downloads are written before they are published.
	fetchDir = ".offload-fetch"
)

// Config is what the cache needs; the agent fills it from its own.
type Config struct {
	// Dir is the cache root, laid out as a second document root: the file
	// for URL /static/NAME is Dir/static/NAME. The web server looks there
	// when the file is gone from the watch folder (see infra/).
	Dir       string
	AccessLog string        // the web server's access log (Common or Combined Log Format)
	Size      int64         // byte budget of the cached files
	Threshold int           // misses within Window that make a path hot
	Window    time.Duration // see Threshold; also how fast past requests fade (see admits)
	Idle      time.Duration // a cached file not requested for this long is removed
	// FetchBudget bounds the bytes fetched from S3: at most this many at
	// once, refilled at this many per Window, so over any time T the
	// fetches take at most FetchBudget × (1 + T/Window). A hot path the
	// budget cannot pay for yet waits (counted as over_budget) and comes
	// in at a redirect once it can. 0 is twice Size; it must hold the
	// largest file the cache takes (Size ÷ 4).
	FetchBudget int64
	// SigningKey, when set, makes the cache count only requests whose
	// link is valid (offload.VerifyLink: ?exp=UNIX&sig=HEX, signed with
	// this key and not expired): with signed links on, the resolver
	// refuses the rest, and redirects a stranger sends without a link must
	// not make the host fetch anything. At least
	// offload.MinSigningKeyBytes.
	SigningKey []byte

	Mapping     offload.Mapping // URL path → key → path under Dir
	Bucket      string
	Table       string
	CallTimeout time.Duration // bound on each S3 or DynamoDB call
	// DryRun: say which paths would be fetched, fetch and remove nothing.
	DryRun bool
	Logger *slog.Logger
}

// WithDefaults returns the config with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	if c.FetchBudget == 0 {
		c.FetchBudget = fetchBudgetTimesSize * c.Size
		if c.Size > math.MaxInt64/fetchBudgetTimesSize {
			c.FetchBudget = math.MaxInt64
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate refuses a cache configuration that cannot work; the folders'
// relation to the watch and archive folders is the agent's to check.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Dir == "" {
		bad("cache: required with --access-log")
	}
	if c.AccessLog == "" {
		bad("access log: required with --cache-dir (the cache learns what is requested from it)")
	}
	if c.Mapping.URLPrefix == "/" {
		bad("cache: the URL prefix / would put the cache's own downloads (%s) under a URL", fetchDir)
	}
	if c.Size <= 0 {
		bad("cache size: must be positive, got %d", c.Size)
	}
	if c.Threshold < 1 {
		bad("cache threshold: must be at least 1, got %d", c.Threshold)
	}
	if c.Size > 0 && c.FetchBudget < c.Size/maxFileShare {
		bad("cache fetch budget: %d bytes per window cannot pay for the largest file the cache takes (a quarter of its size, %d bytes)", c.FetchBudget, c.Size/maxFileShare)
	}
	if len(c.SigningKey) > 0 && len(c.SigningKey) < offload.MinSigningKeyBytes {
		bad("signing key: %d bytes, want at least %d", len(c.SigningKey), offload.MinSigningKeyBytes)
	}
	for name, d := range map[string]time.Duration{"cache window": c.Window, "cache idle": c.Idle} {
		if d < time.Second {
			bad("%s: must be at least 1s, got %s", name, d)
		}
	}
	return errors.Join(errs...)
}

// objectGetter is the one S3 call the cache makes.
type objectGetter interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ objectGetter = (*s3.Client)(nil)

// Cache keeps hot originals in the cache folder. Build it with New, feed
// it the access log's requests (Run does, through a Follower), and read
// Stats.
type Cache struct {
	cfg  Config
	root *os.Root // the cache root; nothing under it is followed out of it
	s3   objectGetter
	db   offload.ItemGetter
	log  *slog.Logger
	// files is the folder under root the URLs map to ("static").
	files  string
	follow *Follower

	mu       sync.Mutex
	demand   *demand
	cached   map[string]*list.Element // key → element of byUse
	byUse    *list.List               // of *cachedFile, most recently requested first
	used     int64                    // bytes of the cached files
	reserved int64                    // bytes of fetches in flight
	inFlight map[string]bool          // keys queued or being fetched
	// forgotten: keys in flight that Forget was called for; their fetch
	// never publishes. Cleared when the fetch ends.
	forgotten map[string]struct{}
	queue     chan fetchJob
	budget    *fetchBudget

	// now is the clock (time.Now); tests move it.
	now func() time.Time
	// fetchDone, if set, is called with the key of each fetch once it
	// has ended and the key is no longer in flight: tests wait on it.
	fetchDone func(key string)
	// beforePublish, if set, is called with the key of a verified
	// download just before it is published: tests hold a fetch there.
	beforePublish func(key string)
	// remove unlinks a path under root (root.Remove); a test makes it
	// fail, which root itself cannot do for the root user the tests run
	// as (a folder's mode does not stop root).
	remove func(name string) error
	// syncFolder fsyncs a folder under root; a test sees which.
	syncFolder func(name string) error

	stats counters
	// warnedRedirect: the log showed a redirect for a file in the cache,
	// which means the web server does not look in the cache; said once.
	warnedRedirect atomic.Bool
	// warnedUnsigned: the log showed an original served to a request
	// without a valid link, which means the web server does not check
	// signed links; said once.
	warnedUnsigned atomic.Bool
}

// cachedFile is one published file.
type cachedFile struct {
	key, rel string // rel: the path under root
	size     int64
	lastUse  time.Time // the last request the log showed (or its fetch)
	// score counts its requests, each fading with the window as its time
	// constant (see decayed): what a newcomer must beat to push it out.
	score    float64
	scoredAt time.Time
	// published: when it appeared. A web server may go on redirecting
	// for a moment after (lighttpd keeps a stat for up to a second).
	published time.Time
}

// redirectGrace: a redirect for a file published longer ago than this
// means the web server does not look in the cache.
const redirectGrace = 5 * time.Second

// counters are the cache's totals since start.
type counters struct {
	hits, misses, fetches, fetchedBytes atomic.Int64
	invalidLinks                        atomic.Int64
	evictedSize, evictedIdle            atomic.Int64
	evictedErased                       atomic.Int64
	failures                            sync.Map // reason → *atomic.Int64
}

// Fetch failure reasons, the label of offload_cache_fetch_failures_total.
const (
	FailNotInLedger = "not_in_ledger" // the ledger has no item for the key (not offloaded, or a made-up URL)
	FailTooLarge    = "too_large"     // larger than the budget ÷ 4
	FailDiskFull    = "disk_full"     // the file system has less than 5 % free after it
	FailLedger      = "ledger"        // the ledger could not be read
	FailS3          = "s3"            // GetObject failed or was cut short
	FailMismatch    = "mismatch"      // the bytes are not the ones the ledger records
	FailLocal       = "local"         // writing or publishing the file failed
	FailColder      = "colder"        // asked for less often than the files it would push out (counted once per path; it comes in when it is asked for more)
	FailOverBudget  = "over_budget"   // the fetch budget cannot pay for it yet (counted at each redirect that would fetch it; it comes in once the budget has refilled)
	FailErased      = "erased"        // the ledger's item is a tombstone: the original was erased (or was while it was fetched)
)

// FailReasons lists every fetch failure reason.
var FailReasons = []string{FailNotInLedger, FailTooLarge, FailDiskFull, FailLedger, FailS3, FailMismatch, FailLocal, FailColder, FailOverBudget, FailErased}

// Stats is a snapshot of the cache.
type Stats struct {
	Dir           string           `json:"dir"`
	Files         int              `json:"files"`
	Bytes         int64            `json:"bytes"`
	Budget        int64            `json:"budget"`
	Hits          int64            `json:"hits"`
	Misses        int64            `json:"misses"`
	Fetches       int64            `json:"fetches"`
	FetchedBytes  int64            `json:"fetched_bytes"`
	FetchFailures map[string]int64 `json:"fetch_failures,omitempty"`
	EvictedSize   int64            `json:"evicted_for_size"`
	EvictedIdle   int64            `json:"evicted_idle"`
	EvictedErased int64            `json:"evicted_erased"` // removed by Forget: the original was erased
	Tracked       int              `json:"tracked_paths"`  // paths whose misses are being counted
	Fetching      int              `json:"fetching"`       // hot paths queued for a fetch or being fetched
	// FetchBudget is what the fetches may take per window (the bucket's
	// size), FetchBudgetLeft what they may take now.
	FetchBudget     int64 `json:"fetch_budget"`
	FetchBudgetLeft int64 `json:"fetch_budget_left"`
	// InvalidLinks counts requests that did not count because their link
	// was missing, forged or expired (only with a signing key).
	InvalidLinks int64       `json:"invalid_links"`
	Log          FollowStats `json:"access_log"`
}

// New opens the cache folder, removes downloads a stopped agent left
// unfinished, and takes the files already published into the cache, least
// recently written first out. The folder must exist.
func New(cfg Config, s3c objectGetter, db offload.ItemGetter) (*Cache, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{
		cfg: cfg, root: root, s3: s3c, db: db, log: cfg.Logger,
		files:     FilesFolder(cfg.Mapping),
		demand:    newDemand(cfg.Window, maxTracked),
		cached:    make(map[string]*list.Element),
		byUse:     list.New(),
		inFlight:  make(map[string]bool),
		forgotten: make(map[string]struct{}),
		queue:     make(chan fetchJob, fetchQueue),
		budget:    newFetchBudget(cfg.FetchBudget, cfg.Window, time.Now()),
		now:       time.Now,
	}
	c.remove = root.Remove
	c.syncFolder = func(name string) error { return syncIn(root, name) }
	c.follow = &Follower{Path: cfg.AccessLog, Lines: c.Observe, Problem: c.logProblem}
	if !cfg.DryRun {
		if err := root.RemoveAll(fetchDir); err != nil {
			root.Close()
			return nil, fmt.Errorf("cache: removing unfinished downloads: %w", err)
		}
		if err := root.Mkdir(fetchDir, 0o700); err != nil {
			root.Close()
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	if err := c.index(); err != nil {
		root.Close()
		return nil, err
	}
	return c, nil
}

// FilesFolder is the slash path, under the cache root, of the folder the
// URL prefix maps to ("static" for /static/): the cache is laid out as a
// second document root, and its downloads in progress sit beside that
// folder, outside every URL.
func FilesFolder(m offload.Mapping) string { return strings.Trim(m.URLPrefix, "/") }

// Close releases the cache folder.
func (c *Cache) Close() error { return c.root.Close() }

// index takes the files published before this start. Their order of use
// is lost with the process, so the order they were written in stands for
// it. A name that breaks the naming contract, or anything that is not a
// regular file, is not the agent's: it is left alone and not counted.
func (c *Cache) index() error {
	var found []*cachedFile
	err := fs.WalkDir(c.root.FS(), c.files, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == c.files {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		key, err := c.cfg.Mapping.KeyForFile(strings.TrimPrefix(p, c.files+"/"))
		if err != nil {
			c.log.Warn("cache: a file whose name is not an original's: left alone", "path", p, "err", err)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		// When and how often it was last requested went with the process:
		// it counts as requested once, when it was written, for the order
		// in which files go for room; and as requested now for idleness,
		// so a restart does not empty the cache of what was served a
		// moment before.
		found = append(found, &cachedFile{key: key, rel: p, size: info.Size(), lastUse: info.ModTime(), published: info.ModTime(),
			score: 1, scoredAt: info.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: reading %s: %w", c.cfg.Dir, err)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].lastUse.After(found[j].lastUse) })
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range found {
		f.lastUse = now
		c.cached[f.key] = c.byUse.PushBack(f)
		c.used += f.size
	}
	if len(found) > 0 {
		c.log.Info("cache: files kept from before", "files", len(found), "bytes", c.used)
	}
	c.makeRoom(0)
	return nil
}

// Run follows the access log and fetches the paths that become hot until
// ctx ends. Nothing it meets stops it: a missing log, S3 or DynamoDB
// unreachable, a full disk are logged and counted, and the agent's
// offloading goes on regardless.
func (c *Cache) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.follow.Run(ctx) }()
	if !c.cfg.DryRun {
		for range fetchWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case job := <-c.queue:
						c.fetch(ctx, job)
					}
				}
			}()
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.evictIdleEvery(ctx, idleCheck(c.cfg.Idle)) }()
	}
	wg.Wait()
	return nil
}

// idleCheck is how often cached files are checked for idleness: a tenth of
// the idle time, so a file goes at most 10 % late, but at least every
// minute.
func idleCheck(idle time.Duration) time.Duration { return min(idle/10, time.Minute) }

// Observe takes one request from the access log: a 302 for a path under
// the URL prefix is a miss, and a success for a cached path is a hit.
// With a signing key, a request whose link is not valid counts for
// nothing but InvalidLinks.
func (c *Cache) Observe(r Request) {
	if r.Method != "GET" && r.Method != "HEAD" {
		return
	}
	p, query, _ := strings.Cut(r.Target, "?")
	key, err := c.cfg.Mapping.KeyForURL(p)
	if err != nil {
		return // not an original's URL
	}
	now := c.now()
	if err := c.validLink(key, query, now); err != nil {
		c.stats.invalidLinks.Add(1)
		if (r.Status == 200 || r.Status == 206 || r.Status == 304) && !c.warnedUnsigned.Swap(true) {
			c.log.Warn("cache: the web server answered a request without a valid signed link with the original: with signed links on it must refuse it (see infra/ for each server's setting)",
				"key", key, "status", r.Status, "err", err)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Status == 302:
		c.stats.misses.Add(1)
		if e, ok := c.cached[key]; ok {
			f := e.Value.(*cachedFile)
			if _, err := c.root.Lstat(f.rel); !errors.Is(err, fs.ErrNotExist) {
				if now.Sub(f.published) > redirectGrace && !c.warnedRedirect.Swap(true) {
					c.log.Warn("cache: the web server redirected a request for a file in the cache: does its cache root point at this folder? (see infra/ for each server's setting)",
						"key", key, "cache", c.cfg.Dir)
				}
				return
			}
			// Removed behind the agent's back (an operator erasing an
			// original, say): no longer cached, and counted from here on.
			c.log.Info("cache: a cached file was removed by someone else", "key", key)
			c.byUse.Remove(e)
			delete(c.cached, key)
			c.used -= f.size
		}
		if c.inFlight[key] {
			return
		}
		n, size := c.demand.miss(key, now)
		if n < c.cfg.Threshold {
			return
		}
		if size > 0 && !c.admits(size, n, now) {
			return // known, and still colder than what it would push out
		}
		if size > 0 && !c.budget.allows(size, now) {
			c.failed(FailOverBudget)
			return // known, and fetched at a redirect once the budget has refilled
		}
		if c.cfg.DryRun {
			c.log.Info("dry run: would fetch into the cache", "key", key, "misses", n, "window", c.cfg.Window)
			c.demand.forget(key)
			return
		}
		select {
		case c.queue <- fetchJob{key: key, misses: n}:
			c.inFlight[key] = true
		default:
			c.log.Debug("cache: fetch queue full; the path is counted again", "key", key)
		}
	case r.Status == 200 || r.Status == 206 || r.Status == 304:
		if e, ok := c.cached[key]; ok {
			c.stats.hits.Add(1)
			f := e.Value.(*cachedFile)
			f.lastUse = now
			f.score, f.scoredAt = c.decayed(f, now)+1, now
			c.byUse.MoveToFront(e)
		}
	}
}

// validLink checks the link of a request for key, whose query is query,
// as the resolver does, when the cache has a signing key. The expiry is
// judged when the line is read, a moment after the request, so a link
// can only seem expired early, never valid late.
func (c *Cache) validLink(key, query string, now time.Time) error {
	if len(c.cfg.SigningKey) == 0 {
		return nil
	}
	rel, err := c.cfg.Mapping.FileForKey(key)
	if err != nil {
		return err
	}
	q, _ := url.ParseQuery(query) // what parses, as net/http's URL.Query gives the resolver
	return offload.VerifyLink(c.cfg.SigningKey, rel, q.Get("exp"), q.Get("sig"), now)
}

// fetchJob is a hot path waiting for a fetch, with its misses within the
// window when it was queued.
type fetchJob struct {
	key    string
	misses int
}

// decayed is f's score at now: each request counts 1 when it comes and
// fades by e every window, so a file's past popularity stops protecting it
// a few windows after its requests stop.
func (c *Cache) decayed(f *cachedFile, now time.Time) float64 {
	return f.score * math.Exp(-float64(now.Sub(f.scoredAt))/float64(c.cfg.Window))
}

// admits reports whether a file of size bytes, missed misses times within
// the window, may come in: when it fits beside what is cached and being
// fetched, or when it was asked for more often than the least recently
// requested files it would push out together (their scores). Plain LRU
// lets every path that crosses the threshold push out the coldest files,
// however hot they still are; in the bench's Zipf stream that fetched 34
// to 51 times the cache's size for a lower share served locally
// (BENCHMARKS.md, "Hot cache"). c.mu is held.
func (c *Cache) admits(size int64, misses int, now time.Time) bool {
	need := c.used + c.reserved + size - c.cfg.Size
	var score float64
	for e := c.byUse.Back(); need > 0; e = e.Prev() {
		if e == nil {
			return false // the fetches in flight hold the rest
		}
		f := e.Value.(*cachedFile)
		score += c.decayed(f, now)
		need -= f.size
	}
	return float64(misses) > score
}

// makeRoom removes the least recently requested files until need more
// bytes fit in the budget with the fetches in flight, and reports whether
// they do. c.mu is held.
func (c *Cache) makeRoom(need int64) bool {
	for c.used+c.reserved+need > c.cfg.Size {
		oldest := c.byUse.Back()
		if oldest == nil {
			return false
		}
		c.evict(oldest, &c.stats.evictedSize, "over budget")
	}
	return true
}

// evict removes one cached file: first from the index, so no hit is
// counted for it, then from the folder, after which the web server
// redirects its requests again. A browser already reading it keeps its
// open file. c.mu is held.
func (c *Cache) evict(e *list.Element, counter *atomic.Int64, why string) {
	f := e.Value.(*cachedFile)
	c.byUse.Remove(e)
	delete(c.cached, f.key)
	c.used -= f.size
	counter.Add(1)
	if c.cfg.DryRun {
		c.log.Info("dry run: would remove from the cache", "key", f.key, "why", why)
		return
	}
	if err := c.remove(f.rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Error("cache: could not remove a file", "path", f.rel, "err", err)
		return
	}
	c.log.Debug("cache: removed", "key", f.key, "bytes", f.size, "why", why)
}

// evictIdleEvery removes files not requested for the idle time.
func (c *Cache) evictIdleEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.EvictIdle(c.now())
		}
	}
}

// EvictIdle removes every cached file whose last request is older than
// the idle time at now.
func (c *Cache) EvictIdle(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.byUse.Back(); e != nil; {
		f := e.Value.(*cachedFile)
		if now.Sub(f.lastUse) <= c.cfg.Idle {
			return // the rest are more recent
		}
		prev := e.Prev()
		c.evict(e, &c.stats.evictedIdle, "idle")
		e = prev
	}
}

// Forget removes key's file from the cache, stops counting its redirects,
// and makes a fetch of it in flight end without publishing: the host's
// erasure poller calls it once the original was erased (a fetch that read
// the ledger before the mark may still be downloading). It removes the
// file at the key's path even when the index has lost it (an eviction
// whose unlink failed drops the entry and leaves the file), but only a
// regular file or a symlink: a folder there holds other keys' files.
//
// It reports whether a file was removed. When the file could not be
// removed it returns the error and keeps the entry: the file is still
// there, served and counted, and the next Forget tries again. Once the
// file is gone its folder is fsynced before the return (an error if that
// fails), so the host acknowledges no unlink a power loss could undo.
func (c *Cache) Forget(key string) (removed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.demand.forget(key)
	if c.inFlight[key] {
		c.forgotten[key] = struct{}{}
	}
	e, cached := c.cached[key]
	var rel string
	if cached {
		rel = e.Value.(*cachedFile).rel
	} else if rel, err = c.relFor(key); err != nil {
		return false, nil // no file of the cache has this key
	}
	if c.cfg.DryRun {
		if cached {
			c.log.Info("dry run: would remove from the cache", "key", key, "why", "erased")
		}
		return false, nil
	}
	fi, err := c.root.Lstat(rel)
	gone := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		gone = true
	case err != nil:
		return false, fmt.Errorf("cache: %w", err)
	case fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0:
		if err := c.remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("cache: could not remove the erased original: %w", err)
		}
		removed, gone = true, true
	}
	if cached {
		f := e.Value.(*cachedFile)
		c.byUse.Remove(e)
		delete(c.cached, key)
		c.used -= f.size
		c.stats.evictedErased.Add(1)
	}
	if removed {
		c.log.Debug("cache: removed", "key", key, "why", "erased")
	}
	if gone {
		// The unlink, this one or an earlier one, reaches the disk before
		// the host acknowledges the erasure: one a power loss undid
		// would bring the file back, for the next start to index and
		// the web server to serve.
		if err := c.syncFolder(path.Dir(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("cache: %w", err)
		}
	}
	return removed, nil
}

// Stats returns a snapshot.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	s := Stats{Dir: c.cfg.Dir, Files: len(c.cached), Bytes: c.used, Budget: c.cfg.Size, Tracked: c.demand.tracked(),
		Fetching: len(c.inFlight), FetchBudget: c.cfg.FetchBudget, FetchBudgetLeft: c.budget.left(c.now())}
	c.mu.Unlock()
	s.InvalidLinks = c.stats.invalidLinks.Load()
	s.Hits, s.Misses = c.stats.hits.Load(), c.stats.misses.Load()
	s.Fetches, s.FetchedBytes = c.stats.fetches.Load(), c.stats.fetchedBytes.Load()
	s.EvictedSize, s.EvictedIdle = c.stats.evictedSize.Load(), c.stats.evictedIdle.Load()
	s.EvictedErased = c.stats.evictedErased.Load()
	c.stats.failures.Range(func(k, v any) bool {
		if s.FetchFailures == nil {
			s.FetchFailures = map[string]int64{}
		}
		s.FetchFailures[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	s.Log = c.follow.Stats()
	return s
}

func (c *Cache) failed(reason string) {
	v, _ := c.stats.failures.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (c *Cache) logProblem(err error) {
	if err == nil {
		c.log.Info("cache: following the access log", "path", c.cfg.AccessLog)
		return
	}
	c.log.Warn("cache: access log", "path", c.cfg.AccessLog, "err", err)
}

// relFor is the path under the cache root of the file for key.
func (c *Cache) relFor(key string) (string, error) {
	rel, err := c.cfg.Mapping.FileForKey(key)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(rel, ".offload-") {
		return "", fmt.Errorf("%w: %q is the agent's own folder", offload.ErrInvalidPath, rel)
	}
	return path.Join(c.files, rel), nil
}

// syncIn fsyncs the folder name under root.
func syncIn(root *os.Root, name string) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
