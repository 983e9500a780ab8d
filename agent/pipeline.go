package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"time"

	"github.com/photosleeve/offload"
)

// outcome is how one attempt at one file ended.
type outcome int

const (
	outDone     outcome = iota // S3 and the ledger hold it; the local file is archived, deleted or kept
	outGone                    // the file vanished before it was read: nothing to do
	outNotReady                // not settled, or changed while read: look again later
	outSkipped                 // not a regular file (symlink, FIFO...): ignored, parked until it changes
	outRefused                 // a name the agent cannot upload; parked until it changes
	outConflict                // S3 or the ledger holds other bytes under the key; parked for a human
	outFailed                  // a transient error; retried with backoff
	outDryRun                  // --dry-run: said what it would do; parked until it changes
)

func (o outcome) String() string {
	return [...]string{"done", "gone", "not ready", "skipped", "refused", "conflict", "failed", "dry run"}[o]
}

// result is what offloadFile reports about one attempt.
type result struct {
	rel     string
	outcome outcome
	id      fileID // the version that was read (zero when none was)
	key     string
	err     error
	cause   string // of a failure: causeS3, causeDynamoDB, causeLocal or causeArchive
	elapsed time.Duration
	// proven is set when only the local step failed (causeArchive): the
	// retry of this very version skips to it.
	proven *proof
	// local: the attempt reused such a proof and asked neither S3 nor
	// DynamoDB anything, so its outcome says nothing about them (see
	// scheduler.finish).
	local bool
}

// proof is what an attempt established before its local step: S3 holds
// the object under key with the full-object CRC64NVME sum, and the ledger
// records it, for the version id of the file. A retry that finds the file
// still exactly that version (every field, ctime included: a write, a
// chmod or a touch -r changes it) needs neither S3 nor the ledger again.
type proof struct {
	id  fileID
	key string
	sum string
}

// covers reports whether p proves the version id of the file under key.
func (p *proof) covers(key string, id fileID) bool {
	return p != nil && p.key == key && p.id.exactly(id)
}

// Causes of a failed attempt, as counted in offload_failures_total and
// shown by status.
const (
	causeS3       = "s3"
	causeDynamoDB = "dynamodb"
	causeLocal    = "local"   // reading the file
	causeArchive  = "archive" // archiving or deleting it after it was proven
)

// remote reports whether the failure was S3's or DynamoDB's as a service
// (unreachable, timing out, 5xx, throttling): what the circuit breaker
// counts and the end of an outage ends. A request refused for this file
// alone (see fileFault) is the file's failure, as a local one is.
func (r result) remote() bool {
	return (r.cause == causeS3 || r.cause == causeDynamoDB) && !fileFault(r.err)
}

// refused reports whether S3 or DynamoDB refused the request for this file
// alone (see fileFault): the breaker counts it only when many different
// files are refused in a row (refusalsToTrip).
func (r result) refused() bool {
	return (r.cause == causeS3 || r.cause == causeDynamoDB) && fileFault(r.err)
}

// offloadFile takes one file through the life of an original, top to bottom:
// settle → upload → verify → record → archive. Every step is idempotent, so
// after a crash at any point, running it again on the same file finishes the
// job; and no step removes the local file before S3 has proved it holds the
// same bytes and the ledger has recorded them.
func (a *Agent) offloadFile(ctx context.Context, j job) (res result) {
	start, rel := time.Now(), j.rel
	res.rel = rel
	defer func() { res.elapsed = time.Since(start) }()
	fail := func(o outcome, err error) result {
		res.outcome, res.err = o, err
		return res
	}
	failed := func(cause string, err error) result {
		res.cause = cause
		return fail(outFailed, err)
	}

	key, err := a.cfg.Mapping.KeyForFile(rel)
	if err != nil {
		return fail(outRefused, err)
	}
	res.key = key
	f, id, err := openLocal(a.root, rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(outGone, nil)
	case errors.Is(err, errNotRegular):
		return fail(outSkipped, err)
	case err != nil:
		return failed(causeLocal, err)
	}
	defer f.Close()
	res.id = id

	// Settle: no writer has it open, and it is unchanged for the quiet
	// period or was published by a rename.
	writing, sure := openForWriting(f)
	if writing {
		return fail(outNotReady, fmt.Errorf("%s: %w", rel, errWriterHasIt))
	}
	if !a.settled(id, j, time.Now(), sure) {
		return fail(outNotReady, nil)
	}

	if a.cfg.DryRun {
		return a.dryRun(ctx, res, f)
	}

	p := j.proven
	if !p.covers(key, id) {
		if p, res = a.prove(ctx, res, f, id); p == nil {
			return res
		}
	} else {
		res.local = true
	}

	// Archive, delete or keep, and only the version that was proven: see
	// releaseLocal.
	if a.cfg.After != AfterKeep {
		err = a.releaseLocal(rel, f, id)
		switch {
		case errors.Is(err, errWriterHasIt), errors.Is(err, errChanged):
			return fail(outNotReady, err)
		case errors.Is(err, errArchiveTaken):
			return fail(outConflict, err)
		case err != nil:
			// Only the local step is left: the retry goes straight to it
			// if the file is still this version. Our own claim and
			// put-back changed its ctime, so the proof takes the version
			// as it is now, if nothing but the ctime changed.
			if now, serr := f.Stat(); serr == nil {
				if nowID, _ := idOf(now); nowID.sameVersion(id) {
					res.proven = &proof{id: nowID, key: p.key, sum: p.sum}
				}
			}
			return failed(causeArchive, fmt.Errorf("%s is in S3 and the ledger, but: %w", rel, err))
		}
	}
	res.outcome = outDone
	return res
}

