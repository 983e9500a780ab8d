// Command bench measures offload-agent against s5cmd and rclone, and
// against the ceiling (a raw SDK upload, and reading the files with their
// CRC64NVME), on the same local MinIO in the same run. Tools take turns,
// each scenario is repeated, and medians and ratios are printed.
//
// It runs inside the local stack over TLS with the peers installed, as
// "make bench" starts it:
//
//	infra/local/stack run --tls --bench-tools -- go run ./infra/bench --agent bin/offload-agent
//
// The outage scenario alone needs neither TLS nor the peers, and compares
// agent binaries (before and after a change) on the same files:
//
//	infra/local/stack run -- go run ./infra/bench --scenarios outage --agent OLD,NEW
//
// Nor does the resolver load alone:
//
//	infra/local/stack run -- go run ./infra/bench --scenarios resolver --resolver bin/offload-resolver
//
// The hot cache and CDN scenarios send a Zipf stream through lighttpd and
// price each run per 1,000 views. They need no peers, nor TLS (the local
// CloudFront edge is plain HTTP on loopback); --tls keeps S3 on HTTPS, as
// BENCHMARKS.md's figures were measured:
//
//	infra/local/stack run --tls -- go run ./infra/bench --scenarios cdn --agent bin/offload-agent --resolver bin/offload-resolver
//
// The prune and erase scenario times the agent's prune and erase commands
// against plain baselines; it needs neither TLS nor the peers:
//
//	infra/local/stack run -- go run ./infra/bench --scenarios prune --agent bin/offload-agent
//
// The storage cost table needs no servers at all:
//
//	go run ./infra/bench --scenarios storage
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
)

// scenario is one set of files to move.
type scenario struct {
	id    string // what --scenarios selects it by
	name  string
	files int
	size  int64
	wan   bool // every tool talks to S3 and DynamoDB through --latency each way
}

var scenarios = []scenario{
	{"1", "1 GiB file", 1, 1 << 30, false},
	{"2", "300 x 8 MiB photos", 300, 8 << 20, false},
	{"3", "2,000 x 100 KiB", 2000, 100 << 10, false},
	// Small files wait on round trips, which loopback does not have
	// (issue 15): the same files with a WAN's latency added by Toxiproxy.
	{"wan", "WAN: 2,000 x 100 KiB", 2000, 100 << 10, true},
	{"wan", "WAN: 300 x 8 MiB photos", 300, 8 << 20, true},
}

