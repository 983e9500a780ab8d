package soak

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
)

const conflictMsg = "conflict: left in place, never overwritten"

// drain waits, with the faults off, until every original is in the archive,
// every injected conflict has been detected, no multipart upload is open
// for any name written and every object has its ledger item, or until the
// drain time is up. It reports whether it drained; a timeout is a bad
// count. An object may be without its item only while its attempt runs:
// a proof whose ledger write failed is recorded after the agent's next
// rescan, so the drain waits for that too.
func (w *world) drain(versions []version, byName map[string][]int, limit time.Duration) bool {
	begin := time.Now()
	deadline := begin.Add(limit)
	injected := injectedConflicts(versions)
	keys := w.writtenKeys(byName)
	for {
		w.watchAgent()
		pending := w.pending(byName)
		missed := len(setMinus(injected, w.conflictsDetected()))
		// Stray multipart uploads go with the agent's periodic sweep. The
		// listing by key costs one request a key, so it waits for the rest.
		open := -1
		if pending == 0 && missed == 0 && len(w.cachedUploads()) == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			us, err := w.openUploads(ctx, keys)
			cancel()
			if err == nil {
				open = len(us)
			}
		}
		unrecorded := -1
		if open == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if keys, err := w.objectsWithoutItem(ctx); err == nil {
				unrecorded = len(keys)
			}
			cancel()
		}
		if unrecorded == 0 {
			fmt.Printf("soak: drained in %s\n", time.Since(begin).Round(time.Second))
			return true
		}
		if time.Now().After(deadline) {
			fmt.Printf("soak: not drained after %s: %d names not offloaded, %d of %d conflicts not detected, multipart uploads open: %d, objects without a ledger item: %d (-1: not listed)\n",
				limit, pending, missed, len(injected), open, unrecorded)
			return false
		}
		time.Sleep(time.Second)
	}
}

// pending counts names whose original is not in the archive yet, or whose
// only version is still in the watch folder.
func (w *world) pending(byName map[string][]int) int {
	n := 0
	for name, vs := range byName {
		_, archErr := os.Lstat(filepath.Join(w.archive, filepath.FromSlash(name)))
		_, watchErr := os.Lstat(filepath.Join(w.watch, filepath.FromSlash(name)))
		if archErr != nil || (len(vs) == 1 && watchErr == nil) {
			n++
		}
	}
	return n
}

// injectedConflicts is the set of names the writer reused with new bytes.
func injectedConflicts(versions []version) map[string]bool {
	names := map[string]bool{}
	for _, v := range versions {
		if v.Spec.Kind == writeReuse {
			names[v.Rel] = true
		}
	}
	return names
}

// conflictsDetected is the set of files the agent logged a conflict for.
func (w *world) conflictsDetected() map[string]bool {
	files := map[string]bool{}
	for _, line := range w.agentLogLines(conflictMsg) {
		if _, rest, ok := strings.Cut(line, `"file":"`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok {
				files[name] = true
			}
		}
	}
	return files
}

