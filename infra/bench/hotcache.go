package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/photosleeve/offload/infra/local/loopback"
)

// The hot cache scenario (issue 18): originals offloaded by the agent, a
// Zipf stream of requests through lighttpd with the project's fallback, and
// the agent's cache learning from lighttpd's access log.
const (
	cacheOriginals = 2000
	cacheRequests  = 50_000
	cacheZipfS     = 1.0
	cacheShare     = 0.05 // of the originals' bytes
	cacheClients   = 8    // browsers at once
	cacheSeed      = 18
)

// photoSizes is the photo-size mix: what a photo site's uploads weigh,
// from web-resized images to full-resolution phone and camera JPEGs.
var photoSizes = []struct {
	share    float64
	min, max int64
}{
	{0.30, 100 << 10, 500 << 10}, // resized for the web
	{0.40, 500 << 10, 3 << 20},   // phone photos
	{0.25, 3 << 20, 8 << 20},     // full-resolution phone and camera JPEGs
	{0.05, 8 << 20, 20 << 20},    // large camera JPEGs, panoramas
}

// cacheFile is one original of the scenario.
type cacheFile struct {
	name string
	size int64
}

// cacheBench runs the stream once without the cache and once per
// threshold with it, and prints what each saved and what it costs.
func (b *bench) cacheBench(ctx context.Context, resolverBin string, thresholds []int) error {
	fmt.Printf("\n## hot cache: %d originals (photo-size mix), Zipf(s=%.1f) stream of %d requests through lighttpd, %d clients, cache %.0f%% of the bytes\n",
		cacheOriginals, cacheZipfS, cacheRequests, cacheClients, cacheShare*100)
	o, err := b.offloadOriginals(ctx, "hotcache", cacheOriginals)
	if err != nil {
		return err
	}
	defer b.deletePrefix(ctx, o.prefix)
	dir, www, files, budget, prefix := o.dir, o.www, o.files, o.budget, o.prefix
	fmt.Printf("(cache budget %d MiB)\n", budget>>20)

	stream := zipfStream(files, cacheRequests)
	client, err := b.browser()
	if err != nil {
		return err
	}
	type row struct {
		name string
		res  streamResult
		st   cacheStatus
	}
	var rows []row
	for _, th := range append([]int{0}, thresholds...) {
		res, st, err := b.cacheRun(ctx, resolverBin, dir, www, prefix, budget, stream, client, runOpts{threshold: th, probe: true})
		if err != nil {
			return err
		}
		name := "no cache"
		if th > 0 {
			name = fmt.Sprintf("cache, threshold %d", th)
		}
		rows = append(rows, row{name, res, st})
	}

	base := rows[0].res
	fmt.Printf("%-22s %9s %10s %8s %9s %9s %10s %12s %12s %10s\n", "run", "local", "redirects", "saved", "S3 GETs", "saved", "fetches", "first local", "p90", "not in")
	for _, r := range rows {
		gets := r.res.redirects + r.st.Fetches
		first, p90 := "", ""
		if len(r.res.toLocal) > 0 {
			first = pct(r.res.toLocal, 0.5).Round(time.Millisecond).String()
			p90 = pct(r.res.toLocal, 0.9).Round(time.Millisecond).String()
		}
		fmt.Printf("%-22s %8.1f%% %10d %7.1f%% %9d %8.1f%% %10d %12s %12s %10d\n", r.name,
			100*float64(r.res.local)/float64(cacheRequests), r.res.redirects,
			100*float64(base.redirects-r.res.redirects)/float64(base.redirects),
			gets, 100*float64(base.redirects-gets)/float64(base.redirects), r.st.Fetches, first, p90, r.res.neverLocal)
	}
	fmt.Println("(local: answered 200 by lighttpd from the cache; redirects: Lambda invocations; S3 GETs: the browsers' after the redirect plus the cache's fetches;")
	fmt.Println(" first local: from a path's threshold-th redirect to its first 200 from the cache, median and p90, probing every 5 ms;")
	fmt.Println(" not in: paths that crossed the threshold and were still not cached at the end, being colder than what they would push out)")
	for _, r := range rows[1:] {
		fmt.Printf("%s: %d fetched (%d MiB), %d evicted for size, %d not fetched %v; %d hits, %d misses in the log\n", r.name,
			r.st.Fetches, r.st.FetchedBytes>>20, r.st.EvictedSize, sum(r.st.FetchFailures), r.st.FetchFailures, r.st.Hits, r.st.Misses)
	}
	fmt.Printf("resolver: median %s per redirect (the local face, seen by the client, the ledger look-up cached)\n", base.resolverP50.Round(time.Microsecond))
	var runs []costRun
	for _, r := range rows {
		runs = append(runs, costRun{r.name, r.res, r.st, false})
	}
	printCostTable(runs, base.resolverP50, "without the cache")
	return nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// offloaded is a scenario's originals, offloaded by offload-agent once.
type offloaded struct {
	dir, www string // the scenario's folder, and the web root whose static/ held the originals
	files    []cacheFile
	budget   int64  // the host cache's size: cacheShare of the originals' bytes
	prefix   string // their key prefix; the caller deletes it
}

// offloadOriginals writes n originals of the photo-size mix under
// b.work/name/www/static and offloads them with offload-agent once, under a
// key prefix of their own.
func (b *bench) offloadOriginals(ctx context.Context, name string, n int) (offloaded, error) {
	o := offloaded{dir: filepath.Join(b.work, name)}
	o.www = filepath.Join(o.dir, "www")
	watch, archive := filepath.Join(o.www, "static"), filepath.Join(o.dir, "archive")
	for _, d := range []string{watch, archive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return o, err
		}
	}
	files, total, err := makeOriginals(watch, n)
	if err != nil {
		return o, err
	}
	o.files, o.budget = files, int64(float64(total)*cacheShare)
	fmt.Printf("(%d originals, %d MiB)\n", len(files), total>>20)
	o.prefix = fmt.Sprintf("bench/%s-%d/", name, time.Now().UnixNano())
	start := time.Now()
	env := []string{"AWS_ENDPOINT_URL_S3=" + b.s3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB=" + b.dbEndpoint}
	if _, err := command(ctx, env, b.agent, "once", "--watch", watch, "--archive", archive, "--key-prefix", o.prefix,
		"--quiet", "1ms", "--host", "bench", "--log-level", "warn"); err != nil {
		return o, fmt.Errorf("offloading the originals: %w", err)
	}
	fmt.Printf("(offloaded by offload-agent once in %s)\n", time.Since(start).Round(time.Second))
	return o, nil
}

// makeOriginals writes n originals with sizes drawn from photoSizes. The
// draw is seeded: for a smaller n, the first n of the larger set.
func makeOriginals(dir string, n int) ([]cacheFile, int64, error) {
	r := rand.New(rand.NewPCG(cacheSeed, cacheSeed))
	var files []cacheFile
	var total int64
	buf := make([]byte, 20<<20)
	chacha := rand.NewChaCha8([32]byte{cacheSeed})
	for i := range n {
		x, size := r.Float64(), int64(0)
		for _, s := range photoSizes {
			if x < s.share {
				size = s.min + r.Int64N(s.max-s.min)
				break
			}
			x -= s.share
		}
		if size == 0 {
			size = photoSizes[len(photoSizes)-1].max
		}
		name := fmt.Sprintf("%02d/IMG_%05d.jpg", i%50, i)
		chacha.Read(buf[:size])
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, 0, err
		}
		if err := os.WriteFile(p, buf[:size], 0o644); err != nil {
			return nil, 0, err
		}
		files = append(files, cacheFile{name, size})
		total += size
	}
	return files, total, nil
}

