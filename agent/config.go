package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/hotcache"
)

// After says what happens to the local file once S3 and the ledger hold it.
type After string

// The choices for After.
const (
	AfterArchive After = "archive" // move it into the archive folder (the default)
	AfterDelete  After = "delete"  // unlink it
	AfterKeep    After = "keep"    // leave it where it is
)

// Defaults, each with the reason for its number.
const (
	// DefaultQuiet: a browser upload that stalls longer than this is rare,
	// and the check that the file did not change while it was read catches
	// the rest.
	DefaultQuiet = 2 * time.Second
	// DefaultRescan: inotify sees every new file; the periodic scan is the
	// safety net for what it missed, so once a minute is plenty.
	DefaultRescan = time.Minute
	// DefaultPartSize: S3's minimum part is 5 MiB; 8 MiB parts keep memory
	// small (PartSize × Concurrency) and request overhead low.
	DefaultPartSize = 8 << 20
	// DefaultConcurrency full parts fit in the memory budget at once,
	// across all files: enough to fill a web host's uplink. The budget,
	// PartSize × Concurrency = 64 MiB, bounds the buffers of every upload
	// in flight in bytes, so it holds 8 parts, or 512 files of 100 KiB.
	DefaultConcurrency = 8
	// DefaultWorkers files are offloaded at once. A small file is
	// latency-bound: a PUT, then a ledger write, then a rename, so at 12 ms
	// each way to S3 and DynamoDB it takes about 50 ms whatever its size,
	// and its rate is workers ÷ 50 ms: 16 workers cap it at about 320
	// files/s, 64 at about 1,300, beyond what a host's CPU serves.
	// Memory stays bounded by the byte budget, which all workers share, and
	// a waiting worker costs a goroutine and a connection to each service.
	// 64 rather than 16: see "Small files on a WAN" in BENCHMARKS.md.
	DefaultWorkers = 64
	// DefaultGrace is how long in-flight uploads may run after SIGTERM;
	// systemd's default stop timeout is 90 s.
	DefaultGrace = 30 * time.Second
	// DefaultCallTimeout bounds every single S3 or DynamoDB call (one part
	// of at most PartSize bytes), so a blackholed connection cannot hang
	// the agent: 8 MiB at 100 kB/s still fits.
	DefaultCallTimeout = 2 * time.Minute
	// DefaultSettleTimeout: how long once waits for a file still being
	// written or changing. A browser upload of a large original over a
	// slow line takes minutes; a file still written after ten is a log, a
	// recording or a stuck writer, and a cron run that waited longer would
	// overlap the next one.
	DefaultSettleTimeout = 10 * time.Minute
	// DefaultOrphanAge: a multipart upload older than this under the key
	// prefix belongs to an agent that died; no upload of one file runs this long.
	DefaultOrphanAge = 24 * time.Hour
	// DefaultErasePoll: how often the daemon writes its heartbeat and
	// looks for erasures (see forgetter). Erasures are rare and the audit
	// calls a host live while its heartbeat is younger than three polls;
	// a minute, as the rescan, costs two or three DynamoDB requests a
	// minute a host.
	DefaultErasePoll = time.Minute

	minPartSize = 5 << 20 // S3's minimum for every part but the last
	maxPartSize = 5 << 30 // S3's maximum
	maxParts    = 10000   // S3's maximum number of parts

	// maxConcurrency and maxWorkers bound what a typo can ask for: each
	// part in flight holds a buffer and a connection, each worker a file
	// and a connection. Far beyond what one host's uplink can use.
	maxConcurrency = 1024
	maxWorkers     = 1024
)

// DefaultIgnore are the globs of temporary names that are never uploaded.
var DefaultIgnore = []string{"*.tmp", "*.part", ".*"}

