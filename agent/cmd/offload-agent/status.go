package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/photosleeve/offload/agent"
)

// statusCommand asks a running agent's operations listener what it is doing
// and prints it: for a person, or as JSON for a script.
func statusCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := newCommandLine("status")
	asJSON := c.fs.Bool("json", false, "print the agent's status as JSON")
	opts, ok, code := parseAgentFlags(c, args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	if opts.metrics == "" {
		fmt.Fprintln(stderr, "offload-agent status: no address: start the agent with --metrics-addr HOST:PORT and pass the same here (or set OFFLOAD_METRICS_ADDR)")
		return 2
	}
	addr := &opts.metrics
	st, raw, err := fetchStatus(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent status: %v\n", err)
		return 1
	}
	if *asJSON {
		stdout.Write(raw)
		return 0
	}
	printStatus(stdout, st)
	return 0
}

func fetchStatus(addr string) (agent.Status, []byte, error) {
	var st agent.Status
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		return st, nil, fmt.Errorf("is the agent running with --metrics-addr %s? %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return st, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("%s/status answered %s", addr, resp.Status)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("%s/status: not an offload-agent status: %w", addr, err)
	}
	return st, raw, nil
}

// printStatus writes the status for a person.
func printStatus(w io.Writer, st agent.Status) {
	now := st.Now
	fmt.Fprintf(w, "offload-agent watching %s, up %s\n", st.Watch, roundDuration(now.Sub(st.Started)))

	fmt.Fprintf(w, "\npending: %d files, %s", st.Pending, bytesText(st.PendingBytes))
	if st.Oldest != nil {
		fmt.Fprintf(w, "; oldest waiting %s", roundDuration(now.Sub(st.Oldest.Since)))
	}
	fmt.Fprintln(w)
	for _, f := range st.Waiting {
		why := f.State
		if f.Attempts > 0 {
			why = fmt.Sprintf("%s after %d failed attempts", f.State, f.Attempts)
			if !f.RetryAt.IsZero() {
				why += fmt.Sprintf(", next in %s", roundDuration(f.RetryAt.Sub(now)))
			}
		}
		fmt.Fprintf(w, "  %-40s %10s  waiting %-8s %s\n", clip(f.Path, 40), bytesText(f.Bytes), roundDuration(now.Sub(f.Since)), why)
	}
	if st.Pending > len(st.Waiting) {
		fmt.Fprintf(w, "  ... and %d more\n", st.Pending-len(st.Waiting))
	}
	if st.BacklogFull {
		fmt.Fprintf(w, "  backlog full: the agent holds %d files, its most; the scan waits and goes on as these are offloaded (more files may be waiting on disk)\n", st.PendingLimit)
	}
	if st.ScanError != "" {
		fmt.Fprintf(w, "\nscan error: %s\n", st.ScanError)
	}
	if st.WatchError != "" {
		fmt.Fprintf(w, "\nwatch error: %s; only the periodic rescan finds new files\n", st.WatchError)
	}

	if b := st.Breaker; b.State == "open" {
		if service, refused := strings.CutSuffix(b.Cause, "-refused"); refused {
			fmt.Fprintf(w, "\nbreaker: open for %s (%s refusing every file: check the role's grants and the bucket's, KMS key's or table's policy): %d refusals in a row, %d failed probes; ",
				roundDuration(now.Sub(b.Since)), service, b.ConsecutiveRefusals, b.FailedProbes)
		} else {
			fmt.Fprintf(w, "\nbreaker: open for %s (%s failing for every file): %d failures in a row, %d failed probes; ",
				roundDuration(now.Sub(b.Since)), b.Cause, b.ConsecutiveFailures, b.FailedProbes)
		}
		if b.Probing != "" {
			fmt.Fprintf(w, "probing with %s\n", b.Probing)
		} else {
			fmt.Fprintf(w, "next probe in %s\n", roundDuration(b.NextProbe.Sub(now)))
		}
	} else if b.Trips > 0 {
		fmt.Fprintf(w, "\nbreaker: closed for %s; opened %d times\n", roundDuration(now.Sub(b.Since)), b.Trips)
	}

	fmt.Fprintf(w, "\nin flight: %d\n", len(st.InFlight))
	for _, f := range st.InFlight {
		fmt.Fprintf(w, "  %-40s %s\n", clip(f.Path, 40), progressText(f, now))
	}

	fmt.Fprintf(w, "\nrecent failures: %d\n", len(st.RecentFailures))
	for _, f := range st.RecentFailures {
		fmt.Fprintf(w, "  %s  %-8s %s: %s\n", f.At.Local().Format("15:04:05"), f.Cause, f.Path, clip(f.Error, 160))
	}

	fmt.Fprintf(w, "\ntotals: %d offloaded (%s)", st.Offloaded, bytesText(st.OffloadedBytes))
	if st.LastOffloadedAt != nil {
		fmt.Fprintf(w, ", the last %s ago", roundDuration(now.Sub(*st.LastOffloadedAt)))
	}
	fmt.Fprintf(w, "; %d conflicts; %d refused; %d failed attempts\n", st.Conflicts, st.Refused, st.FailedAttempts)

	if c := st.Cache; c != nil {
		fmt.Fprintf(w, "\ncache: %d files, %s of %s in %s\n", c.Files, bytesText(c.Bytes), bytesText(c.Budget), c.Dir)
		fmt.Fprintf(w, "  %d hits, %d misses; %d fetched (%s); evicted %d for size, %d idle\n",
			c.Hits, c.Misses, c.Fetches, bytesText(c.FetchedBytes), c.EvictedSize, c.EvictedIdle)
		if len(c.FetchFailures) > 0 {
			reasons := make([]string, 0, len(c.FetchFailures))
			for r, n := range c.FetchFailures {
				reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
			}
			slices.Sort(reasons)
			fmt.Fprintf(w, "  not fetched: %s\n", strings.Join(reasons, ", "))
		}
		fmt.Fprintf(w, "  fetch budget: %s of %s per window left; %d fetching\n", bytesText(c.FetchBudgetLeft), bytesText(c.FetchBudget), c.Fetching)
		if c.InvalidLinks > 0 {
			fmt.Fprintf(w, "  %d requests without a valid signed link (not counted)\n", c.InvalidLinks)
		}
		fmt.Fprintf(w, "  access log: %s (%d lines read, %d not understood)\n", c.Log.State, c.Log.Lines, c.Log.Unparsed)
	}
}

// progressText is a bar of the bytes sent to S3, out of the total,
// the rate so far and the time left at that rate.
func progressText(f agent.InFlight, now time.Time) string {
	const width = 20
	frac := 1.0
	if f.Bytes > 0 {
		frac = min(1, float64(f.Sent)/float64(f.Bytes))
	}
	filled := int(frac * width)
	bar := "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
	text := fmt.Sprintf("%s %3.0f%%  %s / %s", bar, frac*100, bytesText(f.Sent), bytesText(f.Bytes))
	if took := now.Sub(f.Started); took > 0 && f.Sent > 0 {
		rate := float64(f.Sent) / took.Seconds()
		text += fmt.Sprintf("  %s/s", bytesText(int64(rate)))
		if left := f.Bytes - f.Sent; left > 0 {
			text += "  ETA " + roundDuration(time.Duration(float64(left)/rate*float64(time.Second)))
		}
	}
	return text
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// clip shortens s to n runes for a table column.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
