package stacktest

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// DynaliteRestart is one restart of the stack's dynalite by its supervisor
// (dynalite dies when a client aborts a request mid-body; its data is on
// disk, so a restart loses nothing, but it does not answer in between).
type DynaliteRestart struct {
	Exited  time.Time // when dynalite exited
	Started time.Time // when the supervisor started it again
	Reason  string    // how it exited: "exit status 1", "signal: killed"
}

// DynaliteRestarts returns every restart of the stack's dynalite since the
// stack came up, oldest first. It fails the test when the stack does not
// say where they are recorded (a stack started before dynalite was
// supervised: bring it down and up again).
func (s *Stack) DynaliteRestarts(t testing.TB) []DynaliteRestart {
	t.Helper()
	if s.DynaliteRestartsFile == "" {
		t.Fatal("OFFLOAD_DYNALITE_RESTARTS is not set: the stack predates dynalite's supervisor; run infra/local/stack down, then up")
	}
	restarts, err := ReadDynaliteRestarts(s.DynaliteRestartsFile)
	if err != nil {
		t.Fatal(err)
	}
	return restarts
}

// ReadDynaliteRestarts parses the supervisor's restarts file: one line per
// restart, "EXITED STARTED REASON", times in RFC 3339. A last line without
// its newline is still being written and is left out.
func ReadDynaliteRestarts(path string) ([]DynaliteRestart, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dynalite's restarts: %w", err)
	}
	text := string(b)
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	} else {
		text = ""
	}
	var out []DynaliteRestart
	for n, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 3)
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: want EXITED STARTED REASON, got %q", path, n+1, line)
		}
		var r DynaliteRestart
		if r.Exited, err = time.Parse(time.RFC3339Nano, f[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
		if r.Started, err = time.Parse(time.RFC3339Nano, f[1]); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
		if len(f) == 3 {
			r.Reason = f[2]
		}
		out = append(out, r)
	}
	return out, nil
}
