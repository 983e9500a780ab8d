package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/hotcache"
)

// metrics are the agent's Prometheus metrics, on a registry of its own.
type metrics struct {
	registry      *prometheus.Registry
	uploadSeconds prometheus.Histogram
	failures      *prometheus.CounterVec
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		uploadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "offload_upload_duration_seconds",
			Help: "Time to offload one file end to end: read, upload, verify, record, archive.",
			// 10 ms (a small file on a LAN) to about 20 min (a large file on a slow uplink).
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12),
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_failures_total",
			Help: "Failed attempts, each retried with backoff, by cause: s3, dynamodb, local (reading the file), archive.",
		}, []string{"cause"}),
	}
	for _, c := range []string{causeS3, causeDynamoDB, causeLocal, causeArchive} {
		m.failures.WithLabelValues(c) // every cause shows, at 0
	}
	counter := func(name, help string, v func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	t := a.track
	locked := func(f func() float64) func() float64 {
		return func() float64 { t.mu.Lock(); defer t.mu.Unlock(); return f() }
	}
	build := ReadBuild()
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "offload_build_info",
			Help:        "Always 1; its labels say which build runs (as offload-agent version prints it).",
			ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion},
		}, func() float64 { return 1 }),
		m.uploadSeconds, m.failures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		counter("offload_files_offloaded_total", "Files proven in S3, recorded in the ledger and archived, deleted or kept.", a.stats.Uploaded.Load),
		counter("offload_bytes_offloaded_total", "Bytes of the files offloaded.", a.stats.Bytes.Load),
		counter("offload_conflicts_total", "Files left in place because their key holds other bytes (needs a human).", a.stats.Conflicts.Load),
		counter("offload_resumed_bytes_total", "Bytes of multipart uploads not sent again because S3 already held them: resumed after a failure or a restart.", a.s3.resumed.Load),
		counter("offload_orphan_sweeps_total", "Sweeps that listed every multipart upload under the key prefix to abort orphans.", a.stats.Sweeps.Load),
		counter("offload_orphan_uploads_aborted_total", "Orphaned multipart uploads the sweeps aborted.", a.stats.Orphans.Load),
		counter("offload_erasures_forgotten_total", "Erased originals whose copies on this host (watch folder, archive, hot cache, upload records) the daemon removed, and whose erasure it acknowledged in the ledger.", a.stats.Forgotten.Load),
		counter("offload_erasure_poll_failures_total", "Erasure polls that failed (heartbeat, the erasures index, a removal or an acknowledgement); the next poll tries again.", a.stats.ErasurePollFailures.Load),
		counter("offload_refused_total", "Files never uploaded because their name breaks the naming contract.", a.stats.Refused.Load),
		gauge("offload_files_pending", "Files waiting: not settled yet, or waiting out a retry.", locked(func() float64 { n, _, _ := t.waiting(0); return float64(n) })),
		gauge("offload_bytes_pending", "Bytes of the files waiting.", locked(func() float64 { _, b, _ := t.waiting(0); return float64(b) })),
		gauge("offload_backlog_full", "1 while the agent holds as many pending files as it may (status: pending_limit) and none that keeps failing for its own reason can make room: the scan waits.",
			locked(func() float64 {
				if t.pending.full {
					return 1
				}
				return 0
			})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "offload_scan_errors_total", Help: "Scans that could not read some folder (status: scan_error); their files were not looked at."},
			locked(func() float64 { return float64(t.scanErrors) })),
		gauge("offload_watch_failed", "1 after inotify failed (status: watch_error): only the periodic rescan finds new files.",
			locked(func() float64 {
				if t.watchErr != "" {
					return 1
				}
				return 0
			})),
		gauge("offload_leases_available", "1 when the start-up check found that the kernel grants the agent read leases, which tell whether a writer has a file open and guard the claim (status: leases_available); 0 on a network file system, where they are not used, and in a dry run, which makes no probe.",
			func() float64 {
				if a.leasesOK.Load() {
					return 1
				}
				return 0
			}),
		gauge("offload_files_in_flight", "Files being offloaded now.", locked(func() float64 { return float64(len(t.inFlight)) })),
		gauge("offload_oldest_pending_age_seconds", "How long the longest-waiting file has waited (0 when none waits).",
			func() float64 { return t.oldestPendingAge().Seconds() }),
		gauge("offload_breaker_open", "1 while the circuit breaker is open: S3 or DynamoDB failed as a service (no answer, 5xx, throttling; not a refusal of one file's request) for several files in a row, or refused the requests of many different files in a row with none offloaded; one file at a time probes it, the others wait.",
			locked(func() float64 {
				if t.pending.breaker.State == "open" {
					return 1
				}
				return 0
			})),
		gauge("offload_breaker_open_refused", "1 while the circuit breaker is open because S3 or DynamoDB refuses every file (status breaker cause s3-refused or dynamodb-refused): check the role's grants and the bucket's, KMS key's or table's policy.",
			locked(func() float64 {
				if t.pending.breaker.State == "open" && strings.HasSuffix(t.pending.breaker.Cause, refusedSuffix) {
					return 1
				}
				return 0
			})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "offload_breaker_trips_total", Help: "Times the circuit breaker opened."},
			locked(func() float64 { return float64(t.pending.breaker.Trips) })),
		gauge("offload_last_success_timestamp_seconds", "Unix time of the last file offloaded (0 before the first).", locked(func() float64 {
			if t.lastOffloadedAt.IsZero() {
				return 0
			}
			return float64(t.lastOffloadedAt.UnixNano()) / 1e9
		})),
	)
	if a.cfg.caching() {
		m.registry.MustRegister(cacheMetrics{a})
	}
	if a.cfg.After == AfterArchive {
		m.registry.MustRegister(gauge("offload_archive_free_bytes", "Free bytes on the archive folder's file system, for the agent's user.", func() float64 {
			var st unix.Statfs_t
			if err := unix.Statfs(a.cfg.Archive, &st); err != nil {
				return -1
			}
			return float64(st.Bavail) * float64(st.Bsize)
		}))
	}
	return m
}

