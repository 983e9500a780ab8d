package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/photosleeve/offload/agent"
)

// Exit statuses of prune.
const (
	pruneDone       = 0
	pruneIncomplete = 1 // some file could not be checked or removed
	pruneBadUsage   = 2
)

// pruneWorthALine are the reasons a kept file gets a line of its own: a
// person should look at it. Young and erased files are only counted.
var pruneWorthALine = map[string]bool{
	agent.KeptNotInLedger: true, agent.KeptLocalDiffers: true, agent.KeptS3Missing: true,
	agent.KeptS3Differs: true, agent.KeptS3NotCurrent: true, agent.KeptError: true,
}

// pruneCommand removes the archived files S3 holds (agent.Prune), prints a
// line per file removed and a summary, and writes the run's metrics for
// node_exporter when asked.
func pruneCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := newCommandLine("prune")
	var asJSON, dryRun bool
	c.fs.BoolVar(&dryRun, "dry-run", false, "check every file and say what would be removed; remove nothing (no environment variable:\nOFFLOAD_DRY_RUN is run's)")
	c.fs.BoolVar(&asJSON, "json", false, "print each file listed, then the summary, as one JSON object a line")
	opts, ok, code := parseAgentFlags(c, args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	if opts.pruneMinAge <= 0 {
		fmt.Fprintln(stderr, "offload-agent prune: --min-age (or OFFLOAD_PRUNE_MIN_AGE) is required: the least time since the ledger recorded a file, e.g. 720h for 30 days")
		return pruneBadUsage
	}
	cfg := opts.agent
	cfg.Logger = newLogger(stderr, opts.logFormat, opts.logLevel)
	cfg.Cache = agent.Config{}.Cache
	if err := cfg.WithDefaults().Validate(); err != nil {
		fmt.Fprintf(stderr, "offload-agent prune: bad configuration: %v\n", oneLine(err))
		return pruneBadUsage
	}
	if cfg.WithDefaults().After != agent.AfterArchive {
		fmt.Fprintf(stderr, "offload-agent prune: bad configuration: --after is %s: there is no archive to prune\n", cfg.After)
		return pruneBadUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, err := commandAgent(ctx, cfg, opts.pathStyle)
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent prune: %v\n", err)
		return pruneBadUsage
	}
	defer a.Close()

	enc := json.NewEncoder(stdout)
	sum, err := a.Prune(ctx, agent.PruneOptions{MinAge: opts.pruneMinAge, DryRun: dryRun}, func(r agent.PruneResult) {
		if !r.Removed && !pruneWorthALine[r.Kept] {
			return
		}
		switch {
		case asJSON:
			enc.Encode(r)
		case r.Removed && dryRun:
			fmt.Fprintf(stdout, "would remove %s (%d bytes)\n", r.Path, r.Size)
		case r.Removed:
			fmt.Fprintf(stdout, "removed %s (%d bytes)\n", r.Path, r.Size)
		default:
			fmt.Fprintf(stdout, "kept %s: %s: %s\n", r.Path, r.Kept, r.Detail)
		}
	})
	if asJSON {
		final := struct {
			Summary agent.PruneSummary `json:"summary"`
			Error   string             `json:"error,omitempty"`
		}{Summary: sum}
		if err != nil {
			final.Error = oneLine(err)
		}
		enc.Encode(final)
	} else {
		fmt.Fprintln(stdout, pruneSummaryLine(sum))
	}
	code = pruneDone
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent prune: incomplete: %v\n", oneLine(err))
		code = pruneIncomplete
	}
	if opts.metricsTextfile != "" && !sum.Started.IsZero() {
		if werr := agent.WritePruneMetrics(opts.metricsTextfile, sum); werr != nil {
			fmt.Fprintf(stderr, "offload-agent prune: metrics: %v\n", werr)
			code = pruneIncomplete
		}
	}
	return code
}

// pruneSummaryLine is the text summary: what was looked at, removed and
// freed, and what was kept, by reason.
func pruneSummaryLine(sum agent.PruneSummary) string {
	did := fmt.Sprintf("removed %d (%d bytes freed)", sum.Removed, sum.RemovedBytes)
	if sum.DryRun {
		did = fmt.Sprintf("would remove %d (%d bytes)", sum.Removed, sum.RemovedBytes)
	}
	var kept []string
	total := 0
	for why, n := range sum.Kept {
		if n > 0 {
			kept = append(kept, fmt.Sprintf("%s %d", why, n))
			total += n
		}
	}
	slices.Sort(kept)
	line := fmt.Sprintf("\nlooked at %d archived files; %s; kept %d", sum.Files, did, total)
	if total > 0 {
		line += ": " + strings.Join(kept, ", ")
	}
	return line
}
