package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
)

// erasureOverlap is how far before its watermark each look at the
// erasures index starts. The index is read eventually consistently only
// ("All reads from GSIs and streams are eventually consistent",
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html),
// so a tombstone may show there after a later one did; and erased_at is
// stamped by S3's clock as erase saw it (whole seconds), or by erase's
// own clock when S3 gave no Date. Ten minutes is a chosen margin, not a
// measurement: handling an erasure twice is harmless.
const erasureOverlap = 10 * time.Minute

// forgetter makes this host forget erased originals: every ErasePoll it
// writes the host's heartbeat, looks for the erasures of its key prefix
// since its watermark, removes its own copies of each (watch folder,
// archive, upload record, pending proof, hot cache) and acknowledges it on
// the tombstone (acked_by). Only the daemon runs it.
//
// Guarantees: an erasure is acknowledged only once this host's copies are
// gone; a file under the erased name that is not the erased original (a
// new file under a name used again) is kept; a file a worker is
// offloading is left for the next poll; nothing is removed through a
// symlink (folders are opened one name at a time without
// following one, and a symlink at the name is removed itself, never its
// target). A failure (DynamoDB unreachable, a file that cannot be removed)
// is logged and counted, and the next poll tries again; offloading never
// waits for it.
type forgetter struct {
	a  *Agent
	db *dynamodb.Client
	// loaded: the heartbeat item was read, so through is what this host
	// acknowledged before (a heartbeat is never written before, lest it
	// reset the watermark of a host that was down).
	loaded  bool
	through time.Time // erasures_through: every erasure up to it is acknowledged
	// acked are the keys acknowledged by this run, with their erased_at,
	// so that the overlap does not redo them every poll (a later erased_at,
	// from erase run again, is done again); those that fall out of the
	// overlap are dropped.
	acked map[string]time.Time
}

