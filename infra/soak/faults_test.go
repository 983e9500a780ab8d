package soak

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// action is the start or the end of one scheduled fault.
type action struct {
	at   time.Duration
	f    fault
	end  bool
	name string // the Toxiproxy toxic's name
}

// inject runs the fault schedule from w.start, on the test's goroutine.
func (w *world) inject(faults []fault) {
	var acts []action
	for i, f := range faults {
		name := fmt.Sprintf("soak-%d", i)
		acts = append(acts, action{at: f.At, f: f, name: name})
		if f.For > 0 {
			acts = append(acts, action{at: f.At + f.For, f: f, end: true, name: name})
		}
	}
	if w.s.Break[breakFlash] {
		// Not faults: the run is meant to fail (see breakFlash).
		for _, at := range []float64{0.2, 0.6, 0.8} {
			acts = append(acts, action{at: time.Duration(at * float64(w.s.Duration)), f: fault{Kind: faultFlash}})
		}
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	for _, a := range acts {
		w.sleepUntil(w.start.Add(a.at))
		w.apply(a)
	}
}

func (w *world) apply(a action) {
	if !a.end && a.f.Kind != faultFlash {
		w.injected[a.f.Kind]++
	}
	s3, db := w.s3Proxy, w.dbProxy
	toxic := func(p interface {
		AddToxic(string, string, string, map[string]any)
		RemoveToxic(string)
	}, typ, stream string, attrs map[string]any) {
		if a.end {
			p.RemoveToxic(a.name)
		} else {
			p.AddToxic(a.name, typ, stream, attrs)
		}
	}
	// A reset 0.5 s into each connection cuts uploads mid-body.
	reset := map[string]any{"timeout": 500}
	latency := map[string]any{"latency": 250, "jitter": 250}
	// timeout 0: the data stops and the connection is never closed, until
	// the agent's own call timeout gives up on it.
	blackhole := map[string]any{"timeout": 0}
	switch a.f.Kind {
	case faultKill:
		// Kill it in the middle of a large file's upload, once S3 holds
		// a part of it, if that comes within a few seconds: what resuming
		// is for.
		for wait := time.Now().Add(killWait); time.Now().Before(wait) && !w.partHeld(); {
			time.Sleep(100 * time.Millisecond)
		}
		w.agent.Kill()
		w.measureHeldAtKill()
		time.Sleep(time.Duration(w.rng.Int64N(int64(1500 * time.Millisecond))))
		w.startAgent()
	case faultS3Outage:
		s3.SetEnabled(a.end)
	case faultDBOutage:
		db.SetEnabled(a.end)
	case faultS3Reset:
		toxic(s3, "reset_peer", "upstream", reset)
	case faultDBReset:
		toxic(db, "reset_peer", "upstream", reset)
	case faultS3Latency:
		toxic(s3, "latency", "downstream", latency)
	case faultDBLatency:
		toxic(db, "latency", "downstream", latency)
	case faultS3Timeout:
		toxic(s3, "timeout", "upstream", blackhole)
	case faultDBTimeout:
		toxic(db, "timeout", "upstream", blackhole)
	case faultMinIORestart:
		w.restartMinIO()
	case faultFlash:
		w.flash()
	case faultArchiveLocked:
		if a.end {
			w.unlockArchive()
		} else {
			w.lockArchive()
		}
	}
	verb := "start"
	if a.end {
		verb = "end"
	} else if a.f.For == 0 {
		verb = "at"
	}
	w.t.Logf("%7s %-5s %s", time.Since(w.start).Round(100*time.Millisecond), verb, a.f.Kind)
}

// minioWait is how long the MinIO kill waits for a multipart upload to be
// open: about one file in five is large enough for parts, and one arrives
// every few seconds, so a run where none was open is rare and says so.
const minioWait = 30 * time.Second

// minioKill is what one MinIO kill struck: the multipart uploads open a
// moment before it.
type minioKill struct {
	open []s3types.MultipartUpload
}

// restartMinIO kills MinIO mid-upload and starts it again. It waits up to
// minioWait for a multipart upload to be open, records the ones that were,
// and after the restart logs whether each is still on disk (listed by its
// key) and whether the unprefixed listing, MinIO's cache, still shows it:
// it should not (TestMinIOListsOpenUploadsByKeyOnly), which is why every
// listing the soak trusts is by key.
func (w *world) restartMinIO() {
	// The cache lists every upload since this MinIO started, which is good
	// enough before its first restart.
	var open []s3types.MultipartUpload
	for deadline := time.Now().Add(minioWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if open = w.cachedUploads(); len(open) > 0 {
			break
		}
	}
	down := time.Now()
	w.minio.Kill()
	if w.s.Break[breakFlash] {
		w.flash() // a 404 while MinIO is down must not be excused
	}
	time.Sleep(time.Until(down.Add(2 * time.Second)))
	w.minio.Restart()
	w.s3Down = append(w.s3Down, [2]time.Time{down, time.Now()})
	w.minioKills = append(w.minioKills, minioKill{open: open})
	if len(open) == 0 {
		w.t.Logf("MinIO killed with no multipart upload open (none within %s): this run's MinIO kill tested no upload", minioWait)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cached := map[string]bool{}
	for _, u := range w.cachedUploads() {
		cached[aws.ToString(u.UploadId)] = true
	}
	for _, u := range open {
		key, id := aws.ToString(u.Key), aws.ToString(u.UploadId)
		onDisk := false
		byKey, err := w.listUploads(ctx, key, true)
		for _, b := range byKey {
			onDisk = onDisk || aws.ToString(b.UploadId) == id
		}
		w.t.Logf("MinIO killed with upload %s of %s open (initiated %s before); after the restart: listed by key %v (err %v), in the unprefixed listing %v",
			id, key, down.Sub(aws.ToTime(u.Initiated)).Round(time.Millisecond), onDisk, err, cached[id])
	}
}

// clearFaults makes sure nothing is left on: both proxies on, the archive
// writable. (The schedule already ended every fault; this is the guard.)
func (w *world) clearFaults() {
	w.s3Proxy.SetEnabled(true)
	w.dbProxy.SetEnabled(true)
	w.unlockArchive()
}
