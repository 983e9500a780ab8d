package soak

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// drain waits, with the faults off, until every original is in the archive
// and every injected conflict has been detected, or the drain time is up.
func (w *world) drain(versions []version, byName map[string][]int) {
	begin := time.Now()
	deadline := begin.Add(w.s.Drain)
	want := injectedConflicts(versions)
	for {
		w.watchAgent()
		pending := w.pending(byName)
		got := len(w.conflictsDetected())
		// Stray multipart uploads go with the agent's periodic sweep.
		if pending == 0 && got >= want && !w.uploadsInFlight() {
			fmt.Printf("soak: drained in %s\n", time.Since(begin).Round(time.Second))
			return
		}
		if time.Now().After(deadline) {
			fmt.Printf("soak: not drained after %s: %d names not offloaded, %d of %d conflicts detected, multipart uploads open: %v\n",
				w.s.Drain, pending, got, want, w.uploadsInFlight())
			return
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

func injectedConflicts(versions []version) int {
	n := 0
	for _, v := range versions {
		if v.Spec.Kind == writeReuse {
			n++
		}
	}
	return n
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
	duplicateLedger      int // more than one ledger item for a key
	ledgerWithoutObject  int
	objectsWithoutLedger int
	ledgerMismatch       int // a ledger item whose size or checksum is not the object's
	unexpectedKeys       int // objects or ledger items for names never written
	orphanUploads        int
	claimed              int // files stranded in the agent's claim folder
	conflictsInjected    int
	conflictsDetected    int
	urlChecks            int64
	urlFailures          int
	urlExcused           int
	urlExcusedDynalite   int           // overlapping a restart of dynalite, which the resolver reads the ledger from
	s3DownFor            time.Duration // how long MinIO was down, kill to ready
	agentCrashes         int
	// dynaliteRestarts counts crashes of the DynamoDB stand-in (it dies
	// when a client aborts a request mid-body, as the resets do), which
	// its supervisor restarted with its data: not the agent's fault, so
	// not a bad count.
	dynaliteRestarts int
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
		{"archived without an S3 copy", r.archivedNotInS3},
		{"duplicate ledger items", r.duplicateLedger}, {"ledger items without object", r.ledgerWithoutObject},
		{"objects without ledger item", r.objectsWithoutLedger}, {"ledger items that disagree with the object", r.ledgerMismatch},
		{"objects or ledger items for names never written", r.unexpectedKeys},
		{"orphaned multipart uploads", r.orphanUploads}, {"files stranded in the claim folder", r.claimed},
		{"conflicts injected minus conflicts detected", abs(r.conflictsInjected - r.conflictsDetected)},
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

func abs(n int) int { return max(n, -n) }

func (r *report) print(out io.Writer, s settings, took time.Duration) {
	fmt.Fprintf(out, "\nsoak result (seed %d, %s profile, %s)\n", s.Seed, *profileFlag, took.Round(time.Second))
	line := func(name string, v any) { fmt.Fprintf(out, "  %-52s %v\n", name, v) }
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
	line("lost", r.lost)
	line("corrupt (checksum mismatch, original vs S3/local)", r.corrupt)
	line("overwritten originals", r.overwritten)
	line("originals not offloaded after the drain", r.notOffloaded)
	line("archived without an S3 copy", r.archivedNotInS3)
	line("duplicate ledger items", r.duplicateLedger)
	line("ledger items without object", r.ledgerWithoutObject)
	line("objects without ledger item", r.objectsWithoutLedger)
	line("ledger items that disagree with the object", r.ledgerMismatch)
	line("objects/ledger items for names never written", r.unexpectedKeys)
	line("orphaned multipart uploads", r.orphanUploads)
	line("files stranded in the claim folder", r.claimed)
	line("conflicts injected", r.conflictsInjected)
	line("conflicts detected", r.conflictsDetected)
	line("URL requests checked by the poller", r.urlChecks)
	line("URL failures seen by the poller", r.urlFailures)
	line(fmt.Sprintf("  (excused: overlapping the %.1f s MinIO was down, +2 s)", r.s3DownFor.Seconds()), r.urlExcused)
	line("  (excused: overlapping a dynalite restart, +3 s)", r.urlExcusedDynalite)
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
	r := &report{conflictsInjected: injectedConflicts(versions), conflictsDetected: len(w.conflictsDetected())}
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
	for key, items := range ledger {
		if len(items) > 1 {
			r.duplicateLedger += len(items) - 1
		}
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
		}
		if _, ok := written[key]; !ok {
			r.unexpectedKeys++
		}
	}
	up, err := w.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(soakBucket)})
	if err != nil {
		w.t.Fatalf("list multipart uploads: %v", err)
	}
	r.orphanUploads = len(up.Uploads)
	for _, u := range up.Uploads {
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
				if items := ledger[key]; len(items) > 0 {
					rec = &items[0]
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
	lost, corrupt, overwritten, notOffloaded, archivedNotInS3, ledgerMismatch int
}

func (r *report) add(c nameCheck) {
	r.lost += c.lost
	r.corrupt += c.corrupt
	r.overwritten += c.overwritten
	r.notOffloaded += c.notOffloaded
	r.archivedNotInS3 += c.archivedNotInS3
	r.ledgerMismatch += c.ledgerMismatch
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
	if !inS3 {
		if inArchive {
			c.archivedNotInS3++
			w.t.Logf("ARCHIVED WITHOUT S3 COPY: %s", name)
		} else if !inWatch {
			c.notOffloaded++
		}
	}
	if inS3 && rec != nil && (rec.Size != s3Size || rec.CRC64NVME != s3CRC) {
		c.ledgerMismatch++
		w.t.Logf("LEDGER MISMATCH: %s: ledger %d bytes %s, object %d bytes %s", name, rec.Size, rec.CRC64NVME, s3Size, s3CRC)
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

// scanLedger reads every ledger item under the run's key prefix.
func (w *world) scanLedger(ctx context.Context, db *dynamodb.Client) (map[string][]offload.Record, error) {
	out := map[string][]offload.Record{}
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
			out[rec.Key] = append(out[rec.Key], rec)
		}
	}
	return out, nil
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
