package hotcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
)

// Fetch timing and retries, each with the reason for its number.
const (
	// minFetchRate (bytes/s, about 1 Mbit/s) is the slowest a download
	// may go on average: it gets the call timeout for S3 to start
	// answering plus its size at this rate, so a large original on a slow
	// link arrives, where a deadline of the call timeout alone threw it
	// away every time (256 MiB, the largest a default cache takes, needed
	// 18 Mbit/s to fit in 2 min). A web host's downlink from S3 is tens
	// to hundreds of times faster; a download slower than this is stuck
	// or starved, and giving up frees the worker. 256 MiB gets 34 min.
	minFetchRate = 128 << 10
	// fetchBackoffFirst is how long a path is left alone after a fetch
	// failed for a reason asking again may cure (S3 or the ledger
	// unreachable, a cut connection, a full disk); it doubles with each
	// failure in a row, up to fetchBackoffMax. A hot path redirected ten
	// times a second would otherwise be fetched again every threshold
	// redirects, downloading what is thrown away; the redirects still
	// serve it meanwhile. An hour at most, so a path whose trouble is over
	// comes back the same day. (Other bytes than the ledger's, a path not
	// in the ledger or too large, are left alone for a window instead.)
	fetchBackoffFirst = 30 * time.Second
	fetchBackoffMax   = time.Hour
)

// fetch brings one hot original into the cache: ledger → room in the
// budget → the fetch budget → GetObject into a download outside every URL
// → size and CRC64NVME equal to the ledger's → publish by rename, unless
// Forget was called for the key meanwhile (the original was erased).
// Until the rename no URL reaches the bytes, and the rename makes the whole
// file appear at once, so a browser gets the verified file or a redirect,
// never a partial or wrong one. Any failure leaves the cache as it was.
func (c *Cache) fetch(ctx context.Context, job fetchJob) {
	key := job.key
	defer func() {
		c.mu.Lock()
		delete(c.inFlight, key)
		delete(c.forgotten, key)
		c.mu.Unlock()
		if c.fetchDone != nil {
			c.fetchDone(key)
		}
	}()
	rel, err := c.relFor(key)
	if err != nil {
		c.gaveUp(key, FailLocal, true)
		c.log.Warn("cache: not cached", "key", key, "err", err)
		return
	}
	lctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	rec, err := offload.GetRecord(lctx, c.db, c.cfg.Table, key)
	cancel()
	switch {
	case errors.Is(err, offload.ErrNotFound):
		c.gaveUp(key, FailNotInLedger, true)
		c.log.Info("cache: not in the ledger, so not cached (not offloaded, or not an original)", "key", key)
		return
	case err != nil:
		retry := c.gaveUp(key, FailLedger, false)
		c.log.Warn("cache: could not read the ledger; the path is counted again later", "key", key, "retry_in", retry, "err", err)
		return
	case rec.Erased():
		c.gaveUp(key, FailErased, true)
		c.log.Info("cache: erased, so not cached", "key", key)
		return
	case rec.Size > c.cfg.Size/maxFileShare:
		c.gaveUp(key, FailTooLarge, true)
		c.log.Info("cache: too large to cache", "key", key, "bytes", rec.Size, "limit", c.cfg.Size/maxFileShare)
		return
	}
	c.mu.Lock()
	// The other fetches' bytes are not on the disk yet, but will be.
	if err := c.roomOnDisk(rec.Size + c.reserved); err != nil {
		c.mu.Unlock()
		retry := c.gaveUp(key, FailDiskFull, false)
		c.log.Warn("cache: not cached; the path is counted again later", "key", key, "retry_in", retry, "err", err)
		return
	}
	c.demand.sized(key, rec.Size)
	now := c.now()
	if !c.admits(rec.Size, job.misses, now) {
		c.mu.Unlock()
		c.failed(FailColder)
		c.log.Debug("cache: not yet: asked for less often than the files it would push out; it comes in when asked for more", "key", key, "misses", job.misses)
		return
	}
	if !c.budget.take(rec.Size, now) {
		left := c.budget.left(now)
		c.mu.Unlock()
		// The count stays: the path comes in at a redirect once the
		// budget can pay for it, without another look-up.
		c.failed(FailOverBudget)
		c.log.Info("cache: not yet: the fetch budget cannot pay for it now; it comes in at a redirect once it has refilled",
			"key", key, "bytes", rec.Size, "budget_left", left, "budget", c.cfg.FetchBudget, "per", c.cfg.Window)
		return
	}
	c.makeRoom(rec.Size)
	c.reserved += rec.Size
	c.mu.Unlock()
	published := false
	var downloaded int64
	defer func() {
		if !published {
			c.mu.Lock()
			c.reserved -= rec.Size
			c.budget.giveBack(max(0, rec.Size-downloaded))
			c.mu.Unlock()
		}
	}()

	tmp, err := c.root.OpenFile(path.Join(fetchDir, fmt.Sprintf("%x.%d", time.Now().UnixNano(), os.Getpid())), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		retry := c.gaveUp(key, FailLocal, false)
		c.log.Error("cache: could not create a download", "key", key, "retry_in", retry, "err", err)
		return
	}
	tmpRel := path.Join(fetchDir, path.Base(tmp.Name()))
	defer func() {
		tmp.Close()
		if !published {
			c.root.Remove(tmpRel)
		}
	}()
	n, reason, err := c.download(ctx, rec, tmp)
	downloaded = n
	if err != nil {
		// Other bytes than the ledger's will not change by asking again
		// soon; a cut connection or an S3 error may.
		retry := c.gaveUp(key, reason, reason == FailMismatch)
		c.log.Warn("cache: fetch failed", "key", key, "reason", reason, "retry_in", retry, "err", err)
		return
	}
	if err := c.prepare(tmp, rel); err != nil {
		retry := c.gaveUp(key, FailLocal, false)
		c.log.Error("cache: could not publish a fetched file", "key", key, "path", rel, "retry_in", retry, "err", err)
		return
	}
	if c.beforePublish != nil {
		c.beforePublish(key)
	}
	published, err = c.publish(key, tmpRel, rel, rec.Size, job.misses)
	switch {
	case err != nil:
		retry := c.gaveUp(key, FailLocal, false)
		c.log.Error("cache: could not publish a fetched file", "key", key, "path", rel, "retry_in", retry, "err", err)
		return
	case !published:
		c.gaveUp(key, FailErased, true)
		c.log.Info("cache: erased while it was fetched: not cached", "key", key)
		return
	}
	c.stats.fetches.Add(1)
	c.stats.fetchedBytes.Add(rec.Size)
	c.log.Info("cache: fetched", "key", key, "bytes", rec.Size)
}

