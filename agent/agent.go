// Package agent is the on-host daemon: it watches the folder the back-end
// writes originals into, and takes each finished file through
// settle → upload → verify → record → archive (see offloadFile).
//
// The local file is archived only after S3 has checked a full-object
// CRC64NVME equal to the local one and the ledger records it; an object in
// S3 is never overwritten. While S3 or DynamoDB is unreachable files simply
// stay local, where the web server keeps serving them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/oklog/run"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/hotcache"
)

// objectStore is what the pipeline needs from S3.
type objectStore interface {
	put(ctx context.Context, u upload) (checksum string, obj objectInfo, err error)
	head(ctx context.Context, key string) (objectInfo, error)
	headVersion(ctx context.Context, key, versionID string) (objectInfo, error)
}

// ledger is what the pipeline needs from the ledger table.
type ledger interface {
	record(ctx context.Context, r offload.Record) error
	replace(ctx context.Context, old, r offload.Record) error
}

var (
	_ objectStore = (*s3Store)(nil)
	_ ledger      = (*dynamoLedger)(nil)
)

// Agent offloads one watch folder. Build it with New.
type Agent struct {
	cfg    Config
	root   *os.Root // the watch folder; no path through it leaves it
	store  objectStore
	s3     *s3Store
	ledger ledger
	proofs *pendingProofs // of objects S3 accepted that the ledger may not have yet
	log    *slog.Logger
	stats  Stats
	dirs   *dirSyncer // fsyncs the folders archived files left and entered
	track  *tracker   // what Status reports
	probe  readiness  // /readyz
	live   *liveness  // the loop's heartbeat: /healthz, the watchdog
	// metrics for the --metrics-addr listener; ledgerClient for its probe.
	metrics      *metrics
	ledgerClient *dynamodb.Client
	// cache keeps hot originals on this host: set while Run runs with
	// the cache configured, for Status and the metrics.
	cache atomic.Pointer[hotcache.Cache]
	// pendingLimit is the scheduler's bound, maxPending; tests lower it.
	pendingLimit int
	// peakPending is the most files the last run's scheduler held.
	peakPending atomic.Int64
	// leasesOK: the start-up check found that the kernel grants read
	// leases here (see checkLeases).
	leasesOK atomic.Bool
	// erased are the erasures this process knows of (erasedKeys).
	erased erasedKeys
	// busy are the files a worker or the erasure poller has now.
	busy busyFiles
}

// Stats counts outcomes since the agent started.
type Stats struct {
	Uploaded  atomic.Int64 // files proven in S3, recorded, and archived/deleted/kept
	Bytes     atomic.Int64 // bytes of those files
	Conflicts atomic.Int64 // files left in place because the key holds other bytes
	Refused   atomic.Int64 // files never uploaded because their name breaks the naming contract
	Failures  atomic.Int64 // attempts that failed and will be retried
	// Sweeps counts the sweeps for orphaned multipart uploads that listed
	// them all; Orphans the uploads they aborted.
	Sweeps  atomic.Int64
	Orphans atomic.Int64
	// Forgotten counts the erasures this host acknowledged, its copies
	// removed; ErasurePollFailures the erasure polls that failed (see
	// forgetter).
	Forgotten           atomic.Int64
	ErasurePollFailures atomic.Int64
}

