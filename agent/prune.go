package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/photosleeve/offload"
)

// Reasons prune keeps an archived file (the label values of
// offload_prune_kept_files).
const (
	KeptYoung        = "young"          // its ledger item was recorded less than --min-age ago
	KeptNotInLedger  = "not_in_ledger"  // no ledger item names its key
	KeptErased       = "erased"         // its ledger item is a tombstone: the erasure poller removes erased copies
	KeptLocalDiffers = "local_differs"  // its size or CRC64NVME is not the ledger's, or it changed while prune looked
	KeptS3Missing    = "s3_missing"     // S3 does not hold the version the ledger names
	KeptS3Differs    = "s3_differs"     // that version's size or full-object CRC64NVME is not the ledger's, or S3 gave no full-object checksum
	KeptS3NotCurrent = "s3_not_current" // S3 holds that version, but not as the key's current one (a delete marker or another version on top): a lifecycle rule may expire it
	KeptError        = "error"          // a call or a file operation failed
)

// keptReasons are every reason, in the order the metrics list them.
var keptReasons = []string{KeptYoung, KeptNotInLedger, KeptErased, KeptLocalDiffers, KeptS3Missing, KeptS3Differs, KeptS3NotCurrent, KeptError}

// defaultPruneParallel bounds the files checked at once: each check is one
// DynamoDB GetItem and one S3 HEAD, latency-bound, as in the audit.
const defaultPruneParallel = 16

// PruneOptions tune Prune.
type PruneOptions struct {
	// MinAge: only files whose ledger item was recorded at least this long
	// ago are removed (the ledger's time, not the file's). Must be more
	// than 0.
	MinAge time.Duration
	// DryRun checks every file and reports what would be removed, and
	// removes nothing.
	DryRun bool
	// Parallel bounds the files checked at once (default 16).
	Parallel int
}

// PruneResult is what prune did with one archived file.
type PruneResult struct {
	Path    string `json:"path"` // relative to the archive folder
	Key     string `json:"key"`
	Size    int64  `json:"size"`
	Removed bool   `json:"removed"`        // removed (in a dry run: would be)
	Kept    string `json:"kept,omitempty"` // the reason it was kept, one of the Kept constants
	Detail  string `json:"detail,omitempty"`
}

// PruneSummary counts what one run of Prune looked at and did.
type PruneSummary struct {
	Files        int            `json:"files"`         // archived files looked at
	Removed      int            `json:"removed"`       // removed (in a dry run: would be)
	RemovedBytes int64          `json:"removed_bytes"` // their bytes
	Kept         map[string]int `json:"kept"`          // by reason
	DryRun       bool           `json:"dry_run"`
	Started      time.Time      `json:"started"`
	Finished     time.Time      `json:"finished"`
}

// beforePruneUnlink runs just before prune's last look at a file and its
// unlink; a test changes the file there.
var beforePruneUnlink = func(path string) {}

