// Package systemd holds the agent's systemd unit; this test checks it.
package systemd

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// unitKeys parses a unit file into section -> key -> values.
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func TestUnitHardeningAndStop(t *testing.T) {
	u := unitKeys(t, "offload-agent.service")
	s := u["Service"]
	for k, want := range map[string]string{
		"ExecStart": "/usr/bin/offload-agent run", "User": "offload", "Restart": "on-failure",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"CapabilityBoundingSet": "CAP_LEASE", "AmbientCapabilities": "CAP_LEASE", "EnvironmentFile": "/etc/offload/agent.env",
		// The hot cache folder of docs/hot-cache.md, /var/cache/offload, readable by the web server.
		"CacheDirectory": "offload", "CacheDirectoryMode": "0755",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q; want %q", k, got, want)
		}
	}
	if got := s["ReadWritePaths"]; len(got) != 1 || len(strings.Fields(got[0])) != 2 {
		t.Errorf("ReadWritePaths = %q; want the watch and archive folders only", got)
	}
	stop, err := time.ParseDuration(strings.TrimSuffix(s["TimeoutStopSec"][0], "s") + "s")
	if err != nil || stop <= 30*time.Second {
		t.Errorf("TimeoutStopSec = %q; want longer than the agent's 30 s grace", s["TimeoutStopSec"])
	}
	if u["Install"]["WantedBy"][0] != "multi-user.target" {
		t.Errorf("not installable: %v", u["Install"])
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with ExecStart
// pointing at a freshly built offload-agent (verify checks the binary).
func TestUnitVerifies(t *testing.T) {
	analyze, dir, bin := verifySetup(t, "TestUnitHardeningAndStop checks the keys")
	unit, _ := os.ReadFile("offload-agent.service")
	copyPath := filepath.Join(dir, "offload-agent.service")
	os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), "/usr/bin/offload-agent", bin)), 0o644)
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitStaysDownOnBadConfiguration: the agent exits 2 on a bad
// configuration, and the unit does not restart on that status: before,
// it restarted every 5 s for ever.
func TestUnitStaysDownOnBadConfiguration(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "offload-agent")
	build := exec.Command("go", "build", "-o", bin, "./agent/cmd/offload-agent")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	run := exec.Command(bin, "run", "--watch", t.TempDir(), "--bucket", "")
	run.Env = []string{"PATH=" + os.Getenv("PATH")} // no OFFLOAD_* from the test's environment
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("offload-agent run with no bucket: %v; want a failure\n%s", err, out)
	}
	code := strconv.Itoa(exit.ExitCode())
	prevent := unitKeys(t, "offload-agent.service")["Service"]["RestartPreventExitStatus"]
	if len(prevent) != 1 || !slices.Contains(strings.Fields(prevent[0]), code) {
		t.Errorf("the agent exits %s on a bad configuration (%s); RestartPreventExitStatus = %q, want it to name %s",
			code, strings.TrimSpace(string(out)), prevent, code)
	}
}

// TestUnitNotifyAndWatchdog: systemd waits for the agent's READY=1 and
// hears only its main process; the watchdog is on and generous (the agent
// pets it every half of WatchdogSec while its loop turns); the status socket's
// folder is systemd's, open to root and group offload only.
func TestUnitNotifyAndWatchdog(t *testing.T) {
	s := unitKeys(t, "offload-agent.service")["Service"]
	for k, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "main",
		"RuntimeDirectory": "offload", "RuntimeDirectoryMode": "0750",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q; want %q", k, got, want)
		}
	}
	for k, least := range map[string]time.Duration{
		// Far beyond the loop's 100 ms tick and a slow journal's pause.
		"WatchdogSec": time.Minute,
		// Start-up recovery's calls are each bounded by --call-timeout (2 min).
		"TimeoutStartSec": 2 * time.Minute,
	} {
		got := s[k]
		if len(got) != 1 {
			t.Errorf("[Service] %s = %q; want one value", k, got)
			continue
		}
		d, err := time.ParseDuration(strings.NewReplacer("min", "m", "sec", "s").Replace(got[0]))
		if err != nil || d < least {
			t.Errorf("[Service] %s = %q; want at least %s", k, got[0], least)
		}
	}
}

// TestPruneUnits: offload-prune.service is a oneshot under the agent's user
// and settings, running "offload-agent prune" (whose minimum age comes from
// agent.env), with the agent unit's hardening and only the archive
// writable; offload-prune.timer starts it daily, spread over an hour, and
// catches up a run missed while the host was off.
func TestPruneUnits(t *testing.T) {
	agentUnit := unitKeys(t, "offload-agent.service")["Service"]
	s := unitKeys(t, "offload-prune.service")["Service"]
	for k, want := range map[string]string{
		"Type": "oneshot", "User": "offload", "Group": "offload", "EnvironmentFile": "/etc/offload/agent.env",
		"ExecStart": "/usr/bin/offload-agent prune", "ReadWritePaths": "/srv/www/archive", "CapabilityBoundingSet": "",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("offload-prune.service [Service] %s = %q; want %q", k, got, want)
		}
	}
	for _, k := range []string{"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
		"ProtectHostname", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
		"MemoryDenyWriteExecute", "RestrictAddressFamilies", "SystemCallArchitectures", "SystemCallFilter",
		"SystemCallErrorNumber", "UMask"} {
		if !slices.Equal(s[k], agentUnit[k]) {
			t.Errorf("offload-prune.service %s = %q; want the agent unit's %q", k, s[k], agentUnit[k])
		}
	}
	for _, k := range []string{"AmbientCapabilities", "Restart", "WatchdogSec", "RuntimeDirectory", "CacheDirectory"} {
		if v, ok := s[k]; ok {
			t.Errorf("offload-prune.service sets %s = %q; a oneshot prune needs none", k, v)
		}
	}
	timer := unitKeys(t, "offload-prune.timer")
	for k, want := range map[string]string{"OnCalendar": "daily", "RandomizedDelaySec": "1h", "Persistent": "true"} {
		if got := timer["Timer"][k]; len(got) != 1 || got[0] != want {
			t.Errorf("offload-prune.timer [Timer] %s = %q; want %q", k, got, want)
		}
	}
	if got := timer["Install"]["WantedBy"]; len(got) != 1 || got[0] != "timers.target" {
		t.Errorf("offload-prune.timer WantedBy = %q; want timers.target", got)
	}
}

// TestPruneUnitsVerify runs systemd-analyze verify on the prune service and
// its timer, side by side, with ExecStart pointing at a freshly built
// offload-agent.
func TestPruneUnitsVerify(t *testing.T) {
	analyze, dir, bin := verifySetup(t, "TestPruneUnits checks the keys")
	var paths []string
	for _, name := range []string{"offload-prune.service", "offload-prune.timer"} {
		unit, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.ReplaceAll(string(unit), "/usr/bin/offload-agent", bin)), 0o644)
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// verifySetup is what systemd-analyze verify needs: the tool (a test
// without it fails under the stack, else skips: otherwise says what still
// checks the unit), a folder, and a freshly built offload-agent in it for
// ExecStart (verify checks the binary).
func verifySetup(t *testing.T, otherwise string) (analyze, dir, bin string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv(stacktest.RequireEnv) == "1" {
			t.Fatalf("systemd-analyze is not installed (Debian package systemd, part of this machine's image): %v", err)
		}
		t.Skip("systemd-analyze is not installed; " + otherwise)
	}
	dir = t.TempDir()
	bin = filepath.Join(dir, "offload-agent")
	build := exec.Command("go", "build", "-o", bin, "./agent/cmd/offload-agent")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return analyze, dir, bin
}
