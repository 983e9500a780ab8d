package soak

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// The probes' schedule. A file is looked for in the watch folder every
// lookEvery; while it is there it is probed every localEvery (the requests
// just before it leaves), and once it has gone every leftEvery for
// leftDense, then every leftSparse until leftFor (the requests just after).
// probeRate caps them all: a probe after the file left costs a ledger read
// in dynalite, which the agent needs too, and when the breaker closes the
// agent archives hundreds of files in a few seconds (a full soak at 150 a
// second slowed dynalite past the resolver's 2 s look-up). Files that left
// come first, the least probed first, so in such a burst each gets its
// first probes at once.
const (
	lookEvery  = 20 * time.Millisecond
	localEvery = 100 * time.Millisecond
	leftEvery  = 50 * time.Millisecond
	leftDense  = 500 * time.Millisecond
	leftSparse = 500 * time.Millisecond
	leftFor    = 3 * time.Second
	probeRate  = 60 // a second
	probers    = 4
)

// transitions probes each published file densely around the moment it
// leaves the watch folder, when lighttpd stops serving it from disk and the
// resolver must find its ledger item and S3 its object. The poller's full
// passes come by each URL about twice in a full soak, so a short wrong
// window there (a file archived before its ledger item can be read) would
// almost never be requested; the probes ask within milliseconds of it. A
// reused name is published before its rename, so its probes also cover the
// moment the new bytes appear on disk.
type transitions struct {
	poller *stacktest.Poller
	watch  string
	mu     sync.Mutex
	files  map[string]*watched // by name
	queue  chan string         // URLs to probe
	stop   context.CancelFunc
	done   sync.WaitGroup
}

type watched struct {
	url    string
	left   time.Time // when it was first seen gone; zero while in the watch folder
	next   time.Time // when it is due for a probe
	probes int       // since it left
}

func newTransitions(p *stacktest.Poller, watch string) *transitions {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &transitions{poller: p, watch: watch, files: map[string]*watched{}, queue: make(chan string, probers), stop: cancel}
	lim := rate.NewLimiter(probeRate, probers)
	for range probers {
		tr.done.Add(1)
		go func() {
			defer tr.done.Done()
			for u := range tr.queue {
				if lim.Wait(ctx) != nil || !p.Probe(u) {
					return
				}
			}
		}()
	}
	tr.done.Add(1)
	go func() { defer tr.done.Done(); defer close(tr.queue); tr.loop(ctx) }()
	return tr
}

// follow starts probing name (served at url) around its transitions, from
// now until leftFor after it is first seen gone from the watch folder.
func (tr *transitions) follow(name, url string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.files[name] = &watched{url: url}
}

// close stops the probes and waits for the ones in flight.
func (tr *transitions) close() {
	tr.stop()
	tr.done.Wait()
}

func (tr *transitions) loop(ctx context.Context) {
	t := time.NewTicker(lookEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var left, local []*watched
		tr.mu.Lock()
		for name, f := range tr.files {
			if f.left.IsZero() {
				if _, err := os.Lstat(filepath.Join(tr.watch, filepath.FromSlash(name))); err != nil {
					f.left, f.next = now, now // probe at once
				}
			}
			switch {
			case !f.left.IsZero() && now.Sub(f.left) > leftFor:
				delete(tr.files, name)
			case f.next.After(now):
			case !f.left.IsZero():
				left = append(left, f)
			default:
				local = append(local, f)
			}
		}
		sort.Slice(left, func(i, j int) bool { return left[i].probes < left[j].probes })
		tr.mu.Unlock()
		// A probe that finds the queue full waits for the next look.
		for _, f := range append(left, local...) {
			select {
			case tr.queue <- f.url:
			case <-ctx.Done():
				return
			default:
				continue
			}
			tr.mu.Lock()
			switch {
			case f.left.IsZero():
				f.next = now.Add(localEvery)
			case now.Sub(f.left) < leftDense:
				f.next, f.probes = now.Add(leftEvery), f.probes+1
			default:
				f.next, f.probes = now.Add(leftSparse), f.probes+1
			}
			tr.mu.Unlock()
		}
	}
}