// prove uploads the version id of the open file f, has S3 check it, and
// records it in the ledger: the steps that make the local file redundant.
// It returns the proof, or nil and the result of the attempt.
//
// The ledger records what S3 holds even if the file changed or vanished
// after S3 accepted it: an object in S3 is never left unrecorded. Only the
// local step depends on the file being unchanged.
func (a *Agent) prove(ctx context.Context, res result, f *os.File, id fileID) (*proof, result) {
	rel, key := res.rel, res.key
	fail := func(o outcome, err error) (*proof, result) {
		res.outcome, res.err = o, err
		return nil, res
	}
	failed := func(cause string, err error) (*proof, result) {
		res.cause = cause
		return fail(outFailed, err)
	}

	if a.mayBeErased(ctx, key) {
		if err := a.notErased(ctx, key); err != nil {
			return fail(outConflict, err)
		}
	}

	// Upload: one read pass. S3 checks the full-object CRC64NVME computed on
	// the way; If-None-Match: * means an existing object is never replaced.
	progress := a.track.begin(rel, id.size)
	defer a.track.end(progress)
	ctype := contentType(rel)
	sum, obj, err := a.store.put(ctx, upload{
		key: key, body: progress.reader(f), size: id.size, contentType: ctype, version: id,
		sent:         func(delta int64) { progress.sent.Add(delta) },
		beforeCommit: func() error { return stillSame(a.root, rel, f, id) },
	})

	// Verify: the upload response is the proof when S3 echoed our checksum;
	// after a 412 (a resumed run, or another host) a HEAD must agree.
	switch {
	case err == nil && obj.CRC64NVME == sum:
	case err == nil && obj.CRC64NVME != "":
		return fail(outConflict, fmt.Errorf("%s: S3 stored crc64nvme %s, the file read has %s: %w", key, obj.CRC64NVME, sum, offload.ErrChecksumMismatch))
	case err == nil || errors.Is(err, errObjectExists):
		if obj, err = a.store.head(ctx, key); err != nil {
			return failed(causeS3, err)
		}
		if obj.Size != id.size || obj.CRC64NVME != sum {
			return fail(outConflict, fmt.Errorf("%s: S3 holds %d bytes with crc64nvme %q, the local file has %d bytes with crc64nvme %s: %w",
				key, obj.Size, obj.CRC64NVME, id.size, sum, offload.ErrConflict))
		}
	case errors.Is(err, errChanged):
		return fail(outNotReady, err)
	case errors.Is(err, errRead):
		return failed(causeLocal, err)
	default:
		return failed(causeS3, err)
	}

	// Record: a conditional put; the same object version already recorded
	// is success. The proof is kept until the ledger has it, so it is
	// recorded whatever becomes of the file (see recordProven).
	cause, err := a.recordProven(ctx, offload.Record{
		Key: key, Size: id.size, CRC64NVME: sum, ETag: obj.ETag, VersionID: obj.VersionID,
		ContentType: ctype, Host: a.cfg.Host, Path: rel, UploadedAt: time.Now().UTC(), StorageClass: obj.StorageClass,
	})
	switch {
	case errors.Is(err, offload.ErrConflict):
		return fail(outConflict, err)
	case err != nil:
		return failed(cause, err)
	}
	return &proof{id: id, key: key, sum: sum}, res
}

// erasedLookTimeout bounds notErased's look: a consistent GetItem takes
// milliseconds, and one still waiting after this is a sick table, which
// must not hold every upload for a whole call timeout; the record decides
// then.
const erasedLookTimeout = 10 * time.Second

