package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// openPTY opens a pseudo-terminal pair: the program writes to tty, the
// test reads what a person would see from pty.
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(pty.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(pty.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open tty: %v", err)
	}
	return pty, tty
}

// TestOnceProgressLineOnATerminal: "once" with its stderr on a terminal
// keeps a progress line (redrawn in place) and ends it with the final
// figures; with stderr on a pipe there are only plain log lines.
func TestOnceProgressLineOnATerminal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	for i := range 20 {
		h.write(fmt.Sprintf("p-%02d.jpg", i), randomBytes(50_000, byte(i)))
	}
	args := []string{"once", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive, "--key-prefix", h.cfg.Mapping.KeyPrefix, "--quiet", "1ms", "--host", "test-host"}

	pty, tty := openPTY(t)
	defer pty.Close()
	// Read while it runs: a terminal's buffer is small, and a writer to a
	// full one waits.
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&screen, pty); close(read) }() // ends with EIO once the terminal side is closed
	cmd := exec.Command(bin, args...)
	cmd.Env = h.commandEnv(stacktest.Agent)
	cmd.Stderr = tty
	err := cmd.Run()
	tty.Close()
	<-read
	if err != nil {
		t.Fatalf("once on a terminal: %v", err)
	}
	if !strings.Contains(screen.String(), "\r\x1b[Koffloaded 20 files (976.6 KiB") || !strings.Contains(screen.String(), "0 uploading, 0 waiting\r\n") {
		t.Errorf("terminal output lacks the final progress line:\n%q", screen.String())
	}

	for i := range 3 {
		h.write(fmt.Sprintf("q-%d.jpg", i), randomBytes(1000, byte(i)))
	}
	cmd = exec.Command(bin, args...)
	cmd.Env = h.commandEnv(stacktest.Agent)
	var plain bytes.Buffer
	cmd.Stderr = &plain
	if err := cmd.Run(); err != nil {
		t.Fatalf("once on a pipe: %v", err)
	}
	if strings.Contains(plain.String(), "\r") || !strings.Contains(plain.String(), "msg=offloaded") {
		t.Errorf("output on a pipe is not plain log lines:\n%q", plain.String())
	}
}
