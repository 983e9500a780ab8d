package agent

import (
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/photosleeve/offload/agent/hotcache"
)

// Status is what the agent is doing, as served on the metrics listener at
// /status and printed by "offload-agent status". Times are UTC.
type Status struct {
	Watch   string    `json:"watch"`
	Started time.Time `json:"started"`
	Now     time.Time `json:"now"`

	Pending      int       `json:"pending"`       // files waiting: not settled yet, or waiting out a retry
	PendingBytes int64     `json:"pending_bytes"` // their size on disk
	Oldest       *Waiting  `json:"oldest_pending,omitempty"`
	Waiting      []Waiting `json:"waiting"` // the longest-waiting files, at most maxListed
	// PendingLimit is the most files the agent holds at once. While
	// Pending is at it, BacklogFull is true: the scan waits where it is
	// and goes on as files are offloaded (a backfill larger than the
	// limit shows Pending at the limit until the rest is found). Not while
	// a held file that keeps failing for its own reason can make room for
	// a new one (see scheduler.room): then the scan goes on.
	PendingLimit int  `json:"pending_limit"`
	BacklogFull  bool `json:"backlog_full"`
	// ScanError is the last scan's trouble (folders it could not read),
	// until a rescan succeeds. WatchError is inotify failing: then only the
	// periodic rescan finds new files.
	ScanError  string `json:"scan_error,omitempty"`
	WatchError string `json:"watch_error,omitempty"`
	// LeasesAvailable: the kernel grants the agent read leases here,
	// which tell whether a writer has a file open and guard the claim
	// (false on a network file system, where they are not used, and in a
	// dry run, which makes no probe).
	LeasesAvailable bool `json:"leases_available"`

	// Breaker is open while S3 or DynamoDB fails as a service for every
	// file, or refuses every file's request (not some files'): one file at
	// a time probes it and the others wait.
	Breaker BreakerStatus `json:"breaker"`

	InFlight       []InFlight `json:"in_flight"`
	RecentFailures []Failure  `json:"recent_failures"` // newest first, at most maxFailures

	Offloaded       int64      `json:"offloaded"`
	OffloadedBytes  int64      `json:"offloaded_bytes"`
	Conflicts       int64      `json:"conflicts"`
	Refused         int64      `json:"refused"`
	FailedAttempts  int64      `json:"failed_attempts"`
	LastOffloadedAt *time.Time `json:"last_offloaded_at,omitempty"`

	// Cache is the hot cache, when the agent keeps one (--cache).
	Cache *hotcache.Stats `json:"cache,omitempty"`
}

// Waiting is a pending file.
type Waiting struct {
	Path     string    `json:"path"`
	Bytes    int64     `json:"bytes"`
	Since    time.Time `json:"since"`              // when the agent first saw it pending
	State    string    `json:"state"`              // settling, open for writing, retrying, or breaker open
	Attempts int       `json:"attempts,omitempty"` // failed attempts so far
	RetryAt  time.Time `json:"retry_at,omitzero"`
}

// InFlight is a file being offloaded now.
type InFlight struct {
	Path    string    `json:"path"`
	Bytes   int64     `json:"bytes"`
	Read    int64     `json:"read"` // bytes read from disk into the upload (ahead of Sent by the buffered parts)
	Sent    int64     `json:"sent"` // bytes the requests to S3 carried so far (a retried request starts again)
	Started time.Time `json:"started"`
}

// Failure is one failed attempt.
type Failure struct {
	Path  string    `json:"path"`
	At    time.Time `json:"at"`
	Cause string    `json:"cause"` // s3, dynamodb, local, archive, conflict, refused
	Error string    `json:"error"`
}

const (
	maxListed   = 20
	maxFailures = 20
)

// tracker keeps what Status reports. The scheduler publishes the pending
// set; workers register what they are uploading.
type tracker struct {
	started time.Time

	mu              sync.Mutex
	pending         backlog // what the scheduler holds (some may be uploading)
	inFlight        map[string]*progress
	failures        []Failure // newest last
	lastOffloadedAt time.Time
	scanErr         string // see Status.ScanError
	scanErrors      int64  // scans that could not read some folder
	watchErr        string // see Status.WatchError
}

func newTracker() *tracker {
	return &tracker{started: time.Now(), inFlight: map[string]*progress{}}
}

// progress counts the bytes of one file read into its upload.
type progress struct {
	path    string
	size    int64
	started time.Time
	read    atomic.Int64
	sent    atomic.Int64
}

// reader counts what is read through it.
func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, n: &p.read} }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (t *tracker) begin(path string, size int64) *progress {
	p := &progress{path: path, size: size, started: time.Now()}
	t.mu.Lock()
	t.inFlight[path] = p
	t.mu.Unlock()
	return p
}

