package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
	ErasureIncomplete   = "erasure-incomplete"    // a tombstone without erase_done: S3 may still hold versions or uploads of the key
	ErasurePending      = "erasure-pending"       // erase is done in S3, but a known host of the key prefix has not acknowledged it
	ErasedObjectPresent = "erased-object-present" // a tombstone whose key answers a HEAD: a version came back
	ErasedCopyPresent   = "erased-copy-present"   // a file in the watch folder, the archive or the hot cache whose key is erased: a host has not removed it
)

// ErasureHost is a known host of the key prefix (it wrote a heartbeat) that
// has not acknowledged an erasure.
type ErasureHost struct {
	Host string `json:"host"`
	// Live: its heartbeat is younger than the host timeout.
	Live   bool      `json:"live"`
	SeenAt time.Time `json:"seen_at"` // its last heartbeat
}

// Discrepancy is one thing the audit found wrong.
type Discrepancy struct {
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	Path   string `json:"path,omitempty"` // the local file, relative to its folder
	Detail string `json:"detail,omitempty"`
	// Hosts are the hosts that have not acknowledged an erasure
	// (ErasurePending, ErasureIncomplete).
	Hosts []ErasureHost `json:"hosts,omitempty"`
}

// AuditSummary counts what the audit looked at and found.
type AuditSummary struct {
	LedgerItems   int `json:"ledger_items"`
	Objects       int `json:"objects"`
	LocalFiles    int `json:"local_files"`
	ArchivedFiles int `json:"archived_files"`
	CachedFiles   int `json:"cached_files"`
	Pending       int `json:"pending"` // local files, objects or erasures younger than the grace period, not judged
	// Erasures are the tombstones under the key prefix; each judged one
	// is complete (erase_done set, every known host acknowledged) or
	// pending (a discrepancy says what is missing).
	Erasures         int            `json:"erasures"`
	ErasuresComplete int            `json:"erasures_complete"`
	ErasuresPending  int            `json:"erasures_pending"`
	Discrepancies    map[string]int `json:"discrepancies"`
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
	// HostTimeout: a host whose heartbeat is older than this is down
	// (default DefaultHostTimeout).
	HostTimeout time.Duration
}

// Audit compares the watch folder and the archive with the ledger and the
// bucket and reports every discrepancy. It only reads, so it is safe while
// an agent runs; memory stays bounded (listings and scans are paged, and
// nothing is collected across pages but the key prefix's tombstones and
// heartbeats, which are few). It returns an error when it could not look
// at everything.
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

// DefaultHostTimeout is how long a host's heartbeat stays fresh: three
// of the agents' polls at their default (--erase-poll, DefaultRescan,
// 1 min), so one late or failed write does not make a host "down".
const DefaultHostTimeout = 3 * DefaultRescan

// ledger scans the ledger items under the key prefix and checks each
// against its object (HEAD with the checksum): the current version, which
// the item must name. The scan also brings the hosts' heartbeat items
// (their keys start with HostItemPrefix, outside any key prefix); the
// tombstones (erased originals) and the heartbeats of this key prefix are
// kept, erasures being rare, and each erasure is judged once the scan has
// seen every host (erasures).
func (au *audit) ledger(ctx context.Context) error {
	p := au.a.cfg.Mapping.KeyPrefix
	in := &dynamodb.ScanInput{TableName: aws.String(au.a.cfg.Table), ConsistentRead: aws.Bool(true)}
	if p != "" {
		in.FilterExpression = aws.String("begins_with(" + offload.LedgerPartitionKey + ", :prefix) OR begins_with(" + offload.LedgerPartitionKey + ", :hosts)")
		in.ExpressionAttributeValues = map[string]dbtypes.AttributeValue{
			":prefix": &dbtypes.AttributeValueMemberS{Value: p},
			":hosts":  &dbtypes.AttributeValueMemberS{Value: offload.HostItemPrefix},
		}
	}
	var hosts []offload.Heartbeat
	var erased []offload.Record
	pages := dynamodb.NewScanPaginator(au.a.ledgerClient, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("ledger scan: %w", err)
		}
		for _, item := range page.Items {
			if isHeartbeat(item) {
				hb, err := offload.HeartbeatFromItem(item)
				switch {
				case err != nil:
					au.failed(fmt.Errorf("ledger item: %w", err))
				case hb.KeyPrefix == p:
					hosts = append(hosts, hb)
				}
				continue
			}
			rec, err := offload.RecordFromItem(item)
			if err != nil {
				au.failed(fmt.Errorf("ledger item: %w", err))
				continue
			}
			if rec.Erased() {
				erased = append(erased, rec)
				continue
			}
			au.count(func(s *AuditSummary) { s.LedgerItems++ })
			au.async(ctx, func(ctx context.Context) { au.checkRecord(ctx, rec) })
		}
	}
	au.erasures(ctx, hosts, erased)
	return nil
}