// zipfStream draws n requests from files with Zipf(s) popularity:
// the k-th most popular is requested with probability ∝ 1/k^s. Ranks are
// given to the files at random, so popularity is independent of size.
// (math/rand's Zipf needs s > 1; s = 1 is the classic web-object law.)
func zipfStream(files []cacheFile, n int) []cacheFile {
	r := rand.New(rand.NewPCG(cacheSeed, 1))
	ranked := slices.Clone(files)
	r.Shuffle(len(ranked), func(i, j int) { ranked[i], ranked[j] = ranked[j], ranked[i] })
	cdf := make([]float64, len(ranked))
	var acc float64
	for k := range ranked {
		acc += 1 / math.Pow(float64(k+1), cacheZipfS)
		cdf[k] = acc
	}
	out := make([]cacheFile, n)
	for i := range out {
		k, _ := slices.BinarySearch(cdf, r.Float64()*acc)
		out[i] = ranked[min(k, len(ranked)-1)]
	}
	return out
}

// browser is an HTTP client that trusts the stack's CA (the presigned URLs
// point at MinIO over TLS) and follows no redirect by itself.
func (b *bench) browser() (*http.Client, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * cacheClients, DisableCompression: true}
	if b.env.ca != "" {
		if err := loopback.TrustCA(tr, b.env.ca); err != nil {
			return nil, err
		}
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// streamResult is what the browsers saw.
type streamResult struct {
	local, redirects int64
	// bytesLocal, bytesS3: the originals' bytes served by the web host, and
	// those a browser would have fetched from S3 after a redirect.
	bytesLocal, bytesS3 int64
	// edgeHits, edgeMisses: the browsers' GETs after a redirect that a
	// CloudFront edge answered from its cache or fetched from S3 (X-Cache);
	// 0 when the redirects lead to S3. bytesEdgeMiss: the originals' bytes
	// the edge fetched from S3 for its misses (it fetches the whole object).
	edgeHits, edgeMisses, bytesEdgeMiss int64
	toLocal                             []time.Duration // threshold-th redirect → first local 200, per path
	neverLocal                          int             // paths that crossed the threshold and were not cached by the end
	resolverP50                         time.Duration
}

// cacheStatus is the part of the agent's /status the bench reads.
type cacheStatus struct {
	Fetches       int64            `json:"fetches"`
	FetchedBytes  int64            `json:"fetched_bytes"`
	EvictedSize   int64            `json:"evicted_for_size"`
	Hits          int64            `json:"hits"`
	Misses        int64            `json:"misses"`
	FetchFailures map[string]int64 `json:"fetch_failures"`
}

// runOpts are what one run of the stream varies.
type runOpts struct {
	threshold   int      // the agent's --cache-threshold; 0: no host cache
	resolverEnv []string // added to the resolver's environment
	// probe times each path from its threshold-th redirect to its first
	// local 200 (streamResult.toLocal). The probes poll the cache folder
	// every 5 ms, which costs CPU the other runs do not spend.
	probe bool
}

// cacheRun starts the resolver, lighttpd with an access log and, when
// o.threshold > 0, the agent with the cache; sends the stream; and stops
// all three by PID.
func (b *bench) cacheRun(ctx context.Context, resolverBin, dir, www, prefix string, budget int64, stream []cacheFile, client *http.Client, o runOpts) (streamResult, cacheStatus, error) {
	threshold := o.threshold
	var st cacheStatus
	run := filepath.Join(dir, fmt.Sprintf("run-%d", threshold))
	cacheDir, logFile := filepath.Join(run, "cache"), filepath.Join(run, "access.log")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return streamResult{}, st, err
	}
	defer os.RemoveAll(run)

	resolverAddr, err := loopback.FreeAddr()
	if err != nil {
		return streamResult{}, st, err
	}
	resolver := exec.CommandContext(ctx, resolverBin, "--listen", resolverAddr, "--key-prefix", prefix, "--verify", "ledger", "--log-format", "json")
	resolver.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+b.s3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB="+b.dbEndpoint)
	resolver.Env = append(resolver.Env, o.resolverEnv...)
	resolverLog, err := os.Create(filepath.Join(run, "resolver.log"))
	if err != nil {
		return streamResult{}, st, err
	}
	defer resolverLog.Close()
	resolver.Stderr = resolverLog
	if err := startAndWait(ctx, resolver, resolverAddr); err != nil {
		log, _ := os.ReadFile(resolverLog.Name())
		return streamResult{}, st, fmt.Errorf("resolver: %w; its log ends: %s", err, tail(string(log), 2000))
	}
	defer stop(resolver)

	webAddr, err := loopback.FreeAddr()
	if err != nil {
		return streamResult{}, st, err
	}
	web, err := b.lighttpdWithFallback(ctx, run, www, webAddr, "http://"+resolverAddr, cacheDir, logFile)
	if err != nil {
		return streamResult{}, st, err
	}
	if err := startAndWait(ctx, web, webAddr); err != nil {
		return streamResult{}, st, fmt.Errorf("lighttpd: %w", err)
	}
	defer stop(web)

	var agentStatus string
	if threshold > 0 {
		metricsAddr, err := loopback.FreeAddr()
		if err != nil {
			return streamResult{}, st, err
		}
		watch := filepath.Join(run, "watch") // empty: the originals are offloaded
		os.MkdirAll(watch, 0o755)
		agent := exec.CommandContext(ctx, b.agent, "run", "--watch", watch, "--after", "keep", "--key-prefix", prefix, "--host", "bench",
			"--cache-dir", cacheDir, "--access-log", logFile, "--cache-size", strconv.FormatInt(budget, 10),
			"--cache-threshold", strconv.Itoa(threshold), "--metrics-addr", metricsAddr, "--log-level", "warn")
		agent.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+b.s3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB="+b.dbEndpoint)
		agent.Stderr = os.Stderr
		if err := startAndWait(ctx, agent, metricsAddr); err != nil {
			return streamResult{}, st, fmt.Errorf("agent: %w", err)
		}
		defer stop(agent)
		agentStatus = "http://" + metricsAddr + "/status"
		// The agent follows the log from its end: wait until it follows.
		if err := waitStatus(agentStatus, func(s agentCacheStatus) bool { return s.Cache.Log.State == "following" }); err != nil {
			return streamResult{}, st, err
		}
	}

	probeAt := 0
	if o.probe {
		probeAt = threshold
	}
	res, err := sendStream(ctx, client, "http://"+webAddr, cacheDir, stream, probeAt)
	if err != nil {
		return res, st, err
	}
	if agentStatus != "" {
		var s agentCacheStatus
		if err := getJSON(agentStatus, &s); err != nil {
			return res, st, err
		}
		st = s.Cache.cacheStatus
	}
	return res, st, nil
}

