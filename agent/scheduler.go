package agent

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"time"
)

// Retry backoff per file: exponential with full jitter, never giving up
// while the file exists (in Run). Base and cap: a blip clears in seconds,
// and during a long outage one attempt per file every few minutes costs
// nothing.
const (
	backoffBase = time.Second
	backoffCap  = 5 * time.Minute
)

// recoveryJitter: a file offloaded end to end proves S3 and DynamoDB answer
// again, so files waiting out a backoff after failing on them retry within
// this (spread, so they do not all start at once) instead of up to
// backoffCap later. Files that failed locally (the archive) keep their
// backoff: another file's success says nothing about their cause.
const recoveryJitter = 2 * time.Second

// recoveryGap: only a success after this long without one counts as the
// end of an outage. While files keep succeeding (throttling, a bucket
// policy refusing one key), failed files keep their backoff, so a failure
// that is not an outage does not turn into a retry every few seconds.
const recoveryGap = 10 * time.Second

func backoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 20 {
		d = min(backoffCap, backoffBase<<attempt)
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// entry is the scheduler's view of one pending file.
type entry struct {
	rel       string
	seen      fileID    // the last version observed
	since     time.Time // when that version was first observed
	firstSeen time.Time // when the name was first seen pending (for status)
	notBefore time.Time // backoff after a failure
	attempts  int
	published fileID // the version that appeared by a rename; see job.published
	proven    *proof // the last attempt proved it and failed locally; see proof
	// The flags and probed together, so that they share one word and an
	// entry stays in the allocator's 320-byte class (see BenchmarkHeldFile).
	heldOpen bool // the last attempt found a writer holding it
	remote   bool // the last failure was S3's or DynamoDB's as a service (result.remote)
	own      bool // the last failure was the file's own: refused for it alone, or local
	running  bool
	dirty    bool  // an event arrived while it was running
	probed   int32 // the breaker's probe count when this file was last its probe; 0: never

	at         time.Time // when it is next due; see scheduler.dueAt
	index      int       // in scheduler.queue, or -1 while running
	prev, next *entry    // scheduler.oldest's order, by firstSeen
}

// isPublished: the version seen is the one that appeared by a rename.
func (e *entry) isPublished() bool {
	return e.published != (fileID{}) && e.published.sameVersion(e.seen)
}

// scheduler owns every pending and parked file's state: it takes the
// watcher's candidates (note), says which files are due for a worker (due)
// and acts on the workers' results (finish). It is not safe for concurrent
// use; the agent's loop goroutine is its only user.
//
// Its cost per event does not grow with the backlog: a file that is not
// running sits in a min-heap (dueQueue) keyed by the time it next needs a look (the
// end of its quiet period or of its backoff), so a tick pops only the files
// whose time has come; files that never failed and files that did are in
// two such heaps, so the breaker's probe finds a file never tried without
// looking at the others; files whose last failure was remote are indexed for
// the recovery pull-in; and pending files are kept in first-seen order for
// status, which lists the oldest few without sorting the rest.
type scheduler struct {
	quiet           time.Duration
	quietForRenamed bool
	once            bool // Once: a file that failed onceAttempts times is given up
	// settleTimeout: in Once, a file not settled this long after it was
	// first seen is given up.
	settleTimeout time.Duration
	// keep (--after keep): an offloaded file stays under its name, so it
	// is parked, or every rescan would offload it again.
	keep   bool
	ignore []string
	// lstat reports the version of a file now under its name; an error
	// means it is gone.
	lstat func(rel string) (fileID, error)

	pending map[string]*entry
	// parked files are not looked at again until they change: conflicts,
	// refusals, and (with --after keep) files already offloaded.
	parked  map[string]fileID
	queue   dueQueue            // pending files not running that never failed (attempts 0), soonest due first
	retries dueQueue            // those that failed (attempts > 0); see queueOf
	epoch   time.Time           // the queue's zero
	running map[*entry]struct{} // handed to a worker, result not back yet
	remote  map[*entry]struct{} // pending files whose last failure was remote: what retryRemoteSoon looks at
	oldest  *entry              // the first of pending in first-seen order
	newest  *entry              // its last
	bytes   int64               // the size of every pending file
	// lastDone is when the last file was offloaded end to end.
	lastDone time.Time
	brk      breaker // see breaker.go
	jobs     []job   // due's result, reused
	// limit is the most pending files it holds (maxPending). The loop stops
	// taking candidates while it is full and no file may make room (see
	// room), which pauses the scan.
	limit int
	peak  int // the most pending files held at once, for tests
	// spare is the file that makes room for the next new one while full
	// (see room); evicted counts the files that did, and cooling holds
	// their backoff (see makeRoom).
	spare   *entry
	owns    int // pending files whose last failure was their own (entry.own)
	evicted int64
	cooling map[uint64]cooled
	seed    maphash.Seed
}

// cooled is what is kept of a file that made room: when its backoff ends,
// on the queue's scale (see key), its failed attempts, and the proof of a
// file whose archive failed (nil for others), so that its retry is still
// the local step alone, not another upload
// (TestFileThatMadeRoomKeepsItsProof: 14 S3 requests in 18 such retries).
type cooled struct {
	at       int64
	attempts int
	proven   *proof
}

// maxPending is the most files the agent holds state for at once. Each
// costs about 420 bytes of heap (BenchmarkHeldFile: the entry, its name,
// its map, queue and list places), so 25,000 are about 10 MiB, 20 MiB with
// the garbage collector's headroom: inside the 64 MiB the agent allows
// itself beyond its upload buffers. It is still far more than it takes to
// keep every worker busy: the workers plus the files within their quiet
// period, 10,000 at 5,000 new files a second. When a backlog is larger
// (the first backfill of a big site), the scan pauses while the scheduler
// is full and goes on from where it stopped as files are offloaded; a file
// not held yet is found by that scan, or by the rescan that follows when
// the inotify events queued meanwhile overflow.
const maxPending = 25_000

// newScheduler returns an empty scheduler for the configuration; now
// counts as the last success for recoveryGap.
func newScheduler(cfg Config, once bool, lstat func(rel string) (fileID, error), now time.Time) *scheduler {
	return &scheduler{
		quiet: cfg.Quiet, quietForRenamed: cfg.QuietForRenamed, once: once, settleTimeout: cfg.SettleTimeout, keep: cfg.After == AfterKeep, ignore: cfg.Ignore, lstat: lstat,
		pending: map[string]*entry{}, parked: map[string]fileID{},
		running: map[*entry]struct{}{}, remote: map[*entry]struct{}{},
		lastDone: now, epoch: now, limit: maxPending,
		cooling: map[uint64]cooled{}, seed: maphash.MakeSeed(),
	}
}

// full reports whether it holds as many pending files as it may.
func (s *scheduler) full() bool { return len(s.pending) >= s.limit }

// room reports whether a file not held yet may be taken: it is not full,
// or a file it holds keeps failing for its own reason and may make room
// (see makeRoom). Otherwise a set full of files that fail for good (a
// subtree the archive may not write, keys a policy refuses) would stop the
// agent from ever looking at a new file. Files waiting for S3 or DynamoDB
// to come back never make room: during an outage the scan waits, as
// maxPending says. Nor in Once, which scans once: a file dropped would not
// be seen again, and a failing file leaves after onceAttempts anyway.
func (s *scheduler) room() bool {
	return !s.full() || !s.once && s.victim() != nil
}

// victim returns the file that makes room next, or nil: of the retries
// (a file whose own failure it was has failed), or of probeSample files
// taken from them at random when they are more, the one
// whose own failure put it furthest off. The sample keeps the cost flat in
// the backlog; it finds such files when they hold much of the set, which
// is when the set is full because of them.
func (s *scheduler) victim() *entry {
	if v := s.spare; v != nil && v.own && !v.running && s.pending[v.rel] == v {
		return v
	}
	s.spare = nil
	if s.owns == 0 {
		return nil
	}
	for i := range min(probeSample, len(s.retries)) {
		if len(s.retries) > probeSample {
			i = rand.IntN(len(s.retries))
		}
		if q := s.retries[i]; q.e.own && (s.spare == nil || q.at > s.key(s.spare.at)) {
			s.spare = q.e
		}
	}
	return s.spare
}

// makeRoom forgets one file that keeps failing for its own reason, to hold
// a new one in its place. The forgotten file stays in the watch folder,
// local and served, and a later scan finds it again. Until then only its
// backoff is kept, in cooling (35 bytes a file, measured at 25,000 before
// its proof pointer was added, one word more since, and the proof of a
// file whose archive failed; not the 420 of a held file): found again while the set is full and before
// its backoff ends, it takes no place (the next rescan offers it again),
// and once held again it goes on from the attempts it had. So a file
// failing for good is not tried more often than its backoff says, and new
// files take the places.
// cooling holds at most limit files; beyond that one kept is forgotten,
// whichever the map gives first, and starts over when found again.
func (s *scheduler) makeRoom() {
	v := s.victim()
	if v == nil {
		return
	}
	s.spare = nil
	if len(s.cooling) >= s.limit {
		for k := range s.cooling {
			delete(s.cooling, k)
			break
		}
	}
	s.cooling[s.coolKey(v.rel, v.seen)] = cooled{at: s.key(v.notBefore), attempts: v.attempts, proven: v.proven}
	s.remove(v)
	s.evicted++
}

// coolKey names one version of a file in cooling: a file that changed
// since it made room is a new one.
func (s *scheduler) coolKey(rel string, id fileID) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(rel)
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], id.dev)
	binary.LittleEndian.PutUint64(b[8:], id.ino)
	binary.LittleEndian.PutUint64(b[16:], uint64(id.size))
	binary.LittleEndian.PutUint64(b[24:], uint64(id.mtime.UnixNano()))
	h.Write(b[:])
	return h.Sum64()
}

