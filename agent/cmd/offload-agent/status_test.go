package main

import (
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/hotcache"
)

func TestProgressText(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		f    agent.InFlight
		want string
	}{
		{agent.InFlight{Bytes: 100 << 20, Sent: 50 << 20, Started: now.Add(-5 * time.Second)},
			"[##########..........]  50%  50.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 5s"},
		{agent.InFlight{Bytes: 3000, Started: now}, "[....................]   0%  0 B / 2.9 KiB"},
		{agent.InFlight{Bytes: 0, Started: now.Add(-time.Second)}, "[####################] 100%  0 B / 0 B"},
	} {
		if got := progressText(tt.f, now); got != tt.want {
			t.Errorf("progressText(%+v) = %q; want %q", tt.f, got, tt.want)
		}
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 16<<20 + 2000: "16.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q; want %q", n, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	st := agent.Status{Offloaded: 12, OffloadedBytes: 30 << 20, InFlight: make([]agent.InFlight, 2), Pending: 5, Conflicts: 1, FailedAttempts: 3}
	want := "offloaded 12 files (30.0 MiB, 10.0 MiB/s); 2 uploading, 5 waiting; 1 conflicts or refusals; 3 failed attempts"
	if got := progressLine(st, 3*time.Second); got != want {
		t.Errorf("progressLine = %q; want %q", got, want)
	}
}

// TestTerminalKeepsLogLinesWhole: a log line first clears the progress
// line; the finished progress line ends with a newline.
func TestTerminalKeepsLogLinesWhole(t *testing.T) {
	var b strings.Builder
	term := &terminal{w: &b}
	term.draw("offloaded 1 files")
	term.Write([]byte("level=INFO msg=offloaded\n"))
	term.draw("offloaded 2 files")
	term.finish()
	want := "\r\033[Koffloaded 1 files\r\033[Klevel=INFO msg=offloaded\n\r\033[Koffloaded 2 files\n"
	if b.String() != want {
		t.Errorf("terminal wrote %q; want %q", b.String(), want)
	}
}

func TestPrintStatusBreaker(t *testing.T) {
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		b    agent.BreakerStatus
		want string
	}{
		{agent.BreakerStatus{State: "closed"}, ""},
		{agent.BreakerStatus{State: "open", Since: now.Add(-time.Minute), Cause: "s3", ConsecutiveFailures: 19, FailedProbes: 3, NextProbe: now.Add(8 * time.Second), Trips: 1},
			"breaker: open for 1m0s (s3 failing for every file): 19 failures in a row, 3 failed probes; next probe in 8s"},
		{agent.BreakerStatus{State: "open", Since: now.Add(-time.Minute), Cause: "dynamodb", Probing: "a.jpg", Trips: 1}, "probing with a.jpg"},
		{agent.BreakerStatus{State: "open", Since: now.Add(-time.Minute), Cause: "s3-refused", ConsecutiveRefusals: 27, FailedProbes: 2, NextProbe: now.Add(4 * time.Second), Trips: 1},
			"breaker: open for 1m0s (s3 refusing every file: check the role's grants and the bucket's, KMS key's or table's policy): 27 refusals in a row, 2 failed probes; next probe in 4s"},
		{agent.BreakerStatus{State: "closed", Since: now.Add(-time.Hour), Trips: 2}, "breaker: closed for 1h0m0s; opened 2 times"},
	} {
		var out strings.Builder
		printStatus(&out, agent.Status{Now: now, Started: now.Add(-2 * time.Hour), Breaker: tt.b})
		if got := out.String(); tt.want == "" && strings.Contains(got, "breaker") || !strings.Contains(got, tt.want) {
			t.Errorf("breaker %+v: output\n%s\nwant %q", tt.b, got, tt.want)
		}
	}
}

// TestPrintStatusBacklogAndScan: a full backlog, a scan that could not read
// a folder and a failed watch each get a line; none shows when all is well.
func TestPrintStatusBacklogAndScan(t *testing.T) {
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	var out strings.Builder
	printStatus(&out, agent.Status{Now: now, Started: now, Pending: 25000, PendingLimit: 25000})
	for _, quiet := range []string{"backlog full", "scan error", "watch error"} {
		if strings.Contains(out.String(), quiet) {
			t.Errorf("all well, yet the output says %q:\n%s", quiet, out.String())
		}
	}
	out.Reset()
	printStatus(&out, agent.Status{Now: now, Started: now, Pending: 25000, PendingLimit: 25000, BacklogFull: true,
		ScanError: "could not read 1 folders", WatchError: "read: EIO"})
	for _, want := range []string{"backlog full: the agent holds 25000 files", "scan error: could not read 1 folders",
		"watch error: read: EIO; only the periodic rescan finds new files"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output\n%s\nwants %q", out.String(), want)
		}
	}
}

// TestPrintStatusCache: the cache block says what the fetch budget has
// left and how many requests had no valid link.
func TestPrintStatusCache(t *testing.T) {
	st := agent.Status{Cache: &hotcache.Stats{Dir: "/var/cache/offload", Files: 2, Bytes: 3 << 20, Budget: 1 << 30,
		FetchBudget: 2 << 30, FetchBudgetLeft: 1536 << 20, Fetching: 1, InvalidLinks: 7,
		FetchFailures: map[string]int64{hotcache.FailOverBudget: 4}, Log: hotcache.FollowStats{State: hotcache.StateFollowing}}}
	var b strings.Builder
	printStatus(&b, st)
	for _, want := range []string{
		"fetch budget: 1.5 GiB of 2.0 GiB per window left; 1 fetching",
		"7 requests without a valid signed link (not counted)",
		"not fetched: over_budget 4",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status:\n%s\nwant a line with %q", b.String(), want)
		}
	}
}