type agentCacheStatus struct {
	Cache struct {
		cacheStatus
		Log struct{ State string } `json:"access_log"`
	}
}

// sendStream sends the requests from cacheClients browsers, each taking
// the next request of the stream. A 302 is followed as a browser would:
// to the resolver, whose 302 leads to S3, where a one-byte ranged GET
// stands for the download (its request is what S3 bills; the bytes out
// are counted from the original's size). With probeAt > 0, the
// probeAt-th redirect of a path starts a probe for the time to its first
// local 200.
func sendStream(ctx context.Context, client *http.Client, web, cacheDir string, stream []cacheFile, probeAt int) (streamResult, error) {
	var (
		res       streamResult
		next      atomic.Int64
		mu        sync.Mutex
		redirects = map[string]int{}
		resolver  []time.Duration
		firstErr  error
		probes    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	// A probe waits for the file to appear in the cache folder (it may
	// never: the cache admits a path only once it is asked for more often
	// than what it would push out), then asks the web server for it until
	// it answers 200. Asking the web server all along would add redirects
	// to the log and so to the path's count.
	done := make(chan struct{})
	probe := func(name string) {
		defer probes.Done()
		start := time.Now()
		for {
			if _, err := os.Stat(filepath.Join(cacheDir, "static", filepath.FromSlash(name))); err == nil {
				break
			}
			select {
			case <-done:
				mu.Lock()
				res.neverLocal++
				mu.Unlock()
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		for time.Since(start) < 10*time.Minute {
			resp, err := client.Head(web + "/static/" + name)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					res.toLocal = append(res.toLocal, time.Since(start))
					mu.Unlock()
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for range cacheClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(stream)) || ctx.Err() != nil {
					return
				}
				f := stream[i]
				resp, err := client.Get(web + "/static/" + f.name)
				if err != nil {
					fail(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					if n != f.size {
						fail(fmt.Errorf("%s: 200 with %d bytes, want %d", f.name, n, f.size))
						return
					}
					mu.Lock()
					res.local++
					res.bytesLocal += f.size
					mu.Unlock()
				case http.StatusFound:
					took, xCache, err := followToS3(client, resp.Header.Get("Location"))
					if err != nil {
						fail(fmt.Errorf("%s: %w", f.name, err))
						return
					}
					mu.Lock()
					res.redirects++
					res.bytesS3 += f.size
					switch xCache {
					case xCacheHit:
						res.edgeHits++
					case xCacheMiss:
						res.edgeMisses++
						res.bytesEdgeMiss += f.size
					}
					resolver = append(resolver, took)
					redirects[f.name]++
					crossed := probeAt > 0 && redirects[f.name] == probeAt
					mu.Unlock()
					if crossed {
						probes.Add(1)
						go probe(f.name)
					}
				default:
					fail(fmt.Errorf("%s: %s", f.name, resp.Status))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	probes.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	slices.Sort(resolver)
	if len(resolver) > 0 {
		res.resolverP50 = resolver[len(resolver)/2]
	}
	slices.Sort(res.toLocal)
	return res, nil
}

// The X-Cache values of a CloudFront edge's answer (stacktest.XCache).
const (
	xCacheHit  = "Hit from cloudfront"
	xCacheMiss = "Miss from cloudfront"
)

// followToS3 follows the web server's 302 to the resolver and the
// resolver's 302 to S3 (or to the CDN, when the resolver signs for it),
// and returns the resolver's time and the final answer's X-Cache ("" from
// S3).
func followToS3(client *http.Client, resolverURL string) (time.Duration, string, error) {
	start := time.Now()
	resp, err := client.Get(resolverURL)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusFound {
		return 0, "", fmt.Errorf("resolver: %s", resp.Status)
	}
	req, err := http.NewRequest(http.MethodGet, resp.Header.Get("Location"), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Range", "bytes=0-0")
	s3resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, s3resp.Body)
	s3resp.Body.Close()
	if s3resp.StatusCode != http.StatusPartialContent {
		return 0, "", fmt.Errorf("%s: %s (X-Cache %q)", req.URL.Host, s3resp.Status, s3resp.Header.Get("X-Cache"))
	}
	return took, s3resp.Header.Get("X-Cache"), nil
}

// lighttpdWithFallback is lighttpd as an operator configures it with
// infra/lighttpd: the fallback, the cache root and an access log.
func (b *bench) lighttpdWithFallback(ctx context.Context, dir, www, addr, resolverBase, cacheRoot, accessLog string) (*exec.Cmd, error) {
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "lighttpd.conf")
	text := fmt.Sprintf(`server.document-root = %q
server.bind = "127.0.0.1"
server.port = %s
server.errorlog = %q
server.modules += ( "mod_accesslog" )
accesslog.filename = %q
var.offload_lua = %q
var.offload_lua_404 = %q
include %q
`, www, port, filepath.Join(dir, "error.log"), accessLog,
		filepath.Join(repo, "infra/lighttpd/offload-fallback.lua"), filepath.Join(repo, "infra/lighttpd/offload-fallback-404.lua"),
		filepath.Join(repo, "infra/lighttpd/offload.conf"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "lighttpd", "-D", "-f", conf)
	cmd.Env = append(os.Environ(), "OFFLOAD_RESOLVER_BASE="+resolverBase, "OFFLOAD_CACHE_ROOT="+cacheRoot)
	return cmd, nil
}

func startAndWait(ctx context.Context, cmd *exec.Cmd, addr string) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := loopback.WaitListening(ctx, addr, 30*time.Second); err != nil {
		stop(cmd)
		return err
	}
	return nil
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitStatus(url string, ok func(agentCacheStatus) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var s agentCacheStatus
		if getJSON(url, &s) == nil && ok(s) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the agent's cache did not start following the access log within 30 s")
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.SortedFunc(slices.Values(d), cmp.Compare)[min(len(d)-1, int(p*float64(len(d))))]
}