// len is the number of pending files, running ones included.
func (s *scheduler) len() int { return len(s.pending) }

// busy is the number of files handed to workers whose result is not back.
func (s *scheduler) busy() int { return len(s.running) }

// note looks at a candidate and reports whether it is a published file
// that may go at once (the caller then asks due without waiting for the
// next tick).
func (s *scheduler) note(c candidate, now time.Time) bool {
	rel := c.rel
	if ignored(rel, s.ignore) {
		return false
	}
	e := s.pending[rel]
	if e != nil && e.running {
		e.dirty = true // looked at again when its result is back
		return false
	}
	id, err := s.lstat(rel)
	if err != nil {
		if e != nil {
			s.remove(e)
		}
		delete(s.parked, rel)
		return false
	}
	if p, ok := s.parked[rel]; ok {
		if p.sameVersion(id) {
			return false
		}
		delete(s.parked, rel)
	}
	switch {
	case e == nil:
		var ck uint64
		var c cooled
		cooling := false
		if len(s.cooling) > 0 {
			ck = s.coolKey(rel, id)
			c, cooling = s.cooling[ck]
		}
		if s.full() && !s.once {
			if cooling && s.key(now) < c.at {
				return false // it made room and its backoff is not over
			}
			s.makeRoom()
		}
		e = s.add(rel, id, now)
		if cooling {
			delete(s.cooling, ck)
			e.attempts, e.proven = c.attempts, c.proven
			s.setOwn(e, true)
			e.notBefore = s.epoch.Add(time.Duration(c.at))
		}
	case !e.seen.sameVersion(id):
		s.setSeen(e, id)
		e.since = now
	}
	if c.movedIn {
		e.published = id
	}
	s.schedule(e)
	// Only a new rename asks for an immediate dispatch, and only when the
	// file is not waiting out a backoff.
	return c.movedIn && e.isPublished() && !now.Before(e.notBefore)
}