// Handler serves the agent's operations endpoints, for the --metrics-addr
// listener and the status socket:
//
//	/metrics  Prometheus metrics
//	/healthz  200 while the scheduling loop turns (see Alive); 503 when it has
//	          not for a minute: the agent is wedged
//	/readyz   200 when S3 and DynamoDB answered within the last few seconds, else 503
//	/status   the Status as JSON (what "offload-agent status" prints)
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.Alive(healthStall); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("wedged: " + err.Error() + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.probe.check(r.Context(), a); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a.Status())
	})
	return mux
}

// Readiness: S3 and DynamoDB are asked at most every readyCache, each call
// bounded by readyTimeout, with the calls the agent's IAM policy already
// allows (listing multipart uploads; reading a ledger item).
const (
	readyCache   = 10 * time.Second
	readyTimeout = 5 * time.Second
)

// readyProbeKey is a ledger key no file maps to (a dot-segment is refused by
// the naming contract), so the probe reads nothing real.
const readyProbeKey = ".offload-readyz-probe"

type readiness struct {
	mu   sync.Mutex
	at   time.Time
	last error
}

func (p *readiness) check(ctx context.Context, a *Agent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < readyCache {
		return p.last
	}
	// The probe outlives an impatient client, so what is cached is S3's
	// and DynamoDB's answer, not the client's cancellation.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	var s3err, dberr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, err := a.s3.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{
			Bucket: aws.String(a.cfg.Bucket), Prefix: aws.String(a.cfg.Mapping.KeyPrefix), MaxUploads: aws.Int32(1)})
		if err != nil {
			s3err = errors.New("S3: " + oneLineErr(err))
		}
	}()
	go func() {
		defer wg.Done()
		_, err := offload.GetRecord(ctx, a.ledgerClient, a.cfg.Table, a.cfg.Mapping.KeyPrefix+readyProbeKey)
		if err != nil && !errors.Is(err, offload.ErrNotFound) {
			dberr = errors.New("DynamoDB: " + oneLineErr(err))
		}
	}()
	wg.Wait()
	p.at, p.last = time.Now(), errors.Join(s3err, dberr)
	return p.last
}

// oneLineErr keeps an SDK error on one line for a plain-text answer.
func oneLineErr(err error) string {
	b := []byte(err.Error())
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}

// cacheMetrics are the hot cache's metrics, read from one snapshot per
// scrape.
type cacheMetrics struct{ a *Agent }