// New checks the configuration and builds an agent on the given clients.
// The clients carry the retry and timeout settings (see main).
func New(cfg Config, s3c *s3.Client, db *dynamodb.Client) (*Agent, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, dir := range []*string{&cfg.Watch, &cfg.Archive} {
		if *dir != "" {
			abs, err := filepath.Abs(*dir)
			if err != nil {
				return nil, err
			}
			*dir = abs
		}
	}
	root, err := os.OpenRoot(cfg.Watch)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	store := newS3Store(s3c, cfg.Bucket, cfg.PartSize, cfg.Concurrency, cfg.CallTimeout)
	store.bandwidth = newBandwidth(cfg.BandwidthLimit)
	store.storageClass = types.StorageClass(cfg.StorageClass)
	if !cfg.DryRun {
		store.records = newResumeRecords(cfg.Watch, cfg.Host)
	}
	store.log = cfg.Logger
	a := &Agent{
		cfg:    cfg,
		root:   root,
		store:  store,
		s3:     store,
		ledger: &dynamoLedger{client: db, table: cfg.Table, callTimeout: cfg.CallTimeout},
		log:    cfg.Logger,
		dirs:   newDirSyncer(cfg.Logger),
		track:  newTracker(),
		live:   newLiveness(),

		ledgerClient: db,
		pendingLimit: maxPending,
	}
	if !cfg.DryRun {
		a.proofs = newPendingProofs(cfg.Watch, cfg.Host)
	}
	a.metrics = newMetrics(a)
	return a, nil
}

// Stats returns the agent's counters.
func (a *Agent) Stats() *Stats { return &a.stats }

// Close releases the watch folder.
func (a *Agent) Close() error { return a.root.Close() }

// Run is the daemon: it offloads every settled file in the watch folder,
// now and as they arrive, until ctx ends. Then it stops taking files, lets
// in-flight ones finish within the grace period, cuts off the rest (the
// files stay local; their multipart uploads are kept for the next run to
// resume) and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	return a.loop(ctx, false)
}

// ErrIncomplete is returned by Once when some file could not be offloaded.
var ErrIncomplete = errors.New("some files were not offloaded")

// Once offloads every file in the watch folder, waiting for files that are
// still being written to settle, and returns. A file that fails
// onceAttempts times, conflicts, is refused, or is still being written
// SettleTimeout after it was first seen makes it return ErrIncomplete, and
// so does a folder the scan could not read.
// So does S3 or DynamoDB failing or refusing for every file: once the
// breaker's probe has failed onceAttempts times (a few seconds), the files
// still waiting are given up untried and reported as not offloaded.
//
// An object S3 accepted whose ledger item could not be written is recorded
// before Once returns, even if its file has gone; if the ledger still
// refuses, Once returns ErrIncomplete and the next run records it.
func (a *Agent) Once(ctx context.Context) error {
	err := a.loop(ctx, true)
	if n := a.recordPending(ctx); n > 0 {
		err = errors.Join(err, fmt.Errorf("%d objects in S3 not recorded in the ledger yet (the next run records them): %w", n, ErrIncomplete))
	}
	return err
}

// onceAttempts is how often Once tries a failing file before it reports it.
const onceAttempts = 3

// loop runs the agent as a list of steps: the checks and the recovery of
// what a crashed run left, then the components (hot cache, orphan sweeper,
// folder syncer, workers) and the scheduling loop as one group, which
// stops together when the loop ends. The loop feeds the watcher's
// candidates to the scheduler, hands the files it says are due to the
// workers, and gives it their results; only its goroutine touches the
// scheduler.
func (a *Agent) loop(ctx context.Context, once bool) error {
	a.checkAtStart(once)
	if !a.cfg.DryRun {
		a.recoverAtStart(ctx)
		if err := a.loadErased(ctx); err != nil {
			a.log.Warn("could not read the erasures of the key prefix: every upload reads its ledger item first, until the erasure poller reads them", "err", err)
		}
	}

	candidates := make(chan candidate, 4096)
	scanned := make(chan error, 1)
	w, err := a.startWatcher(ctx, candidates, scanned, once)
	if err != nil {
		return err
	}
	defer w.close()

	// Workers get a context that outlives ctx by the grace period, so a
	// shutdown lets in-flight uploads finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	l := &schedLoop{a: a, once: once, s: newScheduler(a.cfg, once, a.lstat, time.Now()),
		candidates: candidates, scanned: scanned, cancelWork: cancelWork,
		jobs: make(chan job), results: make(chan result, a.cfg.Workers)}
	l.s.limit = a.pendingLimit

	var g run.Group
	if !once {
		a.addHotCache(&g, ctx)
	}
	if !once && !a.cfg.DryRun {
		addComponent(&g, ctx, a.sweepEvery, nil)
		addComponent(&g, ctx, a.forgetEvery, nil)
	}
	// Not ctx's: the last renames are synced after the loop has ended.
	addComponent(&g, context.WithoutCancel(ctx), func(ctx context.Context) { a.dirs.run(ctx.Done()) }, nil)
	a.addWorkers(&g, workCtx, l.jobs, l.results)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	g.Add(func() error { return l.run(loopCtx) }, func(error) { stopLoop() })
	return g.Run()
}