// due hands out up to free files whose time has come, soonest due first,
// and counts them as running until finish. It looks at no file that is not
// due. While the breaker is open it hands out at most the one probe, and
// after it closed no more than the ramp allows (see breaker.go). The slice
// is reused by the next call.
func (s *scheduler) due(now time.Time, free int) []job {
	s.jobs = s.jobs[:0]
	if s.brk.open {
		if free > 0 && s.brk.probe == nil && !s.brk.down && !now.Before(s.brk.nextProbe) {
			if e := s.pickProbe(now); e != nil {
				s.brk.probe = e
				s.brk.handed++
				e.probed = s.brk.handed
				s.hand(s.queueOf(e).remove(e.index))
			}
		}
		return s.jobs
	}
	free = min(free, s.brk.releasable(now))
	key := s.key(now)
	for ; free > 0; free-- {
		q := s.soonest()
		if q == nil || (*q)[0].at > key {
			break
		}
		s.hand(q.remove(0))
		s.brk.released++
	}
	return s.jobs
}

// soonest returns the queue whose first file is due soonest, nil when both
// are empty.
func (s *scheduler) soonest() *dueQueue {
	switch {
	case len(s.queue) == 0 && len(s.retries) == 0:
		return nil
	case len(s.retries) == 0 || len(s.queue) > 0 && s.queue[0].at <= s.retries[0].at:
		return &s.queue
	}
	return &s.retries
}

