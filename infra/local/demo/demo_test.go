package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestDemo runs what "make demo" runs, the demo inside the local stack
// with the binaries "make build" makes, as a person would: it waits for
// the demo's "Press Ctrl-C", checks what each step showed, presses Ctrl-C
// (SIGINT), and checks that the demo exits 0 having stopped every process
// it started. The README's first command is this one.
func TestDemo(t *testing.T) {
	stacktest.Require(t)
	repo := stacktest.RepoRoot(t)
	bins := stacktest.Build(t, "./infra/local/demo", "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	// The demo runs from the checkout: bin/ as make build fills it, and
	// the lighttpd files under infra/.
	work := t.TempDir()
	for _, name := range []string{"offload-agent", "offload-resolver"} {
		if err := os.MkdirAll(filepath.Join(work, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(bins[name], filepath.Join(work, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(repo, "infra"), filepath.Join(work, "infra")); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bins["demo"])
	cmd.Dir = work
	var stderr stacktest.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // after a failure; a no-op once it has exited
		if t.Failed() {
			t.Logf("the demo's stderr:\n%s", stderr.String())
		}
	})

	var shown []string
	deadline := time.After(3 * time.Minute)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the demo ended before it said to press Ctrl-C:\n%s", strings.Join(shown, "\n"))
			}
			shown = append(shown, line)
			if strings.HasPrefix(line, "Press Ctrl-C") {
				break wait
			}
		case <-deadline:
			t.Fatalf("no \"Press Ctrl-C\" from the demo within 3 min:\n%s", strings.Join(shown, "\n"))
		}
	}
	text := strings.Join(shown, "\n")
	t.Logf("the demo showed:\n%s", text)
	step := func(n string) string {
		i := strings.Index(text, "\n"+n+". ")
		if i < 0 {
			t.Fatalf("the demo showed no step %s", n)
		}
		rest := text[i+1:]
		if j := strings.Index(rest, "\n\n"); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	for _, c := range []struct {
		step, want string
		n          int
	}{
		{"1", "200 OK", 3},
		{"1", "served by lighttpd from the local disk", 3},
		{"2", "(resolver, then presigned MinIO URL)", 3},
		{"2", "404 Not Found from the resolver", 1},
		{"3", "host demo-host", 3},
		{"4", "from the agent's hot cache", 1},
	} {
		if got := strings.Count(step(c.step), c.want); got != c.n {
			t.Errorf("step %s shows %q %d times; want %d:\n%s", c.step, c.want, got, c.n, step(c.step))
		}
	}
	var logs string
	for _, line := range shown {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "logs" {
			logs = f[1]
		}
	}
	if logs == "" {
		t.Fatalf("the demo showed no logs folder")
	}

	// Ctrl-C.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for line := range lines {
		rest = append(rest, line)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the demo after Ctrl-C: %v; want exit status 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the demo did not exit within a minute of Ctrl-C")
	}
	if !strings.Contains(strings.Join(rest, "\n"), "stopping...") {
		t.Errorf("after Ctrl-C the demo printed %q; want it to say it is stopping", rest)
	}
	// Every process it started names, on its command line, the demo's
	// own temporary folder (lighttpd, the agent) or this test's bin/
	// (the resolver, the agent): none may be left.
	demoDir := filepath.Dir(logs)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && (strings.Contains(string(b), demoDir) || strings.Contains(string(b), filepath.Join(work, "bin"))) {
			t.Errorf("after the demo exited, %s still runs: %q", filepath.Dir(p), strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if _, err := os.Stat(demoDir); err == nil {
		t.Errorf("the demo left its folder %s", demoDir)
	}
}