func (t *tracker) end(p *progress) {
	t.mu.Lock()
	if t.inFlight[p.path] == p {
		delete(t.inFlight, p.path)
	}
	t.mu.Unlock()
}

func (t *tracker) failed(f Failure) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures = append(t.failures, f)
	if len(t.failures) > maxFailures {
		t.failures = slices.Delete(t.failures, 0, len(t.failures)-maxFailures)
	}
}

// scanFailed records a scan's error, or clears it (nil: a full rescan
// read everything).
func (t *tracker) scanFailed(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.scanErr = ""
		return
	}
	t.scanErr = err.Error()
	t.scanErrors++
}

func (t *tracker) watchFailed(err error) {
	t.mu.Lock()
	t.watchErr = err.Error()
	t.mu.Unlock()
}

func (t *tracker) offloaded(at time.Time) {
	t.mu.Lock()
	t.lastOffloadedAt = at
	t.mu.Unlock()
}

// publish replaces the pending set (called by the scheduler's goroutine).
// A file whose upload has begun is in flight, not pending; see waiting.
func (t *tracker) publish(b backlog) {
	t.mu.Lock()
	t.pending = b
	t.mu.Unlock()
}

// waiting counts the pending files that are not uploading and lists the
// longest-waiting of them. t.mu must be held. Its cost grows with the files
// listed and the workers, not with the backlog: the snapshot holds the
// counts, the oldest files (running ones included) and the running ones.
func (t *tracker) waiting(list int) (n int, bytes int64, first []Waiting) {
	b := t.pending
	n, bytes = b.files, b.bytes
	uploading := func(path string) bool { _, ok := t.inFlight[path]; return ok }
	running := func(path string) bool {
		return slices.ContainsFunc(b.running, func(w Waiting) bool { return w.Path == path })
	}
	for _, w := range b.running {
		if uploading(w.Path) {
			n--
			bytes -= w.Bytes
		}
	}
	for _, w := range b.oldest {
		if uploading(w.Path) {
			// Handed out after the snapshot was taken, unless counted above.
			if !running(w.Path) {
				n--
				bytes -= w.Bytes
			}
			continue
		}
		if len(first) < list {
			first = append(first, w)
		}
	}
	return n, bytes, first
}

// utcOrZero is t in UTC if it is still to come, else the zero time.
func utcOrZero(t, now time.Time) time.Time {
	if t.IsZero() || !t.After(now) {
		return time.Time{}
	}
	return t.UTC()
}

// oldestPendingAge is how long the longest-waiting file has waited.
func (t *tracker) oldestPendingAge() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _, first := t.waiting(1)
	if len(first) == 0 {
		return 0
	}
	return time.Since(first[0].Since)
}

// Status returns a snapshot of what the agent is doing.
func (a *Agent) Status() Status {
	t := a.track
	var cache *hotcache.Stats
	if c := a.cache.Load(); c != nil {
		cs := c.Stats()
		cache = &cs
	}
	s := Status{Watch: a.cfg.Watch, Cache: cache, Started: t.started.UTC(), Now: time.Now().UTC(),
		Offloaded: a.stats.Uploaded.Load(), OffloadedBytes: a.stats.Bytes.Load(), Conflicts: a.stats.Conflicts.Load(),
		Refused: a.stats.Refused.Load(), FailedAttempts: a.stats.Failures.Load(), LeasesAvailable: a.leasesOK.Load()}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Pending, s.PendingBytes, s.Waiting = t.waiting(maxListed)
	s.Breaker = t.pending.breaker
	s.PendingLimit, s.BacklogFull = t.pending.limit, t.pending.full
	s.ScanError, s.WatchError = t.scanErr, t.watchErr
	if s.Breaker.State == "" {
		s.Breaker.State = "closed" // before the scheduler's first snapshot
	}
	if s.Waiting == nil {
		s.Waiting = []Waiting{}
	}
	if len(s.Waiting) > 0 {
		s.Oldest = &s.Waiting[0]
	}
	s.InFlight = []InFlight{}
	for _, p := range t.inFlight {
		s.InFlight = append(s.InFlight, InFlight{Path: p.path, Bytes: p.size, Read: p.read.Load(), Sent: p.sent.Load(), Started: p.started.UTC()})
	}
	slices.SortFunc(s.InFlight, func(a, b InFlight) int { return a.Started.Compare(b.Started) })
	s.RecentFailures = slices.Clone(t.failures)
	slices.Reverse(s.RecentFailures)
	if !t.lastOffloadedAt.IsZero() {
		at := t.lastOffloadedAt.UTC()
		s.LastOffloadedAt = &at
	}
	return s
}
