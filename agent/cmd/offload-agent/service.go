package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/sdnotify"
)

// The service as systemd runs it (infra/systemd/offload-agent.service):
// Type=notify with a watchdog, and the operations endpoints on a unix
// socket in its RuntimeDirectory, which "offload-agent status" asks by
// default.

const (
	// statusSocketName is the socket's name in the runtime folder.
	statusSocketName = "agent.sock"
	// runtimeDir is the unit's RuntimeDirectory=offload, where the agent
	// puts its socket when run by hand too (as root, or a member of group
	// offload), and where "offload-agent status" looks by default.
	runtimeDir = "/run/offload"
	// defaultStatusSocket is where "offload-agent status" looks by default.
	defaultStatusSocket = runtimeDir + "/" + statusSocketName
	// statusSocketMode: the owner (the agent's user) and its group, whose
	// members may ask; the folder (RuntimeDirectoryMode=0750) keeps
	// everyone else out.
	statusSocketMode = 0o660
	// statusEvery is how often systemd's STATUS= line is recomputed; it is
	// sent when it changed.
	statusEvery = time.Second
)

// statusSocketPath resolves the --status-socket setting: "off" or "" is
// none; "auto" is agent.sock in $RUNTIME_DIRECTORY when systemd set it,
// else in fallbackDir (/run/offload) when that folder exists and the agent
// may write it, else none. note says, for the start-up log, why there is
// none, when auto found none.
func statusSocketPath(setting string, getenv func(string) string, fallbackDir string) (path, note string) {
	switch setting {
	case "", "off":
		return "", ""
	case "auto":
	default:
		return setting, ""
	}
	// systemd sets RUNTIME_DIRECTORY to the unit's RuntimeDirectory= folders,
	// colon-separated; the unit names one.
	// https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#RuntimeDirectory=
	if dirs := getenv("RUNTIME_DIRECTORY"); dirs != "" {
		dir, _, _ := strings.Cut(dirs, ":")
		return filepath.Join(dir, statusSocketName), ""
	}
	if err := unix.Access(fallbackDir, unix.W_OK|unix.X_OK); err != nil {
		return "", fmt.Sprintf("no status socket: %s: %v (offload-agent status needs one: run under the systemd unit, create the folder, or give --status-socket PATH)", fallbackDir, err)
	}
	return filepath.Join(fallbackDir, statusSocketName), ""
}

// errSocketTaken: something answers on the socket, most likely another
// agent: it is never taken over.
var errSocketTaken = errors.New("another offload-agent answers there")

// listenStatusSocket binds a unix socket at path with mode 0660. A socket
// file left by an agent that died (nothing answers on it) is replaced; a
// socket that answers is errSocketTaken, and a file that is not a socket is
// left alone and refused. The check and the bind happen under a lock on
// the folder, so two agents starting at once cannot both find the same
// file stale and one remove the other's new socket.
func listenStatusSocket(path string) (ln *net.UnixListener, replaced bool, err error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, false, err
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", dir.Name(), err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, false, fmt.Errorf("%s exists and is not a socket: remove it, or choose another path", path)
		}
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err == nil {
			c.Close()
			return nil, false, fmt.Errorf("%s: %w (stop it, or give this one another --status-socket)", path, errSocketTaken)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, false, err
		}
		// Refused: no one listens; the agent that bound it died.
		if err := os.Remove(path); err != nil {
			return nil, false, err
		}
		replaced = true
	}
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, false, err
	}
	// Bound with the umask's mode (0755 under the unit's UMask=0022: no
	// one else may connect), then opened to the group.
	if err := os.Chmod(path, statusSocketMode); err != nil {
		ln.Close()
		return nil, false, err
	}
	return ln, replaced, nil
}

