package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/hotcache"
)

// Kinds of discrepancy the audit reports.
const (
	LocalNotInS3        = "local-not-in-s3"       // a file in the watch folder, older than the grace period, with no object
	ArchivedNotInS3     = "archived-not-in-s3"    // a file in the archive with no object: it was never proven
	LedgerObjectMissing = "ledger-object-missing" // a ledger item whose object is gone
	LedgerVersionStale  = "ledger-version-stale"  // a ledger item naming another version than the one the key serves, which the resolver presigns
	ObjectWithoutLedger = "object-without-ledger" // an object under the prefix, older than the grace period, with no ledger item
	ChecksumMismatch    = "checksum-mismatch"     // ledger, object and (with Deep) archived file disagree on size or CRC64NVME
	CachedNotInLedger   = "cached-not-in-ledger"  // a file in the hot cache (--cache) with no ledger item: served, yet not an offloaded original
	CachedMismatch      = "cached-mismatch"       // a file in the hot cache whose size or CRC64NVME is not what the ledger records
)

// Discrepancy is one thing the audit found wrong.
type Discrepancy struct {
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	Path   string `json:"path,omitempty"` // the local file, relative to its folder
	Detail string `json:"detail,omitempty"`
}

// AuditSummary counts what the audit looked at and found.
type AuditSummary struct {
	LedgerItems   int            `json:"ledger_items"`
	Objects       int            `json:"objects"`
	LocalFiles    int            `json:"local_files"`
	ArchivedFiles int            `json:"archived_files"`
	CachedFiles   int            `json:"cached_files"`
	Pending       int            `json:"pending"` // local files or objects younger than the grace period, not judged
	Discrepancies map[string]int `json:"discrepancies"`
}

// AuditOptions tune the audit.
type AuditOptions struct {
	// Grace: a local file or an object younger than this may be in the
	// middle of its offload, so it is counted as pending, not judged.
	Grace time.Duration
	// Deep also reads every local file that S3 holds (archived, or in the
	// watch folder, such as a conflict) and compares its CRC64NVME with S3's:
	// a full read of the archive.
	Deep bool
	// Parallel bounds the S3 and DynamoDB calls in flight (default 16).
	Parallel int
	// CacheDir is the hot cache's folder (--cache), if any: every file in
	// it is read and must be what the ledger records.
	CacheDir string
}

// Audit compares the watch folder and the archive with the ledger and the
// bucket and reports every discrepancy. It only reads, so it is safe while
// an agent runs; memory stays bounded (listings and scans are paged, and
// nothing is collected across pages). It returns an error when it could not
// look at everything.
func (a *Agent) Audit(ctx context.Context, opts AuditOptions, report func(Discrepancy)) (AuditSummary, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	au := &audit{a: a, opts: opts, report: report, sem: make(chan struct{}, opts.Parallel),
		sum: AuditSummary{Discrepancies: map[string]int{}}}
	steps := []func(context.Context) error{au.ledger, au.objects, au.local, au.cache}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			au.wg.Wait()
			return au.sum, err
		}
	}
	au.wg.Wait()
	return au.sum, errors.Join(au.errs...)
}

type audit struct {
	a      *Agent
	opts   AuditOptions
	report func(Discrepancy)
	sem    chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	sum  AuditSummary
	errs []error
}

func (au *audit) found(d Discrepancy) {
	au.mu.Lock()
	defer au.mu.Unlock()
	au.sum.Discrepancies[d.Kind]++
	au.report(d)
}

func (au *audit) count(f func(*AuditSummary)) {
	au.mu.Lock()
	f(&au.sum)
	au.mu.Unlock()
}

func (au *audit) failed(err error) {
	au.mu.Lock()
	au.errs = append(au.errs, err)
	au.mu.Unlock()
}

