package agent

import (
	"math/rand/v2"
	"slices"
	"time"
)

// The circuit breaker. When S3 or DynamoDB fails for everyone, retrying
// every file on its own backoff reopens, rereads and rehashes each of them
// for nothing: with 100,000 files waiting that was most of a core. So once
// breakerThreshold different files have failed remotely in a row, the
// breaker opens: one file at a time (the probe) finds out whether the
// remote is back, at most once per probe interval, and the other files wait
// in the queue without being opened. Probes take turns among the files
// (see pickProbe), so one file that fails whatever the service does cannot
// keep it open. The first success of any file closes it, and the files
// that waited go out at a rate that doubles (see releasable).
//
// Failures of S3 or DynamoDB as a service count (result.remote: no
// answer, 5xx, throttling, refused credentials). A request refused for
// one file alone (its key denied by a bucket or KMS key policy, a key too
// long: see fileFault, result.refused) is that file's failure, so
// refusals count only en masse: refusalsToTrip different files refused
// in a row, none offloaded between them, is S3 or DynamoDB refusing every
// file (the role lost s3:PutObject or dynamodb:PutItem, a bucket, KMS key
// or table policy refusing all), and opens the breaker too, its cause
// s3-refused or dynamodb-refused. Local failures (reading the file) say
// nothing about the remote; an archive failure even proves that S3 and
// DynamoDB answered, and so do a conflict and a dry run's HEAD: they count
// as a success, unless the attempt reused an earlier proof and asked
// neither (result.local).
const (
	// breakerThreshold: service failures of this many different files,
	// with no success between them, open the breaker. An outage fails every
	// file in flight (up to DefaultWorkers) within one round of the SDK's
	// retries, so it opens at once; a file that fails for a reason of its
	// own is one file however often it fails, and a few among files that
	// go through never get there, as every success starts the count again.
	breakerThreshold = 5
	// refusalsToTrip: refusals of this many different files, with no
	// success between them, open the breaker. A grant the role lost
	// refuses every file, so it opens within the first files tried (the
	// first round, at the default DefaultWorkers). Keys a bucket or KMS key policy
	// refuses among files that go through never get there, as every
	// success starts the count again; nor a few refused files left alone
	// (every refused file counts once however often it is retried), nor
	// those still waiting when an outage ends, as long as they are fewer.
	// Beyond that, refused files with no other file offloaded between
	// them cannot be told from a refusal of every file: the breaker opens,
	// and its probes take files never tried first (see pickProbe), so a
	// file S3 takes still closes it at the next probe.
	refusalsToTrip = 25
	// probeFloor, probeCap: the interval between probes while open starts
	// at probeFloor (a blip is over by then) and doubles with every failed
	// probe up to probeCap, so files wait at most about that long after the
	// remote is back. Jittered, so hosts that lost S3 together do not probe
	// in step.
	probeFloor = time.Second
	probeCap   = 30 * time.Second
	// probeSample: a probe taken from the files that failed on the service
	// is the one probed longest ago, then the smallest (a cheap request), of
	// this many taken from their index in map order, so picking one never
	// walks the backlog.
	probeSample = 64
	// releaseFirst, releaseDoubling, releaseRamp: one success proves the
	// remote answers one request, not the whole backlog at once (S3 coming
	// back from an outage throttles). After the breaker closes, releaseFirst
	// files may go at once, twice as many in all by releaseDoubling later,
	// and so on; after releaseRamp only the workers bound it. A failure
	// during the ramp counts towards breakerThreshold as usual.
	releaseFirst    = 8
	releaseDoubling = time.Second
	releaseRamp     = 8 * time.Second
)

// breaker is the scheduler's circuit breaker state; pure logic on the
// times it is given.
type breaker struct {
	open  bool
	since time.Time // when it last opened or closed; zero while it never opened
	// failed are the different files that failed on the service since
	// the last success, up to breakerThreshold.
	failed []string
	// consecutive counts every service failure since the last success,
	// repeats and probes included (for status).
	consecutive int
	// refused are the different files refused (result.refused) since the
	// last success, up to refusalsToTrip; refusals counts every refusal
	// since then (for status).
	refused   []string
	refusals  int
	cause     string // of the last failure counted: s3, dynamodb, s3-refused, dynamodb-refused
	trips     int64
	probe     *entry    // the file being tried while open; nil when none
	probes    int       // probes failed since it opened
	handed    int32     // probes handed out since the agent started (see pickProbe)
	nextProbe time.Time // while open: when the next probe may go
	released  int       // files handed out since it closed (for the ramp)
	// down (Once only): the breaker stayed open through onceAttempts
	// probes, so the run gives up every file still waiting.
	down bool
}

// remoteFailed records a failure of the service (result.remote) for rel
// and reports whether it opened the breaker.
func (b *breaker) remoteFailed(rel, cause string, now time.Time) (tripped bool) {
	b.consecutive++
	b.cause = cause
	return b.countFile(&b.failed, rel, breakerThreshold, now)
}