func main() {
	if addr := os.Getenv(fixed302Env); addr != "" {
		if err := serveFixed302(addr); err != nil {
			fmt.Fprintln(os.Stderr, "bench: fixed 302:", err)
			os.Exit(1)
		}
		return
	}
	var (
		agentBin = flag.String("agent", "bin/offload-agent", "the offload-agent binary to measure (for outage: comma-separated binaries, measured in turn)")
		baseline = flag.String("baseline", "", "another offload-agent binary (say, an older commit's) measured alongside in the upload scenarios")
		latency  = flag.Duration("latency", 12*time.Millisecond, "latency Toxiproxy adds each way (to S3 and DynamoDB, for every tool) in the wan scenarios")
		extra    = flag.String("agent-args", "", "extra flags for offload-agent once, space-separated (e.g. \"--transfers 16\")")
		resolver = flag.String("resolver", "bin/offload-resolver", "the offload-resolver binary to measure (empty: skip)")
		conns    = flag.Int("conns", 32, "connections of the resolver load")
		loadFor  = flag.Duration("load-for", 5*time.Second, "how long each resolver load runs")
		reps     = flag.Int("reps", 3, "repetitions of each tool per scenario (the median is printed)")
		only     = flag.String("scenarios", "", "comma-separated scenarios to run: 1, 2, 3 (uploads), wan (3 and 2 with --latency each way), daemon (close to start), backfill (once over --backfill-files against 2,000; only when named), resume (a 1 GiB upload under --bwlimit 32M killed half way; only when named), outage (CPU and memory with S3 down; only when named), resolver (the resolver load alone; no TLS or peers needed), hotcache (2,000 originals, a Zipf stream through lighttpd with and without the agent's cache, and the cost per 1,000 views; only when named), cdn (the same originals and stream, S3 direct and through a local CloudFront edge, each without and with the cache, and the cost per 1,000 views; only when named), storage (the cost per GB-month of the photo-size mix in each storage class, computed, no servers; only when named), prune (--prune-files originals of the photo-size mix offloaded, then offload-agent prune --dry-run and prune against reading them through CRC64NVME and against their GetItem and HEAD alone, and offload-agent erase of --erase-keys keys against a DeleteObject per version; only when named); default all but backfill, outage, hotcache, cdn, storage and prune")
		bfFiles  = flag.Int("backfill-files", 100_000, "files of the large backfill run")
		bfSize   = flag.Int64("backfill-size", 32<<10, "bytes of each backfill file")
		outFiles = flag.Int("outage-files", outageFiles, "tiny files waiting in the outage scenario")
		outFor   = flag.Duration("outage-for", outageFor, "how long the outage scenario measures each agent, minute by minute")
		cdnReqs  = flag.Int("cdn-requests", cacheRequests, "CDN scenario: requests in the stream")
		cdnOrigs = flag.Int("cdn-originals", cacheOriginals, "CDN scenario: originals the stream draws from (the first N of the hot cache scenario's)")
		cacheTh  = flag.String("cache-thresholds", "2,3,5", "hot cache scenario: the --cache-threshold values measured, each against the same stream without the cache")
		prFiles  = flag.Int("prune-files", pruneOriginals, "prune scenario: originals of the photo-size mix offloaded, then pruned")
		erKeys   = flag.Int("erase-keys", eraseKeys, "prune scenario: keys erased in one offload-agent erase (needs (2 x --reps + 1) x this many originals)")
		work     = flag.String("work", "", "folder for the generated files (default: a temp folder, removed at the end)")
	)
	flag.Parse()
	agentArgs = strings.Fields(*extra)
	backfillFiles, backfillSize = *bfFiles, *bfSize
	outageFiles, outageFor = *outFiles, *outFor
	cdnRequests, cdnOriginals = *cdnReqs, *cdnOrigs
	pruneFiles, eraseKeysCount = *prFiles, *erKeys
	if cdnRequests < 1 || cdnOriginals < 1 {
		fmt.Fprintln(os.Stderr, "bench: --cdn-requests and --cdn-originals: want at least 1")
		os.Exit(2)
	}
	for _, v := range strings.Split(*cacheTh, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: --cache-thresholds: %q is not a positive number\n", v)
			os.Exit(2)
		}
		cacheThresholds = append(cacheThresholds, n)
	}
	if err := checkScenarios(*only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if slices.Contains(strings.Split(*only, ","), "storage") {
		printStorageCosts(os.Stdout, photoBands())
		if *only = strings.Join(slices.DeleteFunc(strings.Split(*only, ","), func(id string) bool { return id == "storage" }), ","); *only == "" {
			return // the table alone: no stack needed
		}
	}
	if err := run(*agentBin, *baseline, *resolver, *reps, *conns, *loadFor, *latency, *only, *work); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// otherScenarios are the --scenarios ids beyond the upload scenarios'.
var otherScenarios = []string{"daemon", "backfill", "resume", "outage", "resolver", "hotcache", "cdn", "storage", "prune"}

// checkScenarios refuses a --scenarios list that names an unknown id, so a
// typo is an error rather than a run that measures nothing.
func checkScenarios(only string) error {
	if only == "" {
		return nil
	}
	known := slices.Clone(otherScenarios)
	for _, sc := range scenarios {
		if !slices.Contains(known, sc.id) {
			known = append(known, sc.id)
		}
	}
	for _, id := range strings.Split(only, ",") {
		if !slices.Contains(known, id) {
			return fmt.Errorf("--scenarios: unknown scenario %q (known: %s)", id, strings.Join(known, ", "))
		}
	}
	return nil
}

// cacheThresholds are the hot cache scenario's thresholds (--cache-thresholds).
var cacheThresholds []int

// agentArgs are extra flags for every agent run (--agent-args).
var agentArgs []string

// The backfill scenario's large run (--backfill-files, --backfill-size).
var (
	backfillFiles int
	backfillSize  int64
)

// env is what the stack exported.
type env struct {
	endpoint, bucket, table, region, access, secret, ca, s5cmd, rclone string
}

// loadEnv reads the stack's environment; peers: the s5cmd and rclone
// comparisons will run, over TLS.
func loadEnv(peers bool) (env, error) {
	e := env{endpoint: os.Getenv("AWS_ENDPOINT_URL_S3"), bucket: os.Getenv("OFFLOAD_BUCKET"), table: os.Getenv("OFFLOAD_TABLE"),
		region: os.Getenv("AWS_REGION"), access: os.Getenv("AWS_ACCESS_KEY_ID"), secret: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		ca: os.Getenv("AWS_CA_BUNDLE"), s5cmd: os.Getenv("OFFLOAD_S5CMD"), rclone: os.Getenv("OFFLOAD_RCLONE")}
	need := map[string]string{"AWS_ENDPOINT_URL_S3": e.endpoint, "OFFLOAD_BUCKET": e.bucket}
	if !peers {
		for name, v := range need {
			if v == "" {
				return e, fmt.Errorf("%s is not set: run inside infra/local/stack run", name)
			}
		}
		return e, nil
	}
	need["OFFLOAD_S5CMD"], need["OFFLOAD_RCLONE"] = e.s5cmd, e.rclone
	for name, v := range need {
		if v == "" {
			return e, fmt.Errorf("%s is not set: run through \"make bench\" (infra/local/stack run --tls --bench-tools)", name)
		}
	}
	if !strings.HasPrefix(e.endpoint, "https://127.0.0.1:") {
		return e, fmt.Errorf("S3 endpoint %s: the benchmark wants the stack over TLS on loopback (--tls)", e.endpoint)
	}
	return e, nil
}

func run(agentBin, baselineBin, resolverBin string, reps, conns int, loadFor, latency time.Duration, only, work string) error {
	// outage and resume compare agent binaries and need no peers; neither
	// does the resolver alone, nor prune, which times the agent's own
	// commands.
	outageOnly := only == "outage"
	peers := false
	for _, sc := range strings.Split(only, ",") {
		peers = peers || (sc != "outage" && sc != "resume" && sc != "resolver" && sc != "hotcache" && sc != "cdn" && sc != "prune")
	}
	e, err := loadEnv(peers)
	if err != nil {
		return err
	}
	var bins []string
	for _, bin := range strings.Split(agentBin, ",") {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		bins = append(bins, abs)
	}
	agentBin = bins[0]
	if baselineBin != "" {
		if baselineBin, err = filepath.Abs(baselineBin); err != nil {
			return err
		}
	}
	if work == "" {
		if work, err = os.MkdirTemp("", "offload-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	ctx := context.Background()
	cfg, err := awsConfig(ctx)
	if err != nil {
		return err
	}
	// The raw ceiling: no checksum beyond what S3 requires, no ledger.
	raw := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	b := &bench{env: e, agent: agentBin, baseline: baselineBin, cfg: cfg, s3: raw, upload: raw, rawInFlight: rawInFlightLoopback, work: work,
		s3Endpoint: e.endpoint, dbEndpoint: os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), latency: latency}
	if outageOnly {
		return b.outage(ctx, bins)
	}
	if only == "resume" {
		return b.resume(ctx, bins)
	}
	if only == "hotcache" {
		if resolverBin == "" {
			return errors.New("--scenarios hotcache: --resolver is empty")
		}
		if resolverBin, err = filepath.Abs(resolverBin); err != nil {
			return err
		}
		return b.cacheBench(ctx, resolverBin, cacheThresholds)
	}
	if only == "cdn" {
		if resolverBin == "" {
			return errors.New("--scenarios cdn: --resolver is empty")
		}
		if resolverBin, err = filepath.Abs(resolverBin); err != nil {
			return err
		}
		return b.cdnBench(ctx, resolverBin)
	}
	if only == "prune" {
		return b.pruneBench(ctx, pruneFiles, eraseKeysCount, reps)
	}
	if only == "resolver" {
		if resolverBin == "" {
			return errors.New("--scenarios resolver: --resolver is empty")
		}
		if resolverBin, err = filepath.Abs(resolverBin); err != nil {
			return err
		}
		return b.resolverBench(ctx, resolverBin, conns, reps, loadFor)
	}
	fmt.Printf("offload bench: MinIO over TLS at %s, %d repetitions, tools take turns\n", e.endpoint, reps)
	for _, sc := range scenarios {
		if only != "" && !slices.Contains(strings.Split(only, ","), sc.id) {
			continue
		}
		if err := b.scenario(ctx, sc, reps); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	if only == "" || slices.Contains(strings.Split(only, ","), "daemon") {
		if err := b.closeToStart(ctx, 50); err != nil {
			return fmt.Errorf("close to start: %w", err)
		}
	}
	if slices.Contains(strings.Split(only, ","), "backfill") {
		if err := b.backfill(ctx, backfillFiles, backfillSize, reps); err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
	}
	if slices.Contains(strings.Split(only, ","), "resume") {
		if err := b.resume(ctx, bins); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	}
	if slices.Contains(strings.Split(only, ","), "outage") {
		if err := b.outage(ctx, bins); err != nil {
			return fmt.Errorf("outage: %w", err)
		}
	}
	if slices.Contains(strings.Split(only, ","), "hotcache") {
		if resolverBin == "" {
			return errors.New("--scenarios hotcache: --resolver is empty")
		}
		abs, err := filepath.Abs(resolverBin)
		if err != nil {
			return err
		}
		if err := b.cacheBench(ctx, abs, cacheThresholds); err != nil {
			return fmt.Errorf("hot cache: %w", err)
		}
	}
	if slices.Contains(strings.Split(only, ","), "cdn") {
		if resolverBin == "" {
			return errors.New("--scenarios cdn: --resolver is empty")
		}
		abs, err := filepath.Abs(resolverBin)
		if err != nil {
			return err
		}
		if err := b.cdnBench(ctx, abs); err != nil {
			return fmt.Errorf("cdn: %w", err)
		}
	}
	if slices.Contains(strings.Split(only, ","), "prune") {
		if err := b.pruneBench(ctx, pruneFiles, eraseKeysCount, reps); err != nil {
			return fmt.Errorf("prune and erase: %w", err)
		}
	}
	if resolverBin != "" {
		if resolverBin, err = filepath.Abs(resolverBin); err != nil {
			return err
		}
		return b.resolverBench(ctx, resolverBin, conns, reps, loadFor)
	}
	return nil
}

// awsConfig is the SDK configuration from the stack's environment, never
// from the machine's shared files or instance metadata.
// Its connection pool keeps one idle connection for every request the raw
// upload has in flight.
func awsConfig(ctx context.Context) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = rawInFlightWAN
	})
	return config.LoadDefaultConfig(ctx, config.WithHTTPClient(httpClient), config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}), config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
}