// checkRecord checks an original's ledger item against the object its key
// serves.
func (au *audit) checkRecord(ctx context.Context, rec offload.Record) {
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
}

// isHeartbeat reports whether a scanned item is a host's heartbeat, not an
// object's: no object key starts with "/".
func isHeartbeat(item map[string]dbtypes.AttributeValue) bool {
	k, ok := item[offload.LedgerPartitionKey].(*dbtypes.AttributeValueMemberS)
	return ok && offload.IsHeartbeatKey(k.Value)
}

// erasures judges each tombstone older than the grace period (a younger
// one may be mid-erase): complete when erase_done is set, its key answers
// no HEAD, and every known host (a heartbeat of this key prefix) has
// acknowledged it. A host that never wrote a heartbeat is not known; a
// retired host's heartbeat stays until the operator deletes it.
func (au *audit) erasures(ctx context.Context, hosts []offload.Heartbeat, erased []offload.Record) {
	now := time.Now()
	timeout := au.opts.HostTimeout
	if timeout <= 0 {
		timeout = DefaultHostTimeout
	}
	slices.SortFunc(hosts, func(a, b offload.Heartbeat) int { return strings.Compare(a.Host, b.Host) })
	for _, rec := range erased {
		au.count(func(s *AuditSummary) { s.Erasures++ })
		if now.Sub(rec.Erasure.At) < au.opts.Grace {
			au.count(func(s *AuditSummary) { s.Pending++ })
			continue
		}
		if len(hosts) == 0 {
			// No agent of this prefix has written a heartbeat (agents
			// that only run once, or older ones): none confirms it
			// removed its copies, so the erasure is not complete.
			au.async(ctx, func(ctx context.Context) { au.checkErasure(ctx, rec, nil, true) })
			continue
		}
		var missing []ErasureHost
		for _, h := range hosts {
			if !slices.Contains(rec.Erasure.AckedBy, h.Host) {
				missing = append(missing, ErasureHost{Host: h.Host, Live: now.Sub(h.SeenAt) <= timeout, SeenAt: h.SeenAt})
			}
		}
		au.async(ctx, func(ctx context.Context) { au.checkErasure(ctx, rec, missing, false) })
	}
}

// checkErasure reports what an erasure still lacks, given the known hosts
// that have not acknowledged it (noHosts: no host of the prefix is known).
func (au *audit) checkErasure(ctx context.Context, rec offload.Record, missing []ErasureHost, noHosts bool) {
	path := rec.Path
	if path == "" {
		path, _ = au.a.cfg.Mapping.FileForKey(rec.Key)
	}
	erased := "erased at " + rec.Erasure.At.Format(time.RFC3339)
	rerun := "run offload-agent erase --why REASON " + rec.Key + " again"
	complete := true
	obj, err := au.a.s3.head(ctx, rec.Key)
	switch {
	case errors.Is(err, offload.ErrNotFound):
	case err != nil:
		au.failed(err)
		return
	default:
		complete = false
		au.found(Discrepancy{Kind: ErasedObjectPresent, Key: rec.Key, Path: path,
			Detail: fmt.Sprintf("%s, yet the key serves %d bytes (version %q): a version came back, such as an upload that raced the erasure; %s", erased, obj.Size, obj.VersionID, rerun)})
	}
	switch {
	case rec.Erasure.Done.IsZero():
		complete = false
		detail := erased + "; S3 may still hold versions or uploads of it: " + rerun
		if len(missing) > 0 {
			detail += "; not yet acknowledged by " + hostList(missing)
		}
		au.found(Discrepancy{Kind: ErasureIncomplete, Key: rec.Key, Path: path, Detail: detail, Hosts: missing})
	case noHosts:
		complete = false
		au.found(Discrepancy{Kind: ErasurePending, Key: rec.Key, Path: path,
			Detail: erased + "; no host of this key prefix has written a heartbeat, so none has confirmed that it removed its copies (agents that only run once, or older than erasure, write none)"})
	case len(missing) > 0:
		complete = false
		au.found(Discrepancy{Kind: ErasurePending, Key: rec.Key, Path: path, Hosts: missing,
			Detail: erased + "; not yet acknowledged by " + hostList(missing) + "; a down host acknowledges once its agent runs again; a retired host's heartbeat item (" + offload.HostItemPrefix + "NAME) must be deleted"})
	}
	au.count(func(s *AuditSummary) {
		if complete {
			s.ErasuresComplete++
		} else {
			s.ErasuresPending++
		}
	})
}

