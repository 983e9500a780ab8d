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

// fetch brings one hot original into the cache:
// ledger → room in the budget → GetObject into a download outside every
// URL → size and CRC64NVME equal to the ledger's → publish by rename.
// Until the rename no URL reaches the bytes, and the rename makes the whole
// file appear at once, so a browser gets the verified file or a redirect,
// never a partial or wrong one. Any failure leaves the cache as it was.
func (c *Cache) fetch(ctx context.Context, job fetchJob) {
	key := job.key
	defer func() {
		c.mu.Lock()
		delete(c.inFlight, key)
		c.mu.Unlock()
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
		c.gaveUp(key, FailLedger, false)
		c.log.Warn("cache: could not read the ledger; the path is counted again", "key", key, "err", err)
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
		c.gaveUp(key, FailDiskFull, false)
		c.log.Warn("cache: not cached; the path is counted again", "key", key, "err", err)
		return
	}
	c.demand.sized(key, rec.Size)
	if !c.admits(rec.Size, job.misses, time.Now()) {
		c.mu.Unlock()
		c.failed(FailColder)
		c.log.Debug("cache: not yet: asked for less often than the files it would push out; it comes in when asked for more", "key", key, "misses", job.misses)
		return
	}
	c.makeRoom(rec.Size)
	c.reserved += rec.Size
	c.mu.Unlock()
	published := false
	defer func() {
		if !published {
			c.mu.Lock()
			c.reserved -= rec.Size
			c.mu.Unlock()
		}
	}()

	tmp, err := c.root.OpenFile(path.Join(fetchDir, fmt.Sprintf("%x.%d", time.Now().UnixNano(), os.Getpid())), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		c.gaveUp(key, FailLocal, false)
		c.log.Error("cache: could not create a download", "key", key, "err", err)
		return
	}
	tmpRel := path.Join(fetchDir, path.Base(tmp.Name()))
	defer func() {
		tmp.Close()
		if !published {
			c.root.Remove(tmpRel)
		}
	}()
	if reason, err := c.download(ctx, rec, tmp); err != nil {
		// Other bytes than the ledger's will not change by asking again
		// soon; a cut connection or an S3 error may.
		c.gaveUp(key, reason, reason == FailMismatch)
		c.log.Warn("cache: fetch failed", "key", key, "reason", reason, "err", err)
		return
	}
	if err := c.publish(tmp, tmpRel, rel); err != nil {
		c.gaveUp(key, FailLocal, false)
		c.log.Error("cache: could not publish a fetched file", "key", key, "path", rel, "err", err)
		return
	}
	published = true
	c.mu.Lock()
	c.reserved -= rec.Size
	c.used += rec.Size
	if old, ok := c.cached[key]; ok { // published before, by an earlier run
		c.used -= old.Value.(*cachedFile).size
		c.byUse.Remove(old)
	}
	now := time.Now()
	c.cached[key] = c.byUse.PushFront(&cachedFile{key: key, rel: rel, size: rec.Size, lastUse: now, published: now,
		score: float64(job.misses), scoredAt: now})
	c.demand.forget(key)
	c.mu.Unlock()
	c.stats.fetches.Add(1)
	c.stats.fetchedBytes.Add(rec.Size)
	c.log.Info("cache: fetched", "key", key, "bytes", rec.Size)
}

// download writes the object the ledger records into w and checks that it
// is exactly those bytes: the version the ledger names, its size, and its
// CRC64NVME computed here over what was written. S3 answers with the
// checksum it stored at upload ("x-amz-checksum-crc64nvme", asked for with
// ChecksumMode; https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html),
// which must agree too. It returns the failure reason with the error.
func (c *Cache) download(ctx context.Context, rec offload.Record, w io.Writer) (string, error) {
	gctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	in := &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(rec.Key), ChecksumMode: types.ChecksumModeEnabled}
	if rec.VersionID != "" {
		in.VersionId = aws.String(rec.VersionID)
	}
	out, err := c.s3.GetObject(gctx, in)
	if err != nil {
		return FailS3, fmt.Errorf("get %s: %w", rec.Key, err)
	}
	defer out.Body.Close()
	if got := aws.ToString(out.ChecksumCRC64NVME); got != "" && got != rec.CRC64NVME {
		return FailMismatch, fmt.Errorf("S3 holds %s with crc64nvme %s, the ledger records %s: %w", rec.Key, got, rec.CRC64NVME, offload.ErrChecksumMismatch)
	}
	h := offload.NewCRC64NVME()
	// One byte more than the ledger's size is enough to see a longer object.
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(out.Body, rec.Size+1))
	if err != nil {
		return FailS3, fmt.Errorf("get %s: after %d of %d bytes: %w", rec.Key, n, rec.Size, err)
	}
	if sum := offload.EncodeChecksum(h.Sum64()); n != rec.Size || sum != rec.CRC64NVME {
		return FailMismatch, fmt.Errorf("got %d bytes with crc64nvme %s for %s, the ledger records %d bytes with %s: %w",
			n, sum, rec.Key, rec.Size, rec.CRC64NVME, offload.ErrChecksumMismatch)
	}
	return "", nil
}

// publish makes the verified download visible under rel: its bytes reach
// the disk first, so a crash leaves either no file under rel or the whole
// one; then it is made readable to the web server and renamed into place,
// with any missing folders made readable too.
func (c *Cache) publish(tmp *os.File, tmpRel, rel string) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := c.mkdirs(path.Dir(rel)); err != nil {
		return err
	}
	return c.root.Rename(tmpRel, rel)
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

// gaveUp counts a fetch not made for reason. The path's misses start
// again from nothing, so a failing path costs one look-up per threshold
// misses, not one per redirect; with quiet, they are not even counted for
// a window, for what asking again soon will not change.
func (c *Cache) gaveUp(key, reason string, quiet bool) {
	c.failed(reason)
	c.mu.Lock()
	defer c.mu.Unlock()
	if quiet {
		c.demand.quiet(key, time.Now().Add(c.cfg.Window))
		return
	}
	c.demand.forget(key)
}