// async runs check with at most Parallel in flight.
func (au *audit) async(ctx context.Context, check func(context.Context)) {
	select {
	case au.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	au.wg.Add(1)
	go func() {
		defer func() { <-au.sem; au.wg.Done() }()
		check(ctx)
	}()
}

// ledger scans the ledger items under the key prefix and checks each
// against its object (HEAD with the checksum): the current version, which
// the item must name. Tombstones (erased originals) and the hosts'
// heartbeat items are not originals: skipped.
func (au *audit) ledger(ctx context.Context) error {
	in := &dynamodb.ScanInput{TableName: aws.String(au.a.cfg.Table), ConsistentRead: aws.Bool(true)}
	if p := au.a.cfg.Mapping.KeyPrefix; p != "" {
		in.FilterExpression = aws.String("begins_with(" + offload.LedgerPartitionKey + ", :prefix)")
		in.ExpressionAttributeValues = map[string]dbtypes.AttributeValue{":prefix": &dbtypes.AttributeValueMemberS{Value: p}}
	}
	pages := dynamodb.NewScanPaginator(au.a.ledgerClient, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("ledger scan: %w", err)
		}
		for _, item := range page.Items {
			rec, ok, err := recordedOriginal(item)
			if err != nil {
				au.failed(fmt.Errorf("ledger item: %w", err))
			}
			if !ok {
				continue
			}
			au.count(func(s *AuditSummary) { s.LedgerItems++ })
			au.async(ctx, func(ctx context.Context) {
				obj, err := au.a.s3.head(ctx, rec.Key)
				switch {
				case errors.Is(err, offload.ErrNotFound):
					au.found(Discrepancy{Kind: LedgerObjectMissing, Key: rec.Key, Path: rec.Path,
						Detail: fmt.Sprintf("recorded by %s at %s", rec.Host, rec.UploadedAt.Format(time.RFC3339))})
				case err != nil:
					au.failed(err)
				case obj.Size != rec.Size || obj.CRC64NVME != rec.CRC64NVME:
					au.found(Discrepancy{Kind: ChecksumMismatch, Key: rec.Key, Path: rec.Path,
						Detail: fmt.Sprintf("ledger: %d bytes, crc64nvme %s; S3: %d bytes, crc64nvme %q", rec.Size, rec.CRC64NVME, obj.Size, obj.CRC64NVME)})
				case obj.VersionID != rec.VersionID:
					au.found(Discrepancy{Kind: LedgerVersionStale, Key: rec.Key, Path: rec.Path,
						Detail: fmt.Sprintf("ledger: version %q; the key serves version %q; the resolver presigns the ledger's (a 404 if it is gone)", rec.VersionID, obj.VersionID)})
				}
			})
		}
	}
	return nil
}

// recordedOriginal decodes a scanned ledger item; ok is false for the items
// that are not an original S3 must hold: a host's heartbeat (no object key
// starts with "/") and a tombstone (its object is meant to be gone).
func recordedOriginal(item map[string]dbtypes.AttributeValue) (rec offload.Record, ok bool, err error) {
	if k, isS := item[offload.LedgerPartitionKey].(*dbtypes.AttributeValueMemberS); isS && strings.HasPrefix(k.Value, offload.HostItemPrefix) {
		return offload.Record{}, false, nil
	}
	if rec, err = offload.RecordFromItem(item); err != nil {
		return rec, false, err
	}
	return rec, !rec.Erased(), nil
}

// batchGetMax is DynamoDB's limit of keys per BatchGetItem.
const batchGetMax = 100

// objects lists the bucket under the key prefix and looks each page's keys
// up in the ledger, a hundred per call.
func (au *audit) objects(ctx context.Context) error {
	pages := s3.NewListObjectsV2Paginator(au.a.s3.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(au.a.cfg.Bucket), Prefix: aws.String(au.a.cfg.Mapping.KeyPrefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", au.a.cfg.Bucket, err)
		}
		var keys []string
		for _, o := range page.Contents {
			au.count(func(s *AuditSummary) { s.Objects++ })
			if time.Since(aws.ToTime(o.LastModified)) < au.opts.Grace {
				au.count(func(s *AuditSummary) { s.Pending++ })
				continue
			}
			keys = append(keys, aws.ToString(o.Key))
		}
		for len(keys) > 0 {
			batch := keys[:min(len(keys), batchGetMax)]
			keys = keys[len(batch):]
			au.async(ctx, func(ctx context.Context) { au.ledgerHas(ctx, batch) })
		}
	}
	return nil
}

