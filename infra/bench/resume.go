package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Resume scenario (issue 17): a 1 GiB file under --bwlimit 32M; the daemon
// is killed with SIGKILL once S3 has accepted parts holding half of the
// file, and started again. (The parts in flight at the kill, up to the
// memory budget of 64 MiB, are lost with it.) What counts is the bytes of
// UploadPart bodies after the restart, at a counting proxy: a daemon that
// resumes sends about the half S3 did not hold yet; one that does not
// resumes nothing and sends it all again. Each agent binary (--agent,
// comma-separated: say, the commit before resumption and this one) runs in
// turn on the same file.
const (
	resumeSize  = 1 << 30
	resumeLimit = "32M"
)

func (b *bench) resume(ctx context.Context, bins []string) error {
	src := filepath.Join(b.work, "resume-src")
	if err := generate(src, scenario{files: 1, size: resumeSize}); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	counter, err := newCounter(b.env.endpoint, b.env.ca)
	if err != nil {
		return err
	}
	defer counter.close()
	fmt.Printf("\n## Resume: 1 GiB under --bwlimit %s, SIGKILL once S3 holds half, restarted\n", resumeLimit)
	fmt.Printf("%-44s %14s %14s %14s %14s %8s\n", "agent", "sent before", "held at kill", "sent after", "after / file", "total s")
	for _, bin := range bins {
		before, held, after, took, err := b.resumeRun(ctx, bin, src, counter)
		if err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
		fmt.Printf("%-44s %10d MiB %10d MiB %10d MiB %13.1f%% %8.1f\n", bin, before>>20, held>>20, after>>20,
			float64(after)*100/resumeSize, took.Seconds())
	}
	return nil
}

// resumeRun returns the UploadPart bytes sent before the kill and accepted
// by then, the bytes sent after the restart, and the time from the first
// start to the file archived.
func (b *bench) resumeRun(ctx context.Context, bin, src string, c *counter) (before, held, after int64, took time.Duration, err error) {
	b.runs++
	dir := filepath.Join(b.work, fmt.Sprintf("run-%d", b.runs))
	watch, archive := filepath.Join(dir, "watch"), filepath.Join(dir, "archive")
	if err := linkAll(src, watch); err != nil {
		return 0, 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.Mkdir(archive, 0o755); err != nil {
		return 0, 0, 0, 0, err
	}
	prefix := fmt.Sprintf("bench/%d/", b.runs)
	defer b.deletePrefix(ctx, prefix)
	start := func() (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, bin, "run", "--watch", watch, "--archive", archive, "--key-prefix", prefix,
			"--quiet", "1ms", "--host", "bench", "--bwlimit", resumeLimit, "--log-level", "warn")
		cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+c.Endpoint)
		return cmd, cmd.Start()
	}
	began := time.Now()
	c.partBytes.Store(0)
	c.partAccepted.Store(0)
	first, err := start()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for c.partAccepted.Load() < resumeSize/2 {
		if time.Since(began) > 5*time.Minute {
			first.Process.Kill()
			first.Wait()
			return 0, 0, 0, 0, fmt.Errorf("half the file not sent in 5 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	before, held = c.partBytes.Swap(0), c.partAccepted.Load()
	second, err := start()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer func() { second.Process.Signal(syscall.SIGTERM); second.Wait() }()
	archived := filepath.Join(archive, "IMG_00000.jpg")
	for {
		if _, err := os.Stat(archived); err == nil {
			break
		}
		if time.Since(began) > 10*time.Minute {
			return 0, 0, 0, 0, fmt.Errorf("not archived in 10 minutes (%s bytes sent after the restart)", strconv.FormatInt(c.partBytes.Load(), 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return before, held, c.partBytes.Load(), time.Since(began), nil
}