// publish renames the prepared download into place and counts it as
// cached, unless Forget was called for key meanwhile: then it reports
// false and leaves the download to be removed. It holds c.mu throughout,
// as Forget does, so either the file was published first (and Forget
// removes it) or Forget came first (and it is never published).
func (c *Cache) publish(key, tmpRel, rel string, size int64, misses int) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.forgotten[key]; ok {
		return false, nil
	}
	if err := c.root.Rename(tmpRel, rel); err != nil {
		return false, err
	}
	c.reserved -= size
	c.used += size
	if old, ok := c.cached[key]; ok { // published before, by an earlier run
		c.used -= old.Value.(*cachedFile).size
		c.byUse.Remove(old)
	}
	now := c.now()
	c.cached[key] = c.byUse.PushFront(&cachedFile{key: key, rel: rel, size: size, lastUse: now, published: now,
		score: float64(misses), scoredAt: now})
	c.demand.forget(key)
	return true, nil
}

// download writes the object the ledger records into w and checks that it
// is exactly those bytes: the version the ledger names, its size, and its
// CRC64NVME computed here over what was written. S3 answers with the
// checksum it stored at upload ("x-amz-checksum-crc64nvme", asked for with
// ChecksumMode; https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html),
// which must agree too. It returns the bytes it read, and the failure
// reason with the error. Its deadline follows the size (fetchTimeout).
func (c *Cache) download(ctx context.Context, rec offload.Record, w io.Writer) (int64, string, error) {
	sized, cancel := context.WithTimeout(ctx, fetchTimeout(c.cfg.CallTimeout, rec.Size))
	defer cancel()
	// A download that gets no byte for the call timeout is stuck (a
	// connection black-holed before or in the middle of the body), and
	// ends then, not at its size's deadline, which for a large original
	// is half an hour of a fetch worker held for nothing.
	gctx, stall := context.WithCancelCause(sized)
	defer stall(nil)
	idle := time.AfterFunc(c.cfg.CallTimeout, func() { stall(errStalled) })
	defer idle.Stop()
	stalled := func(err error) error {
		if errors.Is(context.Cause(gctx), errStalled) {
			return fmt.Errorf("%w: %w", errStalled, err)
		}
		return err
	}
	in := &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(rec.Key), ChecksumMode: types.ChecksumModeEnabled}
	if rec.VersionID != "" {
		in.VersionId = aws.String(rec.VersionID)
	}
	out, err := c.s3.GetObject(gctx, in)
	if err != nil {
		return 0, FailS3, fmt.Errorf("get %s: %w", rec.Key, stalled(err))
	}
	defer out.Body.Close()
	if got := aws.ToString(out.ChecksumCRC64NVME); got != "" && got != rec.CRC64NVME {
		return 0, FailMismatch, fmt.Errorf("S3 holds %s with crc64nvme %s, the ledger records %s: %w", rec.Key, got, rec.CRC64NVME, offload.ErrChecksumMismatch)
	}
	h := offload.NewCRC64NVME()
	// One byte more than the ledger's size is enough to see a longer object.
	body := &whileReading{r: io.LimitReader(out.Body, rec.Size+1), read: func() { idle.Reset(c.cfg.CallTimeout) }}
	n, err := io.Copy(io.MultiWriter(w, h), body)
	if err != nil {
		return n, FailS3, fmt.Errorf("get %s: after %d of %d bytes: %w", rec.Key, n, rec.Size, stalled(err))
	}
	if sum := offload.EncodeChecksum(h.Sum64()); n != rec.Size || sum != rec.CRC64NVME {
		return n, FailMismatch, fmt.Errorf("got %d bytes with crc64nvme %s for %s, the ledger records %d bytes with %s: %w",
			n, sum, rec.Key, rec.Size, rec.CRC64NVME, offload.ErrChecksumMismatch)
	}
	return n, "", nil
}