type bench struct {
	env      env
	agent    string
	baseline string // "": none
	cfg      aws.Config
	s3       *s3.Client // direct to MinIO: clean-up
	upload   *s3.Client // the raw ceiling: direct, or through the WAN proxy
	work     string
	runs     int
	latency  time.Duration // each way, in the wan scenarios
	// rawInFlight is how many files or parts the raw SDK upload sends at
	// once: 8 on loopback, like the agent's parts; on the WAN, where small
	// files wait on round trips, rawInFlightWAN.
	rawInFlight int
	servers     []server // whose CPU time each run reads (wan scenarios)
	// Where the tools send S3 and DynamoDB requests: the stack's servers,
	// the WAN proxies, or the counting proxies for the untimed counting run.
	s3Endpoint, dbEndpoint string
}

// result is one timed run of one tool.
type result struct {
	took time.Duration
	rss  int64         // peak resident set in bytes; 0 when not measured
	cpu  time.Duration // the tool's own user + system CPU time
	// servers is the CPU time each of the stack's servers used during
	// the run (wan scenarios only).
	servers map[string]time.Duration
}

// tool moves every file of src to S3 under prefix.
type tool struct {
	name string
	run  func(ctx context.Context, src, prefix string) (result, error)
}

func (b *bench) scenario(ctx context.Context, sc scenario, reps int) error {
	src := filepath.Join(b.work, fmt.Sprintf("%s-%d-src", sc.id, sc.files))
	if err := generate(src, sc); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	total := float64(sc.size*int64(sc.files)) / (1 << 20)
	if sc.wan {
		fmt.Printf("\n## %s (%.0f MiB), %s added each way to every S3 and DynamoDB connection\n", sc.name, total, b.latency)
		s3Proxy, err := newLatencyProxy("bench-s3", b.env.endpoint, b.latency)
		if err != nil {
			return err
		}
		defer s3Proxy.close()
		dbProxy, err := newLatencyProxy("bench-dynamodb", os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), b.latency)
		if err != nil {
			return err
		}
		defer dbProxy.close()
		b.s3Endpoint, b.dbEndpoint = s3Proxy.endpoint, dbProxy.endpoint
		b.rawInFlight = rawInFlightWAN
		b.servers = stackServers(map[string]string{"MinIO": b.env.endpoint,
			"dynalite": os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), "Toxiproxy": os.Getenv("TOXIPROXY_URL")})
		b.upload = s3.NewFromConfig(b.cfg, func(o *s3.Options) {
			o.UsePathStyle = true
			o.BaseEndpoint = aws.String(s3Proxy.endpoint)
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		})
		defer func() {
			b.s3Endpoint, b.dbEndpoint = b.env.endpoint, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
			b.upload, b.rawInFlight, b.servers = b.s3, rawInFlightLoopback, nil
		}()
	} else {
		fmt.Printf("\n## %s (%.0f MiB)\n", sc.name, total)
	}

	tools := []tool{
		{"offload-agent once", b.runAgent},
		{"s5cmd mv", b.runS5cmd},
		{"rclone move --checksum", b.runRclone},
		{"raw SDK upload (no checksum, no ledger)", func(ctx context.Context, src, prefix string) (result, error) {
			return b.runRawSDK(ctx, src, prefix, false)
		}},
		{"raw SDK upload + CRC64NVME that S3 checks", func(ctx context.Context, src, prefix string) (result, error) {
			return b.runRawSDK(ctx, src, prefix, true)
		}},
	}
	// The peers whose requests the counting run counts.
	counted := slices.Clone(tools[:3])
	if b.baseline != "" {
		tools = slices.Insert(tools, 1, tool{"offload-agent once, --baseline", func(ctx context.Context, src, prefix string) (result, error) {
			return b.runAgentBin(ctx, b.baseline, src, prefix)
		}})
	}
	times := map[string][]result{}
	var readMiBs []float64
	for rep := range reps {
		mibs, err := readAndCRC(src)
		if err != nil {
			return err
		}
		readMiBs = append(readMiBs, mibs)
		for i := range tools {
			t := tools[(i+rep)%len(tools)] // take turns
			r, err := b.once(ctx, t, src)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			times[t.name] = append(times[t.name], r)
		}
	}

	if sc.wan {
		// The same requests as on loopback: no counting run.
		b.table(sc, tools, times, readMiBs, nil, nil)
		return nil
	}
	// One more run of each tool through counting proxies, untimed.
	c, err := b.newCounters()
	if err != nil {
		return err
	}
	defer c.close()
	requests := map[string]string{}
	for _, t := range counted {
		counts, err := c.count(b, func() error { _, err := b.once(ctx, t, src); return err })
		if err != nil {
			return fmt.Errorf("%s (counting run): %w", t.name, err)
		}
		requests[t.name] = perFile(counts, sc.files)
	}
	b.table(sc, tools, times, readMiBs, counted, requests)
	return nil
}