// notErased is errErased when key's ledger item is an erasure's tombstone,
// so that a file under an erased name is never uploaded; it is asked for
// the keys a.erased may hold (erasedKeys), not for every file. Erase left S3
// nothing under the key, so If-None-Match would let the bytes in (the
// erased original itself, from a host that kept it in its watch folder),
// unrecorded, for a resolver without the ledger to serve. A look that
// fails lets the upload go on, so uploads still go on while DynamoDB is
// down (the record then refuses the tombstone, and a re-run of erase
// removes the object). It reads only: an erasure marked after it is the
// record's, and erase's last listing's, to catch.
func (a *Agent) notErased(ctx context.Context, key string) error {
	cctx, cancel := context.WithTimeout(ctx, min(a.cfg.CallTimeout, erasedLookTimeout))
	defer cancel()
	rec, err := offload.GetRecord(cctx, a.ledgerClient, a.cfg.Table, key)
	switch {
	case err == nil && rec.Erased():
		return fmt.Errorf("ledger %s (erased at %s by %q): not uploaded: %w", key, rec.Erasure.At.Format(time.RFC3339), rec.Erasure.By, errErased)
	case err != nil && !errors.Is(err, offload.ErrNotFound):
		a.log.Debug("could not look for an erasure before the upload; the record decides", "key", key, "err", err)
	}
	return nil
}

// releaseLocal archives or deletes the local file, and only the version
// that was proven (read). A read lease is held from the last check through
// the claim: no writer had the file open when it was taken, and one that
// opens it meanwhile waits for us and breaks it, which the check after the
// claim sees; then the file goes back under its name, not ready. The check
// before the claim compares every field of the version, ctime included, so
// a same-size rewrite or a touch -r since the read is seen too.
func (a *Agent) releaseLocal(rel string, f *os.File, read fileID) error {
	l, err := holdLease(f)
	if err != nil {
		return fmt.Errorf("%s: %w: opened for writing after it was read", rel, err)
	}
	defer l.end()
	if err := stillSame(a.root, rel, f, read); err != nil {
		return err
	}
	return finishLocal(a.cfg, rel, read, a.dirs.later, func() error {
		if err := l.end(); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
}

// dryRun says what offloadFile would do with a settled file, with reads
// only: a HEAD of the key and, when an object is there, the local file's
// checksum to compare. The saying goes in res.err; the outcome is outDryRun.
func (a *Agent) dryRun(ctx context.Context, res result, f io.Reader) result {
	after := map[After]string{AfterArchive: "move it to the archive", AfterDelete: "delete it", AfterKeep: "keep it"}[a.cfg.After]
	obj, err := a.store.head(ctx, res.key)
	switch {
	case errors.Is(err, offload.ErrNotFound), errors.Is(err, errNotVisible):
		// A 403 is what AWS answers for a missing key without
		// s3:ListBucket (errNotVisible): the upload would go ahead, and
		// If-None-Match: * would refuse it if something were there.
		res.outcome, res.err = outDryRun, fmt.Errorf("would upload %d bytes to %s, record it in the ledger, then %s", res.id.size, res.key, after)
		return res
	case err != nil:
		res.outcome, res.err, res.cause = outFailed, err, causeS3
		return res
	}
	sum, err := readChecksum(f)
	if err != nil {
		res.outcome, res.err, res.cause = outFailed, err, causeLocal
		return res
	}
	if obj.Size == res.id.size && obj.CRC64NVME == sum {
		res.outcome, res.err = outDryRun, fmt.Errorf("%s already holds these bytes: would record it in the ledger (if missing), then %s", res.key, after)
		return res
	}
	res.outcome, res.err = outDryRun, fmt.Errorf("conflict: %s holds other bytes (%d bytes, crc64nvme %q; the file has %d bytes, crc64nvme %s): would leave the file in place",
		res.key, obj.Size, obj.CRC64NVME, res.id.size, sum)
	return res
}

// job is a file the scheduler judged settled: the version it saw and since
// when it has seen that version unchanged.
type job struct {
	rel   string
	seen  fileID
	since time.Time
	// published: that version appeared under its name by a rename (the
	// back-end wrote a temporary name, then renamed it).
	published bool
	// proven: an earlier attempt proved a version and only its local step
	// failed (see proof).
	proven *proof
}

// settled says whether the version id of a file is finished. noWriter is
// true when the kernel confirmed that no process has it open for writing.
//
// A file renamed into its name is finished when nothing still writes it:
// writing to a temporary name and renaming is how a writer publishes a
// whole file, so it needs no quiet period. It does need the kernel's word
// (a granted lease): without it, a writer still holding the file open could
// not be told apart.
//
// Otherwise the quiet rule applies. The kernel sets ctime on every write,
// rename and chmod, so a ctime older than the quiet period means nothing
// touched the file for that long; a file whose ctime is recent (or in the
// future, after a clock step) is settled when the scheduler has seen the same
// version for the quiet period. A writer that closes the file between
// chunks is only held back by this rule.
func (a *Agent) settled(id fileID, j job, now time.Time, noWriter bool) bool {
	if j.published && noWriter && id.sameVersion(j.seen) && !a.cfg.QuietForRenamed {
		return true
	}
	if now.Sub(id.ctime) >= a.cfg.Quiet {
		return true
	}
	return id.sameVersion(j.seen) && now.Sub(j.since) >= a.cfg.Quiet
}

// contentType is what the object is stored and later served with.
func contentType(rel string) string {
	if t := mime.TypeByExtension(path.Ext(rel)); t != "" {
		return t
	}
	return "application/octet-stream"
}