var (
	cacheHitsDesc = prometheus.NewDesc("offload_cache_hits_total",
		"Requests the web server answered from the hot cache (200, 206 or 304 in its access log for a cached path).", nil, nil)
	cacheMissesDesc = prometheus.NewDesc("offload_cache_misses_total",
		"Requests the web server redirected to the resolver (302 in its access log for a path under the URL prefix).", nil, nil)
	cacheFetchesDesc = prometheus.NewDesc("offload_cache_fetches_total",
		"Originals fetched from S3 into the hot cache, each checked against the ledger.", nil, nil)
	cacheFetchedBytesDesc = prometheus.NewDesc("offload_cache_fetched_bytes_total", "Bytes of those fetches.", nil, nil)
	cacheFailuresDesc     = prometheus.NewDesc("offload_cache_fetch_failures_total",
		"Hot paths not fetched, by reason: not_in_ledger, too_large, disk_full, ledger, s3, mismatch, local, colder, over_budget (held back by --cache-fetch-budget, at each redirect that would fetch it), erased (the ledger's item is a tombstone).", []string{"reason"}, nil)
	cacheEvictionsDesc = prometheus.NewDesc("offload_cache_evictions_total",
		"Files removed from the hot cache, by reason: size (least recently requested, to stay in the budget), idle, or erased (the original was erased).", []string{"reason"}, nil)
	cacheBytesDesc  = prometheus.NewDesc("offload_cache_bytes", "Bytes of the files in the hot cache.", nil, nil)
	cacheFilesDesc  = prometheus.NewDesc("offload_cache_files", "Files in the hot cache.", nil, nil)
	cacheBudgetDesc = prometheus.NewDesc("offload_cache_budget_bytes", "The hot cache's budget (--cache-size).", nil, nil)
	cacheLogDesc    = prometheus.NewDesc("offload_cache_access_log_up",
		"1 while the access log is being followed, 0 while it is missing or unreadable.", nil, nil)
	cacheFetchBudgetDesc = prometheus.NewDesc("offload_cache_fetch_budget_bytes",
		"What the hot cache may fetch from S3 per --cache-window (--cache-fetch-budget), and at most at once.", nil, nil)
	cacheFetchBudgetLeftDesc = prometheus.NewDesc("offload_cache_fetch_budget_left_bytes",
		"What the hot cache may fetch from S3 now; it refills at the budget per window.", nil, nil)
	cacheInvalidLinksDesc = prometheus.NewDesc("offload_cache_invalid_links_total",
		"Requests in the access log whose signed link was missing, forged or expired; with a signing key they count for nothing else.", nil, nil)
)

func (cacheMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheHitsDesc, cacheMissesDesc, cacheFetchesDesc, cacheFetchedBytesDesc, cacheFailuresDesc,
		cacheEvictionsDesc, cacheBytesDesc, cacheFilesDesc, cacheBudgetDesc, cacheLogDesc,
		cacheFetchBudgetDesc, cacheFetchBudgetLeftDesc, cacheInvalidLinksDesc} {
		ch <- d
	}
}

func (m cacheMetrics) Collect(ch chan<- prometheus.Metric) {
	// Before the cache starts (or if it could not: the log says why) every
	// value is 0 but the budget, and the access log is down.
	cc := m.a.cfg.cacheConfig()
	s := hotcache.Stats{Budget: cc.Size, FetchBudget: cc.FetchBudget}
	if c := m.a.cache.Load(); c != nil {
		s = c.Stats()
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(cacheHitsDesc, s.Hits)
	counter(cacheMissesDesc, s.Misses)
	counter(cacheFetchesDesc, s.Fetches)
	counter(cacheFetchedBytesDesc, s.FetchedBytes)
	for _, r := range hotcache.FailReasons {
		counter(cacheFailuresDesc, s.FetchFailures[r], r) // every reason shows, at 0
	}
	counter(cacheEvictionsDesc, s.EvictedSize, "size")
	counter(cacheEvictionsDesc, s.EvictedIdle, "idle")
	counter(cacheEvictionsDesc, s.EvictedErased, "erased")
	gauge(cacheBytesDesc, s.Bytes)
	gauge(cacheFilesDesc, int64(s.Files))
	gauge(cacheBudgetDesc, s.Budget)
	up := int64(0)
	if s.Log.State == hotcache.StateFollowing {
		up = 1
	}
	gauge(cacheLogDesc, up)
	gauge(cacheFetchBudgetDesc, s.FetchBudget)
	gauge(cacheFetchBudgetLeftDesc, s.FetchBudgetLeft)
	counter(cacheInvalidLinksDesc, s.InvalidLinks)
}