// Config is everything the agent needs to know; main fills it from flags and
// the environment, nothing below main reads either.
type Config struct {
	Watch   string // folder the back-end writes originals into (recursive)
	Archive string // where offloaded files are moved when After is AfterArchive
	After   After

	Bucket  string
	Table   string
	Mapping offload.Mapping // only KeyPrefix is used by the agent
	Host    string          // recorded in the ledger: which web host uploaded

	Quiet       time.Duration // a file is settled when unchanged this long
	Rescan      time.Duration // full scan period, on top of inotify
	Ignore      []string      // base-name globs never uploaded
	PartSize    int64         // multipart part size; files larger than this are multipart
	Concurrency int           // memory budget in parts: PartSize × Concurrency bytes of upload buffers, across all files
	Workers     int           // files offloaded at once
	Grace       time.Duration // how long in-flight uploads may finish on shutdown
	CallTimeout time.Duration // bound on each S3 or DynamoDB call
	OrphanAge   time.Duration // multipart uploads older than this are aborted at start
	// ErasePoll: in Run, how often the host writes its heartbeat and
	// removes its copies of newly erased originals (see forgetter).
	ErasePoll time.Duration
	// erasedFreshness overrides erasedFreshness (tests: 0 is the default,
	// negative refreshes before every upload).
	erasedFreshness time.Duration
	// SettleTimeout: in Once, a file still open for writing or changing
	// this long after it was first seen is given up and reported.
	SettleTimeout time.Duration
	// QuietForRenamed makes a file renamed into its name wait for the quiet
	// period too. By default such a file is complete once no writer has it
	// open (the back-end wrote a temporary name and renamed it). A
	// back-end that renames a first chunk into place and appends the rest
	// in later opens needs this.
	QuietForRenamed bool
	// DryRun: say what would be done with each file, and do nothing: no
	// upload, ledger write, archive, or abort of anyone's upload.
	DryRun bool
	// BandwidthLimit caps the bytes per second sent to S3 across all
	// uploads, so the agent never starves the web server's uplink; 0 is
	// no limit.
	BandwidthLimit int64
	// StorageClass is the S3 storage class every upload asks for
	// (PutObject, CreateMultipartUpload); "" sends none, and S3 stores
	// STANDARD. Only classes a GET reads at once are taken (see
	// CheckStorageClass).
	StorageClass string
	// Cache, when Cache.Dir is set, keeps the most requested offloaded
	// originals on this host, learning what is requested from the web
	// server's access log (Cache.AccessLog); only in Run. The agent fills
	// in its mapping, bucket, table, call timeout, dry run and logger.
	Cache hotcache.Config

	Logger *slog.Logger
}

// cacheConfig is the cache's configuration with what the agent shares.
func (c Config) cacheConfig() hotcache.Config {
	cc := c.Cache
	cc.Mapping, cc.Bucket, cc.Table, cc.CallTimeout, cc.DryRun = c.Mapping, c.Bucket, c.Table, c.CallTimeout, c.DryRun
	cc.Logger = c.Logger
	return cc.WithDefaults()
}

// caching reports whether the hot cache is configured at all.
func (c Config) caching() bool { return c.Cache.Dir != "" || c.Cache.AccessLog != "" }