// forgetEvery runs the forgetter: a poll at once, then every ErasePoll
// until ctx ends.
func (a *Agent) forgetEvery(ctx context.Context) {
	f := &forgetter{a: a, db: a.ledgerClient, acked: map[string]time.Time{}}
	t := time.NewTicker(a.cfg.ErasePoll)
	defer t.Stop()
	for {
		if err := f.poll(ctx); err != nil && ctx.Err() == nil {
			a.stats.ErasurePollFailures.Add(1)
			a.log.Warn("erasure poll failed; the next poll tries again, offloading goes on", "err", err, "next_in", a.cfg.ErasePoll)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll is one round: heartbeat, look, forget, acknowledge.
func (f *forgetter) poll(ctx context.Context) error {
	if !f.loaded {
		if err := f.load(ctx); err != nil {
			return err
		}
	}
	if err := f.heartbeat(ctx); err != nil {
		return err
	}
	// Reading every erasure (for the uploads' check) must not hold back
	// forgetting those since the watermark: with years of erasures the
	// first read can fail where the second does not. Without a watermark
	// the look reads every erasure itself (look).
	var errs []error
	if !f.through.IsZero() {
		if err := f.a.loadErased(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	erasures, err := f.look(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var oldestLeft, newest time.Time
	for _, e := range erasures {
		if e.at.After(newest) {
			newest = e.at
		}
		// Skipped only as the erasure this run acknowledged: a later
		// erased_at is erase run again, which every host must look at
		// again (the erased original may be back on this host).
		if at, done := f.acked[e.key]; done && !e.at.After(at) {
			continue
		}
		if err := f.forget(ctx, e.key); err != nil {
			if !errors.Is(err, errForgetLater) {
				errs = append(errs, err)
			}
			if oldestLeft.IsZero() || e.at.Before(oldestLeft) {
				oldestLeft = e.at
			}
			continue
		}
		f.acked[e.key] = e.at
		f.a.stats.Forgotten.Add(1)
	}
	switch {
	case !oldestLeft.IsZero():
		// Just before it, so the next look (from through − overlap) finds it.
		f.through = oldestLeft.Add(-time.Nanosecond)
	case newest.After(f.through):
		f.through = newest
	}
	for key, at := range f.acked {
		if at.Before(f.through.Add(-erasureOverlap)) {
			delete(f.acked, key)
		}
	}
	return errors.Join(errs...)
}

// load reads this host's heartbeat item, strongly consistent: where an
// earlier run left the watermark. No item: a new host, which looks from
// the beginning.
func (f *forgetter) load(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, f.a.cfg.CallTimeout)
	defer cancel()
	out, err := f.db.GetItem(cctx, &dynamodb.GetItemInput{
		TableName:      aws.String(f.a.cfg.Table),
		Key:            map[string]types.AttributeValue{offload.LedgerPartitionKey: &types.AttributeValueMemberS{Value: offload.HeartbeatKey(f.a.cfg.Host)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("read the heartbeat of %s: %w", f.a.cfg.Host, err)
	}
	if out.Item != nil {
		hb, err := offload.HeartbeatFromItem(out.Item)
		if err != nil {
			return err
		}
		// A heartbeat of another key prefix is another site's watermark
		// (a host renamed into a shared table): not ours to resume from.
		if hb.KeyPrefix == f.a.cfg.Mapping.KeyPrefix {
			f.through = hb.ErasuresThrough
		}
	}
	f.loaded = true
	f.a.log.Info("looking for erasures", "key_prefix", f.a.cfg.Mapping.KeyPrefix, "erasures_through", f.through, "every", f.a.cfg.ErasePoll)
	return nil
}

// heartbeat writes this host's heartbeat item: alive now, through the
// watermark.
func (f *forgetter) heartbeat(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, f.a.cfg.CallTimeout)
	defer cancel()
	hb := offload.Heartbeat{Host: f.a.cfg.Host, KeyPrefix: f.a.cfg.Mapping.KeyPrefix, SeenAt: time.Now().UTC(), ErasuresThrough: f.through}
	if _, err := f.db.PutItem(cctx, &dynamodb.PutItemInput{TableName: aws.String(f.a.cfg.Table), Item: hb.Item()}); err != nil {
		return fmt.Errorf("write the heartbeat of %s: %w", f.a.cfg.Host, err)
	}
	return nil
}

// erasure is one tombstone the index showed.
type erasure struct {
	key string
	at  time.Time
}

// look queries the erasures index for the key prefix's tombstones erased
// after through − erasureOverlap (all of them with no watermark, which
// then loads Agent.erased whole), every page, oldest first, and adds each
// to what the uploads check (Agent.erased).
func (f *forgetter) look(ctx context.Context) ([]erasure, error) {
	since := time.Time{}
	if !f.through.IsZero() {
		since = f.through.Add(-erasureOverlap)
	}
	began := time.Now()
	out, err := f.a.queryErasures(ctx, f.db, since, f.a.cfg.CallTimeout)
	if err != nil {
		return nil, err
	}
	if since.IsZero() {
		// Every erasure of the key prefix, as loadErased reads them.
		f.a.erased.loadAll(out, began)
		return out, nil
	}
	for _, e := range out {
		f.a.erased.add(e.key)
	}
	return out, nil
}

// queryErasures reads the erasures index for the key prefix's tombstones
// erased after since (every one with a zero since), every page, oldest
// first; each page's call is bounded by callTimeout.
func (a *Agent) queryErasures(ctx context.Context, db *dynamodb.Client, since time.Time, callTimeout time.Duration) ([]erasure, error) {
	cond := "#in = :in"
	names := map[string]string{"#in": offload.ErasedInAttr}
	values := map[string]types.AttributeValue{":in": &types.AttributeValueMemberS{Value: offload.ErasedPartition(a.cfg.Mapping.KeyPrefix)}}
	if !since.IsZero() {
		cond += " AND #at > :since"
		names["#at"] = offload.ErasedAtAttr
		values[":since"] = &types.AttributeValueMemberS{Value: offload.FormatErasedAt(since)}
	}
	p := dynamodb.NewQueryPaginator(db, &dynamodb.QueryInput{
		TableName:                 aws.String(a.cfg.Table),
		IndexName:                 aws.String(offload.ErasuresIndex),
		KeyConditionExpression:    aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var out []erasure
	for p.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := p.NextPage(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("query the index %s: %w", offload.ErasuresIndex, err)
		}
		for _, item := range page.Items {
			key, _ := item[offload.LedgerPartitionKey].(*types.AttributeValueMemberS)
			at, _ := item[offload.ErasedAtAttr].(*types.AttributeValueMemberS)
			if key == nil || at == nil {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, at.Value)
			if err != nil {
				a.log.Warn("a tombstone with an unreadable erased_at: skipped", "key", key.Value, "erased_at", at.Value)
				continue
			}
			out = append(out, erasure{key: key.Value, at: t})
		}
	}
	return out, nil
}

// errForgetLater: a worker is offloading the key's file right now; the next
// poll forgets it.
var errForgetLater = errors.New("its file is being offloaded: the next poll forgets it")

// forget removes this host's copies of key's erased original and then
// acknowledges its erasure. Idempotent: what is already gone is success.
//
// A file under the erased name is removed only when it is the erased
// original (see removeErased): a name may be used again after its erasure
// (a user's new avatar), and such a file, never recorded, has no other
// copy. It is kept and logged, and does not hold the acknowledgement back:
// this host holds no copy of the erased original.
func (f *forgetter) forget(ctx context.Context, key string) error {
	a := f.a
	log := a.log.With("key", key)
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	rec, err := offload.GetRecord(cctx, f.db, a.cfg.Table, key)
	cancel()
	switch {
	case errors.Is(err, offload.ErrNotFound):
		log.Info("erased, but the tombstone is gone from the ledger: nothing to compare a file with, remove or acknowledge")
		return nil
	case err != nil:
		return fmt.Errorf("forget %s: %w", key, err)
	case !rec.Erased():
		// The index is read eventually consistently; the item itself
		// says it is no tombstone (now): nothing is removed.
		log.Warn("the erasures index names a key whose ledger item is not a tombstone: nothing removed")
		return nil
	}
	rel, err := a.cfg.Mapping.FileForKey(key)
	if err != nil {
		// No file of this host can have this key (the naming contract
		// refuses it): nothing to remove, only the ledger to tell.
		rel = ""
	}
	if rel != "" {
		if !a.busy.claim(rel) {
			log.Info("erased, but its file is being offloaded: the next poll removes it", "file", rel)
			return errForgetLater
		}
		err := f.removeFiles(rel, rec, log)
		a.busy.release(rel)
		if err != nil {
			return fmt.Errorf("forget %s: %w", key, err)
		}
	}
	a.s3.records.remove(key, "")
	a.proofs.drop(key)
	switch c := a.cache.Load(); {
	case c != nil:
		// Forget removes whatever the cache holds under the key: the cache
		// publishes only bytes whose size and CRC64NVME are the ledger's at
		// fetch time, and a new original under the name would need a new
		// ledger record, which the ledger refuses over a tombstone. So a
		// cached file under an erased key is the erased original.
		removed, err := c.Forget(key)
		if err != nil {
			return fmt.Errorf("forget %s: %w", key, err)
		}
		if removed {
			log.Info("erased: removed from the hot cache")
		}
	case a.cfg.caching():
		// The cache could not start: its folder may hold a copy from an
		// earlier run, so the erasure is not acknowledged.
		return fmt.Errorf("forget %s: the hot cache is configured but not running, and its folder %s may hold a copy", key, a.cfg.Cache.Dir)
	}
	if err := f.ack(ctx, key); err != nil {
		return err
	}
	log.Info("erased: this host's copies are gone; acknowledged", "host", a.cfg.Host)
	return nil
}

// removeFiles removes rel from the watch folder and the archive where it
// is the erased original rec (removeErased). A file kept is logged here,
// once per call: a poll forgets a key at most once, and once acknowledged
// not again in this run.
func (f *forgetter) removeFiles(rel string, rec offload.Record, log *slog.Logger) error {
	dirs := []string{f.a.cfg.Watch}
	if f.a.cfg.Archive != "" {
		dirs = append(dirs, f.a.cfg.Archive)
	}
	var errs []error
	for _, dir := range dirs {
		p := path.Join(dir, rel)
		switch done, why, err := removeErased(dir, rel, rec); {
		case err != nil:
			errs = append(errs, err)
		case done == removedCopy:
			log.Info("erased: removed the local copy", "path", p)
		case done == keptOther:
			log.Warn("kept "+p+": not the erased original", "path", p, "why", why)
		}
	}
	return errors.Join(errs...)
}

// What removeErased did.
type removal int

const (
	nothingThere removal = iota // no file under the name
	removedCopy                 // the erased original (or a symlink) removed
	keptOther                   // another file under the name: kept
)

// beforeForgetUnlink runs just before removeErased's last look at a file
// and its unlink; a test swaps the file there.
var beforeForgetUnlink = func(path string) {}

// removeErased removes rel below the folder dir if it is the erased
// original rec: with the size and CRC64NVME the tombstone kept, a regular
// file with that size and full-object CRC64NVME; with none (a key never
// recorded), a regular file whose modification and change times are both
// before erased_at. A symlink at rel is removed itself (it holds no bytes;
// its target is never touched); anything else is kept, with the reason.
//
// The folders on the way are opened one name at a time without following
// a symlink (one there is refused: errNotFolder), the file is read without
// following one, and a last lstat just before the unlink must find the
// file that was judged (device, inode, size, modification and change
// times), or it is kept: a file swapped in between is never removed. When
// the file is gone (removed now or before), its folder is fsynced before
// the return.
func removeErased(dir, rel string, rec offload.Record) (done removal, why string, err error) {
	top, err := openFolder(dir)
	if err != nil {
		return nothingThere, "", err
	}
	defer top.Close()
	d, err := top.sub(path.Dir(rel), false, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nothingThere, "", nil
	}
	if err != nil {
		return nothingThere, "", err
	}
	defer d.Close()
	// The file is gone, by this unlink or an earlier poll's: the folder
	// goes to the disk before the acknowledgement, which a power loss
	// that undid the unlink would otherwise outlive.
	defer func() {
		if err == nil && done != keptOther {
			err = d.sync()
		}
	}()
	name := path.Base(rel)
	var st unix.Stat_t
	switch err := unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
		return nothingThere, "", nil
	case err != nil:
		return nothingThere, "", &os.PathError{Op: "lstat", Path: d.name(name), Err: err}
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return unlinked(d, name)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return keptOther, "a " + kindOf(st.Mode), nil
	}
	judged, why, err := isErasedOriginal(d, name, rec)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nothingThere, "", nil
	case errors.Is(err, errNotRegular):
		return keptOther, "replaced while it was looked at", nil
	case err != nil:
		return nothingThere, "", err
	case why != "":
		return keptOther, why, nil
	}
	beforeForgetUnlink(d.name(name))
	switch look, err := unlinkIfStill(func() (fileID, error) { return d.lstat(name) }, func() error { return d.remove(name) }, judged); {
	case err != nil:
		return nothingThere, "", err
	case look == lookChanged:
		return keptOther, "changed or replaced while it was looked at", nil
	case look == lookGone:
		return nothingThere, "", nil
	}
	return removedCopy, "", nil
}

// unlinked unlinks name in d; gone already is nothing there.
func unlinked(d *folder, name string) (removal, string, error) {
	err := d.remove(name)
	if errors.Is(err, unix.ENOENT) {
		return nothingThere, "", nil
	}
	if err != nil {
		return nothingThere, "", err
	}
	return removedCopy, "", nil
}

// isErasedOriginal reads the regular file name in d without following a
// symlink and says why it is not the erased original rec ("" if it is),
// with the identity of what was judged, taken after the read: a writer
// during the read shows as another size, mtime or ctime.
func isErasedOriginal(d *folder, name string, rec offload.Record) (fileID, string, error) {
	f, err := d.open(name)
	if err != nil {
		return fileID{}, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, "", err
	}
	before, ok := idOf(fi)
	if !ok {
		return fileID{}, "", fmt.Errorf("%s: no inode information", d.name(name))
	}
	if rec.CRC64NVME == "" {
		// A key never recorded: only a file that was there, unchanged,
		// before the erasure can be what the operator meant.
		at := rec.Erasure.At
		if !before.mtime.Before(at) || !before.ctime.Before(at) {
			return before, fmt.Sprintf("modified or changed (mtime %s, ctime %s) after the erasure (%s), and the ledger kept no checksum",
				before.mtime.UTC().Format(time.RFC3339Nano), before.ctime.UTC().Format(time.RFC3339Nano), at.Format(time.RFC3339Nano)), nil
		}
		return before, "", nil
	}
	if before.size != rec.Size {
		return before, fmt.Sprintf("%d bytes; the erased original had %d", before.size, rec.Size), nil
	}
	sum, err := readChecksum(f)
	if err != nil {
		return fileID{}, "", fmt.Errorf("%s: %w", d.name(name), err)
	}
	if fi, err = f.Stat(); err != nil {
		return fileID{}, "", err
	}
	read, _ := idOf(fi)
	switch {
	case !read.exactly(before):
		return read, "changed while it was read", nil
	case sum != rec.CRC64NVME:
		return read, fmt.Sprintf("crc64nvme %s; the erased original had %s", sum, rec.CRC64NVME), nil
	}
	return read, "", nil
}

// ack adds this host to the tombstone's acked_by. The condition keeps an
// acknowledgement from creating an item: a tombstone deleted meanwhile
// needs none.
func (f *forgetter) ack(ctx context.Context, key string) error {
	cctx, cancel := context.WithTimeout(ctx, f.a.cfg.CallTimeout)
	defer cancel()
	_, err := f.db.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(f.a.cfg.Table),
		Key:                       map[string]types.AttributeValue{offload.LedgerPartitionKey: &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:          aws.String("ADD #acked :host"),
		ConditionExpression:       aws.String("attribute_exists(#at)"),
		ExpressionAttributeNames:  map[string]string{"#acked": offload.AckedByAttr, "#at": offload.ErasedAtAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":host": &types.AttributeValueMemberSS{Value: []string{f.a.cfg.Host}}},
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		f.a.log.Info("erased, but the tombstone is gone from the ledger: nothing to acknowledge", "key", key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("acknowledge the erasure of %s: %w", key, err)
	}
	return nil
}

// busyFiles are the files (relative paths) a worker or the forgetter acts
// on now: each takes a file only if the other does not have it, so the
// forgetter never removes a file while it is being offloaded, nor a
// worker reads one being removed.
type busyFiles struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// claim takes rel, or reports false if someone has it.
func (b *busyFiles) claim(rel string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[rel]; ok {
		return false
	}
	if b.m == nil {
		b.m = map[string]struct{}{}
	}
	b.m[rel] = struct{}{}
	return true
}

// release gives rel back.
func (b *busyFiles) release(rel string) {
	b.mu.Lock()
	delete(b.m, rel)
	b.mu.Unlock()
}