// setMinus returns the names in a but not in b, sorted.
func setMinus(a, b map[string]bool) []string {
	var out []string
	for n := range a {
		if !b[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// report is the soak's result: what happened and every bad count.
type report struct {
	filesWritten int
	bytesWritten int64
	faults       map[faultKind]int

	lost                 int // a version whose bytes are nowhere: not in S3, the archive or the watch folder
	corrupt              int // S3 or a local copy holds bytes that are no version of the name
	overwritten          int // S3 or the archive holds a later version where the original belongs
	notOffloaded         int // an original still only local after the drain
	archivedNotInS3      int // in the archive without the S3 copy: the one step that must never happen
	onlyInS3             int // the original in S3, but neither in the archive nor still in the watch folder
	ledgerWithoutObject  int
	objectsWithoutLedger int
	ledgerMismatch       int // a ledger item whose size or checksum is not the object's
	ledgerNotWritten     int // a ledger item whose checksum, size, path or host is not the original the writer wrote
	unexpectedKeys       int // objects or ledger items for names never written
	orphanUploads        int // open multipart uploads, listed by key for every name written
	claimed              int // files stranded in the agent's claim folder
	conflictsInjected    int
	conflictsDetected    int
	conflictsMissed      int   // names reused with new bytes that the agent logged no conflict for
	conflictsSpurious    int   // names the agent logged a conflict for that were never reused
	drainTimedOut        int   // 1 when the drain ran out of time
	uploadsStruck        int   // multipart uploads open when MinIO was killed
	killsStruckNone      int   // MinIO kills with no multipart upload open
	killsMidUpload       int   // agent kills with a multipart upload open
	heldAtKills          int64 // bytes of parts S3 held for the uploads open at agent kills
	resumedBytes         int64 // bytes the agent found held and did not send again, after kills and failed attempts
	resentAfterKills     int64 // bytes of parts held at a kill that the next run sent again
	urlChecks            int64
	urlProbes            int64 // of urlChecks, the probes around transitions
	urlFailures          int
	urlExcusedS3         int
	urlExcusedDynalite   int           // a 503 from the resolver during a restart of dynalite, which it reads the ledger from
	s3DownFor            time.Duration // how long MinIO was down, kill to ready
	agentCrashes         int
	// dynaliteRestarts counts crashes of the DynamoDB stand-in (it dies
	// when a client aborts a request mid-body, as the resets do), which
	// its supervisor restarted with its data: not the agent's fault, so
	// not a bad count.
	dynaliteRestarts int
	// phantomUploads are uploads MinIO lists but answers NoSuchUpload
	// for: not orphans (world.phantom).
	phantomUploads int
}

type count struct {
	name string
	n    int
}

// bad lists the counts that must be zero.
func (r *report) bad() []count {
	all := []count{
		{"lost", r.lost}, {"corrupt (checksum mismatch between original and S3 or a local copy)", r.corrupt},
		{"overwritten originals", r.overwritten}, {"originals not offloaded after the drain", r.notOffloaded},
		{"archived without an S3 copy", r.archivedNotInS3}, {"in S3 only: neither archived nor in the watch folder", r.onlyInS3},
		{"ledger items without object", r.ledgerWithoutObject},
		{"objects without ledger item", r.objectsWithoutLedger}, {"ledger items that disagree with the object", r.ledgerMismatch},
		{"ledger items that disagree with what was written", r.ledgerNotWritten},
		{"objects or ledger items for names never written", r.unexpectedKeys},
		{"orphaned multipart uploads", r.orphanUploads}, {"files stranded in the claim folder", r.claimed},
		{"conflicts injected but not detected", r.conflictsMissed}, {"conflicts detected but never injected", r.conflictsSpurious},
		{"drain timed out", r.drainTimedOut},
		{"URL failures seen by the poller", r.urlFailures}, {"agent crashes (exits not caused by the soak)", r.agentCrashes},
	}
	var out []count
	for _, c := range all {
		if c.n != 0 {
			out = append(out, c)
		}
	}
	return out
}

func (r *report) print(out io.Writer, s settings, took time.Duration) {
	fmt.Fprintf(out, "\nsoak result (seed %d, %s profile, %s)\n", s.Seed, *profileFlag, took.Round(time.Second))
	if len(s.Break) > 0 {
		fmt.Fprintf(out, "  BROKEN ON PURPOSE (-soak.break %s): the run must fail\n", *breakFlag)
	}
	line := func(name string, v any) { fmt.Fprintf(out, "  %-54s %v\n", name, v) }
	line("files written", r.filesWritten)
	line("bytes written", fmt.Sprintf("%d (%.1f GiB)", r.bytesWritten, float64(r.bytesWritten)/(1<<30)))
	total := 0
	for _, k := range faultKinds {
		total += r.faults[k]
	}
	line("faults injected", total)
	for _, k := range faultKinds {
		line("  "+string(k), r.faults[k])
	}
	line("  multipart uploads open when MinIO was killed", r.uploadsStruck)
	line("  MinIO kills that struck no open upload", r.killsStruckNone)
	line("  agent kills with a multipart upload open", r.killsMidUpload)
	line("  bytes of parts S3 held at those kills", r.heldAtKills)
	line("  bytes re-sent after restarts (held, not resumed)", r.resentAfterKills)
	line("  bytes resumed, not sent again (kills and failures)", r.resumedBytes)
	line("lost", r.lost)
	line("corrupt (checksum mismatch, original vs S3/local)", r.corrupt)
	line("overwritten originals", r.overwritten)
	line("originals not offloaded after the drain", r.notOffloaded)
	line("archived without an S3 copy", r.archivedNotInS3)
	line("in S3 only: neither archived nor in the watch folder", r.onlyInS3)
	line("ledger items without object", r.ledgerWithoutObject)
	line("objects without ledger item", r.objectsWithoutLedger)
	line("ledger items that disagree with the object", r.ledgerMismatch)
	line("ledger items that disagree with what was written", r.ledgerNotWritten)
	line("objects/ledger items for names never written", r.unexpectedKeys)
	line("orphaned multipart uploads (listed by key)", r.orphanUploads)
	line("  (excused: listed by MinIO, NoSuchUpload to ListParts)", r.phantomUploads)
	line("files stranded in the claim folder", r.claimed)
	line("conflicts injected", r.conflictsInjected)
	line("conflicts detected", r.conflictsDetected)
	line("conflicts injected but not detected (by name)", r.conflictsMissed)
	line("conflicts detected but never injected (by name)", r.conflictsSpurious)
	line("drain timed out", r.drainTimedOut)
	line("URL requests checked by the poller", r.urlChecks)
	line("  of which probes around a file's transition", r.urlProbes)
	line("URL failures seen by the poller", r.urlFailures)
	line(fmt.Sprintf("  (excused: MinIO unreachable, %.1f s down +2 s)", r.s3DownFor.Seconds()), r.urlExcusedS3)
	line("  (excused: resolver 503, dynalite restart +3 s)", r.urlExcusedDynalite)
	line("agent crashes", r.agentCrashes)
	line("dynalite restarts (the stand-in's crashes)", r.dynaliteRestarts)
	if len(r.bad()) == 0 {
		fmt.Fprintln(out, "  all bad counts are 0")
	}
}

// check compares the end state with every version the writer wrote. The
// agent is stopped; S3, the ledger and both folders are read directly.
func (w *world) check(versions []version, byName map[string][]int) *report {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	injected, detected := injectedConflicts(versions), w.conflictsDetected()
	r := &report{conflictsInjected: len(injected), conflictsDetected: len(detected)}
	for _, name := range setMinus(injected, detected) {
		r.conflictsMissed++
		w.t.Logf("CONFLICT NOT DETECTED: %s was reused with new bytes", name)
	}
	for _, name := range setMinus(detected, injected) {
		r.conflictsSpurious++
		w.t.Logf("CONFLICT NEVER INJECTED: the agent logged a conflict for %s", name)
	}
	db := w.st.DynamoDB(w.t)

	ledger, err := w.scanLedger(ctx, db)
	if err != nil {
		w.t.Fatalf("scan the ledger: %v", err)
	}
	objects, err := w.listObjects(ctx)
	if err != nil {
		w.t.Fatalf("list the objects: %v", err)
	}
	written, keyOf := map[string]string{}, map[string]string{} // key -> name, name -> key
	for name := range byName {
		key, err := w.mapping.KeyForFile(name)
		if err != nil {
			w.t.Errorf("no key for written name %q: %v", name, err)
			continue
		}
		written[key], keyOf[name] = name, key
	}
	for key := range ledger {
		if _, ok := objects[key]; !ok {
			r.ledgerWithoutObject++
		}
		if _, ok := written[key]; !ok {
			r.unexpectedKeys++
		}
	}
	for key := range objects {
		if _, ok := ledger[key]; !ok {
			r.objectsWithoutLedger++
			w.t.Logf("OBJECT WITHOUT LEDGER ITEM: %s", key)
		}
		if _, ok := written[key]; !ok {
			r.unexpectedKeys++
		}
	}
	up, err := w.openUploads(ctx, w.writtenKeys(byName))
	if err != nil {
		w.t.Fatalf("list multipart uploads: %v", err)
	}
	r.orphanUploads = len(up)
	w.phantomsMu.Lock()
	r.phantomUploads = len(w.phantoms)
	w.phantomsMu.Unlock()
	for _, u := range up {
		w.t.Logf("ORPHANED UPLOAD: %s, initiated %s (%s after the start)", aws.ToString(u.Key),
			aws.ToTime(u.Initiated).Format(time.RFC3339Nano), aws.ToTime(u.Initiated).Sub(w.start).Round(time.Millisecond))
	}

	filepath.WalkDir(filepath.Join(w.watch, ".offload-claim"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			r.claimed++
			w.t.Logf("STRANDED IN THE CLAIM FOLDER: %s", p)
		}
		return nil
	})

	// Every name's three places, four names at a time.
	var mu sync.Mutex
	names := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				key := keyOf[name]
				var vs []version
				for _, i := range byName[name] {
					vs = append(vs, versions[i])
				}
				var rec *offload.Record
				if item, ok := ledger[key]; ok {
					rec = &item
				}
				c := w.checkName(ctx, name, key, vs, rec)
				mu.Lock()
				r.add(c)
				mu.Unlock()
			}
		}()
	}
	for name := range byName {
		names <- name
	}
	close(names)
	wg.Wait()
	return r
}