// WithDefaults returns the config with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.After == "" {
		c.After = AfterArchive
	}
	if c.Mapping == (offload.Mapping{}) {
		c.Mapping = offload.DefaultMapping
	}
	if c.Quiet == 0 {
		c.Quiet = DefaultQuiet
	}
	if c.Rescan == 0 {
		c.Rescan = DefaultRescan
	}
	if c.Ignore == nil {
		c.Ignore = DefaultIgnore
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.OrphanAge == 0 {
		c.OrphanAge = DefaultOrphanAge
	}
	if c.ErasePoll == 0 {
		c.ErasePoll = DefaultErasePoll
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate refuses a configuration the agent cannot run safely with; the
// error is one line that names the setting.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Bucket == "" {
		bad("bucket: required (--bucket or OFFLOAD_BUCKET)")
	}
	if c.Table == "" {
		bad("table: required (--table or OFFLOAD_TABLE)")
	}
	if err := c.Mapping.Validate(); err != nil {
		bad("key prefix: %v", err)
	}
	if err := checkDir("watch", c.Watch, unix.R_OK|unix.W_OK|unix.X_OK); err != nil {
		errs = append(errs, err)
	}
	switch c.After {
	case AfterArchive:
		// Search permission only: an archive that is not writable right
		// now is logged at start, not refused (see loop).
		if err := checkDir("archive", c.Archive, unix.X_OK); err != nil {
			errs = append(errs, err)
		} else if c.Watch != "" && overlaps(c.Watch, c.Archive) {
			bad("archive: %s and the watch folder %s must not contain one another", c.Archive, c.Watch)
		}
	case AfterDelete, AfterKeep:
	default:
		bad("after: %q is not one of archive, delete, keep", c.After)
	}
	for _, g := range c.Ignore {
		if _, err := path.Match(g, ""); err != nil {
			bad("ignore: bad glob %q", g)
		}
	}
	if c.PartSize < minPartSize || c.PartSize > maxPartSize {
		bad("part size: %d bytes is outside S3's 5 MiB to 5 GiB", c.PartSize)
	}
	for name, d := range map[string]time.Duration{"rescan": c.Rescan, "grace": c.Grace, "call timeout": c.CallTimeout, "orphan age": c.OrphanAge, "settle timeout": c.SettleTimeout, "erase poll": c.ErasePoll} {
		if d <= 0 {
			bad("%s: must be positive, got %s", name, d)
		}
	}
	if c.caching() {
		if err := c.cacheConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
		if c.Cache.Dir != "" {
			if err := checkDir("cache", c.Cache.Dir, unix.R_OK|unix.W_OK|unix.X_OK); err != nil {
				errs = append(errs, err)
			} else {
				// A file put back into the watch folder would be offloaded
				// again; one in the archive would be taken for an archived one.
				for name, dir := range map[string]string{"watch": c.Watch, "archive": c.Archive} {
					if dir != "" && overlaps(c.Cache.Dir, dir) {
						bad("cache: %s and the %s folder %s must not contain one another", c.Cache.Dir, name, dir)
					}
				}
			}
		}
	}
	if err := CheckStorageClass(c.StorageClass); err != nil {
		bad("storage class: %v", err)
	}
	if c.BandwidthLimit < 0 {
		bad("bwlimit: must not be negative, got %d", c.BandwidthLimit)
	}
	// Every request in flight shares the limit, and their bodies together
	// hold at most the memory budget (part-size × concurrency bytes), so
	// one request may take budget / bwlimit; it must finish within one call.
	if bw := c.BandwidthLimit; bw > 0 && c.PartSize > 0 && c.Concurrency > 0 && c.CallTimeout > 0 {
		if worst := time.Duration(float64(c.PartSize) * float64(c.Concurrency) / float64(bw) * float64(time.Second)); worst > c.CallTimeout {
			bad("bwlimit: at %d bytes/s, the uploads in flight (up to the memory budget, %d parts of %d MiB) take %s to send, longer than the call timeout %s: lower --concurrency or --part-size, or raise --call-timeout",
				bw, c.Concurrency, c.PartSize>>20, worst.Round(time.Second), c.CallTimeout)
		}
	}
	if c.Quiet < 0 {
		bad("quiet: must not be negative, got %s", c.Quiet)
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		bad("concurrency: %d is outside 1 to %d", c.Concurrency, maxConcurrency)
	}
	if c.Workers < 1 || c.Workers > maxWorkers {
		bad("workers: %d is outside 1 to %d", c.Workers, maxWorkers)
	}
	if ram := physicalMemory(); c.Concurrency >= 1 && c.Concurrency <= maxConcurrency && ram > 0 &&
		c.PartSize > 0 && uint64(c.PartSize)*uint64(c.Concurrency) > ram {
		bad("part size × concurrency: a memory budget of %d MiB for upload buffers is more than this machine's %d MiB of memory",
			c.PartSize*int64(c.Concurrency)>>20, ram>>20)
	}
	return errors.Join(errs...)
}

// physicalMemory is the machine's RAM in bytes, or 0 if unknown.
func physicalMemory() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

// checkDir refuses a missing folder, a non-folder, or one the agent may not
// use as it needs to (access(2) with mode).
func checkDir(name, dir string, mode uint32) error {
	if dir == "" {
		return fmt.Errorf("%s: required (--%s or OFFLOAD_%s)", name, name, strings.ToUpper(name))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %s is not a folder", name, dir)
	}
	if err := unix.Access(dir, mode); err != nil {
		return fmt.Errorf("%s: %s: %w", name, dir, err)
	}
	return nil
}

// overlaps reports whether either folder is inside the other (or they are one).
func overlaps(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		ra, rb = filepath.Clean(a), filepath.Clean(b)
	}
	ra, _ = filepath.Abs(ra)
	rb, _ = filepath.Abs(rb)
	inside := func(x, y string) bool { return x == y || strings.HasPrefix(x, y+string(filepath.Separator)) }
	return inside(ra, rb) || inside(rb, ra)
}
