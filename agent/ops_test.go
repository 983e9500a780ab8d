package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/loopback"
)

// get fetches a path from the operations handler and returns status and body.
func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue finds an unlabelled (or exactly labelled) sample in the text
// exposition format.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found in:\n%s", name, text)
	return 0
}

// metricSamples parses the text exposition format into samples by name
// with labels, as written (offload_failures_total{cause="s3"}).
func metricSamples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("metrics: bad sample %q", line)
		}
		samples[line[:i]] = v
	}
	return samples
}

// scrape is the agent's /metrics, asked in process.
func scrape(t *testing.T, a *agent.Agent) string {
	t.Helper()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// TestOperationsEndpoints: while the daemon runs, /metrics, /status,
// /healthz and /readyz tell what it did and what waits: two files
// offloaded, one refused for its name, one held open by its writer and
// pending. Every offload_ sample is checked, and one the test does not know
// fails it, so a new metric comes with its expected value.
func TestOperationsEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	held, err := os.Create(filepath.Join(h.cfg.Watch, "held.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write(randomBytes(7000, 3))
	first, second := randomBytes(1000, 1), randomBytes(2000, 2)
	h.write("a.jpg", first)
	h.write("b/c.jpg", second)
	h.write(`refused\name.jpg`, randomBytes(500, 4)) // a backslash: the naming contract refuses it

	started := time.Now()
	a, stop := h.runDaemon(h.cfg)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	h.waitFor("both files archived", 30*time.Second, func() bool { return h.archived("a.jpg") && h.archived("b/c.jpg") })
	var st agent.Status
	h.waitFor("status to show held.jpg pending and the refused name", 30*time.Second, func() bool {
		_, body := get(t, srv, "/status")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status: %v: %s", err, body)
		}
		return st.Pending == 1 && st.Refused == 1
	})
	if st.Offloaded != 2 || st.OffloadedBytes != 3000 || st.Oldest == nil || st.Oldest.Path != "held.jpg" ||
		st.Oldest.Bytes != 7000 || st.PendingBytes != 7000 || st.LastOffloadedAt == nil || len(st.InFlight) != 0 ||
		st.Conflicts != 0 || st.FailedAttempts != 0 {
		t.Errorf("status = %+v; want 2 offloaded (3000 bytes), held.jpg (7000 bytes) pending, none in flight, 1 refused, no conflict or failure", st)
	}
	if len(st.RecentFailures) != 1 || st.RecentFailures[0].Cause != "refused" || st.RecentFailures[0].Path != `refused\name.jpg` {
		t.Errorf("recent failures = %+v; want the refused name alone", st.RecentFailures)
	}

	code, text := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	running := time.Since(started).Seconds()
	const uploads = 2
	exactly := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	checks := map[string]struct {
		want string
		ok   func(float64) bool
	}{
		"offload_files_offloaded_total":            {"2", exactly(2)},
		"offload_bytes_offloaded_total":            {"3000", exactly(3000)},
		"offload_files_pending":                    {"1", exactly(1)},
		"offload_bytes_pending":                    {"7000", exactly(7000)},
		"offload_files_in_flight":                  {"0", exactly(0)},
		"offload_conflicts_total":                  {"0", exactly(0)},
		"offload_refused_total":                    {"1", exactly(1)},
		`offload_failures_total{cause="s3"}`:       {"0", exactly(0)},
		`offload_failures_total{cause="dynamodb"}`: {"0", exactly(0)},
		`offload_failures_total{cause="local"}`:    {"0", exactly(0)},
		`offload_failures_total{cause="archive"}`:  {"0", exactly(0)},
		"offload_backlog_full":                     {"0", exactly(0)},
		"offload_scan_errors_total":                {"0", exactly(0)},
		"offload_watch_failed":                     {"0", exactly(0)},
		"offload_leases_available":                 {"1 (the test's own files)", exactly(1)},
		"offload_breaker_open":                     {"0", exactly(0)},
		"offload_breaker_open_refused":             {"0", exactly(0)},
		"offload_breaker_trips_total":              {"0", exactly(0)},
		"offload_resumed_bytes_total":              {"0 (no upload was interrupted)", exactly(0)},
		// One sweep at start, then at most one per rescan period; none
		// found anything to abort.
		"offload_orphan_sweeps_total": {fmt.Sprintf("in [1, %d]", 1+int(running/h.cfg.Rescan.Seconds())), func(v float64) bool {
			return v >= 1 && v <= 1+math.Floor(running/h.cfg.Rescan.Seconds())
		}},
		"offload_orphan_uploads_aborted_total": {"0", exactly(0)},
		// Nothing erased under the test's prefix, and the ledger answers.
		"offload_erasures_forgotten_total":      {"0", exactly(0)},
		"offload_erasure_poll_failures_total":   {"0", exactly(0)},
		"offload_upload_duration_seconds_count": {"2", exactly(uploads)},
		// Each upload ran while the daemon did, so the sum is positive and
		// at most two runs' worth of seconds: milliseconds would not fit.
		"offload_upload_duration_seconds_sum": {fmt.Sprintf("in (0, %.3f]", uploads*running), func(v float64) bool { return v > 0 && v <= uploads*running }},
		// held.jpg was first seen after the daemon started.
		"offload_oldest_pending_age_seconds": {fmt.Sprintf("in (0, %.3f]", running), func(v float64) bool { return v > 0 && v <= running }},
		"offload_archive_free_bytes":         {"> 0", func(v float64) bool { return v > 0 }},
		"offload_last_success_timestamp_seconds": {"between the start and now", func(v float64) bool {
			return v >= float64(started.UnixNano())/1e9 && v <= float64(time.Now().UnixNano())/1e9
		}},
	}
	samples := metricSamples(t, text)
	buckets, builds := 0, 0
	for name, v := range samples {
		if !strings.HasPrefix(name, "offload_") {
			continue // the Go runtime's and the process's
		}
		if strings.HasPrefix(name, "offload_upload_duration_seconds_bucket{") {
			// Cumulative: the +Inf bucket holds every upload.
			if buckets++; v < 0 || v > uploads || (strings.Contains(name, `le="+Inf"`) && v != uploads) {
				t.Errorf("%s = %v; want at most %d, and %d in le=\"+Inf\"", name, v, uploads, uploads)
			}
			continue
		}
		if strings.HasPrefix(name, "offload_build_info{") {
			if builds++; v != 1 || !strings.Contains(name, `goversion="`+runtime.Version()+`"`) {
				t.Errorf("%s = %v; want 1, labelled with this Go version", name, v)
			}
			continue
		}
		c, ok := checks[name]
		if !ok {
			t.Errorf("%s = %v: a metric this test does not check; add its expected value", name, v)
			continue
		}
		if !c.ok(v) {
			t.Errorf("%s = %v; want %s", name, v, c.want)
		}
	}
	for name := range checks {
		if _, ok := samples[name]; !ok {
			t.Errorf("metric %s not served", name)
		}
	}
	if buckets == 0 {
		t.Errorf("offload_upload_duration_seconds has no buckets")
	}
	if builds != 1 {
		t.Errorf("%d offload_build_info samples; want 1", builds)
	}
	if code, body := get(t, srv, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestReadyzWhenS3IsUnreachable: an agent whose S3 endpoint refuses
// connections is alive (/healthz) but not ready, and says why.
func TestReadyzWhenS3IsUnreachable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	closed, err := loopback.FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	h.agentS3 = h.agentS3At("http://" + closed)
	a := h.newAgent(h.cfg)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if code, _ := get(t, srv, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d; want 200", code)
	}
	code, body := get(t, srv, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "S3:") || strings.Contains(body, "DynamoDB:") {
		t.Errorf("/readyz = %d %q; want 503 naming S3 only", code, body)
	}
}