// table prints the medians of one scenario, and the requests per file of
// the counted tools (none: not counted).
func (b *bench) table(sc scenario, tools []tool, times map[string][]result, readMiBs []float64, counted []tool, requests map[string]string) {
	total := float64(sc.size*int64(sc.files)) / (1 << 20)
	ours := median(times[tools[0].name])
	fmt.Printf("%-42s %9s %9s %9s %10s %s\n", "tool", "median s", "MiB/s", "files/s", "peak RSS", "its speed / agent's")
	for _, t := range tools {
		m := median(times[t.name])
		rss := "n/a"
		if m.rss > 0 {
			rss = fmt.Sprintf("%d MiB", m.rss>>20)
		}
		fmt.Printf("%-42s %9.2f %9.0f %9.0f %10s %.2f\n", t.name, m.took.Seconds(), total/m.took.Seconds(),
			float64(sc.files)/m.took.Seconds(), rss, ours.took.Seconds()/m.took.Seconds())
	}
	slices.Sort(readMiBs)
	fmt.Printf("%-42s %9s %9.0f\n", "read from page cache + CRC64NVME", "", readMiBs[len(readMiBs)/2])
	if len(b.servers) > 0 {
		b.cpuTable(sc, tools, times)
	}
	if len(counted) == 0 {
		return
	}
	fmt.Println("requests per file (S3 and DynamoDB, one untimed run through a counting proxy):")
	for _, t := range counted {
		fmt.Printf("  %-40s %s\n", t.name, requests[t.name])
	}
}