// Prune removes archived files that S3 provably holds: for each regular
// file in the archive (symbolic links are never followed; dot-folders are
// skipped, as the watcher and the audit skip them), it reads the ledger item
// of the file's key (a consistent GetItem) and removes the file only when
//   - the item exists, is not a tombstone, and was recorded at least
//     MinAge ago;
//   - the file's size and CRC64NVME are the item's;
//   - S3 holds the version the item names as the key's current version
//     (a noncurrent one is what a lifecycle rule expires), with that size
//     and a full-object CRC64NVME equal to it: one HEAD of the key with the
//     checksum, and a HEAD of the recorded version only to tell why not;
//   - a last lstat just before the unlink finds the same file (device,
//     inode, size, modification and change times) as the walk saw and the
//     checksum read.
//
// Anything else keeps the file, with its reason. Folders emptied are left.
// Each folder a file left is fsynced once, at the end: an unlink a crash
// loses only brings the file back, for the next run to remove.
//
// Prune only reads the ledger and S3. It reports each file as decided
// and returns the summary, and an error when some file could not be
// checked or removed (those are kept, reason KeptError) or the archive
// could not be read.
func (a *Agent) Prune(ctx context.Context, opts PruneOptions, report func(PruneResult)) (PruneSummary, error) {
	if opts.MinAge <= 0 {
		return PruneSummary{}, errors.New("prune: the minimum age must be more than 0")
	}
	if a.cfg.After != AfterArchive || a.cfg.Archive == "" {
		return PruneSummary{}, fmt.Errorf("prune: no archive folder (--after is %s)", a.cfg.After)
	}
	if opts.Parallel <= 0 {
		opts.Parallel = defaultPruneParallel
	}
	root, err := os.OpenRoot(a.cfg.Archive)
	if err != nil {
		return PruneSummary{}, fmt.Errorf("prune: archive: %w", err)
	}
	defer root.Close()
	pr := &pruner{a: a, opts: opts, root: root, report: report, now: time.Now(),
		sem: make(chan struct{}, opts.Parallel), synced: map[string]bool{},
		sum: PruneSummary{Kept: map[string]int{}, DryRun: opts.DryRun}}
	pr.sum.Started = pr.now
	for _, r := range keptReasons {
		pr.sum.Kept[r] = 0
	}
	werr := pr.walk(ctx)
	pr.wg.Wait()
	for dir := range pr.synced {
		if err := syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			pr.errs = append(pr.errs, fmt.Errorf("fsync %s: %w", dir, err))
		}
	}
	pr.sum.Finished = time.Now()
	return pr.sum, errors.Join(append([]error{werr}, pr.errs...)...)
}

type pruner struct {
	a      *Agent
	opts   PruneOptions
	root   *os.Root // the archive: no path through it leaves it
	report func(PruneResult)
	now    time.Time
	sem    chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	sum    PruneSummary
	errs   []error
	synced map[string]bool // folders a file was removed from
}