// ledgerHas reports the keys of batch that have no ledger item.
func (au *audit) ledgerHas(ctx context.Context, batch []string) {
	have, err := au.ledgerItems(ctx, batch, true)
	if err != nil {
		au.failed(err)
		return
	}
	for _, k := range batch {
		if _, ok := have[k]; !ok {
			rel, _ := au.a.cfg.Mapping.FileForKey(k)
			au.found(Discrepancy{Kind: ObjectWithoutLedger, Key: k, Path: rel})
		}
	}
}

// ledgerItems reads the ledger items of keys (at most batchGetMax), only
// their keys when keysOnly; a key without an item is absent from the map.
func (au *audit) ledgerItems(ctx context.Context, keys []string, keysOnly bool) (map[string]offload.Record, error) {
	want := make([]map[string]dbtypes.AttributeValue, len(keys))
	for i, k := range keys {
		want[i] = map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: k}}
	}
	have := map[string]offload.Record{}
	for attempt := 0; len(want) > 0; attempt++ {
		if attempt > 0 {
			select { // DynamoDB left some keys unprocessed: back off a little
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ka := dbtypes.KeysAndAttributes{Keys: want, ConsistentRead: aws.Bool(true)}
		if keysOnly {
			ka.ProjectionExpression = aws.String(offload.LedgerPartitionKey)
		}
		out, err := au.a.ledgerClient.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]dbtypes.KeysAndAttributes{au.a.cfg.Table: ka}})
		if err != nil {
			return nil, fmt.Errorf("ledger batch get: %w", err)
		}
		for _, item := range out.Responses[au.a.cfg.Table] {
			if keysOnly {
				if v, ok := item[offload.LedgerPartitionKey].(*dbtypes.AttributeValueMemberS); ok {
					have[v.Value] = offload.Record{Key: v.Value}
				}
				continue
			}
			rec, err := offload.RecordFromItem(item)
			if err != nil {
				return nil, fmt.Errorf("ledger item: %w", err)
			}
			have[rec.Key] = rec
		}
		want = out.UnprocessedKeys[au.a.cfg.Table].Keys
	}
	return have, nil
}

// cache reads every file in the hot cache and checks that the ledger
// records exactly its bytes: a cached file is served to browsers as the
// original. The cache is bounded by its budget, so it is always read in
// full, Deep or not.
func (au *audit) cache(ctx context.Context) error {
	dir := au.opts.CacheDir
	if dir == "" {
		return nil
	}
	files := filepath.Join(dir, filepath.FromSlash(hotcache.FilesFolder(au.a.cfg.Mapping)))
	type cached struct {
		path, rel, sum string
		size           int64
	}
	var batch []cached
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b := batch
		batch = nil
		au.async(ctx, func(ctx context.Context) {
			keys := make([]string, len(b))
			for i, f := range b {
				keys[i], _ = au.a.cfg.Mapping.KeyForFile(f.rel)
			}
			recs, err := au.ledgerItems(ctx, keys, false)
			if err != nil {
				au.failed(err)
				return
			}
			for i, f := range b {
				rec, ok := recs[keys[i]]
				switch {
				case !ok:
					au.found(Discrepancy{Kind: CachedNotInLedger, Key: keys[i], Path: f.rel,
						Detail: fmt.Sprintf("%s: %d bytes; remove it, the web server serves it", f.path, f.size)})
				case rec.Size != f.size || rec.CRC64NVME != f.sum:
					au.found(Discrepancy{Kind: CachedMismatch, Key: keys[i], Path: f.rel,
						Detail: fmt.Sprintf("cache: %d bytes, crc64nvme %s; ledger: %d bytes, crc64nvme %s; remove it, the web server serves it", f.size, f.sum, rec.Size, rec.CRC64NVME)})
				}
			}
		})
	}
	err := filepath.WalkDir(files, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				au.failed(err)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(files, p)
		rel = filepath.ToSlash(rel)
		if _, err := au.a.cfg.Mapping.KeyForFile(rel); err != nil {
			au.found(Discrepancy{Kind: CachedNotInLedger, Path: rel, Detail: fmt.Sprintf("%s: not an original's name (%v)", p, err)})
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // evicted meanwhile
		}
		sum, err := fileChecksum(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // evicted meanwhile
		} else if err != nil {
			au.failed(err)
			return nil
		}
		au.count(func(s *AuditSummary) { s.CachedFiles++ })
		batch = append(batch, cached{path: p, rel: rel, sum: sum, size: info.Size()})
		if len(batch) == batchGetMax {
			flush()
		}
		return nil
	})
	flush()
	return err
}