// cpuTable prints the CPU time each tool's files cost, on average over the
// runs: its own, and each of the stack's servers'. On a machine whose cores
// are all busy, files/s cannot exceed cores ÷ CPU per file.
func (b *bench) cpuTable(sc scenario, tools []tool, times map[string][]result) {
	fmt.Printf("CPU ms per file (mean of the runs; the tool's own and the stack's servers'), and the most files/s %d cores allow at that cost:\n", runtime.NumCPU())
	fmt.Printf("  %-40s %7s", "tool", "own")
	for _, s := range b.servers {
		fmt.Printf(" %9s", s.name)
	}
	fmt.Printf(" %7s %9s\n", "total", "files/s")
	for _, t := range tools {
		rs := times[t.name]
		perFile := func(d time.Duration) float64 {
			return d.Seconds() * 1000 / float64(len(rs)) / float64(sc.files)
		}
		var own, all time.Duration
		for _, r := range rs {
			own += r.cpu
			all += r.cpu
			for _, d := range r.servers {
				all += d
			}
		}
		fmt.Printf("  %-40s %7.2f", t.name, perFile(own))
		for _, s := range b.servers {
			var d time.Duration
			for _, r := range rs {
				d += r.servers[s.name]
			}
			fmt.Printf(" %9.2f", perFile(d))
		}
		fmt.Printf(" %7.2f %9.0f\n", perFile(all), float64(runtime.NumCPU())*1000/perFile(all))
	}
}

