package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// notifySocket is a real unixgram socket where the test plays systemd: it
// keeps every datagram the agent sends, in order.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
	more chan struct{} // signalled on every datagram
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify"), more: make(chan struct{}, 1)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		b := make([]byte, 64<<10)
		for {
			k, err := c.Read(b)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(b[:k]))
			n.mu.Unlock()
			select {
			case n.more <- struct{}{}:
			default:
			}
		}
	}()
	return n
}

func (n *notifySocket) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// waitFor waits until a datagram at index from or later satisfies ok, and
// returns its index.
func (n *notifySocket) waitFor(t *testing.T, from int, what string, ok func(string) bool) int {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		for i, m := range n.all() {
			if i >= from && ok(m) {
				return i
			}
		}
		select {
		case <-n.more:
		case <-deadline:
			t.Fatalf("no %s from the agent; it sent:\n%s", what, strings.Join(n.all(), "\n--\n"))
		}
	}
}

func hasLine(line string) func(string) bool {
	return func(m string) bool {
		for _, l := range strings.Split(m, "\n") {
			if l == line {
				return true
			}
		}
		return false
	}
}

func hasPrefixLine(prefix string) func(string) bool {
	return func(m string) bool {
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	}
}

// serviceAgent is a real offload-agent run against the local stack.
type serviceAgent struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr *stacktest.SyncBuffer // when not piped by the test
}

// agentRun returns the arguments of "offload-agent run" on fresh folders
// and a fresh key prefix, with the status socket at sock.
func agentRun(t *testing.T, sock string) (args []string, watch string) {
	dir := t.TempDir()
	watch, archive := filepath.Join(dir, "static"), filepath.Join(dir, "archive")
	os.MkdirAll(watch, 0o755)
	os.MkdirAll(archive, 0o755)
	return []string{"run", "--watch", watch, "--archive", archive, "--key-prefix", stacktest.Prefix(t),
		"--quiet", "200ms", "--host", "service-test", "--status-socket", sock}, watch
}

func agentEnv(t *testing.T, st *stacktest.Stack, extra ...string) []string {
	env := append(os.Environ(), st.Env(t, stacktest.Agent)...)
	env = append(env, "AWS_ENDPOINT_URL_S3="+st.AWSShimEndpoint(t))
	return append(env, extra...)
}

// startService starts the agent; stderr, when nil, goes to a buffer shown
// if the test fails. It is stopped (SIGTERM, then SIGKILL) when the test
// ends.
func startService(t *testing.T, bin string, env, args []string, stderr io.Writer) *serviceAgent {
	t.Helper()
	s := &serviceAgent{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	s.cmd.Env = env
	if stderr == nil {
		s.stderr = &stacktest.SyncBuffer{}
		stderr = s.stderr
	}
	s.cmd.Stderr = stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(time.Minute):
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() && s.stderr != nil {
			t.Logf("agent's log:\n%s", s.stderr.String())
		}
	})
	return s
}

// stop sends SIGTERM and returns the exit status.
func (s *serviceAgent) stop(t *testing.T) int {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the agent did not stop within 2 min of SIGTERM")
	}
	var exit *exec.ExitError
	if errors.As(s.err, &exit) {
		return exit.ExitCode()
	}
	return 0
}

