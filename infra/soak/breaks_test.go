package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// The breakages of -soak.break (see breakage): each one makes the outcome a
// check guards wrong, once, so a run shows that the check fires.

// flashName is the file breakFlash takes away for a moment. The agent
// ignores *.tmp, so it is never offloaded and has no ledger item: while it
// is away, the resolver answers 404, as it would for a file archived before
// its ledger item could be read.
const flashName = "flash/IMG_flash.jpg.tmp"

// flashFor is how long the flash file is away: a window the poller's full
// passes, which come by each URL every few minutes in a full soak, would
// almost never see. It is longer than a second because lighttpd's stat
// cache reuses a stat, and the file it has open, until the next second, and
// so keeps serving a file that left for less.
const flashFor = 1200 * time.Millisecond

func (w *world) makeFlashFile() {
	data := []byte("a file that leaves the watch folder for a moment, with no ledger item")
	p := filepath.Join(w.watch, filepath.FromSlash(flashName))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	w.poller.Add(w.urlFor(flashName), data)
}

// flash takes the flash file out of the watch folder for flashFor and puts
// it back. Its probes follow it around the moment it leaves, as for any
// file.
func (w *world) flash() {
	p := filepath.Join(w.watch, filepath.FromSlash(flashName))
	away := filepath.Join(w.hold, "flash")
	w.transitions.follow(flashName, w.urlFor(flashName))
	time.Sleep(2 * lookEvery) // seen in the watch folder first
	if err := os.Rename(p, away); err != nil {
		w.t.Errorf("flash: %v", err)
		return
	}
	start := time.Now()
	time.Sleep(flashFor)
	if err := os.Rename(away, p); err != nil {
		w.t.Errorf("flash: %v", err)
	}
	w.flashes = append(w.flashes, [2]time.Time{start, time.Now()})
}

// flashReport says, for each flash, what the probes and the full passes
// saw of it, and whether it fell in MinIO's down window (where it must
// still count: a 404 is not MinIO's doing).
func (w *world) flashReport(failures []stacktest.PollFailure) {
	u := w.urlFor(flashName)
	for _, fl := range w.flashes {
		probes, passes := 0, 0
		for _, f := range failures {
			if f.URL == u && f.End.After(fl[0]) && f.At.Before(fl[1].Add(time.Second)) {
				if f.Probe {
					probes++
				} else {
					passes++
				}
			}
		}
		w.t.Logf("-soak.break %s: %s away %s to %s (%s); MinIO down then: %v; failures seen by probes %d, by full passes %d",
			breakFlash, flashName, fl[0].Sub(w.start).Round(time.Millisecond), fl[1].Sub(w.start).Round(time.Millisecond),
			fl[1].Sub(fl[0]).Round(time.Millisecond), w.duringS3Down(fl[0], fl[1]), probes, passes)
	}
}

// offloadedNames returns names written once whose original is archived,
// sorted, for the breakages to pick from.
func (w *world) offloadedNames(byName map[string][]int) []string {
	var names []string
	for name, vs := range byName {
		if _, err := os.Lstat(filepath.Join(w.archive, filepath.FromSlash(name))); err == nil && len(vs) == 1 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) < 8 {
		w.t.Fatalf("-soak.break needs 8 offloaded names; %d are", len(names))
	}
	return names
}

// breakDrain locks the archive for the drain and puts one archived original
// back in the watch folder: the agent cannot archive it again, so the drain
// times out. It returns the drain's time limit, shortened.
func (w *world) breakDrain(versions []version, byName map[string][]int) time.Duration {
	name := w.offloadedNames(byName)[0]
	from, away := filepath.Join(w.archive, filepath.FromSlash(name)), filepath.Join(w.hold, "drain")
	// Through a folder outside both, so the agent cannot archive it before
	// the lock.
	if err := os.Rename(from, away); err != nil {
		w.t.Fatal(err)
	}
	w.lockArchive()
	if err := os.Rename(away, filepath.Join(w.watch, filepath.FromSlash(name))); err != nil {
		w.t.Fatal(err)
	}
	w.t.Logf("-soak.break %s: the archive is locked through the drain and %s is back in the watch folder", breakDrain, name)
	return 20 * time.Second
}

// breakEnd applies the breakages of the end state, with the agent stopped.
func (w *world) breakEnd(versions []version, byName map[string][]int) {
	if !(w.s.Break[breakLedger] || w.s.Break[breakS3Only] || w.s.Break[breakOrphan] || w.s.Break[breakConflict]) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names := w.offloadedNames(byName)[1:] // [0] is breakDrain's
	key := func(name string) string { k, _ := w.mapping.KeyForFile(name); return k }
	if w.s.Break[breakLedger] {
		db := w.st.DynamoDB(w.t)
		for i, wrong := range []func(*offload.Record){
			func(r *offload.Record) { r.CRC64NVME = offload.EncodeChecksum(1) },
			func(r *offload.Record) { r.Size++ },
			func(r *offload.Record) { r.Path = names[0] },
			func(r *offload.Record) { r.Host = "elsewhere" },
		} {
			rec, err := offload.GetRecord(ctx, db, w.st.Table, key(names[i]))
			if err != nil {
				w.t.Fatal(err)
			}
			wrong(&rec)
			if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(w.st.Table), Item: rec.Item()}); err != nil {
				w.t.Fatal(err)
			}
			w.t.Logf("-soak.break %s: the ledger item of %s is now %+v", breakLedger, names[i], rec)
		}
	}
	if w.s.Break[breakS3Only] {
		if err := os.Remove(filepath.Join(w.archive, filepath.FromSlash(names[4]))); err != nil {
			w.t.Fatal(err)
		}
		w.t.Logf("-soak.break %s: %s deleted from the archive; its object stays", breakS3Only, names[4])
	}
	if w.s.Break[breakOrphan] {
		// An upload for an offloaded key, forgotten by MinIO's cache on a
		// restart: the unprefixed listing no longer shows it.
		out, err := w.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(soakBucket), Key: aws.String(key(names[5]))})
		if err != nil {
			w.t.Fatal(err)
		}
		w.minio.Kill()
		w.minio.Restart()
		w.t.Logf("-soak.break %s: upload %s of %s opened, then MinIO restarted; the unprefixed listing now shows %d uploads",
			breakOrphan, aws.ToString(out.UploadId), names[5], len(w.cachedUploads()))
	}
	if w.s.Break[breakConflict] {
		// The same number of conflicts, under another name.
		b, err := os.ReadFile(w.agentLog)
		if err != nil {
			w.t.Fatal(err)
		}
		injected := setMinus(injectedConflicts(versions), nil)
		if len(injected) == 0 {
			w.t.Fatalf("-soak.break %s: no conflict was injected", breakConflict)
		}
		from, to := fmt.Sprintf(`"file":%q`, injected[0]), fmt.Sprintf(`"file":%q`, names[6])
		if !strings.Contains(string(b), from) {
			w.t.Fatalf("-soak.break %s: the agent's log has no %s", breakConflict, from)
		}
		if err := os.WriteFile(w.agentLog, []byte(strings.ReplaceAll(string(b), from, to)), 0o644); err != nil {
			w.t.Fatal(err)
		}
		w.t.Logf("-soak.break %s: the agent's log names %s where it named %s", breakConflict, names[6], injected[0])
	}
}