// checkAtStart logs, once, what changes how the agent works here: a watch
// folder on a network file system, no read leases, a dry run, an archive folder it cannot
// write, a hot cache that "once" leaves alone. Nothing in it is fatal.
func (a *Agent) checkAtStart(once bool) {
	fsType, shared := a.watchOnSharedFS()
	a.checkLeases(shared)
	if shared {
		a.log.Warn("the watch folder is on a network or FUSE file system: whether a writer still has a file open cannot be checked, so every file, renamed ones too, waits for the quiet period; files other hosts write are found by the periodic rescan, not by inotify",
			"quiet", a.cfg.Quiet, "rescan", a.cfg.Rescan, "fstype", fmt.Sprintf("%#x", fsType))
	}
	if a.cfg.DryRun {
		a.log.Info("dry run: nothing is uploaded, recorded, moved or aborted; each settled file is looked at once")
	}
	if a.cfg.After == AfterArchive {
		// Not fatal: uploads and the ledger still make progress, and each
		// file stays local (and served) until the archive takes it.
		if err := unix.Access(a.cfg.Archive, unix.W_OK|unix.X_OK); err != nil {
			a.log.Error("the archive folder is not writable: files are uploaded and recorded, but stay in the watch folder until it is",
				"archive", a.cfg.Archive, "err", err)
		}
	}
	if once && a.cfg.caching() {
		a.log.Info("the hot cache runs only in \"run\"; once leaves it as it is", "cache", a.cfg.Cache.Dir)
	}
}

// recoverAtStart finishes or undoes what a crashed run left: files half
// archived are put back, temporaries of upload records and unfinished
// cross-file-system copies removed, and the multipart uploads nobody will
// finish aborted (sweepOrphans). Each step is idempotent; a failure is
// logged and the agent goes on.
func (a *Agent) recoverAtStart(ctx context.Context) {
	if n, err := restoreClaimed(a.cfg.Watch); err != nil {
		a.log.Error("could not put back files a crashed run left half archived", "folder", claimDir, "err", err)
	} else if n > 0 {
		a.log.Info("put back files a crashed run left half archived", "files", n)
	}
	a.s3.records.removeTemps()
	a.recordPending(ctx)
	if a.cfg.After == AfterArchive {
		if n, err := removeCopies(a.cfg.Archive); err != nil {
			a.log.Error("could not remove copies a crashed run left unfinished", "folder", filepath.Join(a.cfg.Archive, copyDir), "err", err)
		} else if n > 0 {
			a.log.Info("removed copies a crashed run left unfinished; their files are still in the watch folder", "files", n)
		}
	}
	a.sweepOrphans(ctx)
}

// addComponent adds a component to g, as Prometheus's main adds its actors
// with oklog/run: body gets a context that ends with parent or when the
// group stops. A component that returns early (its context ended, or it
// gave up) does not stop the others: only the loop's end stops the group,
// so Run returns the loop's error. stop, if not nil, runs once body has
// returned and the group is stopping.
func addComponent(g *run.Group, parent context.Context, body func(context.Context), stop func()) {
	ctx, cancel := context.WithCancel(parent)
	stopping := make(chan struct{})
	g.Add(func() error {
		body(ctx)
		<-stopping
		if stop != nil {
			stop()
		}
		return nil
	}, func(error) {
		cancel()
		close(stopping)
	})
}

