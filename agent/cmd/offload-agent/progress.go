package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload/agent"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminal is stderr when it is a terminal and "once" shows a progress
// line: log lines and the line share it, so a log line first clears the
// progress line, and the next tick draws it again below.
type terminal struct {
	mu   sync.Mutex
	w    io.Writer
	line string // the progress line on screen, "" when none
}

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		fmt.Fprint(t.w, "\r\033[K")
		t.line = ""
	}
	return t.w.Write(p)
}

func (t *terminal) draw(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprint(t.w, "\r\033[K"+line)
	t.line = line
}

// finish ends the progress line with a newline, keeping the last figures.
func (t *terminal) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		fmt.Fprintln(t.w)
		t.line = ""
	}
}

// showProgress redraws the progress line every interval until stop closes.
func showProgress(t *terminal, a *agent.Agent, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	start := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			t.draw(progressLine(a.Status(), time.Since(start)))
			t.finish()
			return
		case <-tick.C:
			t.draw(progressLine(a.Status(), time.Since(start)))
		}
	}
}

// progressLine is the one-line summary "once" shows on a terminal.
func progressLine(st agent.Status, took time.Duration) string {
	rate := ""
	if s := took.Seconds(); s > 0 {
		rate = fmt.Sprintf(", %s/s", bytesText(int64(float64(st.OffloadedBytes)/s)))
	}
	line := fmt.Sprintf("offloaded %d files (%s%s); %d uploading, %d waiting", st.Offloaded, bytesText(st.OffloadedBytes), rate, len(st.InFlight), st.Pending)
	if n := st.Conflicts + st.Refused; n > 0 {
		line += fmt.Sprintf("; %d conflicts or refusals", n)
	}
	if st.FailedAttempts > 0 {
		line += fmt.Sprintf("; %d failed attempts", st.FailedAttempts)
	}
	return line
}
