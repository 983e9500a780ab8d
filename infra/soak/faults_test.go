package soak

import (
	"fmt"
	"sort"
	"time"
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
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	for _, a := range acts {
		w.sleepUntil(w.start.Add(a.at))
		w.apply(a)
	}
}

func (w *world) apply(a action) {
	if !a.end {
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
		w.agent.Kill()
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
		// Mid-upload: wait (a little) for a multipart upload to be open.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !w.uploadsInFlight(); {
			time.Sleep(100 * time.Millisecond)
		}
		down := time.Now()
		w.minio.Kill()
		time.Sleep(2 * time.Second)
		w.minio.Restart()
		w.s3Down = append(w.s3Down, [2]time.Time{down, time.Now()})
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

// clearFaults makes sure nothing is left on: both proxies on, the archive
// writable. (The schedule already ended every fault; this is the guard.)
func (w *world) clearFaults() {
	w.s3Proxy.SetEnabled(true)
	w.dbProxy.SetEnabled(true)
	w.unlockArchive()
}