// walk visits the archive's regular files and checks each, at most
// Parallel at once.
func (pr *pruner) walk(ctx context.Context) error {
	base := pr.a.cfg.Archive
	onErr := func(p string, err error) error {
		if p == base {
			return fmt.Errorf("prune: archive: %w", err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			pr.failed(err)
		}
		return nil
	}
	// Dot-folders are skipped as the watcher and the audit skip them; a
	// symbolic link is never followed, nor removed.
	return walkOriginals(ctx, base, nil, pr.a.cfg.Ignore, &pr.a.cfg.Mapping, onErr, func(_, rel, key string, seen fileID) error {
		select {
		case pr.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		pr.wg.Add(1)
		go func() {
			defer func() { <-pr.sem; pr.wg.Done() }()
			pr.decided(pr.check(ctx, rel, key, seen))
		}()
		return nil
	})
}

// check decides one file and, unless a dry run, removes it.
func (pr *pruner) check(ctx context.Context, rel, key string, seen fileID) PruneResult {
	res := PruneResult{Path: rel, Key: key, Size: seen.size}
	kept := func(why, detail string, args ...any) PruneResult {
		res.Kept, res.Detail = why, fmt.Sprintf(detail, args...)
		return res
	}
	cctx, cancel := context.WithTimeout(ctx, pr.a.cfg.CallTimeout)
	rec, err := offload.GetRecord(cctx, pr.a.ledgerClient, pr.a.cfg.Table, key)
	cancel()
	switch {
	case errors.Is(err, offload.ErrNotFound):
		return kept(KeptNotInLedger, "no ledger item")
	case err != nil:
		return pr.keptError(res, err)
	case rec.Erased():
		return kept(KeptErased, "erased at %s: the erasure poller removes it", rec.Erasure.At.Format(time.RFC3339))
	case rec.UploadedAt.IsZero():
		return kept(KeptYoung, "the ledger item has no time")
	case pr.now.Sub(rec.UploadedAt) < pr.opts.MinAge:
		return kept(KeptYoung, "recorded %s", rec.UploadedAt.Format(time.RFC3339))
	}

	sum, read, err := pr.checksum(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errNotRegular):
		return kept(KeptLocalDiffers, "gone or replaced while prune looked")
	case err != nil:
		return pr.keptError(res, err)
	case !read.exactly(seen):
		return kept(KeptLocalDiffers, "changed while prune looked")
	case seen.size != rec.Size || sum != rec.CRC64NVME:
		return kept(KeptLocalDiffers, "archive: %d bytes, crc64nvme %s; ledger: %d bytes, crc64nvme %s", seen.size, sum, rec.Size, rec.CRC64NVME)
	}

	// S3: the key's current version must be the recorded one, with the
	// recorded size and full-object CRC64NVME. A HEAD of the key answers
	// all of it; only when it names another version, or none, does a HEAD
	// of the recorded version say whether S3 lost it (s3_missing) or holds
	// it under something newer (s3_not_current).
	obj, err := pr.a.s3.head(ctx, key)
	notCurrent := ""
	switch {
	case err == nil && (rec.VersionID == "" || obj.VersionID == rec.VersionID):
		// The recorded version is the current one (with none recorded, an
		// unversioned bucket, the current one is all there is).
	case err != nil && !errors.Is(err, offload.ErrNotFound) && !errors.Is(err, errNotVisible):
		return pr.keptError(res, err)
	default:
		notCurrent = pr.notCurrent(obj, err, rec.VersionID)
		obj, err = pr.a.s3.headVersion(ctx, key, rec.VersionID)
	}
	switch {
	case errors.Is(err, offload.ErrNotFound), errors.Is(err, errNotVisible):
		answer := "404"
		if errors.Is(err, errNotVisible) {
			answer = "403, as to a missing key without s3:ListBucket"
		}
		return kept(KeptS3Missing, "S3 does not hold version %q (HEAD answered %s)", rec.VersionID, answer)
	case err != nil:
		return pr.keptError(res, err)
	case obj.CRC64NVME == "":
		return kept(KeptS3Differs, "S3 gives no full-object CRC64NVME for version %q", rec.VersionID)
	case obj.Size != rec.Size || obj.CRC64NVME != rec.CRC64NVME:
		return kept(KeptS3Differs, "S3 version %q: %d bytes, crc64nvme %s; ledger: %d bytes, crc64nvme %s", rec.VersionID, obj.Size, obj.CRC64NVME, rec.Size, rec.CRC64NVME)
	case notCurrent != "":
		return kept(KeptS3NotCurrent, "%s", notCurrent)
	}

	if !pr.opts.DryRun {
		switch changed, err := pr.remove(rel, seen); {
		case err != nil:
			return pr.keptError(res, err)
		case changed:
			return kept(KeptLocalDiffers, "gone or changed while prune looked")
		}
	}
	res.Removed = true
	return res
}

// notCurrent says why the recorded version is not the key's current one,
// from the answer to a HEAD of the key without a version (cur, err). A
// plain DELETE puts a delete marker on top (the HEAD answers 404, or 403
// to a caller without s3:ListBucket: "Amazon S3 behaves as if the object
// was deleted",
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html),
// and a write around the agent a new version: either way the recorded
// version is noncurrent, and a NoncurrentVersionExpiration rule deletes it
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_NoncurrentVersionExpiration.html),
// so the archived copy may be the one that stays.
func (pr *pruner) notCurrent(cur objectInfo, err error, versionID string) string {
	if err != nil {
		return fmt.Sprintf("the key's current version is a delete marker: version %q is noncurrent, and a lifecycle rule may expire it", versionID)
	}
	return fmt.Sprintf("the key's current version is %q, written around the agent: version %q is noncurrent, and a lifecycle rule may expire it", cur.VersionID, versionID)
}

