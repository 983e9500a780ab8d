package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/photosleeve/offload/agent"
)

// statusCommand asks a running agent what it is doing and prints it: for a
// person, or as JSON for a script. It asks the agent's status socket (by
// default /run/offload/agent.sock, where the systemd unit's agent listens),
// or its --metrics-addr listener over TCP when given one.
func statusCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", commandHelp["status"])
	socket := fs.String("status-socket", "", "the running agent's status socket (env OFFLOAD_STATUS_SOCKET; default "+defaultStatusSocket+")")
	addr := new(string)
	hostPort := func(v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("want host:port, got %q", v)
		}
		*addr = v
		return nil
	}
	fs.Func("metrics-addr", "ask the agent's --metrics-addr listener at HOST:PORT instead (env OFFLOAD_METRICS_ADDR)", hostPort)
	fs.Func("metrics", "deprecated: use --metrics-addr", func(v string) error {
		fmt.Fprintln(stderr, "offload-agent status: --metrics is deprecated; use --metrics-addr")
		return hostPort(v)
	})
	asJSON := fs.Bool("json", false, "print the agent's status as JSON")
	if ok, code := parseCommand(fs, args, stdout, stderr); !ok {
		return code
	}
	target, err := statusTarget(*socket, *addr, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent status: %v\n", err)
		return 2
	}
	st, raw, err := fetchStatus(target)
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

// agentAddr is where a running agent answers: its status socket, or its
// --metrics-addr listener (tcp).
type agentAddr struct {
	socket, tcp string
}

// statusTarget picks where to ask: a flag first (not both), then
// OFFLOAD_STATUS_SOCKET, then OFFLOAD_METRICS, then the default socket.
func statusTarget(socket, metrics string, getenv func(string) string) (agentAddr, error) {
	switch {
	case socket != "" && metrics != "":
		return agentAddr{}, errors.New("give --status-socket or --metrics-addr, not both")
	case socket != "":
		return agentAddr{socket: socket}, nil
	case metrics != "":
		return agentAddr{tcp: metrics}, nil
	case getenv("OFFLOAD_STATUS_SOCKET") != "" && getenv("OFFLOAD_STATUS_SOCKET") != "auto" && getenv("OFFLOAD_STATUS_SOCKET") != "off":
		return agentAddr{socket: getenv("OFFLOAD_STATUS_SOCKET")}, nil
	case getenv("OFFLOAD_METRICS_ADDR") != "":
		return agentAddr{tcp: getenv("OFFLOAD_METRICS_ADDR")}, nil
	case getenv("OFFLOAD_METRICS") != "": // the deprecated spelling
		return agentAddr{tcp: getenv("OFFLOAD_METRICS")}, nil
	}
	return agentAddr{socket: defaultStatusSocket}, nil
}

func fetchStatus(to agentAddr) (agent.Status, []byte, error) {
	var st agent.Status
	client := &http.Client{Timeout: 5 * time.Second}
	url, where := "http://"+to.tcp+"/status", to.tcp
	if to.socket != "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", to.socket)
		}}
		url, where = "http://offload-agent/status", to.socket
	}
	resp, err := client.Get(url)
	if err != nil {
		return st, nil, unreachable(to, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return st, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("%s/status answered %s", where, resp.Status)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("%s/status: not an offload-agent status: %w", where, err)
	}
	return st, raw, nil
}

// unreachable says what to do when the agent could not be asked.
func unreachable(to agentAddr, err error) error {
	if to.socket == "" {
		return fmt.Errorf("no agent answers on %s: is it running with --metrics-addr %s? (%w)", to.tcp, to.tcp, err)
	}
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("permission denied on %s: run as root or a member of group offload (%w)", to.socket, err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("no agent listening on %s: is offload-agent running? (systemctl status offload-agent; an agent run by hand needs --status-socket, and so does this command)", to.socket)
	}
	return fmt.Errorf("could not ask the agent on %s: %w", to.socket, err)
}

// printStatus writes the status for a person.
func printStatus(w io.Writer, st agent.Status) {
	w = termSafe{w} // file names are anyone's: no escape sequence reaches the terminal
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
