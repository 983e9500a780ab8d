package agent_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// TestOperationsEndpoints: while the daemon runs, /metrics, /status,
// /healthz and /readyz tell what it did and what waits: two files
// offloaded, one held open by its writer and pending.
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

	a, stop := h.runDaemon(h.cfg)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	h.waitFor("both files archived", 30*time.Second, func() bool { return h.archived("a.jpg") && h.archived("b/c.jpg") })
	var st agent.Status
	h.waitFor("status to show held.jpg pending", 30*time.Second, func() bool {
		_, body := get(t, srv, "/status")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status: %v: %s", err, body)
		}
		return st.Pending == 1
	})
	if st.Offloaded != 2 || st.OffloadedBytes != 3000 || st.Oldest == nil || st.Oldest.Path != "held.jpg" ||
		st.Oldest.Bytes != 7000 || st.PendingBytes != 7000 || st.LastOffloadedAt == nil || len(st.InFlight) != 0 {
		t.Errorf("status = %+v; want 2 offloaded (3000 bytes), held.jpg (7000 bytes) pending, none in flight", st)
	}

	code, text := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for name, want := range map[string]float64{
		"offload_files_offloaded_total":            2,
		"offload_bytes_offloaded_total":            3000,
		"offload_files_pending":                    1,
		"offload_bytes_pending":                    7000,
		"offload_files_in_flight":                  0,
		"offload_conflicts_total":                  0,
		"offload_upload_duration_seconds_count":    2,
		`offload_failures_total{cause="s3"}`:       0,
		`offload_failures_total{cause="dynamodb"}`: 0,
	} {
		if got := metricValue(t, text, name); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	if v := metricValue(t, text, "offload_oldest_pending_age_seconds"); v <= 0 {
		t.Errorf("offload_oldest_pending_age_seconds = %v; want > 0", v)
	}
	if v := metricValue(t, text, "offload_archive_free_bytes"); v <= 0 {
		t.Errorf("offload_archive_free_bytes = %v; want > 0", v)
	}
	if v := metricValue(t, text, "offload_last_success_timestamp_seconds"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("offload_last_success_timestamp_seconds = %v; want within the last minute", v)
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