// local walks the watch folder and the archive and checks that S3 holds
// each file (and, with Deep, the same bytes as each archived file).
func (au *audit) local(ctx context.Context) error {
	if err := au.walk(ctx, au.a.cfg.Watch, false); err != nil {
		return err
	}
	if au.a.cfg.After == AfterArchive && au.a.cfg.Archive != "" {
		return au.walk(ctx, au.a.cfg.Archive, true)
	}
	return nil
}

func (au *audit) walk(ctx context.Context, base string, archived bool) error {
	return filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			au.failed(err)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, rerr := filepath.Rel(base, p)
		if rerr != nil || rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			// The folders the watcher skips: dot-folders (the claim
			// folder, temp folders) and, in the watch folder, --ignore.
			globs := au.a.cfg.Ignore
			if archived {
				globs = nil
			}
			if ignored(rel, globs) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || ignored(rel, au.a.cfg.Ignore) {
			return nil
		}
		key, kerr := au.a.cfg.Mapping.KeyForFile(rel)
		if kerr != nil {
			return nil // the agent refuses such a name too; its log says so
		}
		info, ierr := d.Info()
		if ierr != nil {
			return nil
		}
		id, _ := idOf(info)
		if archived {
			au.count(func(s *AuditSummary) { s.ArchivedFiles++ })
		} else {
			au.count(func(s *AuditSummary) { s.LocalFiles++ })
			if young := time.Since(id.ctime) < au.opts.Grace || time.Since(id.mtime) < au.opts.Grace; young {
				au.count(func(s *AuditSummary) { s.Pending++ })
				return nil
			}
		}
		au.async(ctx, func(ctx context.Context) { au.checkFile(ctx, p, rel, key, id.size, archived) })
		return nil
	})
}

func (au *audit) checkFile(ctx context.Context, p, rel, key string, size int64, archived bool) {
	obj, err := au.a.s3.head(ctx, key)
	switch {
	case errors.Is(err, offload.ErrNotFound):
		kind := LocalNotInS3
		if archived {
			kind = ArchivedNotInS3
		}
		au.found(Discrepancy{Kind: kind, Key: key, Path: rel, Detail: fmt.Sprintf("%d bytes", size)})
		return
	case err != nil:
		au.failed(err)
		return
	}
	if !au.opts.Deep {
		return
	}
	sum, err := fileChecksum(p)
	if err != nil {
		au.failed(err)
		return
	}
	if obj.Size != size || obj.CRC64NVME != sum {
		where := "watch folder"
		if archived {
			where = "archive"
		}
		au.found(Discrepancy{Kind: ChecksumMismatch, Key: key, Path: rel,
			Detail: fmt.Sprintf("%s: %d bytes, crc64nvme %s; S3: %d bytes, crc64nvme %q", where, size, sum, obj.Size, obj.CRC64NVME)})
	}
}

func fileChecksum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return readChecksum(f)
}