// once gives the tool a fresh copy of the files (hard links: no bytes
// copied, the page cache stays warm) and a fresh key prefix, times it, and
// checks that it moved everything. The objects are deleted afterwards.
func (b *bench) once(ctx context.Context, t tool, src string) (result, error) {
	b.runs++
	dir := filepath.Join(b.work, fmt.Sprintf("run-%d", b.runs))
	if err := linkAll(src, filepath.Join(dir, "watch")); err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	prefix := fmt.Sprintf("bench/%d/", b.runs)
	before := map[string]time.Duration{}
	for _, s := range b.servers {
		before[s.name] = cpuTime(s.pid)
	}
	r, err := t.run(ctx, dir, prefix)
	if err != nil {
		return r, err
	}
	if len(b.servers) > 0 {
		r.servers = map[string]time.Duration{}
		for _, s := range b.servers {
			r.servers[s.name] = cpuTime(s.pid) - before[s.name]
		}
	}
	want, _ := os.ReadDir(src)
	n, err := b.deletePrefix(ctx, prefix)
	if err != nil {
		return r, err
	}
	if n != len(want) {
		return r, fmt.Errorf("%d objects under %s after the run; want %d", n, prefix, len(want))
	}
	return r, nil
}

func (b *bench) runAgent(ctx context.Context, dir, prefix string) (result, error) {
	return b.runAgentBin(ctx, b.agent, dir, prefix)
}