// addHotCache adds the hot cache to g, if one is configured. The cache
// stands apart: whatever happens to it (its folder, no log, S3
// unreachable, a full disk) offloading goes on. It is made here, not in
// New, because making it tidies its folder, which "once" and the audit
// must not do under a running agent.
func (a *Agent) addHotCache(g *run.Group, ctx context.Context) {
	if !a.cfg.caching() {
		return
	}
	c, err := hotcache.New(a.cfg.cacheConfig(), a.s3.client, a.ledgerClient)
	if err != nil {
		a.log.Error("the hot cache could not start; offloading goes on without it", "err", err)
		return
	}
	a.cache.Store(c)
	addComponent(g, ctx, func(ctx context.Context) { c.Run(ctx) }, func() { c.Close() })
}

// sweepEvery sweeps for orphaned multipart uploads, and records the proofs
// whose ledger write failed (recordPending), every rescan period until ctx
// ends (the start-up sweep is recoverAtStart's).
func (a *Agent) sweepEvery(ctx context.Context) {
	t := time.NewTicker(a.cfg.Rescan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.recordPending(ctx)
			a.sweepOrphans(ctx)
		}
	}
}

// addWorkers adds the workers to g: each offloads the jobs it is handed
// until the loop closes jobs, and sends each result back. work outlives
// the agent's context by the grace period (see drain), so the workers use
// it, not the component's context. Like every component they return only
// once the group stops: the group returns the error of the actor that
// returns first, which must be the loop's (workers that ended as the loop
// closed jobs, returning first, once made Once return nil for files it
// had given up).
func (a *Agent) addWorkers(g *run.Group, work context.Context, jobs <-chan job, results chan<- result) {
	addComponent(g, work, func(context.Context) {
		var wg sync.WaitGroup
		for range a.cfg.Workers {
			wg.Go(func() {
				for j := range jobs {
					// The erasure poller is removing the file: look
					// again later (it will be gone).
					if !a.busy.claim(j.rel) {
						results <- result{rel: j.rel, outcome: outNotReady}
						continue
					}
					r := a.offloadFile(work, j)
					a.busy.release(j.rel)
					results <- r
				}
			})
		}
		wg.Wait()
	}, nil)
}

// schedLoop is the scheduling loop's state; only the loop's goroutine
// touches it and its scheduler.
type schedLoop struct {
	a          *Agent
	once       bool
	s          *scheduler
	candidates chan candidate
	scanned    <-chan error // nil once the first scan has ended
	jobs       chan job
	results    chan result
	cancelWork context.CancelFunc // aborts in-flight uploads

	scanDone      bool
	scanErr       error // in Once: the scan missed folders
	failedForGood int
	saidFull      bool
	published     time.Time // when status last got the pending set
}

// run is the loop: it returns when ctx ends, after letting in-flight files
// finish (see drain), or in Once when every file has been dealt with. Its
// end closes jobs, which ends the workers.
func (l *schedLoop) run(ctx context.Context) error {
	defer close(l.jobs)
	defer func() { l.a.peakPending.Store(int64(l.s.peak)) }()
	defer l.publish() // status after the loop: what is left
	tick := time.NewTicker(tickInterval(l.a.cfg.Quiet))
	defer tick.Stop()
	l.a.live.start()
	defer l.a.live.end()
	for {
		l.a.live.tick(time.Now())
		select {
		case c := <-l.intake():
			if l.s.note(c, time.Now()) {
				l.dispatch() // a published file need not wait for the next tick
			}
		case err := <-l.scanned:
			if err != nil && ctx.Err() == nil {
				l.a.log.Error("scan failed", "err", err)
				l.a.track.scanFailed(err)
				l.scanErr = err
			}
			l.scanned, l.scanDone = nil, true
		case r := <-l.results:
			l.finish(r)
			l.dispatch()
		case <-tick.C:
			l.dispatch()
			if now := time.Now(); now.Sub(l.published) >= publishEvery {
				l.publish()
				l.published = now
			}
		case <-ctx.Done():
			l.a.live.end() // draining is bounded by the grace period
			left := l.s.len()
			l.a.drain(l.results, l.s, l.cancelWork, l.finish)
			if l.once && left > 0 {
				return fmt.Errorf("interrupted with %d files not offloaded: %w", left, ErrIncomplete)
			}
			return nil
		}
		if done, err := l.afterStep(); done {
			return err
		}
	}
}