// queueOf is the queue e is in while not running: retries once it failed.
// Its attempts change only while it runs (finish) or before it is first
// queued (note), so it stays in the one it was put in.
func (s *scheduler) queueOf(e *entry) *dueQueue {
	if e.attempts > 0 {
		return &s.retries
	}
	return &s.queue
}

// hand counts e, just taken out of the queue, as running and adds its job
// to due's answer.
func (s *scheduler) hand(e *entry) {
	e.running, e.dirty = true, false
	s.running[e] = struct{}{}
	s.jobs = append(s.jobs, job{rel: e.rel, seen: e.seen, since: e.since,
		published: e.isPublished() && !s.quietForRenamed, proven: e.proven})
}

// pickProbe chooses the file that tries the remote while the breaker is
// open. Probes take turns between the files that failed on the service
// (their own backoff does not matter: the breaker decides when they go)
// and a file due in the queues: one never tried first (see untried), else
// the retry due soonest, whose own backoff is over. Among the files that
// failed it takes, of up to probeSample, the one probed longest ago, then
// the smallest (a cheap request). So the probe is never the file probed
// last while another can go, and a file that fails whatever the service
// does cannot hold the breaker open alone: any other file that gets
// through closes it. Files never tried go before refused files whose
// backoff ended: when the breaker opened on refusals, a file S3 takes
// (another subtree, a grant put back) is tried at the next probe, not
// after every refused file. Once does not probe a file that already
// failed while one never tried waits to settle: three failed probes end
// its run. It does not walk the backlog.
func (s *scheduler) pickProbe(now time.Time) *entry {
	var failed *entry
	looked := 0
	for e := range s.remote {
		if e.running || e.index < 0 {
			continue
		}
		if failed == nil || e.probed < failed.probed || e.probed == failed.probed && e.seen.size < failed.seen.size {
			failed = e
		}
		if looked++; looked == probeSample {
			break
		}
	}
	key := s.key(now)
	queued := s.untried(key)
	if queued == nil && len(s.retries) > 0 && s.retries[0].at <= key && (!s.once || len(s.queue) == 0) {
		queued = s.retries[0].e
	}
	first, second := failed, queued
	if s.brk.handed%2 == 1 {
		first, second = queued, failed
	}
	switch {
	case first != nil && (first.probed != s.brk.handed || second == nil || second.probed == s.brk.handed):
		return first
	case second != nil:
		return second
	}
	return first
}

// untried returns a file never tried (or never failed) that is due at key,
// or nil: of probeSample taken from the queue at random, the first due, else
// its first if due. Taken at random, not in the queue's order: refused
// files often come together (a subtree, the order a scan found them), and
// those that did not make the breaker trip would be the next probes.
func (s *scheduler) untried(key int64) *entry {
	n := len(s.queue)
	if n == 0 {
		return nil
	}
	start := rand.IntN(n)
	for i := range min(probeSample, n) {
		j := (start + i) % n
		if n > probeSample {
			j = rand.IntN(n)
		}
		if s.queue[j].at <= key {
			return s.queue[j].e
		}
	}
	if s.queue[0].at <= key {
		return s.queue[0].e
	}
	return nil
}