func (b *bench) runAgentBin(ctx context.Context, bin, dir, prefix string) (result, error) {
	archive := filepath.Join(dir, "archive")
	if err := os.Mkdir(archive, 0o755); err != nil {
		return result{}, err
	}
	// --quiet 1ms: the files were linked a moment ago (a link changes
	// their ctime), and the peers do not wait either.
	env := []string{"AWS_ENDPOINT_URL_S3=" + b.s3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB=" + b.dbEndpoint}
	args := append([]string{"once", "--watch", filepath.Join(dir, "watch"), "--archive", archive,
		"--key-prefix", prefix, "--quiet", "1ms", "--host", "bench", "--log-level", "warn"}, agentArgs...)
	return command(ctx, env, bin, args...)
}

func (b *bench) runS5cmd(ctx context.Context, dir, prefix string) (result, error) {
	return command(ctx, nil, b.env.s5cmd, "--endpoint-url", b.s3Endpoint, "--log", "error",
		"mv", filepath.Join(dir, "watch")+"/*", "s3://"+b.env.bucket+"/"+prefix)
}

func (b *bench) runRclone(ctx context.Context, dir, prefix string) (result, error) {
	env := []string{"RCLONE_CONFIG=/dev/null", "RCLONE_S3_PROVIDER=Minio", "RCLONE_S3_ENDPOINT=" + b.s3Endpoint,
		"RCLONE_S3_ACCESS_KEY_ID=" + b.env.access, "RCLONE_S3_SECRET_ACCESS_KEY=" + b.env.secret, "RCLONE_S3_REGION=" + b.env.region}
	return command(ctx, env, b.env.rclone, "move", filepath.Join(dir, "watch"), ":s3:"+b.env.bucket+"/"+prefix,
		"--checksum", "--ca-cert", b.env.ca, "--log-level", "ERROR")
}

// The raw SDK upload's files or parts in flight.
const (
	rawInFlightLoopback = 8  // the agent's parts
	rawInFlightWAN      = 64 // enough to wait on round trips in parallel
)

// runRawSDK is the ceiling: the SDK's own upload calls, no checksum, no
// ledger, no archive; b.rawInFlight files or parts of 8 MiB in flight.
func (b *bench) runRawSDK(ctx context.Context, dir, prefix string, checked bool) (result, error) {
	start, cpu0 := time.Now(), selfCPU()
	watch := filepath.Join(dir, "watch")
	entries, err := os.ReadDir(watch)
	if err != nil {
		return result{}, err
	}
	const partSize = 8 << 20
	sem := make(chan struct{}, b.rawInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, e := range entries {
		path, key := filepath.Join(watch, e.Name()), prefix+e.Name()
		info, err := e.Info()
		if err != nil {
			return result{}, err
		}
		if info.Size() <= partSize {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				f, err := os.Open(path)
				if err != nil {
					fail(err)
					return
				}
				defer f.Close()
				in := &s3.PutObjectInput{Bucket: &b.env.bucket, Key: &key, Body: f, ContentLength: aws.Int64(info.Size())}
				if checked {
					in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc64nvme
				}
				if _, err := b.upload.PutObject(ctx, in); err != nil {
					fail(err)
				}
			}()
			continue
		}
		if err := b.rawMultipart(ctx, path, key, info.Size(), partSize, sem, checked); err != nil {
			return result{}, err
		}
	}
	wg.Wait()
	return result{took: time.Since(start), cpu: selfCPU() - cpu0}, firstErr
}

// rawMultipart uploads one file in parts. checked: each part carries a
// CRC64NVME the SDK computes and S3 checks (S3 combines them into the
// full-object checksum), the verification the agent asks of S3.
func (b *bench) rawMultipart(ctx context.Context, path, key string, size, partSize int64, sem chan struct{}, checked bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	create := &s3.CreateMultipartUploadInput{Bucket: &b.env.bucket, Key: &key}
	if checked {
		create.ChecksumAlgorithm = types.ChecksumAlgorithmCrc64nvme
		create.ChecksumType = types.ChecksumTypeFullObject
	}
	up, err := b.upload.CreateMultipartUpload(ctx, create)
	if err != nil {
		return err
	}
	n := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			off := int64(i) * partSize
			length := min(partSize, size-off)
			in := &s3.UploadPartInput{Bucket: &b.env.bucket, Key: &key, UploadId: up.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: io.NewSectionReader(f, off, length), ContentLength: aws.Int64(length)}
			if checked {
				in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc64nvme
			}
			out, err := b.upload.UploadPart(ctx, in)
			if err != nil {
				errs[i] = err
				return
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1)), ChecksumCRC64NVME: out.ChecksumCRC64NVME}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err = b.upload.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &b.env.bucket, Key: &key,
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return err
}

