package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/loopback"
)

// loadResult is what a load run saw.
type loadResult struct {
	requests      int
	perSecond     float64
	p50, p99      time.Duration
	unexpected    int
	unexpectedMsg string
}

// load sends GETs from conns connections for d (no redirects followed) and
// counts the answers with status want. url gives the target of request n.
func load(url func(n int64) string, want, conns int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var lat []time.Duration
	var r loadResult
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad, msg := 0, ""
			for time.Now().Before(deadline) {
				start := time.Now()
				resp, err := client.Get(url(sent.Add(1)))
				if err != nil {
					bad, msg = bad+1, err.Error()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start))
				if resp.StatusCode != want {
					bad, msg = bad+1, resp.Status
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			r.unexpected += bad
			if msg != "" {
				r.unexpectedMsg = msg
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	r.requests = len(lat)
	r.perSecond = float64(len(lat)) / d.Seconds()
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

// recordedObjects is how many originals the resolver bench records for
// "--verify ledger, a new object each": more than the look-ups a load of a
// few seconds gets through here (under 3,000/s), so every request asks
// the ledger about an object not asked for before.
const recordedObjects = 20_000

// resolverBench measures the resolver's local HTTP face, without and with
// the ledger look-up, on one object asked for again and again and on a new
// object each request, and lighttpd serving a small local file as the
// reference, each for d with conns connections, on loopback, reps times.
// Each --verify ledger run comes right after its --verify none run, and the
// ratio of the two is printed.
func (b *bench) resolverBench(ctx context.Context, resolverBin string, conns, reps int, d time.Duration) error {
	fmt.Printf("\n## resolver: %d connections for %s each, loopback\n", conns, d)
	cfg, err := awsConfig(ctx)
	if err != nil {
		return err
	}
	// The recorded originals for the look-ups to find: cat.jpg, asked for
	// again and again, and cat-N.jpg, a new one each request (without the
	// ledger, N simply counts up).
	start := time.Now()
	if err := recordBenchObjects(ctx, dynamodb.NewFromConfig(cfg), b.env.table, recordedObjects); err != nil {
		return err
	}
	fmt.Printf("(%d originals recorded in the ledger in %s)\n", recordedObjects+1, time.Since(start).Round(time.Millisecond))
	one := func(addr string) func(int64) string {
		return func(int64) string { return "http://" + addr + "/static/cat.jpg" }
	}
	each := func(addr string) func(int64) string {
		return func(n int64) string { return fmt.Sprintf("http://%s/static/cat-%d.jpg", addr, n) }
	}
	eachRecorded := func(addr string) func(int64) string {
		return func(n int64) string { return fmt.Sprintf("http://%s/static/cat-%d.jpg", addr, n%recordedObjects) }
	}
	resolver := func(verify string) func(addr string) (*exec.Cmd, error) {
		return func(addr string) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, resolverBin, "--listen", addr, "--key-prefix", "bench/resolver/", "--verify", verify, "--log-format", "json")
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // a log line per request is part of the cost
			return cmd, nil
		}
	}
	fixed302 := func(addr string) (*exec.Cmd, error) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, self)
		cmd.Env = append(os.Environ(), fixed302Env+"="+addr)
		return cmd, nil
	}
	rows := []struct {
		name  string
		start func(addr string) (*exec.Cmd, error)
		urls  func(addr string) func(int64) string
		want  int
	}{
		{"offload-resolver 302, --verify none, one object", resolver("none"), one, http.StatusFound},
		{"offload-resolver 302, --verify ledger, one object", resolver("ledger"), one, http.StatusFound},
		{"offload-resolver 302, --verify none, a new object each", resolver("none"), each, http.StatusFound},
		{"offload-resolver 302, --verify ledger, a new object each", resolver("ledger"), eachRecorded, http.StatusFound},
		{"Go net/http, a fixed 302 (no work at all)", fixed302, one, http.StatusFound},
		{"lighttpd 200, a 15 KiB local file", func(addr string) (*exec.Cmd, error) { return b.lighttpd(ctx, addr) }, one, http.StatusOK},
	}
	// The servers take turns, reps times, so a load that comes and goes on
	// the machine falls on all of them; the median run of each is printed.
	runs := make([][]loadResult, len(rows))
	for range reps {
		for i, srv := range rows {
			r, err := loadServer(ctx, srv.start, srv.urls, srv.want, conns, d)
			if err != nil {
				return fmt.Errorf("%s: %w", srv.name, err)
			}
			if strings.HasSuffix(srv.name, "--verify ledger, a new object each") && r.requests > recordedObjects {
				fmt.Printf("(%s: %d requests, so objects were asked for again after %d)\n", srv.name, r.requests, recordedObjects)
			}
			runs[i] = append(runs[i], r)
		}
	}
	fmt.Printf("%-60s %12s %10s %10s\n", "server (median of "+strconv.Itoa(reps)+")", "requests/s", "p50", "p99")
	for i, srv := range rows {
		r := slices.SortedFunc(slices.Values(runs[i]), func(a, b loadResult) int { return cmp.Compare(a.perSecond, b.perSecond) })[len(runs[i])/2]
		fmt.Printf("%-60s %12.0f %10s %10s\n", srv.name, r.perSecond, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	// Rows 0 and 1, 2 and 3: --verify none, then ledger, on the same objects.
	for _, pair := range [][2]int{{0, 1}, {2, 3}} {
		var ratios []float64
		for rep := range reps {
			ratios = append(ratios, runs[pair[1]][rep].perSecond/runs[pair[0]][rep].perSecond)
		}
		each := make([]string, len(ratios))
		for i, r := range ratios {
			each[i] = fmt.Sprintf("%.2f", r)
		}
		slices.Sort(ratios)
		fmt.Printf("--verify ledger ÷ --verify none, %s: median %.2f (each repetition: %s)\n",
			strings.TrimPrefix(rows[pair[0]].name, "offload-resolver 302, --verify none, "), ratios[len(ratios)/2], strings.Join(each, ", "))
	}
	return nil
}

// recordBenchObjects records bench/resolver/cat.jpg and n originals
// bench/resolver/cat-0.jpg … cat-(n-1).jpg in the ledger, 25 to a
// BatchWriteItem (DynamoDB's limit), a few batches in flight.
func recordBenchObjects(ctx context.Context, db *dynamodb.Client, table string, n int) error {
	item := func(name string) types.WriteRequest {
		rec := offload.Record{Key: "bench/resolver/" + name, Size: 1, CRC64NVME: "AAAAAAAAAAA=", ContentType: "image/jpeg",
			Host: "bench", Path: name, UploadedAt: time.Now().UTC()}
		return types.WriteRequest{PutRequest: &types.PutRequest{Item: rec.Item()}}
	}
	batches := make(chan []types.WriteRequest)
	go func() {
		defer close(batches)
		batch := []types.WriteRequest{item("cat.jpg")}
		for i := range n {
			batch = append(batch, item(fmt.Sprintf("cat-%d.jpg", i)))
			if len(batch) == 25 || i == n-1 {
				select {
				case batches <- batch:
				case <-ctx.Done():
					return
				}
				batch = nil
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				// What DynamoDB leaves unprocessed is sent again, as its
				// documentation asks.
				for len(batch) > 0 {
					out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: batch}})
					if err != nil {
						errs <- fmt.Errorf("record the bench's originals: %w", err)
						for range batches { // let the producer end
						}
						return
					}
					batch = out.UnprocessedItems[table]
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// loadServer starts a server on a free loopback address, puts the load on
// it once it listens, and stops it (by its PID) whatever happened.
func loadServer(ctx context.Context, start func(addr string) (*exec.Cmd, error), urls func(addr string) func(int64) string,
	want, conns int, d time.Duration) (loadResult, error) {
	addr, err := loopback.FreeAddr()
	if err != nil {
		return loadResult{}, err
	}
	cmd, err := start(addr)
	if err != nil {
		return loadResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return loadResult{}, err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	if err := loopback.WaitListening(ctx, addr, 20*time.Second); err != nil {
		return loadResult{}, err
	}
	r := load(urls(addr), want, conns, d)
	if r.unexpected > 0 {
		return r, fmt.Errorf("%d unexpected answers (%s)", r.unexpected, r.unexpectedMsg)
	}
	return r, nil
}

// fixed302Env makes the bench binary, started again, serve nothing but a
// fixed 302 on the address it names: the most any Go HTTP server can answer
// here, with the load generator on the same two cores.
const fixed302Env = "OFFLOAD_BENCH_FIXED_302"

// serveFixed302 is that second process.
func serveFixed302(addr string) error {
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://127.0.0.1/bucket/cat.jpg?X-Amz-Signature=0")
		w.Header().Set("Cache-Control", "private, max-age=180")
		w.WriteHeader(http.StatusFound)
	}))
}

// lighttpd is the reference web server serving a 15 KiB local file on addr.
func (b *bench) lighttpd(ctx context.Context, addr string) (*exec.Cmd, error) {
	dir := filepath.Join(b.work, "lighttpd")
	if err := os.MkdirAll(filepath.Join(dir, "www", "static"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "static", "cat.jpg"), make([]byte, 15<<10), 0o644); err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "lighttpd.conf")
	text := fmt.Sprintf("server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = %s\nserver.errorlog = %q\n",
		filepath.Join(dir, "www"), port, filepath.Join(dir, "error.log"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("lighttpd"); err != nil {
		return nil, fmt.Errorf("lighttpd (infra/local/stack install puts it there): %w", err)
	}
	return exec.CommandContext(ctx, "lighttpd", "-D", "-f", conf), nil
}

// closeToStart runs the agent as a daemon with its default settings and
// drops files one by one, first the way a back-end publishes a file
// (temporary name, then rename), then written in place under the final name,
// and measures from the rename or the close to the first upload request S3
// receives for the file.
func (b *bench) closeToStart(ctx context.Context, files int) error {
	proxy, err := newCounter(b.env.endpoint, b.env.ca)
	if err != nil {
		return err
	}
	defer proxy.close()
	dir := filepath.Join(b.work, "daemon")
	watch, archive := filepath.Join(dir, "watch"), filepath.Join(dir, "archive")
	for _, d := range []string{watch, archive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	defer os.RemoveAll(dir)
	prefix := "bench/daemon/"
	cmd := exec.CommandContext(ctx, b.agent, "run", "--watch", watch, "--archive", archive, "--key-prefix", prefix, "--host", "bench")
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+proxy.Endpoint)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	time.Sleep(time.Second) // its start-up scan and sweep
	for _, how := range []string{"renamed into place", "written in place"} {
		if err := b.measureCloseToStart(proxy, watch, prefix, how, files); err != nil {
			return err
		}
	}
	_, err = b.deletePrefix(ctx, prefix)
	return err
}

func (b *bench) measureCloseToStart(proxy *counter, watch, prefix, how string, files int) error {
	names := make([]string, files)
	closed := make([]time.Time, files)
	for i := range files {
		names[i] = fmt.Sprintf("%s-%05d.jpg", strings.ReplaceAll(how, " ", "-"), i)
		final := filepath.Join(watch, names[i])
		if how == "written in place" {
			if err := os.WriteFile(final, make([]byte, 100<<10), 0o644); err != nil {
				return err
			}
		} else {
			if err := os.WriteFile(final+".tmp", make([]byte, 100<<10), 0o644); err != nil {
				return err
			}
			if err := os.Rename(final+".tmp", final); err != nil {
				return err
			}
		}
		closed[i] = time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	var lat []time.Duration
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < files; {
		if t, ok := proxy.uploadStarted(fmt.Sprintf("/%s/%s%s", b.env.bucket, prefix, names[i])); ok {
			lat = append(lat, t.Sub(closed[i]))
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no upload within a minute", names[i])
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(lat)
	fmt.Printf("\n## daemon, default settings: from the close (or the rename) of a 100 KiB file %s to the first upload request, %d files\n", how, files)
	fmt.Printf("median %s, p99 %s, min %s, max %s\n", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond),
		lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}