// TestServiceNotifiesSystemd: the real binary, started as systemd starts
// it (NOTIFY_SOCKET, WATCHDOG_USEC), says it is starting, is ready once its
// status socket answers and its loop runs, says what it does as it changes,
// pets the watchdog again and again, and says it is stopping on SIGTERM.
func TestServiceNotifiesSystemd(t *testing.T) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	notify := newNotifySocket(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	args, watch := agentRun(t, sock)
	// A 2 s watchdog: a ping every second.
	a := startService(t, bin, agentEnv(t, st, "NOTIFY_SOCKET="+notify.path, "WATCHDOG_USEC=2000000"), args, nil)

	notify.waitFor(t, 0, "STATUS=starting", hasPrefixLine("STATUS=starting: "))
	ready := notify.waitFor(t, 0, "READY=1", hasLine("READY=1"))
	if m := notify.all()[ready]; !hasPrefixLine("STATUS=offloading: 0 pending, 0 in flight; 0 offloaded")(m) {
		t.Errorf("READY=1 came as %q; want it with the first STATUS= line", m)
	}
	// Ready means the status socket answers already.
	if out, err := exec.Command(bin, "status", "--status-socket", sock).CombinedOutput(); err != nil {
		t.Errorf("status right after READY=1: %v\n%s", err, out)
	}

	os.WriteFile(filepath.Join(watch, "notified.jpg"), []byte("an original"), 0o644)
	notify.waitFor(t, ready, "STATUS= with the file offloaded", hasPrefixLine("STATUS=offloading: 0 pending, 0 in flight; 1 offloaded"))

	pets := ready
	for range 3 {
		pets = notify.waitFor(t, pets+1, "WATCHDOG=1", hasLine("WATCHDOG=1"))
	}

	if code := a.stop(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
	stopping := notify.waitFor(t, ready, "STOPPING=1", hasLine("STOPPING=1"))
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the status socket is left after a clean stop: %v", err)
	}
	msgs := notify.all()
	if len(msgs) != stopping+1 {
		t.Errorf("the agent sent %q after STOPPING=1; want nothing", msgs[stopping+1:])
	}
	t.Logf("the agent sent %d datagrams:\n%s", len(msgs), strings.Join(msgs, "\n--\n"))
}

// TestServiceWatchdogStopsWhenLoopWedges: an agent whose loop cannot turn
// (here: its log writes block, as on a journal that stalls, while it
// offloads files it must log) stops petting the watchdog and says why on
// STATUS=; once the log drains it pets it again.
func TestServiceWatchdogStopsWhenLoopWedges(t *testing.T) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	notify := newNotifySocket(t)
	args, watch := agentRun(t, filepath.Join(t.TempDir(), "agent.sock"))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := startService(t, bin, agentEnv(t, st, "NOTIFY_SOCKET="+notify.path, "WATCHDOG_USEC=1000000"), args, w)
	w.Close()
	// The test reads the agent's log, and after each read waits while
	// reading is held.
	var hold sync.Mutex
	go func() {
		b := make([]byte, 4096)
		for {
			if _, err := r.Read(b); err != nil {
				return
			}
			hold.Lock()
			hold.Unlock()
		}
	}()
	ready := notify.waitFor(t, 0, "READY=1", hasLine("READY=1"))
	notify.waitFor(t, ready, "WATCHDOG=1", hasLine("WATCHDOG=1"))

	// Stop reading the log, and give the agent more to log than a pipe
	// holds (64 KiB): one line per file offloaded.
	hold.Lock()
	const files = 600
	for i := range files {
		os.WriteFile(filepath.Join(watch, fmt.Sprintf("wedge-%04d.jpg", i)), []byte("x"), 0o644)
	}
	stalled := notify.waitFor(t, ready, "STATUS=not responding", hasPrefixLine("STATUS=not responding: the scheduling loop has not turned for"))
	// Every datagram goes through one socket, in order: none of those sent
	// up to the stall notice after the last ping before it is a ping.
	lastPet := -1
	for i, m := range notify.all()[:stalled] {
		if hasLine("WATCHDOG=1")(m) {
			lastPet = i
		}
	}
	hold.Unlock()
	resumed := notify.waitFor(t, stalled+1, "WATCHDOG=1 once the log drains", hasLine("WATCHDOG=1"))
	if lastPet < ready {
		t.Errorf("no WATCHDOG=1 before the stall")
	}
	notify.waitFor(t, resumed, "STATUS= of every file offloaded", hasPrefixLine(fmt.Sprintf("STATUS=offloading: 0 pending, 0 in flight; %d offloaded", files)))
	if code := a.stop(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
	msgs := notify.all()
	t.Logf("around the stall the agent sent:\n%s", strings.Join(msgs[max(0, stalled-2):min(len(msgs), resumed+2)], "\n--\n"))
}