// dueAt is the earliest time the file may go to a worker: after its
// backoff, and once it is settled by the scheduler's view. A published
// file is settled at once; otherwise when its ctime or the time the
// scheduler first saw this version is a quiet period old. The worker
// checks again (see settled), so this only says when to ask.
//
// The ctime deadline is a wall-clock time; it is taken as an offset from
// since so that every due time is on the monotonic clock and the heap's
// order holds across a wall-clock step (after one, the file waits at most
// the quiet period after since, as if its ctime were recent).
func (s *scheduler) dueAt(e *entry) time.Time {
	at := e.notBefore
	if e.isPublished() && !s.quietForRenamed {
		return at
	}
	wait := s.quiet
	if d := e.seen.ctime.Sub(e.since); d < 0 {
		wait += d // the file was quiet before the scheduler saw it
	}
	if settle := e.since.Add(wait); settle.After(at) {
		at = settle
	}
	return at
}

// schedule puts a pending file that is not running in the queue at its due
// time, or moves it there.
func (s *scheduler) schedule(e *entry) {
	e.at = s.dueAt(e)
	q := s.queueOf(e)
	if e.index >= 0 {
		q.fix(e.index, s.key(e.at))
		return
	}
	q.push(e, s.key(e.at))
}

// key is t on the queue's scale: nanoseconds since the scheduler's epoch,
// on the monotonic clock (every due time has a monotonic reading; see
// dueAt). Times too far off saturate, which keeps their order.
func (s *scheduler) key(t time.Time) int64 { return int64(t.Sub(s.epoch)) }

// verdict is what finish decided about a file, for the caller to log.
type verdict struct {
	attempts int           // after outFailed: failed attempts so far
	retryIn  time.Duration // after outFailed: the backoff before the next one
	// gaveUp: in Once, the file is dropped, not offloaded: after outFailed
	// it was tried onceAttempts times (or the breaker stayed open); after
	// outNotReady it was still not settled settleTimeout after it was
	// first seen.
	gaveUp  bool
	tripped bool // the result opened the breaker
	closed  bool // the result closed the breaker
}

// abandon gives up, in Once, every pending file that is not running once
// the breaker stayed open through onceAttempts probes (S3 or DynamoDB is
// down for this run), and returns how many. Otherwise it does nothing.
func (s *scheduler) abandon() int {
	if !s.brk.down {
		return 0
	}
	n := 0
	for q := s.soonest(); q != nil; q = s.soonest() {
		s.remove((*q)[0].e)
		n++
	}
	return n
}

// finish takes a worker's result for a file that due handed out: the file
// is offloaded and forgotten, parked, or waits for its next look.
func (s *scheduler) finish(r result, now time.Time) (v verdict) {
	e := s.pending[r.rel]
	e.running = false
	delete(s.running, e)
	probe := s.brk.open && s.brk.probe == e
	if probe {
		// Any other outcome (not settled, gone, a local failure) says
		// nothing about the remote: the next probe may go at once.
		s.brk.probe = nil
	}
	e.proven = r.proven // kept only from a failure of the local step alone
	version := r.id     // what is parked: the version read, or else the one seen
	if version == (fileID{}) {
		version = e.seen
	}
	switch r.outcome {
	case outDone:
		s.remove(e)
		if s.keep {
			s.parked[r.rel] = version
		}
		// An attempt that only finished the local step of a proof it
		// already had (r.local) asked neither S3 nor DynamoDB: it proves
		// nothing about them, here or below.
		if !r.local {
			v.closed = s.brk.answered(now)
			if v.closed || now.Sub(s.lastDone) > recoveryGap {
				s.retryRemoteSoon(now)
			}
			s.lastDone = now
		}
	case outGone:
		s.remove(e)
	case outNotReady:
		e.heldOpen = errors.Is(r.err, errWriterHasIt)
		s.setOwn(e, false)
		// Watch it for a full quiet period before the next try, so a file
		// held open by a writer is not reopened every tick.
		if r.id != (fileID{}) {
			s.setSeen(e, r.id)
		}
		e.since = now
		e.notBefore = now.Add(s.quiet)
		e.published = fileID{} // a writer had it: the quiet rule decides from now on
		if s.once && s.settleTimeout > 0 && now.Sub(e.firstSeen) >= s.settleTimeout {
			s.remove(e)
			v.gaveUp = true
		} else {
			s.schedule(e)
		}
	case outDryRun, outSkipped, outRefused, outConflict:
		s.park(e, version)
		// A dry run's HEAD and a conflict are answers from S3 or the
		// ledger: the remote is there.
		if (r.outcome == outDryRun || r.outcome == outConflict) && !r.local {
			if v.closed = s.brk.answered(now); v.closed {
				s.retryRemoteSoon(now)
			}
		}
	case outFailed:
		e.attempts++
		s.setRemote(e, r.remote())
		s.setOwn(e, !r.remote())
		e.heldOpen = false
		v.attempts, v.retryIn = e.attempts, backoff(e.attempts)
		e.notBefore = now.Add(v.retryIn)
		switch {
		case r.remote() || r.refused():
			if r.remote() {
				v.tripped = s.brk.remoteFailed(r.rel, r.cause, now)
			} else {
				v.tripped = s.brk.fileRefused(r.rel, r.cause, now)
			}
			// A refused probe backs off too: while every file is refused,
			// the probes are the only files read.
			if probe {
				s.brk.probeFailed(now)
				// Once gives up when the remote stays down, or refuses,
				// through as many probes as it would try one file.
				s.brk.down = s.once && s.brk.probes >= onceAttempts
			}
		case r.cause == causeArchive && !r.local:
			// S3 and DynamoDB both took the file before the archive failed
			// (in this attempt: a retry of the archive alone asked them
			// nothing, and closed the breaker while S3 was down,
			// TestArchiveRetryDuringOutageKeepsTheBreakerOpen).
			if v.closed = s.brk.answered(now); v.closed {
				s.retryRemoteSoon(now)
			}
		}
		if s.once && (e.attempts >= onceAttempts || s.brk.down) {
			s.remove(e)
			v.gaveUp = true
		} else {
			s.schedule(e)
		}
	}
	if e.dirty {
		e.dirty = false
		s.note(candidate{rel: r.rel}, now)
	}
	return v
}

