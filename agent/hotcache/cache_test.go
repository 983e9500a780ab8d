package hotcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/hotcache"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// world is one cache's surroundings on the real local stack: originals in
// the bucket and the ledger as the agent leaves them, under the test's own
// key prefix, and the clients the cache uses (the agent's credentials,
// through the AWS shim, as on AWS).
type world struct {
	t       *testing.T
	st      *stacktest.Stack
	s3      *s3.Client // the stack's root, for setting up
	db      *dynamodb.Client
	cacheS3 *s3.Client
	cfg     hotcache.Config
	logs    *stacktest.SyncBuffer
	// done receives the key of each fetch once it has ended (start sets it).
	done <-chan string
	// skew is how far the cache's clock is ahead of time.Now.
	skew atomic.Int64
}

func newWorld(t *testing.T) *world {
	t.Helper()
	st := stacktest.Require(t)
	w := &world{t: t, st: st, s3: st.S3(t), db: st.DynamoDB(t), logs: &stacktest.SyncBuffer{}}
	w.cacheS3 = st.S3For(t, stacktest.Agent, st.AWSShimEndpoint(t))
	dir := t.TempDir()
	w.cfg = hotcache.Config{
		Dir:         filepath.Join(dir, "cache"),
		AccessLog:   filepath.Join(dir, "access.log"),
		Size:        1 << 20,
		Threshold:   2,
		Mapping:     offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)},
		Bucket:      st.Bucket,
		Table:       st.Table,
		CallTimeout: 30 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(io.MultiWriter(w.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if err := os.MkdirAll(w.cfg.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// offloaded stores data as the agent would have: the object with its
// full-object CRC64NVME, then the ledger item for exactly what S3 holds.
func (w *world) offloaded(rel string, data []byte) offload.Record {
	w.t.Helper()
	key := w.cfg.Mapping.KeyPrefix + rel
	ctx := context.Background()
	h := offload.NewCRC64NVME()
	h.Write(data)
	sum := offload.EncodeChecksum(h.Sum64())
	out, err := w.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(w.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ChecksumCRC64NVME: aws.String(sum)})
	if err != nil {
		w.t.Fatalf("put %s: %v", key, err)
	}
	rec := offload.Record{Key: key, Size: int64(len(data)), CRC64NVME: sum, ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId),
		Host: "test-host", Path: rel, UploadedAt: time.Now().UTC()}
	w.record(rec)
	return rec
}

func (w *world) record(rec offload.Record) {
	w.t.Helper()
	if _, err := w.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(w.cfg.Table), Item: rec.Item()}); err != nil {
		w.t.Fatalf("ledger put %s: %v", rec.Key, err)
	}
}

// start builds the cache and runs it until the test ends; hooks are set
// before it runs.
func (w *world) start(s3c *s3.Client, hooks ...func(*hotcache.Cache)) *hotcache.Cache {
	w.t.Helper()
	c, err := hotcache.New(w.cfg, s3c, w.db)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, hook := range hooks {
		hook(c)
	}
	w.done = hotcache.OnFetchDone(c)
	hotcache.SetClock(c, func() time.Time { return time.Now().Add(time.Duration(w.skew.Load())) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done; c.Close() })
	return c
}

// advance moves the cache's clock d ahead.
func (w *world) advance(d time.Duration) { w.skew.Add(int64(d)) }

// fetchEnded waits until a fetch of each of rels has ended, whatever came
// of it, and the path is no longer in flight; the ends of other fetches
// are passed over.
func (w *world) fetchEnded(rels ...string) {
	w.t.Helper()
	waiting := map[string]bool{}
	for _, rel := range rels {
		waiting[w.cfg.Mapping.KeyPrefix+rel] = true
	}
	deadline := time.After(20 * time.Second)
	for len(waiting) > 0 {
		select {
		case key := <-w.done:
			delete(waiting, key)
		case <-deadline:
			w.t.Fatalf("timed out waiting for the fetches of %q to end", rels)
		}
	}
}

