package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/photosleeve/offload/agent"
)

func TestStatusSocketPath(t *testing.T) {
	writable := t.TempDir()
	missing := filepath.Join(t.TempDir(), "no-such-folder")
	for _, tt := range []struct {
		setting, runtime, fallback string
		want, note                 string
	}{
		{"off", "/run/offload", writable, "", ""},
		{"", "/run/offload", writable, "", ""},
		{"/srv/agent.sock", "/run/offload", writable, "/srv/agent.sock", ""},
		{"auto", "/run/offload", missing, "/run/offload/agent.sock", ""},
		{"auto", "/run/offload:/run/other", missing, "/run/offload/agent.sock", ""},
		{"auto", "", writable, filepath.Join(writable, "agent.sock"), ""},
		{"auto", "", missing, "", "no status socket: " + missing},
	} {
		env := map[string]string{"RUNTIME_DIRECTORY": tt.runtime}
		got, note := statusSocketPath(tt.setting, func(k string) string { return env[k] }, tt.fallback)
		if got != tt.want || !strings.HasPrefix(note, tt.note) || (tt.note == "") != (note == "") {
			t.Errorf("statusSocketPath(%q, RUNTIME_DIRECTORY=%q, %s) = %q, %q; want %q, %q…", tt.setting, tt.runtime, tt.fallback, got, note, tt.want, tt.note)
		}
	}
	if statusSocketSetting("once", "auto") != "off" || statusSocketSetting("once", "/x.sock") != "/x.sock" || statusSocketSetting("run", "auto") != "auto" {
		t.Error("once must take a socket only when given a path; run takes auto")
	}
}

// TestListenStatusSocket: a stale socket file is replaced, a live socket
// and a file that is not a socket are refused, and the socket is 0660.
func TestListenStatusSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")

	// A socket an agent that died left: bound, never removed.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, replaced, err := listenStatusSocket(path)
	if err != nil || !replaced {
		t.Fatalf("over a stale socket: replaced %v, %v; want it replaced", replaced, err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %v (%v); want a socket with mode 0660", fi.Mode(), err)
	}

	// A live one (the listener above answers: the kernel queues the
	// connection) is never taken.
	if _, _, err := listenStatusSocket(path); !errors.Is(err, errSocketTaken) {
		t.Errorf("over a live socket: %v; want errSocketTaken", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the live socket is gone: %v", err)
	}

	other := filepath.Join(dir, "not-a-socket")
	os.WriteFile(other, []byte("keep me"), 0o644)
	if _, _, err := listenStatusSocket(other); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("over a regular file: %v; want it refused", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "keep me" {
		t.Error("the regular file was touched")
	}
}

func TestStatusTarget(t *testing.T) {
	for _, tt := range []struct {
		socket, metrics, envSocket, envMetrics string
		want                                   agentAddr
		err                                    bool
	}{
		{"", "", "", "", agentAddr{socket: "/run/offload/agent.sock"}, false},
		{"/tmp/a.sock", "", "", "127.0.0.1:9", agentAddr{socket: "/tmp/a.sock"}, false},
		{"", "127.0.0.1:9", "/tmp/a.sock", "", agentAddr{tcp: "127.0.0.1:9"}, false},
		{"", "", "/tmp/a.sock", "127.0.0.1:9", agentAddr{socket: "/tmp/a.sock"}, false},
		{"", "", "auto", "", agentAddr{socket: "/run/offload/agent.sock"}, false},
		{"", "", "", "127.0.0.1:9", agentAddr{tcp: "127.0.0.1:9"}, false},
		{"/tmp/a.sock", "127.0.0.1:9", "", "", agentAddr{}, true},
	} {
		env := map[string]string{"OFFLOAD_STATUS_SOCKET": tt.envSocket, "OFFLOAD_METRICS": tt.envMetrics}
		got, err := statusTarget(tt.socket, tt.metrics, func(k string) string { return env[k] })
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("statusTarget(%+v) = %+v, %v; want %+v (error %v)", tt, got, err, tt.want, tt.err)
		}
	}
}

// TestUnreachable: each way of not reaching the agent says what to do.
func TestUnreachable(t *testing.T) {
	sock := agentAddr{socket: "/run/offload/agent.sock"}
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tt := range []struct {
		to   agentAddr
		err  error
		want string
	}{
		{sock, dial(syscall.EACCES), "permission denied on /run/offload/agent.sock: run as root or a member of group offload"},
		{sock, dial(syscall.ENOENT), "no agent listening on /run/offload/agent.sock: is offload-agent running? (systemctl status offload-agent"},
		{sock, dial(syscall.ECONNREFUSED), "no agent listening on /run/offload/agent.sock"},
		{agentAddr{tcp: "127.0.0.1:9464"}, dial(syscall.ECONNREFUSED), "no agent answers on 127.0.0.1:9464: is it running with --metrics-addr 127.0.0.1:9464?"},
	} {
		if got := unreachable(tt.to, tt.err).Error(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("unreachable(%+v, %v) = %q; want %q…", tt.to, tt.err, got, tt.want)
		}
	}
}

func TestStatusLine(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 30, 0, 0, time.Local)
	for _, tt := range []struct {
		st   agent.Status
		want string
	}{
		{agent.Status{Breaker: agent.BreakerStatus{State: "closed"}}, "offloading: 0 pending, 0 in flight; 0 offloaded"},
		{agent.Status{Pending: 3, InFlight: make([]agent.InFlight, 1), Offloaded: 57, FailedAttempts: 2,
			RecentFailures: []agent.Failure{{At: at, Cause: "s3"}}, Conflicts: 1},
			"offloading: 3 pending, 1 in flight; 57 offloaded; 2 failed attempts, the last at 05:30:00 (s3); 1 conflicts (need a person: offload-agent status)"},
		{agent.Status{Pending: 40, Breaker: agent.BreakerStatus{State: "open", Cause: "dynamodb", Since: at}},
			"offloading paused: breaker open since 05:30:00, dynamodb failing for every file: 40 pending, 0 in flight; 0 offloaded"},
		{agent.Status{Breaker: agent.BreakerStatus{State: "open", Cause: "s3-refused", Since: at}, BacklogFull: true, WatchError: "EIO", ScanError: "x", Refused: 2},
			"offloading paused: breaker open since 05:30:00, s3 refusing every file (check the role's grants and the bucket's, KMS key's or table's policy): 0 pending, 0 in flight; 0 offloaded; 2 refused for their names; backlog full; scan error (offload-agent status); inotify failed: only the rescan finds new files"},
	} {
		if got := statusLine(tt.st); got != tt.want {
			t.Errorf("statusLine:\n got %q\nwant %q", got, tt.want)
		}
	}
}