// nameCheck is what checkName found for one name.
type nameCheck struct {
	lost, corrupt, overwritten, notOffloaded, archivedNotInS3, onlyInS3, ledgerMismatch, ledgerNotWritten int
}

func (r *report) add(c nameCheck) {
	r.lost += c.lost
	r.corrupt += c.corrupt
	r.overwritten += c.overwritten
	r.notOffloaded += c.notOffloaded
	r.archivedNotInS3 += c.archivedNotInS3
	r.onlyInS3 += c.onlyInS3
	r.ledgerMismatch += c.ledgerMismatch
	r.ledgerNotWritten += c.ledgerNotWritten
}

// checkName reads the name's bytes in S3, in the archive and in the watch
// folder, and compares them with its versions (vs[0] is the original).
func (w *world) checkName(ctx context.Context, name, key string, vs []version, rec *offload.Record) nameCheck {
	var c nameCheck
	s3Sum, s3CRC, s3Size, inS3 := w.objectSum(ctx, key)
	archSum, inArchive := fileSum(filepath.Join(w.archive, filepath.FromSlash(name)))
	watchSum, inWatch := fileSum(filepath.Join(w.watch, filepath.FromSlash(name)))

	for _, v := range vs {
		if !(inS3 && s3Sum == v.Sum) && !(inArchive && archSum == v.Sum) && !(inWatch && watchSum == v.Sum) {
			c.lost++
			w.t.Logf("LOST: %s version %d (%s, %d bytes)", name, v.Spec.Index, v.Spec.Kind, v.Spec.Size)
		}
	}
	// Where the original belongs: S3 and the archive.
	for _, place := range []struct {
		where string
		ok    bool
		sum   [32]byte
	}{{"S3", inS3, s3Sum}, {"archive", inArchive, archSum}} {
		switch {
		case !place.ok || place.sum == vs[0].Sum:
		case indexOf(vs, place.sum) > 0:
			c.overwritten++
			w.t.Logf("OVERWRITTEN: %s in %s holds a later version", name, place.where)
		default:
			c.corrupt++
			w.t.Logf("CORRUPT: %s in %s holds bytes that are no version of it", name, place.where)
		}
	}
	if inWatch {
		switch i := indexOf(vs, watchSum); {
		case i < 0:
			c.corrupt++
			w.t.Logf("CORRUPT: %s in the watch folder holds bytes that are no version of it", name)
		case i == 0:
			c.notOffloaded++
			w.t.Logf("NOT OFFLOADED: %s is still in the watch folder", name)
		}
	}
	switch {
	case !inS3 && inArchive:
		c.archivedNotInS3++
		w.t.Logf("ARCHIVED WITHOUT S3 COPY: %s", name)
	case !inS3 && !inWatch:
		c.notOffloaded++
	case inS3 && !inArchive && !(inWatch && watchSum == vs[0].Sum):
		// The archive is the local copy of every offloaded original.
		c.onlyInS3++
		w.t.Logf("IN S3 ONLY: %s is neither in the archive nor in the watch folder", name)
	}
	if inS3 && rec != nil && (rec.Size != s3Size || rec.CRC64NVME != s3CRC) {
		c.ledgerMismatch++
		w.t.Logf("LEDGER MISMATCH: %s: ledger %d bytes %s, object %d bytes %s", name, rec.Size, rec.CRC64NVME, s3Size, s3CRC)
	}
	// The ledger must describe the original as the writer wrote it, where
	// the writer put it, on this host.
	if orig := vs[0]; rec != nil && (rec.Size != orig.Spec.Size || rec.CRC64NVME != orig.CRC64NVME || rec.Path != name || rec.Host != agentHost) {
		c.ledgerNotWritten++
		w.t.Logf("LEDGER NOT WHAT WAS WRITTEN: %s: ledger %d bytes %s, path %q, host %q; written %d bytes %s, path %q, host %q",
			name, rec.Size, rec.CRC64NVME, rec.Path, rec.Host, orig.Spec.Size, orig.CRC64NVME, name, agentHost)
	}
	return c
}