// retryRemoteSoon pulls in the retry of every file whose last failure was
// remote (see recoveryJitter). It looks only at those files.
func (s *scheduler) retryRemoteSoon(now time.Time) {
	for e := range s.remote {
		if !e.running && e.notBefore.After(now.Add(recoveryJitter)) {
			e.notBefore = now.Add(time.Duration(rand.Int64N(int64(recoveryJitter))))
			s.setRemote(e, false)
			s.schedule(e)
		}
	}
}

// park stops looking at a file until it changes.
func (s *scheduler) park(e *entry, version fileID) {
	s.remove(e)
	s.parked[e.rel] = version
}

// add makes rel pending, the newest in first-seen order.
func (s *scheduler) add(rel string, id fileID, now time.Time) *entry {
	e := &entry{rel: rel, seen: id, since: now, firstSeen: now, index: -1}
	s.pending[rel] = e
	s.peak = max(s.peak, len(s.pending))
	s.bytes += id.size
	// now comes from a monotonic clock, so this is the end of the list;
	// the walk only keeps the order if a caller's clock went back.
	after := s.newest
	for after != nil && after.firstSeen.After(e.firstSeen) {
		after = after.prev
	}
	e.prev = after
	if after == nil {
		e.next, s.oldest = s.oldest, e
	} else {
		e.next, after.next = after.next, e
	}
	if e.next == nil {
		s.newest = e
	} else {
		e.next.prev = e
	}
	return e
}

// remove forgets a pending file.
func (s *scheduler) remove(e *entry) {
	delete(s.pending, e.rel)
	delete(s.running, e)
	s.setRemote(e, false)
	s.setOwn(e, false)
	s.bytes -= e.seen.size
	if e.index >= 0 {
		s.queueOf(e).remove(e.index)
	}
	if e.prev == nil {
		s.oldest = e.next
	} else {
		e.prev.next = e.next
	}
	if e.next == nil {
		s.newest = e.prev
	} else {
		e.next.prev = e.prev
	}
	e.prev, e.next = nil, nil
}

func (s *scheduler) setSeen(e *entry, id fileID) {
	s.bytes += id.size - e.seen.size
	e.seen = id
}

func (s *scheduler) setOwn(e *entry, own bool) {
	switch {
	case own && !e.own:
		s.owns++
	case !own && e.own:
		s.owns--
	}
	e.own = own
}