// intake is where new candidates come from: none while the scheduler is
// full. Candidates then wait in the channel and the scan waits on them:
// memory stays bounded (see maxPending).
func (l *schedLoop) intake() <-chan candidate {
	// While the scheduler is full, candidates wait in the channel and the
	// scan waits on them: memory stays bounded (see maxPending), unless a
	// file failing for its own reason makes room (see room).
	if l.s.room() {
		return l.candidates
	}
	if !l.saidFull {
		l.a.log.Info("holding as many files as the agent keeps track of: the scan waits, and goes on as these are offloaded (status: backlog_full)",
			"pending", l.s.len(), "limit", l.s.limit)
		l.saidFull = true
	}
	return nil
}

// afterStep gives up the files the breaker says to, and in Once says
// whether every file has been dealt with, and what Once returns then.
func (l *schedLoop) afterStep() (done bool, err error) {
	if n := l.s.abandon(); n > 0 {
		l.failedForGood += n
		l.a.log.Error("S3 or DynamoDB stayed unreachable, or refused every file, through every probe: giving up the files still waiting, not offloaded",
			"files", n, "probes", onceAttempts, "cause", l.s.brk.cause)
	}
	if !l.once || !l.scanDone || l.s.len() > 0 || l.s.busy() > 0 || len(l.candidates) > 0 {
		return false, nil
	}
	switch {
	case l.failedForGood > 0 && l.scanErr != nil:
		return true, fmt.Errorf("%d files, and the scan %w: %w", l.failedForGood, l.scanErr, ErrIncomplete)
	case l.failedForGood > 0:
		return true, fmt.Errorf("%d files: %w", l.failedForGood, ErrIncomplete)
	case l.scanErr != nil:
		return true, fmt.Errorf("the scan %w: %w", l.scanErr, ErrIncomplete)
	}
	return true, nil
}

// dispatch hands every due file to a free worker; there is one for each,
// as due hands out no more than are free.
func (l *schedLoop) dispatch() {
	for _, j := range l.s.due(time.Now(), l.a.cfg.Workers-l.s.busy()) {
		l.jobs <- j
	}
}

// finish gives the scheduler a worker's result, and reports it.
func (l *schedLoop) finish(r result) {
	v := l.s.finish(r, time.Now())
	if l.a.report(r, v) {
		l.failedForGood++
	}
	if v.tripped || v.closed {
		l.a.reportBreaker(l.s.brk.status(time.Now()), l.s.len())
		l.publish()
	}
}

// publish hands status the pending set: maxListed files, leaving out the
// ones uploading, at most one per worker.
func (l *schedLoop) publish() {
	l.a.track.publish(l.s.snapshot(maxListed + l.a.cfg.Workers))
}

// watchOnSharedFS reports whether the watch folder is on a network or FUSE
// file system (see sharedFS), and its type.
func (a *Agent) watchOnSharedFS() (int64, bool) {
	dir, err := a.root.Open(".")
	if err != nil {
		return 0, false
	}
	defer dir.Close()
	t, err := fsTypeOf(int(dir.Fd()))
	return t, err == nil && sharedFS(t)
}

// lstat is the scheduler's look at a file: the version under its name now.
func (a *Agent) lstat(rel string) (fileID, error) {
	fi, err := a.root.Lstat(rel)
	if err != nil {
		return fileID{}, err
	}
	id, _ := idOf(fi)
	return id, nil
}

