package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload/agent"
)

// nobody is the uid of the user nobody, another user than the agent's.
const nobody = 65534

// TestWarnsWhenLeasesAreUnavailable: where the kernel grants the agent no
// read lease (no CAP_LEASE on files of another user, leases disabled),
// whether a writer has a file open cannot be checked and the claim window
// is unprotected. The agent says so in one warning at start, and status
// and metrics show it; files still go, after the quiet period.
func TestWarnsWhenLeasesAreUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name      string
		setup     func(t *testing.T, h *harness)
		available bool
	}{
		{"granted", func(*testing.T, *harness) {}, true},
		{"refused with EACCES", func(t *testing.T, _ *harness) { agent.SimulateLeasesRefused(t, unix.EACCES) }, false},
		{"refused with EINVAL", func(t *testing.T, _ *harness) { agent.SimulateLeasesRefused(t, unix.EINVAL) }, false},
		{"no CAP_LEASE, watch folder of the agent's user", func(t *testing.T, _ *harness) { agent.SimulateNoCapLease(t) }, true},
		{"no CAP_LEASE, watch folder of another user", func(t *testing.T, h *harness) {
			agent.SimulateNoCapLease(t)
			if os.Geteuid() == nobody {
				t.Skip("the agent runs as nobody: no other user to give the folder to")
			}
			// Still writable by the agent (it runs as root here, or owns its parent).
			if err := os.Chmod(h.cfg.Watch, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(h.cfg.Watch, nobody, nobody); err != nil {
				t.Skipf("cannot give the watch folder to another user: %v", err)
			}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(t, h)
			data := randomBytes(3000, 31)
			h.write("a.jpg", data)
			a := h.newAgent(h.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := a.Once(ctx); err != nil {
				t.Fatal(err)
			}
			h.assertOffloaded("a.jpg", data)
			var warnings []string
			for _, line := range strings.Split(h.logs.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "lease") {
					warnings = append(warnings, line)
				}
			}
			if got, want := len(warnings), map[bool]int{true: 0, false: 1}[tt.available]; got != want {
				t.Errorf("%d warnings about leases; want %d: %q", got, want, warnings)
			}
			if got, want := metricValue(t, scrape(t, a), "offload_leases_available"), map[bool]float64{true: 1, false: 0}[tt.available]; got != want {
				t.Errorf("offload_leases_available = %v; want %v", got, want)
			}
			if got := a.Status().LeasesAvailable; got != tt.available {
				t.Errorf("status leases_available = %v; want %v", got, tt.available)
			}
		})
	}
}