func (s *scheduler) setRemote(e *entry, remote bool) {
	e.remote = remote
	if remote {
		s.remote[e] = struct{}{}
	} else {
		delete(s.remote, e)
	}
}

// backlog is the pending set as status shows it, taken without looking at
// every file.
type backlog struct {
	files int   // pending files, running ones included
	bytes int64 // their size
	// oldest are the longest-pending files, oldest first, running ones
	// included: status leaves out those already uploading.
	oldest []Waiting
	// running are the files handed to workers, at most one per worker.
	running []Waiting
	breaker BreakerStatus
	limit   int  // the most pending files held
	full    bool // files is at limit and none may make room: the scan waits
}

// snapshot returns the counts, the running files and the first list files
// in first-seen order. Its cost grows with list and the workers, not with
// the backlog.
func (s *scheduler) snapshot(list int) backlog {
	now := time.Now()
	all := make([]Waiting, 0, min(list, len(s.pending))+len(s.running))
	for e := s.oldest; e != nil && len(all) < list; e = e.next {
		w := e.waiting(now)
		if s.brk.open && !e.running {
			w.State, w.RetryAt = "breaker open", time.Time{}
		}
		all = append(all, w)
	}
	for e := range s.running {
		all = append(all, e.waiting(now))
	}
	n := min(list, len(s.pending))
	return backlog{files: len(s.pending), bytes: s.bytes, oldest: all[:n:n], running: all[n:], breaker: s.brk.status(now),
		limit: s.limit, full: !s.room()}
}

// waiting is how status shows the file at now.
func (e *entry) waiting(now time.Time) Waiting {
	state := "settling"
	switch {
	case e.heldOpen:
		state = "open for writing"
	case e.attempts > 0:
		state = "retrying"
	}
	return Waiting{Path: e.rel, Bytes: e.seen.size, Since: e.firstSeen.UTC(), State: state, Attempts: e.attempts, RetryAt: utcOrZero(e.notBefore, now)}
}

// dueQueue is a min-heap of the pending files that are not running, by due
// time. Each key sits in the slice next to its entry, so a sift compares
// keys in the slice (a node's children are two cache lines) and only
// touches the entries it moves, to update their index. Eight children per
// node make the heap a third as deep as a binary one: at a million files a
// pop moves about seven entries, not twenty, and with the backlog out of
// the CPU's caches each move is a cache miss (BenchmarkScheduler: 8 ways
// kept a pop and a push within 2x from 10,000 to 1,000,000 files, 4 ways
// did not).
type dueQueue []queued

type queued struct {
	at int64 // scheduler.key of the entry's due time
	e  *entry
}

const queueArity = 8

func (q *dueQueue) push(e *entry, at int64) {
	*q = append(*q, queued{at, e})
	q.up(len(*q) - 1)
}

// remove takes the entry at i out of the queue and returns it.
func (q *dueQueue) remove(i int) *entry {
	h := *q
	e := h[i].e
	last := len(h) - 1
	if i != last {
		h.set(i, h[last])
	}
	h[last] = queued{}
	*q = h[:last]
	if i != last {
		q.fix(i, (*q)[i].at)
	}
	e.index = -1
	return e
}

// fix gives the entry at i the key at and moves it to its place.
func (q dueQueue) fix(i int, at int64) {
	q[i].at = at
	if !q.up(i) {
		q.down(i)
	}
}

func (q dueQueue) set(i int, x queued) {
	q[i] = x
	x.e.index = i
}

// up moves the entry at i towards the root while it is due sooner than its
// parent, and reports whether it moved.
func (q dueQueue) up(i int) bool {
	x, start := q[i], i
	for i > 0 {
		parent := (i - 1) / queueArity
		if q[parent].at <= x.at {
			break
		}
		q.set(i, q[parent])
		i = parent
	}
	q.set(i, x)
	return i != start
}

func (q dueQueue) down(i int) {
	x := q[i]
	for {
		first := i*queueArity + 1
		if first >= len(q) {
			break
		}
		least := first
		for c := first + 1; c < min(first+queueArity, len(q)); c++ {
			if q[c].at < q[least].at {
				least = c
			}
		}
		if x.at <= q[least].at {
			break
		}
		q.set(i, q[least])
		i = least
	}
	q.set(i, x)
}