// command runs a tool and returns its wall time and peak RSS.
func command(ctx context.Context, env []string, name string, args ...string) (result, error) {
	r, _, err := commandOutput(ctx, env, name, args...)
	return r, err
}

// commandOutput is command, with what the tool printed (stdout and stderr).
func commandOutput(ctx context.Context, env []string, name string, args ...string) (result, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := result{took: time.Since(start)}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rss = ru.Maxrss << 10 // Linux reports KiB
	}
	if err != nil {
		return r, out.String(), fmt.Errorf("%s: %v\n%s", filepath.Base(name), err, tail(out.String(), 2000))
	}
	return r, out.String(), nil
}

// deletePrefix deletes every object under prefix and says how many there were.
func (b *bench) deletePrefix(ctx context.Context, prefix string) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(b.s3, &s3.ListObjectsV2Input{Bucket: &b.env.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, err
		}
		var ids []types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		n += len(ids)
		if len(ids) > 0 {
			if _, err := b.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &b.env.bucket,
				Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// generate writes the scenario's files (random bytes: nothing compresses).
func generate(dir string, sc scenario) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range sc.files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("IMG_%05d.jpg", i)))
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), 'b'}), sc.size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func linkAll(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Link(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// readAndCRC reads every file (from the page cache once warm) through
// CRC64NVME and returns MiB/s: the most any uploader that proves its bytes
// can reach on this machine.
func readAndCRC(dir string) (float64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var total int64
	buf := make([]byte, 1<<20)
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		h := offload.NewCRC64NVME()
		n, err := io.CopyBuffer(h, f, buf)
		f.Close()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return float64(total) / (1 << 20) / time.Since(start).Seconds(), nil
}

func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return int(a.took - b.took) })
	return s[len(s)/2]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
