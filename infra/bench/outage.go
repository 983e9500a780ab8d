package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Outage scenario (issue 15: "an outage costs nothing"): the daemon with
// outageFiles tiny files waiting while S3 is unreachable, measured from
// /proc after outageWarmup (start-up scan, first attempts, the breaker
// opening): CPU and resident memory over each outageWindow, for outageFor
// (--outage-files, --outage-for).
const (
	outageWarmup = 30 * time.Second
	outageWindow = 60 * time.Second
)

var (
	outageFiles = 100_000
	outageFor   = outageWindow
)

// outage runs each agent binary in turn as a daemon over the same files,
// with S3 at an address nothing listens on (DynamoDB is the stack's).
func (b *bench) outage(ctx context.Context, bins []string) error {
	dir := filepath.Join(b.work, "outage")
	watch := filepath.Join(dir, "watch")
	defer os.RemoveAll(dir)
	start := time.Now()
	for i := range outageFiles {
		sub := filepath.Join(watch, fmt.Sprintf("d%03d", i%1000))
		if i < 1000 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("IMG_%06d.jpg", i)), []byte(fmt.Sprintf("photo %d\n", i)), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("\n## Outage: %d tiny files waiting, S3 unreachable (made in %s)\n", outageFiles, time.Since(start).Round(100*time.Millisecond))
	// A port that was free a moment ago: connections to it are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	fmt.Printf("%-44s %7s %12s %10s %10s %8s\n", "agent", "minute", "CPU (1 core)", "RSS", "peak RSS", "pending")
	for i, bin := range bins {
		archive := filepath.Join(dir, "archive-"+strconv.Itoa(i))
		if err := os.MkdirAll(archive, 0o755); err != nil {
			return err
		}
		err := b.outageRun(ctx, bin, watch, archive, dead, func(minute int, cpu float64, rss, peak int64, pending string) {
			fmt.Printf("%-44s %7d %11.1f%% %7d MiB %7d MiB %8s\n", bin, minute, cpu*100, rss>>20, peak>>20, pending)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
	}
	return nil
}

// outageRun starts bin as a daemon, waits outageWarmup, and measures it
// over each outageWindow for outageFor. For each window it reports the CPU
// share of one core, the resident and peak resident bytes, and the files
// still in the watch folder (all of them, or the agent was not cut off).
func (b *bench) outageRun(ctx context.Context, bin, watch, archive, s3 string, report func(minute int, cpu float64, rss, peak int64, pending string)) error {
	cmd := exec.CommandContext(ctx, bin, "run", "--watch", watch, "--archive", archive,
		"--key-prefix", "bench/outage/", "--host", "bench", "--log-level", "error")
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+s3)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	time.Sleep(outageWarmup)
	for minute := 1; time.Duration(minute)*outageWindow <= outageFor; minute++ {
		start := time.Now()
		c0, err := procCPU(cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, tail(out.String(), 2000))
		}
		time.Sleep(outageWindow)
		c1, err := procCPU(cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, tail(out.String(), 2000))
		}
		cpu := (c1 - c0).Seconds() / time.Since(start).Seconds()
		rss, peak, err := memory(cmd.Process.Pid)
		if err != nil {
			return err
		}
		n := 0
		filepath.WalkDir(watch, func(_ string, d os.DirEntry, _ error) error {
			if d != nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		report(minute, cpu, rss, peak, strconv.Itoa(n))
	}
	return nil
}

// memory is the process's resident set now and at its peak.
func memory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				rss = v << 10
			case "VmHWM:":
				peak = v << 10
			}
		}
	}
	return rss, peak, nil
}
