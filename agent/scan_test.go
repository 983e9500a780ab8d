package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
)

// backlogFiles writes n small files: half at the top of the watch folder,
// the rest spread over nested folders. It returns their names.
func backlogFiles(h *harness, n int) []string {
	h.t.Helper()
	var names []string
	for i := range n {
		rel := fmt.Sprintf("IMG_%04d.jpg", i)
		if i%2 == 1 {
			rel = fmt.Sprintf("d%d/sub/IMG_%04d.jpg", i%3, i)
		}
		h.write(rel, []byte(fmt.Sprintf("photo %d", i)))
		names = append(names, rel)
	}
	return names
}

// objectCount is the number of objects under the test's key prefix.
func (h *harness) objectCount() int {
	h.t.Helper()
	n := 0
	p := s3.NewListObjectsV2Paginator(h.s3, &s3.ListObjectsV2Input{Bucket: aws.String(h.st.Bucket), Prefix: aws.String(h.cfg.Mapping.KeyPrefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		n += len(out.Contents)
	}
	return n
}

// TestOnceBacklogLargerThanTheBound: with room for 16 files, Once still
// offloads all 200 of a folder, and never holds more than 16: the scan
// waits while the scheduler is full and goes on where it stopped.
func TestOnceBacklogLargerThanTheBound(t *testing.T) {
	h := newHarness(t)
	names := backlogFiles(h, 200)
	a := h.newAgent(h.cfg)
	const limit = 16
	agent.SetPendingLimit(a, limit)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Once(ctx); err != nil {
		t.Fatalf("Once: %v", err)
	}
	for _, rel := range names {
		if !h.archived(rel) {
			t.Errorf("%s not archived", rel)
		}
	}
	if n := h.objectCount(); n != len(names) {
		t.Errorf("%d objects in S3; want %d", n, len(names))
	}
	h.assertOffloaded(names[len(names)-1], []byte(fmt.Sprintf("photo %d", len(names)-1)))
	if peak := agent.PeakPending(a); peak != limit {
		t.Errorf("held at most %d files at once; want exactly the limit, %d (reached, never passed)", peak, limit)
	}
	if !strings.Contains(h.logs.String(), "the scan waits") {
		t.Error("no log line says the scan waits while the agent is full")
	}
}

// TestDaemonBacklogFullMissesNothing: the daemon, full from its first
// scan, still finds every file written while its scan waited, in old
// folders and new ones, and status says it was full.
func TestDaemonBacklogFullMissesNothing(t *testing.T) {
	h := newHarness(t)
	names := backlogFiles(h, 120)
	a := h.newAgent(h.cfg)
	agent.SetPendingLimit(a, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// PeakPending is stored when Run returns: stop before reading it.
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	defer stop()
	full := false
	for i := range 60 {
		rel := fmt.Sprintf("later/%d/new_%03d.jpg", i%4, i)
		if i%2 == 0 {
			rel = fmt.Sprintf("d%d/sub/new_%03d.jpg", i%3, i)
		}
		h.write(rel, []byte(fmt.Sprintf("new %d", i)))
		names = append(names, rel)
		if st := a.Status(); st.BacklogFull && st.Pending <= st.PendingLimit && st.PendingLimit == 8 {
			full = true
		}
	}
	h.waitFor("every file archived", time.Minute, func() bool {
		if st := a.Status(); st.BacklogFull {
			full = true
		}
		for _, rel := range names {
			if !h.archived(rel) {
				return false
			}
		}
		return true
	})
	if n := h.objectCount(); n != len(names) {
		t.Errorf("%d objects in S3; want %d", n, len(names))
	}
	if !full {
		t.Error("status never showed backlog_full while 180 files queued for 8 places")
	}
	stop()
	if peak := agent.PeakPending(a); peak > 8 || peak == 0 {
		t.Errorf("held %d files at once; want 1 to 8 (the limit)", peak)
	}
}

// TestOnceUnreadableFolderFails: a folder the scan cannot read makes Once
// fail and name it, after offloading everything it could read.
func TestOnceUnreadableFolderFails(t *testing.T) {
	h := newHarness(t)
	agent.SimulateUnreadableFolder(t, "locked")
	h.write("readable.jpg", []byte("readable"))
	h.write("a/locked/hidden.jpg", []byte("hidden"))
	h.write("z/also.jpg", []byte("also"))
	err := h.once()
	if !errors.Is(err, agent.ErrIncomplete) || !strings.Contains(err.Error(), "a/locked") {
		t.Fatalf("Once = %v; want ErrIncomplete naming a/locked", err)
	}
	h.assertOffloaded("readable.jpg", []byte("readable"))
	h.assertOffloaded("z/also.jpg", []byte("also"))
	if _, err := os.Stat(filepath.Join(h.cfg.Watch, "a", "locked", "hidden.jpg")); err != nil {
		t.Errorf("the unread file: %v; want it in place", err)
	}
}

// TestWatchFailureKeepsRescanning: when inotify fails with an error other
// than an overflow, the periodic rescan still finds new files, and status
// and the metrics say the watch failed.
func TestWatchFailureKeepsRescanning(t *testing.T) {
	h := newHarness(t)
	agent.SimulateWatchFailure(t)
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("status to show the watch error", 10*time.Second, func() bool { return a.Status().WatchError != "" })
	h.write("after-the-failure.jpg", []byte("found by a rescan"))
	h.waitFor("the file offloaded", 30*time.Second, func() bool { return h.archived("after-the-failure.jpg") })
	h.assertOffloaded("after-the-failure.jpg", []byte("found by a rescan"))
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if _, text := get(t, srv, "/metrics"); metricValue(t, text, "offload_watch_failed") != 1 {
		t.Errorf("offload_watch_failed is not 1 after the watch failed")
	}
	if !strings.Contains(h.logs.String(), "watch failed; only the periodic rescan finds new files now") {
		t.Error("no error logged for the failed watch")
	}
}

// TestOnceGivesUpOnFilesThatNeverSettle: a file held open by its writer
// and one that keeps changing do not keep Once from returning: after
// --settle-timeout it reports each by name and returns ErrIncomplete,
// having offloaded the rest; both files stay where they are.
func TestOnceGivesUpOnFilesThatNeverSettle(t *testing.T) {
	h := newHarness(t)
	h.cfg.SettleTimeout = 2 * time.Second
	h.write("finished.jpg", []byte("finished"))
	held, err := os.OpenFile(filepath.Join(h.cfg.Watch, "held-open.jpg"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write([]byte("a writer that never closes"))
	changing := filepath.Join(h.cfg.Watch, "changing.jpg")
	if err := os.WriteFile(changing, []byte("start "), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() { // closes the file after each append, so only the quiet rule sees it
		defer close(writerDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			f, err := os.OpenFile(changing, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err == nil {
				f.Write([]byte("more "))
				f.Close()
			}
		}
	}()
	defer func() { close(stop); <-writerDone }()

	err = h.once()
	if !errors.Is(err, agent.ErrIncomplete) || !strings.Contains(err.Error(), "2 files") || strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Once = %v; want ErrIncomplete for 2 files", err)
	}
	h.assertOffloaded("finished.jpg", []byte("finished"))
	for _, rel := range []string{"held-open.jpg", "changing.jpg"} {
		if _, err := os.Stat(filepath.Join(h.cfg.Watch, rel)); err != nil {
			t.Errorf("%s: %v; want it left in place", rel, err)
		}
		if !strings.Contains(h.logs.String(), "file="+rel) || !regexpMatch(h.logs.String(), `settle-timeout[^\n]*file=`+rel+`|file=`+rel+`[^\n]*settle-timeout`) {
			t.Errorf("no log line reports %s as given up after --settle-timeout", rel)
		}
	}
}

func regexpMatch(s, expr string) bool { return regexp.MustCompile(expr).MatchString(s) }
