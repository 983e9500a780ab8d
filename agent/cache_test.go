package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/hotcache"
)

// cachingDaemon runs the agent with a hot cache (links signed with
// signingKey, if not nil) on an empty access log, writes rel, and returns
// once rel is archived and the cache follows the log, with the log open
// for the test to append the web server's lines to.
func (h *harness) cachingDaemon(signingKey []byte, rel string, data []byte) (*agent.Agent, func() error, *os.File) {
	h.t.Helper()
	dir := h.t.TempDir()
	h.cfg.Cache = hotcache.Config{Dir: filepath.Join(dir, "cache"), AccessLog: filepath.Join(dir, "access.log"), SigningKey: signingKey}
	if err := os.MkdirAll(h.cfg.Cache.Dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(h.cfg.Cache.AccessLog, nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.write(rel, data)
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("the photo archived", time.Minute, func() bool { return h.archived(rel) })
	h.waitFor("the cache following the log", 10*time.Second, func() bool {
		s := a.Status().Cache
		return s != nil && s.Log.State == hotcache.StateFollowing
	})
	log, err := os.OpenFile(h.cfg.Cache.AccessLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { log.Close() })
	return a, stop, log
}

// TestDaemonCachesWhatTheLogShowsHot: the daemon with --cache-dir follows the
// access log; once a photo it offloaded is redirected three times (the
// default threshold) the cached copy appears, and /status and /metrics
// show it with exact values.
func TestDaemonCachesWhatTheLogShowsHot(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	data := randomBytes(40<<10, 7)
	a, stop, log := h.cachingDaemon(nil, "2026/cat.jpg", data)
	for i := range 3 {
		fmt.Fprintf(log, "127.0.0.1 - - [30/Nov/2026:12:00:0%d +0000] \"GET /static/2026/cat.jpg?v=%d HTTP/1.1\" 302 0 \"-\" \"test\"\n", i, i)
	}
	cached := filepath.Join(h.cfg.Cache.Dir, "static", "2026", "cat.jpg")
	h.waitFor("the cached copy", 20*time.Second, func() bool {
		got, err := os.ReadFile(cached)
		return err == nil && string(got) == string(data)
	})
	fmt.Fprintf(log, "127.0.0.1 - - [30/Nov/2026:12:00:09 +0000] \"GET /static/2026/cat.jpg HTTP/1.1\" 200 %d \"-\" \"test\"\n", len(data))
	h.waitFor("the hit counted", 10*time.Second, func() bool { return a.Status().Cache.Hits == 1 })

	s := a.Status().Cache
	if s.Files != 1 || s.Bytes != int64(len(data)) || s.Misses != 3 || s.Fetches != 1 || s.Log.Lines != 4 {
		t.Errorf("status cache %+v; want 1 file of %d bytes, 3 misses, 1 fetch, 4 lines read", s, len(data))
	}
	got := metricSamples(t, scrape(t, a))
	for name, want := range map[string]float64{
		"offload_cache_hits_total":                                   1,
		"offload_cache_misses_total":                                 3,
		"offload_cache_fetches_total":                                1,
		"offload_cache_fetched_bytes_total":                          float64(len(data)),
		"offload_cache_bytes":                                        float64(len(data)),
		"offload_cache_files":                                        1,
		"offload_cache_budget_bytes":                                 hotcache.DefaultSize,
		"offload_cache_fetch_budget_bytes":                           2 * hotcache.DefaultSize,
		"offload_cache_invalid_links_total":                          0,
		"offload_cache_access_log_up":                                1,
		`offload_cache_evictions_total{reason="size"}`:               0,
		`offload_cache_evictions_total{reason="idle"}`:               0,
		`offload_cache_fetch_failures_total{reason="not_in_ledger"}`: 0,
		`offload_cache_fetch_failures_total{reason="colder"}`:        0,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	// It refills at 2 GiB per 10 min, about 3.6 MB/s, since the fetch.
	if left := got["offload_cache_fetch_budget_left_bytes"]; left < 2*hotcache.DefaultSize-float64(len(data)) || left > 2*hotcache.DefaultSize {
		t.Errorf("offload_cache_fetch_budget_left_bytes = %v; want between the budget less the fetch and the budget", left)
	}
	for name := range got {
		if strings.HasPrefix(name, "offload_cache_fetch_failures_total") && got[name] != 0 {
			t.Errorf("%s = %v, want 0", name, got[name])
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonCountsOnlySignedLinks: the daemon with a signing key reads a
// log with three unsigned and three forged redirects for a photo it
// offloaded and fetches nothing; three with a valid link bring it in.
// /metrics counts the six as invalid links.
func TestDaemonCountsOnlySignedLinks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := randomBytes(32, 11)
	data := randomBytes(20<<10, 12)
	a, stop, log := h.cachingDaemon(key, "private.jpg", data)
	redirect := func(target string) {
		fmt.Fprintf(log, "127.0.0.1 - - [30/Nov/2026:12:00:00 +0000] \"GET %s HTTP/1.1\" 302 0 \"-\" \"test\"\n", target)
	}
	sign := func(k []byte) string {
		link, err := offload.SignLink(k, h.cfg.Mapping, "/static/private.jpg", time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return link
	}
	forged := sign(randomBytes(32, 13))
	for range 3 {
		redirect("/static/private.jpg")
		redirect(forged)
	}
	h.waitFor("the six lines judged", 10*time.Second, func() bool { return a.Status().Cache.InvalidLinks == 6 })
	if s := a.Status().Cache; s.Fetching != 0 || s.Fetches != 0 || s.Misses != 0 {
		t.Fatalf("after 6 redirects without a valid link: cache %+v; want nothing counted or fetched", s)
	}
	valid := sign(key)
	for range 3 {
		redirect(valid)
	}
	h.waitFor("the cached copy", 20*time.Second, func() bool {
		got, err := os.ReadFile(filepath.Join(h.cfg.Cache.Dir, "static", "private.jpg"))
		return err == nil && string(got) == string(data)
	})
	if got := metricSamples(t, scrape(t, a))["offload_cache_invalid_links_total"]; got != 6 {
		t.Errorf("offload_cache_invalid_links_total = %v; want 6", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestCacheConfigurationRefused: the cache folder may not be the watch
// or archive folder, nor inside either, and needs the access log; each
// refusal names the setting.
func TestCacheConfigurationRefused(t *testing.T) {
	dir := t.TempDir()
	watch, archive, cache := filepath.Join(dir, "static"), filepath.Join(dir, "archive"), filepath.Join(dir, "cache")
	for _, d := range []string{watch, archive, cache, filepath.Join(watch, "cache")} {
		os.MkdirAll(d, 0o755)
	}
	base := agent.Config{Watch: watch, Archive: archive, Bucket: "b", Table: "t"}
	for _, tc := range []struct {
		name  string
		cache hotcache.Config
		want  string
	}{
		{"the watch folder", hotcache.Config{Dir: watch, AccessLog: "/var/log/access.log"}, "must not contain one another"},
		{"inside the watch folder", hotcache.Config{Dir: filepath.Join(watch, "cache"), AccessLog: "/var/log/access.log"}, "must not contain one another"},
		{"the archive", hotcache.Config{Dir: archive, AccessLog: "/var/log/access.log"}, "must not contain one another"},
		{"no access log", hotcache.Config{Dir: cache}, "access log: required"},
		{"no folder", hotcache.Config{AccessLog: "/var/log/access.log"}, "cache: required"},
		{"a missing folder", hotcache.Config{Dir: filepath.Join(dir, "nope"), AccessLog: "/var/log/access.log"}, "no such file"},
		{"a negative size", hotcache.Config{Dir: cache, AccessLog: "/var/log/access.log", Size: -1}, "cache size: must be positive"},
		{"a fetch budget below a quarter of the size", hotcache.Config{Dir: cache, AccessLog: "/var/log/access.log", Size: 1 << 30, FetchBudget: 1 << 20}, "cache fetch budget"},
		{"a short signing key", hotcache.Config{Dir: cache, AccessLog: "/var/log/access.log", SigningKey: []byte("short")}, "signing key: 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.Cache = tc.cache
			err := cfg.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v; want an error containing %q", err, tc.want)
			}
		})
	}
	ok := base
	ok.Cache = hotcache.Config{Dir: cache, AccessLog: "/var/log/access.log"}
	if err := ok.WithDefaults().Validate(); err != nil {
		t.Errorf("a separate cache folder: %v; want accepted", err)
	}
}

// TestCacheTroubleLeavesOffloadingAlone: with the access log missing, the
// daemon offloads as ever; status says the log is missing and the metric
// shows it down; once the log appears, the cache follows it.
func TestCacheTroubleLeavesOffloadingAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dir := t.TempDir()
	h.cfg.Cache = hotcache.Config{Dir: filepath.Join(dir, "cache"), AccessLog: filepath.Join(dir, "logs", "access.log")}
	os.MkdirAll(h.cfg.Cache.Dir, 0o755)
	a, _ := h.runDaemon(h.cfg)
	data := randomBytes(10<<10, 9)
	h.write("offloaded-anyway.jpg", data)
	h.waitFor("the photo archived", time.Minute, func() bool { return h.archived("offloaded-anyway.jpg") })
	h.assertOffloaded("offloaded-anyway.jpg", data)
	h.waitFor("the log reported missing", 10*time.Second, func() bool {
		s := a.Status().Cache
		return s != nil && s.Log.State == hotcache.StateMissing
	})
	if up := metricSamples(t, scrape(t, a))["offload_cache_access_log_up"]; up != 0 {
		t.Errorf("offload_cache_access_log_up = %v with the log missing; want 0", up)
	}
	os.MkdirAll(filepath.Dir(h.cfg.Cache.AccessLog), 0o755)
	os.WriteFile(h.cfg.Cache.AccessLog, nil, 0o644)
	h.waitFor("the log followed once it exists", 10*time.Second, func() bool { return a.Status().Cache.Log.State == hotcache.StateFollowing })
}