// report logs and counts one result the scheduler has taken (v is what it
// decided), and says whether the file is given up for good: Once then
// returns ErrIncomplete.
func (a *Agent) report(r result, v verdict) (forGood bool) {
	log := a.log.With("file", r.rel, "key", r.key)
	switch r.outcome {
	case outDone:
		a.stats.Uploaded.Add(1)
		a.stats.Bytes.Add(r.id.size)
		log.Info("offloaded", "bytes", r.id.size, "duration", r.elapsed.Round(time.Millisecond), "after", string(a.cfg.After))
		a.track.offloaded(time.Now())
		a.metrics.uploadSeconds.Observe(r.elapsed.Seconds())
	case outNotReady:
		if v.gaveUp {
			a.track.failed(Failure{Path: r.rel, At: time.Now().UTC(), Cause: "not settled", Error: fmt.Sprint(r.err)})
			log.Error("still open for writing or changing after --settle-timeout: given up, not offloaded", "settle_timeout", a.cfg.SettleTimeout, "reason", r.err)
			return true
		}
		switch {
		case errors.Is(r.err, errWriterHasIt):
			// Every slow upload from a browser passes here; not news.
			log.Debug("not settled, will look again", "reason", r.err)
		case r.err != nil:
			log.Info("not settled, will look again", "reason", r.err)
		}
	case outDryRun:
		log.Info("dry run", "would", r.err.Error())
	case outSkipped:
		log.Info("skipped: only regular files are offloaded", "reason", r.err)
	case outRefused:
		a.stats.Refused.Add(1)
		a.track.failed(Failure{Path: r.rel, At: time.Now().UTC(), Cause: "refused", Error: r.err.Error()})
		log.Warn("refused: never uploaded", "err", r.err)
		return true
	case outConflict:
		a.stats.Conflicts.Add(1)
		a.track.failed(Failure{Path: r.rel, At: time.Now().UTC(), Cause: "conflict", Error: r.err.Error()})
		log.Error("conflict: left in place, never overwritten", "err", r.err)
		return true
	case outFailed:
		a.stats.Failures.Add(1)
		a.metrics.failures.WithLabelValues(r.cause).Inc()
		a.track.failed(Failure{Path: r.rel, At: time.Now().UTC(), Cause: r.cause, Error: r.err.Error()})
		if v.gaveUp {
			log.Error("failed: given up, not offloaded (once tries a file a few times; the next run tries again)", "attempt", v.attempts, "err", r.err)
			return true
		}
		log.Warn("failed, will retry", "attempt", v.attempts, "retry_in", v.retryIn.Round(time.Millisecond), "err", r.err)
		return false
	}
	return false
}

// reportBreaker logs the breaker opening or closing.
func (a *Agent) reportBreaker(b BreakerStatus, pending int) {
	if b.State == "open" && strings.HasSuffix(b.Cause, refusedSuffix) {
		a.log.Warn(strings.TrimSuffix(b.Cause, refusedSuffix)+" refuses every file: check the role's grants and the bucket's, KMS key's or table's policy; breaker open, one file at a time probes it, files never tried first, the others wait unopened",
			"cause", b.Cause, "refusals", b.ConsecutiveRefusals, "files", refusalsToTrip, "pending", pending, "next_probe", b.NextProbe.Format(time.RFC3339))
		return
	}
	if b.State == "open" {
		a.log.Warn("S3 or DynamoDB is failing for every file: breaker open; one file at a time probes it, the others wait unopened",
			"cause", b.Cause, "failures", b.ConsecutiveFailures, "pending", pending, "next_probe", b.NextProbe.Format(time.RFC3339))
		return
	}
	a.log.Info("breaker closed: S3 and DynamoDB answer again; the waiting files go out at a rising rate", "pending", pending)
}