// countFile adds rel to files, the different files that failed in a way
// that counts, unless it is there already, and opens the breaker when
// files reaches threshold; it reports whether it did.
func (b *breaker) countFile(files *[]string, rel string, threshold int, now time.Time) (tripped bool) {
	if b.open {
		return false
	}
	if !slices.Contains(*files, rel) {
		*files = append(*files, rel)
	}
	if len(*files) < threshold {
		return false
	}
	b.trip(now)
	return true
}

// refusedSuffix marks a cause as S3's or DynamoDB's refusals of files'
// requests, not their failure as a service.
const refusedSuffix = "-refused"

// fileRefused records that S3 or DynamoDB (cause) refused rel's request
// for that file alone (result.refused) and reports whether that opened the
// breaker: refusalsToTrip different files refused in a row.
func (b *breaker) fileRefused(rel, cause string, now time.Time) (tripped bool) {
	b.refusals++
	b.cause = cause + refusedSuffix
	return b.countFile(&b.refused, rel, refusalsToTrip, now)
}

// trip opens the breaker at now.
func (b *breaker) trip(now time.Time) {
	b.open, b.since, b.trips = true, now, b.trips+1
	b.probes, b.failed, b.refused = 0, b.failed[:0], b.refused[:0]
	b.nextProbe = now.Add(probeInterval(0))
}

// probeFailed backs the next probe off.
func (b *breaker) probeFailed(now time.Time) {
	b.probes++
	b.nextProbe = now.Add(probeInterval(b.probes))
}

// answered records that the remote answered (a file offloaded, failing
// only on the archive after S3 and DynamoDB took it, a conflict, a dry
// run's HEAD) and reports whether that closed the breaker.
func (b *breaker) answered(now time.Time) (closed bool) {
	b.failed, b.consecutive, b.down = b.failed[:0], 0, false
	b.refused, b.refusals = b.refused[:0], 0
	if !b.open {
		return false
	}
	b.open, b.since, b.released = false, now, 0
	b.probe, b.nextProbe = nil, time.Time{}
	return true
}

// releasable is how many more files may be handed out at now: none while
// open (the probe is handed out apart), a doubling allowance during the
// ramp after it closed, else any number.
func (b *breaker) releasable(now time.Time) int {
	switch {
	case b.open:
		return 0
	case b.since.IsZero():
		return maxWorkers // never opened; no more workers than this exist
	}
	elapsed := now.Sub(b.since)
	if elapsed >= releaseRamp || elapsed < 0 {
		return maxWorkers
	}
	allowed := releaseFirst << (elapsed / releaseDoubling)
	return max(0, allowed-b.released)
}

// probeInterval is the wait before the next probe after failed probes:
// equal jitter on probeFloor doubled failed times, capped at probeCap, and
// never below probeFloor.
func probeInterval(failed int) time.Duration {
	d := probeCap
	if failed < 10 {
		d = min(probeCap, probeFloor<<failed)
	}
	return max(probeFloor, d/2+time.Duration(rand.Int64N(int64(d/2)+1)))
}

// BreakerStatus is the circuit breaker as status shows it.
type BreakerStatus struct {
	// State is closed, or open: S3 or DynamoDB failed as a service (no
	// answer, 5xx, throttling) for several files in a row, or refused the
	// requests of many different files in a row with none offloaded, so
	// one file at a time probes it and the others wait.
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"` // when it opened or closed last (zero: never opened)
	// ConsecutiveFailures counts the failures of the service since the
	// last success, failed probes included; not a request refused for one
	// file alone (403 on its key, say), which is that file's failure.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// ConsecutiveRefusals counts those refusals since the last success.
	ConsecutiveRefusals int `json:"consecutive_refusals"`
	// Cause is that of the last failure counted: s3 or dynamodb as a
	// service; s3-refused or dynamodb-refused when it refused a file's
	// request (open with that cause: it refuses every file, check the
	// role's grants and the bucket's, KMS key's or table's policy).
	Cause        string    `json:"cause,omitempty"`
	FailedProbes int       `json:"failed_probes"`       // while open
	NextProbe    time.Time `json:"next_probe,omitzero"` // while open and no probe runs
	Probing      string    `json:"probing,omitempty"`   // the file being tried now
	Trips        int64     `json:"trips"`               // how often it opened since the agent started
}

func (b *breaker) status(now time.Time) BreakerStatus {
	st := BreakerStatus{State: "closed", ConsecutiveFailures: b.consecutive, ConsecutiveRefusals: b.refusals, Trips: b.trips}
	if !b.since.IsZero() {
		st.Since = b.since.UTC()
	}
	if b.consecutive > 0 || b.refusals > 0 || b.open {
		st.Cause = b.cause
	}
	if b.open {
		st.State, st.FailedProbes = "open", b.probes
		if b.probe != nil {
			st.Probing = b.probe.rel
		} else {
			st.NextProbe = b.nextProbe.UTC()
			if !b.nextProbe.After(now) {
				st.NextProbe = now.UTC()
			}
		}
	}
	return st
}
