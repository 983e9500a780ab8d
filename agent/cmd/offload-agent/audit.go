package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/photosleeve/offload/agent"
)

// auditOptions are the flags only audit has; the rest are the agent's.
type auditOptions struct {
	json        bool
	deep        bool
	grace       time.Duration
	hostTimeout time.Duration
}

const defaultAuditGrace = time.Hour

// Exit statuses of audit.
const (
	auditClean      = 0
	auditFound      = 1 // discrepancies
	auditBadUsage   = 2
	auditIncomplete = 3 // could not look at everything
)

// auditCommand runs the audit and prints each discrepancy as found, then a
// summary.
func auditCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := newCommandLine("audit")
	ao := auditOptions{grace: defaultAuditGrace, hostTimeout: agent.DefaultHostTimeout}
	c.fs.BoolVar(&ao.json, "json", false, "print each discrepancy, then the summary, as one JSON object a line")
	c.fs.BoolVar(&ao.deep, "deep", false, "also read every local file S3 holds and compare its CRC64NVME with the object's")
	c.fs.Func("grace", "files and objects younger than this may be mid-offload and are not judged, nor erasures (mid-erase); 0s judges everything\n(not run's --grace, and no environment variable: OFFLOAD_GRACE is run's)\ndefault "+defaultAuditGrace.String(),
		func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errors.New("want a duration like 1h, or 0s")
			}
			ao.grace = d
			return nil
		})
	c.fs.Func("host-timeout", "a host whose last heartbeat is older than this is named down, not live, in erasure-pending\n(3 heartbeats at the agents' default --erase-poll, 1m)\ndefault "+agent.DefaultHostTimeout.String(),
		func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("want a duration like 3m, more than 0")
			}
			ao.hostTimeout = d
			return nil
		})
	opts, ok, code := parseAgentFlags(c, args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	cfg := opts.agent
	cfg.Logger = newLogger(stderr, opts.logFormat, opts.logLevel)
	// The audit reads the cache folder (--cache-dir), and needs none of the
	// rest of the cache's settings, such as the access log.
	cacheDir := cfg.Cache.Dir
	cfg.Cache = agent.Config{}.Cache
	if cacheDir != "" {
		// A mistyped folder would otherwise be an empty cache, all clean.
		if fi, err := os.Stat(cacheDir); err != nil || !fi.IsDir() {
			fmt.Fprintf(stderr, "offload-agent audit: bad configuration: cache: %s is not a folder (%v)\n", cacheDir, err)
			return auditBadUsage
		}
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		fmt.Fprintf(stderr, "offload-agent audit: bad configuration: %v\n", oneLine(err))
		return auditBadUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, err := commandAgent(ctx, cfg, opts.pathStyle)
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent audit: %v\n", err)
		return auditBadUsage
	}
	defer a.Close()

	enc := json.NewEncoder(stdout)
	sum, err := a.Audit(ctx, agent.AuditOptions{Grace: ao.grace, Deep: ao.deep, CacheDir: cacheDir, HostTimeout: ao.hostTimeout}, func(d agent.Discrepancy) {
		if ao.json {
			enc.Encode(d)
			return
		}
		fmt.Fprintf(stdout, "%-22s %s", d.Kind, d.Key)
		if d.Path != "" {
			fmt.Fprintf(stdout, "  (file %s)", d.Path)
		}
		if d.Detail != "" {
			fmt.Fprintf(stdout, "  %s", d.Detail)
		}
		fmt.Fprintln(stdout)
	})
	total := 0
	for _, n := range sum.Discrepancies {
		total += n
	}
	if ao.json {
		final := struct {
			Summary agent.AuditSummary `json:"summary"`
			Error   string             `json:"error,omitempty"`
		}{Summary: sum}
		if err != nil {
			final.Error = oneLine(err)
		}
		enc.Encode(final)
	} else {
		cached := ""
		if cacheDir != "" {
			cached = fmt.Sprintf(", %d in the cache", sum.CachedFiles)
		}
		fmt.Fprintf(stdout, "\nlooked at %d ledger items, %d objects, %d files in the watch folder, %d in the archive%s; %d younger than %s not judged\n",
			sum.LedgerItems, sum.Objects, sum.LocalFiles, sum.ArchivedFiles, cached, sum.Pending, ao.grace)
		if sum.Erasures > 0 {
			fmt.Fprintf(stdout, "%d erasures: %d complete, %d pending", sum.Erasures, sum.ErasuresComplete, sum.ErasuresPending)
			if young := sum.Erasures - sum.ErasuresComplete - sum.ErasuresPending; young > 0 {
				fmt.Fprintf(stdout, ", %d younger than %s not judged", young, ao.grace)
			}
			fmt.Fprintln(stdout)
		}
		if total == 0 {
			fmt.Fprintln(stdout, "no discrepancies")
		} else {
			kinds := make([]string, 0, len(sum.Discrepancies))
			for k, n := range sum.Discrepancies {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
			slices.Sort(kinds)
			fmt.Fprintf(stdout, "%d discrepancies: %s\n", total, strings.Join(kinds, ", "))
		}
	}
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "offload-agent audit: incomplete: %v\n", oneLine(err))
		return auditIncomplete
	case total > 0:
		return auditFound
	}
	return auditClean
}