// drain waits for in-flight files for the grace period, then cancels them.
func (a *Agent) drain(results chan result, s *scheduler, cancelWork func(), finish func(result)) {
	if n := s.busy(); n > 0 {
		a.log.Info("shutting down: letting in-flight files finish", "files", n, "grace", a.cfg.Grace)
	}
	grace := time.NewTimer(a.cfg.Grace)
	defer grace.Stop()
	for s.busy() > 0 {
		select {
		case r := <-results:
			finish(r)
		case <-grace.C:
			a.log.Warn("grace period over: cutting off in-flight uploads (kept for the next run to resume); the files stay local", "files", s.busy())
			cancelWork()
			grace.Reset(time.Hour)
		}
	}
}

// publishEvery is how often the scheduler hands its pending set to status.
// A snapshot costs the listed files and the workers, not the backlog; the
// period bounds how stale status and the pending gauges may be.
const publishEvery = 500 * time.Millisecond

// tickInterval is how often the scheduler looks for settled files: a
// quarter of the quiet period, between 20 ms and 100 ms. A tick only looks
// at the files that are due, so it is cheap; a longer one would add its
// length to every file's time from close to upload.
func tickInterval(quiet time.Duration) time.Duration {
	return min(max(quiet/4, 20*time.Millisecond), 100*time.Millisecond)
}

// sweepOrphans aborts the multipart uploads under the key prefix that can
// never be completed or that belong to nobody alive. This agent's own live
// uploads are never touched. Aborted are:
//   - this agent's own whose abort failed (S3 was unreachable);
//   - uploads this host recorded (a dead run's, see resumeRecords) whose
//     file has changed or left the folder; one whose file is as recorded is
//     kept for the next attempt to resume;
//   - uploads for a key that already holds an object: completing one would
//     fail on If-None-Match, whoever made it (a run killed mid-upload whose
//     successor could not abort it, a create whose response was lost);
//   - uploads by others older than OrphanAge.
//
// Nothing is aborted for having begun before this agent started, even
// for a file in this watch folder: another host may hold the same file,
// in a shared folder or a copy of its own (rsync), and be uploading it,
// and S3 names no host for an upload in progress (ListMultipartUploads
// gives keys, ids, initiators and times). A dead run's upload that this
// host never recorded (killed between the create and the record) goes
// when this agent's own upload of the file completes (see abortKey), or
// at OrphanAge.
//
// The uploads are found two ways. The listing without a prefix finds all of
// them on AWS; MinIO answers it from a cache that starts empty when MinIO
// starts, so an upload left open across its restart drops out of it.
// MinIO reads its disk only for a prefix that is a whole key, so the keys
// of files still in the watch folder that are large enough to go in parts
// are listed one by one too, at most sweepKeys of them (see
// multipartKeys). An upload left by a restarted MinIO for a key whose file
// has left the watch folder is not found; the bucket's lifecycle rule
// (AbortIncompleteMultipartUpload) removes it.
//
// It runs at start and after every periodic rescan, so a stray upload is
// gone within one rescan of its file being offloaded. Read-only towards
// files; failures are logged and the next sweep tries again.
func (a *Agent) sweepOrphans(ctx context.Context) {
	// Ages are on S3's clock (see abortUploads).
	records, err := a.s3.records.byUploadID()
	if err != nil {
		a.log.Warn("could not read the records of uploads in progress; the next sweep tries again", "err", err)
		return
	}
	judged := map[string]bool{} // upload ids, which both listings may show
	stale := func(u types.MultipartUpload, s3Now time.Time) bool {
		key, id := aws.ToString(u.Key), aws.ToString(u.UploadId)
		if judged[id] || !strings.HasPrefix(key, a.cfg.Mapping.KeyPrefix) {
			return false
		}
		judged[id] = true
		mine, live := a.s3.ours(id)
		switch {
		case mine && live:
			return false
		case mine:
			return true
		}
		initiated := aws.ToTime(u.Initiated)
		if s3Now.Sub(initiated) > a.cfg.OrphanAge {
			a.s3.records.remove(key, id)
			return true
		}
		// This host's upload, recorded for a file version: kept while that
		// very file is still in the folder, for the next attempt (or run)
		// to resume; aborted once it changed or went, or once the agent
		// uploads in another storage class (it would not be resumed).
		if rec, ok := records[id]; ok && rec.Key == key {
			if rel, err := a.cfg.Mapping.FileForKey(key); err == nil {
				if now, err := a.lstat(rel); err == nil && rec.fits(key, now, rec.PartSize, rec.Host, string(a.s3.storageClass)) {
					return false
				}
			}
			a.s3.records.remove(key, id)
			return true
		}
		// Another host may be uploading the same file right now: only
		// age or an object under the key tells.
		_, err := a.s3.head(ctx, key)
		return err == nil
	}
	n, err := a.s3.abortUploads(ctx, "", stale)
	if err == nil {
		// One at a time, and none after a failure: S3 unreachable would
		// otherwise cost a call timeout a key.
		for _, key := range a.multipartKeys(ctx) {
			m, kerr := a.s3.abortUploads(ctx, key, stale)
			if n += m; kerr != nil {
				err = kerr
				break
			}
		}
	}
	if err == nil {
		n += a.dropStaleRecords(judged, records)
	}
	a.stats.Orphans.Add(int64(n))
	if err != nil {
		a.log.Warn("could not list multipart uploads to abort orphans; the next sweep tries again", "err", err)
	} else {
		a.stats.Sweeps.Add(1)
	}
	if n > 0 {
		a.log.Info("aborted orphaned multipart uploads", "uploads", n)
	}
}