// errStalled: a download got no byte for the call timeout.
var errStalled = errors.New("no byte from S3 for the call timeout: the download stalled")

// whileReading calls read after each Read that returned bytes.
type whileReading struct {
	r    io.Reader
	read func()
}

func (w *whileReading) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.read()
	}
	return n, err
}

// fetchTimeout bounds a download of size bytes: the call timeout for S3
// to start answering, plus the body at minFetchRate.
func fetchTimeout(callTimeout time.Duration, size int64) time.Duration {
	return callTimeout + time.Duration(float64(size)/minFetchRate*float64(time.Second))
}

// prepare readies the verified download for its rename to rel (which
// fetch does under c.mu): its bytes reach the disk first, so a crash
// leaves either no file under rel or the whole one; then it is made
// readable to the web server, and any missing folders of rel are made,
// readable too.
func (c *Cache) prepare(tmp *os.File, rel string) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	return c.mkdirs(path.Dir(rel))
}

// mkdirs makes each missing folder of dir with mode 0755, whatever the
// process's umask: the web server, another user, must be able to search it.
func (c *Cache) mkdirs(dir string) error {
	sofar := ""
	for _, seg := range strings.Split(dir, "/") {
		sofar = path.Join(sofar, seg)
		err := c.root.Mkdir(sofar, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := c.root.Chmod(sofar, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// roomOnDisk refuses a fetch that would leave the cache's file system with
// less than 1/minFreeShare of it free.
func (c *Cache) roomOnDisk(size int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(c.cfg.Dir, &st); err != nil {
		return err
	}
	free, total := int64(st.Bavail)*st.Bsize, int64(st.Blocks)*st.Bsize
	if free-size < total/minFreeShare {
		return fmt.Errorf("its file system has %d MiB free; %d more bytes would leave less than 1/%d of it", free>>20, size, minFreeShare)
	}
	return nil
}

// gaveUp counts a fetch not made for reason, and returns how long the
// path's redirects will not count: with quiet, a window, for what asking
// again soon will not change; otherwise a back-off that doubles with each
// failure of the path in a row (fetchBackoffFirst up to fetchBackoffMax).
// Then its misses start again from nothing.
func (c *Cache) gaveUp(key, reason string, quiet bool) time.Duration {
	c.failed(reason)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if quiet {
		c.demand.quiet(key, now.Add(c.cfg.Window))
		return c.cfg.Window
	}
	return c.demand.backOff(key, now, fetchBackoffFirst, fetchBackoffMax)
}