// noFetchQueued fails the test if a fetch is queued or running: after
// Observe returns, a fetch it asked for is in flight.
func noFetchQueued(t *testing.T, c *hotcache.Cache, after string) {
	t.Helper()
	if n := c.Stats().Fetching; n != 0 {
		t.Fatalf("after %s: %d fetches queued or running; want none", after, n)
	}
}

// miss tells the cache the web server redirected a request for rel n times.
func miss(c *hotcache.Cache, rel string, n int) {
	for range n {
		c.Observe(hotcache.Request{Method: "GET", Target: "/static/" + rel + "?v=1", Status: 302})
	}
}

// hit tells the cache the web server served rel.
func hit(c *hotcache.Cache, rel string) {
	c.Observe(hotcache.Request{Method: "GET", Target: "/static/" + rel, Status: 200})
}

// cachedPath is where the web server looks for rel.
func (w *world) cachedPath(rel string) string {
	return filepath.Join(w.cfg.Dir, "static", filepath.FromSlash(rel))
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestHotPathIsFetchedAndMatchesTheLedger: a path redirected threshold
// times is fetched and published with exactly the bytes the ledger
// records, readable by others; fewer misses fetch nothing; the download
// folder is left empty.
func TestHotPathIsFetchedAndMatchesTheLedger(t *testing.T) {
	w := newWorld(t)
	hot, cold := randomBytes(100<<10, 1), randomBytes(10<<10, 2)
	w.offloaded("2026/hot photo ü.jpg", hot)
	w.offloaded("cold.jpg", cold)
	c := w.start(w.cacheS3)

	miss(c, "cold.jpg", 1)
	c.Observe(hotcache.Request{Method: "GET", Target: "/static/2026/hot%20photo%20%C3%BC.jpg", Status: 302})
	c.Observe(hotcache.Request{Method: "HEAD", Target: "/static/2026/hot%20photo%20%C3%BC.jpg?download=1", Status: 302})
	waitFor(t, "the fetch", func() bool { return c.Stats().Fetches == 1 })

	got, err := os.ReadFile(w.cachedPath("2026/hot photo ü.jpg"))
	if err != nil || !bytes.Equal(got, hot) {
		t.Fatalf("cached file: %d bytes, err %v; want the original's %d bytes", len(got), err, len(hot))
	}
	fi, _ := os.Stat(w.cachedPath("2026/hot photo ü.jpg"))
	dir, _ := os.Stat(filepath.Dir(w.cachedPath("2026/hot photo ü.jpg")))
	if fi.Mode().Perm() != 0o644 || dir.Mode().Perm() != 0o755 {
		t.Errorf("modes: file %v, folder %v; want 0644 and 0755 for the web server", fi.Mode().Perm(), dir.Mode().Perm())
	}
	if _, err := os.Stat(w.cachedPath("cold.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cold.jpg (1 miss, threshold 2): stat %v; want not cached", err)
	}
	s := c.Stats()
	if s.Files != 1 || s.Bytes != int64(len(hot)) || s.Misses != 3 || s.FetchedBytes != int64(len(hot)) || len(s.FetchFailures) != 0 {
		t.Errorf("stats %+v; want 1 file of %d bytes, 3 misses, no failures", s, len(hot))
	}
	hit(c, "2026/hot%20photo%20%C3%BC.jpg")
	if s := c.Stats(); s.Hits != 1 {
		t.Errorf("hits %d after a 200 for the cached path; want 1", s.Hits)
	}
	assertNoDownloads(t, w)
}

// TestNeverPublishesBytesTheLedgerDoesNotRecord: when S3 holds other bytes
// than the ledger records (another version, or a ledger from another
// bucket), nothing is published.
func TestNeverPublishesBytesTheLedgerDoesNotRecord(t *testing.T) {
	w := newWorld(t)
	rec := w.offloaded("a.jpg", randomBytes(20<<10, 3))
	other := randomBytes(20<<10, 4)
	h := offload.NewCRC64NVME()
	h.Write(other)
	rec.CRC64NVME = offload.EncodeChecksum(h.Sum64())
	w.record(rec) // the ledger now records other bytes than S3 holds
	rec2 := w.offloaded("b.jpg", randomBytes(20<<10, 5))
	rec2.Size++ // and here a size S3 does not have
	w.record(rec2)
	c := w.start(w.cacheS3)
	miss(c, "a.jpg", 2)
	miss(c, "b.jpg", 2)
	w.fetchEnded("a.jpg", "b.jpg")
	if f := c.Stats().FetchFailures; f[hotcache.FailMismatch] != 2 {
		t.Fatalf("failures %v; want 2 mismatches", f)
	}
	for _, rel := range []string{"a.jpg", "b.jpg"} {
		if _, err := os.Stat(w.cachedPath(rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: stat %v; want nothing published", rel, err)
		}
	}
	if s := c.Stats(); s.Files != 0 || s.Bytes != 0 || s.Fetches != 0 {
		t.Errorf("stats %+v; want an empty cache", s)
	}
	assertNoDownloads(t, w)
	// Asking again will not change the bytes: each path is left alone for
	// the window, however often it is redirected (once each fetched again
	// on every redirect).
	miss(c, "a.jpg", 6)
	miss(c, "b.jpg", 6)
	noFetchQueued(t, c, "6 more redirects each")
}

// TestDownloadCutHalfwayIsNeverServed: S3's answer is cut after half the
// object (a Toxiproxy limit on the bytes back). While the download runs
// and after it fails, the published path never exists; once the network
// is whole, the next crossing publishes the full file.
func TestDownloadCutHalfwayIsNeverServed(t *testing.T) {
	w := newWorld(t)
	data := randomBytes(200<<10, 6)
	w.offloaded("cut.jpg", data)
	proxy := w.st.Proxy(t, w.st.AWSShimEndpoint(t))
	c := w.start(w.st.S3For(t, stacktest.Agent, proxy.Endpoint))

	// Every read of the published path sees nothing or the whole file.
	stop, seen := watchPath(t, w.cachedPath("cut.jpg"), data)
	// Headers (~1 KiB) and half the body, then the connection closes.
	proxy.AddToxic("cut", "limit_data", "downstream", map[string]any{"bytes": 100 << 10})
	miss(c, "cut.jpg", 2)
	w.fetchEnded("cut.jpg")
	if f := c.Stats().FetchFailures[hotcache.FailS3]; f != 1 {
		t.Fatalf("after the cut download: %d S3 failures; want 1", f)
	}
	if _, err := os.Stat(w.cachedPath("cut.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after the cut download: stat %v; want nothing published", err)
	}
	assertNoDownloads(t, w)
	// A failed fetch leaves the path alone for a while: more redirects
	// fetch nothing (once it fetched on every redirect).
	miss(c, "cut.jpg", 3)
	noFetchQueued(t, c, "3 redirects right after the failure")
	proxy.RemoveToxic("cut")
	w.advance(hotcache.FetchBackoffFirst + time.Second)
	miss(c, "cut.jpg", 2)
	w.fetchEnded("cut.jpg")
	if s := c.Stats(); s.Fetches != 1 {
		t.Fatalf("with the network whole, after the back-off: stats %+v; want the file fetched", s)
	}
	bad := stop()
	if bad != "" {
		t.Errorf("a read of the published path saw %s; want nothing or the whole file", bad)
	}
	t.Logf("reads of the published path while it was fetched: %v", seen())
}

// TestSlowDownloadArrives: S3's answer comes through Toxiproxy at 512 KB/s,
// so a 4 MiB original takes about 8 s, four times the call timeout. The
// download's deadline follows the size, at the floor rate, so the file is
// published; with the call timeout as its deadline it never was, however
// often the path was redirected.
func TestSlowDownloadArrives(t *testing.T) {
	w := newWorld(t)
	w.cfg.CallTimeout = 2 * time.Second
	w.cfg.Size = 16 << 20 // a quarter of it: 4 MiB
	data := randomBytes(4<<20, 7)
	w.offloaded("slow.jpg", data)
	proxy := w.st.Proxy(t, w.st.AWSShimEndpoint(t))
	proxy.AddToxic("slow", "bandwidth", "downstream", map[string]any{"rate": 512})
	c := w.start(w.st.S3For(t, stacktest.Agent, proxy.Endpoint))
	miss(c, "slow.jpg", 2)
	w.fetchEnded("slow.jpg")
	if s := c.Stats(); s.Fetches != 1 {
		t.Fatalf("a 4 MiB original at 512 KB/s with a call timeout of 2 s: stats %+v; want it fetched", s)
	}
	if got, err := os.ReadFile(w.cachedPath("slow.jpg")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("cached file: %d bytes, err %v; want the original's %d bytes", len(got), err, len(data))
	}
}

// TestStalledDownloadEndsAtTheCallTimeout: S3's answer stops coming
// (Toxiproxy drops every byte from S3 and keeps the connection open, as a
// black-holed connection does). A 16 MiB original's deadline, by its size,
// is over two minutes; the download ends once no byte came for the call
// timeout, so the fetch worker is free again well within the 20 s the test
// waits (before, it was held until the size's deadline).
func TestStalledDownloadEndsAtTheCallTimeout(t *testing.T) {
	w := newWorld(t)
	w.cfg.CallTimeout = 2 * time.Second
	w.cfg.Size = 64 << 20 // a quarter of it: 16 MiB
	w.offloaded("stuck.jpg", randomBytes(16<<20, 9))
	proxy := w.st.Proxy(t, w.st.AWSShimEndpoint(t))
	proxy.AddToxic("blackhole", "timeout", "downstream", map[string]any{"timeout": 0})
	c := w.start(w.st.S3For(t, stacktest.Agent, proxy.Endpoint))
	miss(c, "stuck.jpg", 2)
	w.fetchEnded("stuck.jpg")
	if s := c.Stats(); s.Fetches != 0 || s.FetchFailures[hotcache.FailS3] != 1 {
		t.Errorf("stats %+v; want no fetch and one S3 failure", s)
	}
	if !strings.Contains(w.logs.String(), "stalled") {
		t.Errorf("the log does not say the download stalled:\n%s", w.logs.String())
	}
	assertNoDownloads(t, w)
}

// TestFailedFetchBacksOff: while S3's answers are cut, a hot path is
// fetched once, then left alone for FetchBackoffFirst, then for twice as
// long after its next failure, however often it is redirected meanwhile
// (once it was fetched again every threshold redirects, each download
// thrown away).
func TestFailedFetchBacksOff(t *testing.T) {
	w := newWorld(t)
	w.offloaded("flaky.jpg", randomBytes(200<<10, 8))
	proxy := w.st.Proxy(t, w.st.AWSShimEndpoint(t))
	c := w.start(w.st.S3For(t, stacktest.Agent, proxy.Endpoint))
	proxy.AddToxic("cut", "limit_data", "downstream", map[string]any{"bytes": 100 << 10})
	failures := func() int64 { return c.Stats().FetchFailures[hotcache.FailS3] }

	miss(c, "flaky.jpg", 2)
	w.fetchEnded("flaky.jpg")
	if f := failures(); f != 1 {
		t.Fatalf("after the first crossing: %d S3 failures; want 1", f)
	}
	first := hotcache.FetchBackoffFirst
	for i, wait := range []time.Duration{first, 2 * first} {
		w.advance(wait - time.Second)
		miss(c, "flaky.jpg", 5)
		noFetchQueued(t, c, fmt.Sprintf("5 redirects %s after failure %d (back-off %s)", wait-time.Second, i+1, wait))
		w.advance(2 * time.Second)
		miss(c, "flaky.jpg", 2)
		w.fetchEnded("flaky.jpg")
		if f := failures(); f != int64(i+2) {
			t.Fatalf("2 redirects once the back-off of %s has passed: %d S3 failures; want %d", wait, f, i+2)
		}
	}
}

// TestOnlySignedLinksCount: with a signing key, redirects without a link,
// with a forged one, an expired one or one signed for another file fetch
// nothing, however many; two with a valid link fetch the file. An
// original served to a request without a valid link is warned about once.
func TestOnlySignedLinksCount(t *testing.T) {
	w := newWorld(t)
	key := randomBytes(32, 9)
	w.cfg.SigningKey = key
	data := randomBytes(20<<10, 10)
	w.offloaded("private.jpg", data)
	c := w.start(w.cacheS3)
	sign := func(k []byte, p string, exp time.Time) string {
		t.Helper()
		link, err := offload.SignLink(k, w.cfg.Mapping, p, exp)
		if err != nil {
			t.Fatal(err)
		}
		return link
	}
	later := time.Now().Add(time.Hour)
	forged := sign(randomBytes(32, 11), "/static/private.jpg", later)
	expired := sign(key, "/static/private.jpg", time.Now().Add(-time.Minute))
	_, otherFile, _ := strings.Cut(sign(key, "/static/other.jpg", later), "?")
	for _, target := range []string{
		"/static/private.jpg",
		"/static/private.jpg?exp=9999999999",
		forged,
		expired,
		"/static/private.jpg?" + otherFile,
	} {
		for range 3 {
			c.Observe(hotcache.Request{Method: "GET", Target: target, Status: 302})
		}
		noFetchQueued(t, c, "3 redirects for "+target)
	}
	if s := c.Stats(); s.InvalidLinks != 15 || s.Misses != 0 || s.Tracked != 0 || s.Fetches != 0 {
		t.Errorf("stats %+v; want 15 invalid links, nothing counted or fetched", s)
	}
	valid := sign(key, "/static/private.jpg", later)
	for range 2 {
		c.Observe(hotcache.Request{Method: "GET", Target: valid, Status: 302})
	}
	w.fetchEnded("private.jpg")
	if got, err := os.ReadFile(w.cachedPath("private.jpg")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after 2 redirects with a valid link: %d bytes cached, err %v; want the original", len(got), err)
	}
	c.Observe(hotcache.Request{Method: "GET", Target: valid, Status: 200})
	c.Observe(hotcache.Request{Method: "GET", Target: "/static/private.jpg", Status: 200})
	c.Observe(hotcache.Request{Method: "GET", Target: expired, Status: 200})
	if s := c.Stats(); s.Hits != 1 || s.InvalidLinks != 17 {
		t.Errorf("stats %+v; want 1 hit (the valid link), 17 invalid links", s)
	}
	if n := strings.Count(w.logs.String(), "without a valid signed link"); n != 1 {
		t.Errorf("warned %d times that the web server served an original without a valid link; want once", n)
	}
}

// TestFetchBudgetBoundsWhatIsFetched: with a fetch budget of 500 KiB per
// window, two originals of 200 KiB come in and a third, as hot, waits
// (counted as over_budget) however often it is redirected, without another
// look-up; half a window later the budget has refilled enough and its
// next redirect fetches it. Without a budget, any number of hot paths
// were fetched at once (20 of 200 KiB into a cache of 1 MiB: 4 MB).
func TestFetchBudgetBoundsWhatIsFetched(t *testing.T) {
	w := newWorld(t)
	w.cfg.FetchBudget = 500 << 10
	for i, n := range []string{"f0.jpg", "f1.jpg", "f2.jpg"} {
		w.offloaded(n, randomBytes(200<<10, uint64(70+i)))
	}
	c := w.start(w.cacheS3)
	for _, n := range []string{"f0.jpg", "f1.jpg", "f2.jpg"} {
		miss(c, n, 2)
		w.fetchEnded(n)
	}
	s := c.Stats()
	if s.Fetches != 2 || s.FetchedBytes != 400<<10 || s.FetchFailures[hotcache.FailOverBudget] != 1 {
		t.Fatalf("stats %+v; want 2 fetches of 200 KiB, the third over budget", s)
	}
	if s.FetchBudget != 500<<10 || s.FetchBudgetLeft < 100<<10 || s.FetchBudgetLeft >= 200<<10 {
		t.Errorf("budget %d, left %d; want 500 KiB and about 100 KiB left", s.FetchBudget, s.FetchBudgetLeft)
	}
	miss(c, "f2.jpg", 3)
	noFetchQueued(t, c, "3 more redirects of f2.jpg")
	if f := c.Stats().FetchFailures; f[hotcache.FailOverBudget] != 4 || f[hotcache.FailNotInLedger]+f[hotcache.FailLedger] != 0 {
		t.Errorf("failures %v; want each redirect held back by the budget, without a look-up", f)
	}
	w.advance(hotcache.DefaultWindow / 2) // 250 KiB more
	miss(c, "f2.jpg", 1)
	w.fetchEnded("f2.jpg")
	if s := c.Stats(); s.Fetches != 3 || s.Files != 3 {
		t.Errorf("half a window later, one redirect: stats %+v; want f2.jpg fetched", s)
	}
}

// watchPath reads path in a loop until stop is called, and returns the
// first read that was neither "no such file" nor exactly want.
func watchPath(t *testing.T, path string, want []byte) (stop func() string, seen func() map[string]int) {
	var (
		mu     sync.Mutex
		bad    string
		counts = map[string]int{}
		done   = make(chan struct{})
		exited = make(chan struct{})
	)
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := os.ReadFile(path)
			mu.Lock()
			switch {
			case errors.Is(err, fs.ErrNotExist):
				counts["absent"]++
			case err == nil && bytes.Equal(got, want):
				counts["whole"]++
			default:
				counts["other"]++
				if bad == "" {
					bad = fmt.Sprintf("%d bytes that are not the original (err %v)", len(got), err)
				}
			}
			mu.Unlock()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return func() string { close(done); <-exited; mu.Lock(); defer mu.Unlock(); return bad },
		func() map[string]int { mu.Lock(); defer mu.Unlock(); return counts }
}

// TestEvictionKeepsTheCacheUnderItsBudget: files fetched one after
// another never take more than the budget on disk, and the least recently
// requested goes first.
func TestEvictionKeepsTheCacheUnderItsBudget(t *testing.T) {
	w := newWorld(t)
	w.cfg.Size = 400 << 10 // four files of 100 KiB; each at most a quarter
	names := []string{"p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg", "p5.jpg"}
	for i, n := range names {
		w.offloaded(n, randomBytes(100<<10, uint64(10+i)))
	}
	c := w.start(w.cacheS3)
	for i, n := range names[:4] {
		miss(c, n, 2)
		waitFor(t, "fetch of "+n, func() bool { return c.Stats().Fetches == int64(i+1) })
	}
	hit(c, "p0.jpg") // p0 is now more recent than p1, p2, p3
	for i, n := range names[4:] {
		// Two misses, as many as the file it pushes out had, whose count
		// has faded a little since: admitted.
		miss(c, n, 2)
		waitFor(t, "fetch of "+n, func() bool { return c.Stats().Fetches == int64(5+i) })
		if used := diskBytes(t, filepath.Join(w.cfg.Dir, "static")); used > w.cfg.Size {
			t.Fatalf("after fetching %s: %d bytes in the cache folder, budget %d", n, used, w.cfg.Size)
		}
	}
	for n, want := range map[string]bool{"p0.jpg": true, "p1.jpg": false, "p2.jpg": false, "p3.jpg": true, "p4.jpg": true, "p5.jpg": true} {
		_, err := os.Stat(w.cachedPath(n))
		if got := err == nil; got != want {
			t.Errorf("%s cached = %v, want %v (least recently requested first out)", n, got, want)
		}
	}
	if s := c.Stats(); s.EvictedSize != 2 || s.Files != 4 || s.Bytes != 400<<10 {
		t.Errorf("stats %+v; want 2 evicted for size, 4 files of 400 KiB", s)
	}

	// Idle: nothing requested for longer than the idle time goes.
	c.EvictIdle(time.Now().Add(hotcache.DefaultIdle + time.Minute))
	if s := c.Stats(); s.Files != 0 || s.EvictedIdle != 4 || diskBytes(t, filepath.Join(w.cfg.Dir, "static")) != 0 {
		t.Errorf("after the idle time: stats %+v; want every file removed as idle", s)
	}
}

// TestColdPathDoesNotPushOutHotterFiles: with the cache full of files
// each requested six times, a path missed fewer times than the file it
// would push out is not fetched, however often it crosses the threshold;
// once it has been asked for more often, it comes in and the least
// recently requested file goes.
func TestColdPathDoesNotPushOutHotterFiles(t *testing.T) {
	w := newWorld(t)
	w.cfg.Size = 400 << 10
	names := []string{"h0.jpg", "h1.jpg", "h2.jpg", "h3.jpg"}
	for i, n := range append(names, "new.jpg") {
		w.offloaded(n, randomBytes(100<<10, uint64(50+i)))
	}
	c := w.start(w.cacheS3)
	for i, n := range names {
		miss(c, n, 2)
		waitFor(t, "fetch of "+n, func() bool { return c.Stats().Fetches == int64(i+1) })
	}
	for _, n := range names {
		for range 4 {
			hit(c, n) // 2 misses + 4 hits: a score of 6 each
		}
	}
	miss(c, "new.jpg", 2) // the look-up, then not admitted
	w.fetchEnded("new.jpg")
	if f := c.Stats().FetchFailures[hotcache.FailColder]; f != 1 {
		t.Fatalf("new.jpg after 2 misses: %d judged colder; want 1", f)
	}
	miss(c, "new.jpg", 3) // 5 in all: judged again in place, no look-up
	noFetchQueued(t, c, "5 misses of new.jpg")
	if s := c.Stats(); s.Fetches != 4 || s.EvictedSize != 0 {
		t.Fatalf("after 5 misses of new.jpg: stats %+v; want nothing fetched or evicted for a path colder than h0 (6)", s)
	}
	miss(c, "new.jpg", 2) // 7 in all
	waitFor(t, "fetch of new.jpg", func() bool { return c.Stats().Fetches == 5 })
	if _, err := os.Stat(w.cachedPath("h0.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("h0.jpg, the least recently requested: stat %v; want evicted", err)
	}
	if s := c.Stats(); s.EvictedSize != 1 || s.FetchFailures[hotcache.FailColder] != 1 {
		t.Errorf("stats %+v; want 1 evicted, the colder verdict counted once", s)
	}
}

// TestFileRemovedBehindItsBackIsFetchedAgain: an operator removes a
// cached file; the redirects that follow count as misses again, the cache
// stops counting its bytes, and a path that stays hot comes back.
func TestFileRemovedBehindItsBackIsFetchedAgain(t *testing.T) {
	w := newWorld(t)
	data := randomBytes(30<<10, 60)
	w.offloaded("gone.jpg", data)
	c := w.start(w.cacheS3)
	miss(c, "gone.jpg", 2)
	w.fetchEnded("gone.jpg") // no longer in flight: the redirects below are judged afresh
	if c.Stats().Fetches != 1 {
		t.Fatalf("stats %+v; want the file fetched", c.Stats())
	}
	if err := os.Remove(w.cachedPath("gone.jpg")); err != nil {
		t.Fatal(err)
	}
	miss(c, "gone.jpg", 1)
	if s := c.Stats(); s.Files != 0 || s.Bytes != 0 {
		t.Errorf("after a redirect for the removed file: stats %+v; want it no longer counted", s)
	}
	miss(c, "gone.jpg", 1)
	waitFor(t, "the fetch again", func() bool { return c.Stats().Fetches == 2 })
	if got, err := os.ReadFile(w.cachedPath("gone.jpg")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("fetched again: %d bytes, %v; want the original", len(got), err)
	}
	if strings.Contains(w.logs.String(), "does its cache root point") {
		t.Error("warned that the web server does not look in the cache; the file was only removed")
	}
}

// TestTooLargeAndUnknownAreNotFetched: a file over a quarter of the budget
// and a path the ledger does not know are looked up once and not again
// within the window, however often they are requested.
func TestTooLargeAndUnknownAreNotFetched(t *testing.T) {
	w := newWorld(t)
	w.offloaded("big.jpg", randomBytes(300<<10, 20)) // budget 1 MiB: limit 256 KiB
	c := w.start(w.cacheS3)
	for range 5 {
		miss(c, "big.jpg", 2)
		miss(c, "made-up.jpg", 2)
	}
	// The first two misses of each queue its look-up; while it runs,
	// and once it is quiet, the others count for nothing.
	w.fetchEnded("big.jpg", "made-up.jpg")
	noFetchQueued(t, c, "both look-ups")
	if f := c.Stats().FetchFailures; f[hotcache.FailTooLarge] != 1 || f[hotcache.FailNotInLedger] != 1 {
		t.Errorf("failures %v; want one look-up each, then quiet for the window", f)
	}
	if c.Stats().Files != 0 {
		t.Error("something was cached")
	}
}

// TestRestartKeepsPublishedFilesAndRemovesDownloads: files published
// before a restart are served and counted; a download left half-written
// by a killed agent is removed, never published.
func TestRestartKeepsPublishedFilesAndRemovesDownloads(t *testing.T) {
	w := newWorld(t)
	data := randomBytes(50<<10, 30)
	w.offloaded("kept.jpg", data)
	c := w.start(w.cacheS3)
	miss(c, "kept.jpg", 2)
	waitFor(t, "the fetch", func() bool { return c.Stats().Fetches == 1 })
	left := filepath.Join(w.cfg.Dir, ".offload-fetch", "123.456")
	if err := os.WriteFile(left, data[:1000], 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := hotcache.New(w.cfg, w.cacheS3, w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if s := c2.Stats(); s.Files != 1 || s.Bytes != int64(len(data)) {
		t.Errorf("after a restart: stats %+v; want the published file counted", s)
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the half-written download: stat %v; want removed at start", err)
	}
}

// TestDryRunFetchesNothing: a dry run says what it would fetch and
// touches nothing.
func TestDryRunFetchesNothing(t *testing.T) {
	w := newWorld(t)
	w.offloaded("dry.jpg", randomBytes(10<<10, 40))
	w.cfg.DryRun = true
	c := w.start(w.cacheS3)
	miss(c, "dry.jpg", 2)
	if !strings.Contains(w.logs.String(), "would fetch") {
		t.Errorf("log %q; want it to say what it would fetch", w.logs.String())
	}
	if _, err := os.Stat(filepath.Join(w.cfg.Dir, ".offload-fetch")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dry run made its download folder (stat %v)", err)
	}
	if s := c.Stats(); s.Fetches != 0 || s.Files != 0 {
		t.Errorf("stats %+v; want nothing fetched", s)
	}
}

func assertNoDownloads(t *testing.T, w *world) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(w.cfg.Dir, ".offload-fetch"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%d downloads left in .offload-fetch; want none", len(entries))
	}
}

// diskBytes is the size of the regular files under dir.
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			n += fi.Size()
		}
		return nil
	})
	return n
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