func indexOf(vs []version, sum [32]byte) int {
	for i, v := range vs {
		if v.Sum == sum {
			return i
		}
	}
	return -1
}

// objectSum downloads the object and returns its SHA-256, CRC64NVME and size.
func (w *world) objectSum(ctx context.Context, key string) (sum [32]byte, crc string, size int64, ok bool) {
	out, err := w.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(soakBucket), Key: aws.String(key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		if !errors.As(err, &nsk) {
			w.t.Errorf("get %s: %v", key, err)
		}
		return sum, "", 0, false
	}
	defer out.Body.Close()
	h, c := sha256.New(), offload.NewCRC64NVME()
	size, err = io.Copy(io.MultiWriter(h, c), out.Body)
	if err != nil {
		w.t.Errorf("read %s: %v", key, err)
		return sum, "", 0, false
	}
	return [32]byte(h.Sum(nil)), offload.EncodeChecksum(c.Sum64()), size, true
}

func fileSum(path string) ([32]byte, bool) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, false
	}
	return [32]byte(h.Sum(nil)), true
}

// scanLedger reads every ledger item under the run's key prefix. The key
// is the table's only key, so there is one item a key.
func (w *world) scanLedger(ctx context.Context, db *dynamodb.Client) (map[string]offload.Record, error) {
	out := map[string]offload.Record{}
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{
		TableName:                 aws.String(w.st.Table),
		FilterExpression:          aws.String("begins_with(#pk, :prefix)"),
		ExpressionAttributeNames:  map[string]string{"#pk": offload.LedgerPartitionKey},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{":prefix": &dbtypes.AttributeValueMemberS{Value: w.mapping.KeyPrefix}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, item := range page.Items {
			rec, err := offload.RecordFromItem(item)
			if err != nil {
				return nil, err
			}
			out[rec.Key] = rec
		}
	}
	return out, nil
}

// objectsWithoutItem lists the objects under the run's key prefix that
// have no ledger item.
func (w *world) objectsWithoutItem(ctx context.Context) ([]string, error) {
	ledger, err := w.scanLedger(ctx, w.st.DynamoDB(w.t))
	if err != nil {
		return nil, err
	}
	objects, err := w.listObjects(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for key := range objects {
		if _, ok := ledger[key]; !ok {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// listObjects lists every object under the run's key prefix.
func (w *world) listObjects(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	p := s3.NewListObjectsV2Paginator(w.s3, &s3.ListObjectsV2Input{Bucket: aws.String(soakBucket), Prefix: aws.String(w.mapping.KeyPrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = true
		}
	}
	return out, nil
}