// dropStaleRecords deals with the records whose upload neither listing
// showed (MinIO forgets uploads across its restart; a Complete may have
// gone through unanswered): a record whose file is gone or changed has its
// upload aborted, if there still is one, and is removed. A record that
// still fits its file is kept; the file's next attempt finds out whether
// S3 still has the upload. It returns how many uploads it aborted.
func (a *Agent) dropStaleRecords(seen map[string]bool, records map[string]uploadRecord) int {
	n := 0
	for id, rec := range records {
		if seen[id] {
			continue
		}
		if rel, err := a.cfg.Mapping.FileForKey(rec.Key); err == nil {
			if now, err := a.lstat(rel); err == nil && rec.fits(rec.Key, now, rec.PartSize, rec.Host, string(a.s3.storageClass)) {
				continue
			}
		}
		if a.s3.abortID(rec.Key, id) == nil {
			a.s3.records.remove(rec.Key, id)
			n++
		}
	}
	return n
}

// sweepKeys is the most keys one sweep lists one by one: at the default
// one-minute rescan, about one request a second, whatever the backlog.
const sweepKeys = 64

// multipartKeys returns the keys of the files in the watch folder larger
// than a part, the only ones uploaded in parts: all of them when there are
// at most sweepKeys, otherwise a uniform sample (reservoir), so successive
// sweeps come by each one. The walk skips what the scan skips and reads
// each folder scanBatch names at a time, as the scan does; it costs about
// what a rescan costs, once a rescan.
func (a *Agent) multipartKeys(ctx context.Context) []string {
	var keys []string
	found := 0
	var walk func(dir string)
	walk = func(dir string) {
		f, err := a.root.Open(dir)
		if err != nil {
			return
		}
		defer f.Close()
		for ctx.Err() == nil {
			ents, err := f.ReadDir(scanBatch)
			for _, d := range ents {
				rel := path.Join(dir, d.Name())
				switch {
				case ignored(rel, a.cfg.Ignore):
					continue
				case d.IsDir():
					walk(rel)
					continue
				case !d.Type().IsRegular():
					continue
				}
				fi, err := d.Info()
				if err != nil || fi.Size() <= a.cfg.PartSize {
					continue
				}
				key, err := a.cfg.Mapping.KeyForFile(rel)
				if err != nil {
					continue
				}
				if found++; len(keys) < sweepKeys {
					keys = append(keys, key)
				} else if i := rand.IntN(found); i < sweepKeys {
					keys[i] = key
				}
			}
			if err != nil {
				return
			}
		}
	}
	walk(".")
	return keys
}