// TestStatusSocketServes: the real binary serves the operations endpoints
// on its status socket (mode 0660), replacing a stale socket file an agent
// that died left; "offload-agent status" asks it; a second agent on the
// same live socket is a configuration error (exit 2) and takes nothing;
// once the agent has stopped, status says no agent listens.
func TestStatusSocketServes(t *testing.T) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	sock := filepath.Join(t.TempDir(), "agent.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // the file stays, nothing answers: an agent that crashed

	args, _ := agentRun(t, sock)
	a := startService(t, bin, agentEnv(t, st), args, nil)
	status := func(extra ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"status"}, extra...)...)
		cmd.Env = append(os.Environ(), "OFFLOAD_STATUS_SOCKET="+sock)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		return string(out), 0
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, code := status()
		if code == 0 {
			if !strings.HasPrefix(out, "offload-agent watching ") {
				t.Errorf("status printed:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never reached the agent: exit %d\n%s", code, out)
		}
		time.Sleep(50 * time.Millisecond) // polling for the agent to listen
	}
	if !strings.Contains(a.stderr.String(), "replaced a status socket an earlier agent left behind") {
		t.Errorf("the agent did not say it replaced the stale socket:\n%s", a.stderr.String())
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("status socket: %v, %v; want a socket, mode 0660", fi.Mode(), err)
	}
	if out, code := status("--json"); code != 0 || !strings.Contains(out, `"watch"`) {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := client.Get("http://agent" + path)
		if err != nil {
			t.Errorf("%s on the socket: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s on the socket: %s", path, resp.Status)
		}
	}

	second, _ := agentRun(t, sock)
	cmd := exec.Command(bin, second...)
	cmd.Env = agentEnv(t, st)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "another offload-agent answers there") {
		t.Errorf("a second agent on the live socket: %v; want exit status 2 naming the other agent\n%s", err, out)
	}
	t.Logf("a second agent on the live socket said: %s", strings.TrimSpace(lastLine(string(out))))
	if _, code := status(); code != 0 {
		t.Error("the first agent no longer answers after the second tried its socket")
	}

	if code := a.stop(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
	out2, code := status()
	if want := "offload-agent status: no agent listening on " + sock + ": is offload-agent running? (systemctl status offload-agent"; code != 1 || !strings.HasPrefix(out2, want) {
		t.Errorf("status with no agent: exit %d\n%s\nwant exit 1 and %q…", code, out2, want)
	}
	t.Logf("status with no agent: exit %d: %s", code, strings.TrimSpace(out2))
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// TestStatusPermissionDenied: a user outside the socket's group is told
// what would let them in. The test runs the real status command as nobody
// against a socket in a 0750 folder, as the unit's RuntimeDirectory is; it
// needs root to switch users.
func TestStatusPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		stacktest.Unavailable(t, "switching to user nobody needs root")
	}
	built := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	// Outside t.TempDir (0700), so that nobody can run the binary.
	open, err := os.MkdirTemp("", "offload-status-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	os.Chmod(open, 0o755)
	bin := filepath.Join(open, "offload-agent")
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bin, data, 0o755)
	runDir := filepath.Join(open, "run")
	os.Mkdir(runDir, 0o750)
	sock := filepath.Join(runDir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(sock, statusSocketMode)

	cmd := exec.Command(bin, "status", "--status-socket", sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	want := "offload-agent status: permission denied on " + sock + ": run as root or a member of group offload"
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(string(out), want) {
		t.Errorf("status as nobody: %v\n%s\nwant exit 1 and %q…", err, out, want)
	}
	t.Logf("status as nobody: %s", strings.TrimSpace(string(out)))
}