// serveStatusSocket serves the agent's operations endpoints on the status
// socket, if one is configured; stop closes it (and removes the file).
// The returned error is a bad configuration (exit status 2).
func serveStatusSocket(setting string, a *agent.Agent, log *slog.Logger, getenv func(string) string) (stop func(), err error) {
	path, note := statusSocketPath(setting, getenv, runtimeDir)
	if path == "" {
		if note != "" {
			log.Info(note)
		}
		return func() {}, nil
	}
	ln, replaced, err := listenStatusSocket(path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if replaced {
		log.Info("replaced a status socket an earlier agent left behind", "path", path)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("status socket", "path", path, "paths", "/status /healthz /readyz /metrics", "ask", "offload-agent status --status-socket "+path)
	return func() { srv.Close() }, nil
}

// startNotify starts notifyService when systemd asked for notifications;
// the returned stop ends it (STOPPING=1 is sent if the agent had not been
// told to stop) and waits until it has returned.
func startNotify(ctx context.Context, grace time.Duration, a *agent.Agent, log *slog.Logger, getenv func(string) string) (stop func()) {
	n, err := sdnotify.New(getenv)
	if err != nil {
		log.Warn("systemd is not told what the agent does", "err", err)
	}
	if !n.Enabled() {
		return func() {}
	}
	watchdog, err := sdnotify.WatchdogInterval(getenv, os.Getpid())
	if err != nil {
		log.Warn("no watchdog pings", "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		notifyService(ctx, n, watchdog, grace, a, log)
	}()
	return func() { cancel(); <-done }
}

// statusSocketSetting is the --status-socket setting for the command:
// "once" takes a socket only when given one, so that it can run beside the
// service, whose socket "auto" would find.
func statusSocketSetting(cmd, v string) string {
	if cmd == "once" && v == "auto" {
		return "off"
	}
	return v
}

// notifyService tells systemd, when it started the agent with Type=notify
// ($NOTIFY_SOCKET set), what the agent does: STATUS= as it starts, READY=1
// once the agent's loop runs, a STATUS= line whenever what it says changes
// (looked at every statusEvery), WATCHDOG=1 every half of $WATCHDOG_USEC
// while the agent's loop turns (Agent.Alive), and STOPPING=1 when ctx ends
// (SIGTERM). It returns when ctx ends, after STOPPING=1.
//
// The watchdog is petted only while the loop turns: a wedged agent stops
// petting, and systemd restarts it (WatchdogSec=, Restart=on-failure).
// Without a watchdog the agent's loop is still reported, on /healthz.
func notifyService(ctx context.Context, n *sdnotify.Notifier, watchdog time.Duration, grace time.Duration, a *agent.Agent, log *slog.Logger) {
	said := false
	send := func(lines ...string) {
		if err := n.Notify(lines...); err != nil && !said {
			said = true // once: the journal need not hear it every second
			log.Warn("could not tell systemd", "err", err)
		}
	}
	send(sdnotify.Status("starting: checking the folders, recovering what an earlier run left"))
	select {
	case <-a.Running():
	case <-ctx.Done():
		send(sdnotify.Stopping, sdnotify.Status("stopping before the agent was running"))
		return
	}
	last := statusLine(a.Status())
	send(sdnotify.Ready, sdnotify.Status(last))

	statusTick := time.NewTicker(statusEvery)
	defer statusTick.Stop()
	var pet <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		pet = t.C
		send(sdnotify.Watchdog)
	}
	stalled := false
	for {
		select {
		case <-ctx.Done():
			st := a.Status()
			send(sdnotify.Stopping, sdnotify.Status(fmt.Sprintf("stopping: %d in flight may finish within %s", len(st.InFlight), grace)))
			return
		case <-pet:
			if err := a.Alive(watchdog / 2); err != nil {
				if !stalled {
					stalled = true
					send(sdnotify.Status("not responding: " + err.Error() + "; the watchdog is no longer petted"))
				}
				continue
			}
			if stalled {
				stalled, last = false, "" // the next status tick says what it does again
			}
			send(sdnotify.Watchdog)
		case <-statusTick.C:
			if stalled {
				continue
			}
			if line := statusLine(a.Status()); line != last {
				last = line
				send(sdnotify.Status(line))
			}
		}
	}
}

// statusLine is the agent's state in one line, for systemctl status: what
// waits and what is uploading, what was done, and what needs a look. It
// names no relative time, so it changes only when the agent's state does.
func statusLine(st agent.Status) string {
	var b strings.Builder
	b.WriteString("offloading")
	if br := st.Breaker; br.State == "open" {
		since := br.Since.Local().Format("15:04:05")
		if service, refused := strings.CutSuffix(br.Cause, "-refused"); refused {
			fmt.Fprintf(&b, " paused: breaker open since %s, %s refusing every file (check the role's grants and the bucket's, KMS key's or table's policy)", since, service)
		} else {
			fmt.Fprintf(&b, " paused: breaker open since %s, %s failing for every file", since, br.Cause)
		}
	}
	fmt.Fprintf(&b, ": %d pending, %d in flight; %d offloaded", st.Pending, len(st.InFlight), st.Offloaded)
	if st.FailedAttempts > 0 {
		fmt.Fprintf(&b, "; %d failed attempts", st.FailedAttempts)
		if len(st.RecentFailures) > 0 {
			f := st.RecentFailures[0]
			fmt.Fprintf(&b, ", the last at %s (%s)", f.At.Local().Format("15:04:05"), f.Cause)
		}
	}
	if st.Conflicts > 0 {
		fmt.Fprintf(&b, "; %d conflicts (need a person: offload-agent status)", st.Conflicts)
	}
	if st.Refused > 0 {
		fmt.Fprintf(&b, "; %d refused for their names", st.Refused)
	}
	if st.BacklogFull {
		b.WriteString("; backlog full")
	}
	if st.ScanError != "" {
		b.WriteString("; scan error (offload-agent status)")
	}
	if st.WatchError != "" {
		b.WriteString("; inotify failed: only the rescan finds new files")
	}
	return b.String()
}