// hostList names hosts, each "live" or "down since" its last heartbeat.
func hostList(hosts []ErasureHost) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		if h.Live {
			names[i] = h.Host + " (live)"
		} else {
			names[i] = h.Host + " (down since " + h.SeenAt.UTC().Format(time.RFC3339) + ")"
		}
	}
	return strings.Join(names, ", ")
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
				case rec.Erased():
					au.found(Discrepancy{Kind: ErasedCopyPresent, Key: keys[i], Path: f.rel,
						Detail: fmt.Sprintf("%s: %d bytes of an original erased at %s; the web server serves it: remove it (the host's agent does when it runs)", f.path, f.size, rec.Erasure.At.Format(time.RFC3339))})
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
	// The folders the watcher skips: dot-folders (the claim folder, temp
	// folders) and, in the watch folder, --ignore.
	dirGlobs := au.a.cfg.Ignore
	if archived {
		dirGlobs = nil
	}
	onErr := func(_ string, err error) error {
		if !errors.Is(err, fs.ErrNotExist) {
			au.failed(err)
		}
		return nil
	}
	return walkOriginals(ctx, base, dirGlobs, au.a.cfg.Ignore, &au.a.cfg.Mapping, onErr, func(p, rel, key string, id fileID) error {
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
		kind, detail := LocalNotInS3, fmt.Sprintf("%d bytes", size)
		if archived {
			kind = ArchivedNotInS3
		}
		// Not in S3 because it was erased? Then it is a copy the host has
		// not removed, not an original never proven.
		recs, lerr := au.ledgerItems(ctx, []string{key}, false)
		if lerr != nil {
			au.failed(lerr)
			return
		}
		if rec, ok := recs[key]; ok && rec.Erased() {
			kind, detail = ErasedCopyPresent, fmt.Sprintf("%d bytes of an original erased at %s: the host's agent removes its copy when it runs", size, rec.Erasure.At.Format(time.RFC3339))
		}
		au.found(Discrepancy{Kind: kind, Key: key, Path: rel, Detail: detail})
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

// walkOriginals calls visit for each regular file under base whose name
// the naming contract maps to a key, with its path, its slash-separated
// path relative to base, its key and its identity: what the audit and
// prune look at. It skips dot-folders and folders matching dirGlobs, files
// matching fileGlobs, and anything not a regular file (a symbolic link is
// never followed). onErr decides what a walk error means; a cancelled ctx
// ends the walk.
func walkOriginals(ctx context.Context, base string, dirGlobs, fileGlobs []string, m *offload.Mapping,
	onErr func(path string, err error) error, visit func(p, rel, key string, id fileID) error) error {
	return filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return onErr(p, err)
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
			if ignored(rel, dirGlobs) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || ignored(rel, fileGlobs) {
			return nil
		}
		key, kerr := m.KeyForFile(rel)
		if kerr != nil {
			return nil // the agent refuses such a name too; its log says so
		}
		info, ierr := d.Info()
		if ierr != nil {
			return nil // gone meanwhile
		}
		id, ok := idOf(info)
		if !ok {
			return nil
		}
		return visit(p, rel, key, id)
	})
}