// remove unlinks rel if it is still the file seen (device, inode, size,
// modification and change times), and queues its folder for the fsync;
// changed says it was not.
func (pr *pruner) remove(rel string, seen fileID) (changed bool, err error) {
	name := filepath.FromSlash(rel)
	beforePruneUnlink(filepath.Join(pr.a.cfg.Archive, name))
	look, err := unlinkIfStill(func() (fileID, error) {
		fi, err := pr.root.Lstat(name)
		if err != nil {
			return fileID{}, err
		}
		id, ok := idOf(fi)
		if !ok || !fi.Mode().IsRegular() {
			return fileID{}, fmt.Errorf("%s: %w", rel, errNotRegular)
		}
		return id, nil
	}, func() error { return pr.root.Remove(name) }, seen)
	if err != nil || look != lookUnlinked {
		return err == nil, err
	}
	pr.mu.Lock()
	pr.synced[filepath.Dir(filepath.Join(pr.a.cfg.Archive, name))] = true
	pr.mu.Unlock()
	return false, nil
}

// checksum reads the file's CRC64NVME without following a symbolic link
// (openLocal) and returns the identity of what it read, taken after the
// read: a writer during the read shows as another size, mtime or ctime.
func (pr *pruner) checksum(rel string) (string, fileID, error) {
	f, _, err := openLocal(pr.root, filepath.FromSlash(rel))
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	sum, err := readChecksum(f)
	if err != nil {
		return "", fileID{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return "", fileID{}, err
	}
	id, _ := idOf(fi)
	return sum, id, nil
}

func (pr *pruner) keptError(res PruneResult, err error) PruneResult {
	res.Kept, res.Detail = KeptError, err.Error()
	pr.failed(fmt.Errorf("%s: %w", res.Path, err))
	return res
}

func (pr *pruner) failed(err error) {
	pr.mu.Lock()
	pr.errs = append(pr.errs, err)
	pr.mu.Unlock()
}

// decided counts and reports one file's outcome.
func (pr *pruner) decided(res PruneResult) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.sum.Files++
	if res.Removed {
		pr.sum.Removed++
		pr.sum.RemovedBytes += res.Size
	} else {
		pr.sum.Kept[res.Kept]++
	}
	pr.report(res)
}

// PruneMetrics are the metrics of one run of prune, for node_exporter's
// textfile collector: a oneshot serves no /metrics. Gauges, as each file
// replaces the last run's. A dry run frees nothing: its removed counts are
// 0.
func PruneMetrics(sum PruneSummary) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v float64) prometheus.Collector {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		return g
	}
	removed, bytes := float64(sum.Removed), float64(sum.RemovedBytes)
	if sum.DryRun {
		removed, bytes = 0, 0
	}
	kept := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "offload_prune_kept_files",
		Help: "Archived files the last prune kept, by reason: young, not_in_ledger, erased, local_differs, s3_missing, s3_differs, s3_not_current, error."}, []string{"reason"})
	for _, r := range keptReasons {
		kept.WithLabelValues(r).Set(float64(sum.Kept[r]))
	}
	reg.MustRegister(
		gauge("offload_prune_last_run_timestamp_seconds", "Unix time the last prune finished.", float64(sum.Finished.UnixNano())/1e9),
		gauge("offload_prune_removed_files", "Archived files the last prune removed (0 in a dry run).", removed),
		gauge("offload_prune_removed_bytes", "Bytes of the archived files the last prune removed (0 in a dry run).", bytes),
		kept,
		gauge("offload_prune_duration_seconds", "How long the last prune took.", sum.Finished.Sub(sum.Started).Seconds()),
	)
	return reg
}

// WritePruneMetrics writes PruneMetrics(sum) to path in the Prometheus text
// format, atomically (a temporary file in the same folder, then a rename),
// so node_exporter's textfile collector never reads half a file.
func WritePruneMetrics(path string, sum PruneSummary) error {
	return prometheus.WriteToTextfile(path, PruneMetrics(sum))
}
