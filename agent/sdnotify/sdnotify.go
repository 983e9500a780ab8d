// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// a service started with Type=notify tells the service manager it is ready
// (READY=1), what it is doing (STATUS=), that it is stopping (STOPPING=1)
// and that it is alive (WATCHDOG=1), each as a line of one datagram sent to
// the unix socket named in $NOTIFY_SOCKET.
//
// It is written here rather than taken from github.com/coreos/go-systemd,
// which this project's module mirror does not carry: the protocol is one
// datagram, and the package is small enough to read whole.
//
// Protocol: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html
// Watchdog: https://www.freedesktop.org/software/systemd/man/latest/sd_watchdog_enabled.html
package sdnotify

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends notifications to the service manager. The zero Notifier
// and a nil one send nothing: the process was not started by systemd with
// Type=notify (or NotifyAccess= none), and there is no one to tell.
type Notifier struct {
	addr *net.UnixAddr
}

// writeTimeout bounds one send. The manager reads its socket at once; a
// send that waits this long (its queue full) is dropped rather than let it
// hold up whoever sends, which may be the watchdog's pet.
const writeTimeout = 5 * time.Second

// New returns a Notifier for the socket $NOTIFY_SOCKET names (getenv is
// os.Getenv in main): a path, or an abstract socket name starting with '@'
// (Go's net package turns the '@' into the leading NUL byte the kernel
// expects). Unset or empty, it returns nil, whose Notify does nothing.
func New(getenv func(string) string) (*Notifier, error) {
	name := getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil, nil
	}
	if !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, "@") {
		// sd_notify(3) accepts only these two (and vsock, which a host
		// service never gets).
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or an @abstract name", name)
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends the lines (e.g. "READY=1", "STATUS=offloading") as one
// datagram, which the manager applies together. It opens a socket for each
// message, as libsystemd does: a socket kept connected would go stale if the
// manager re-executed itself and bound its socket anew.
func (n *Notifier) Notify(lines ...string) error {
	if !n.Enabled() || len(lines) == 0 {
		return nil
	}
	msg, err := Message(lines...)
	if err != nil {
		return err
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Message is the datagram for lines: each a KEY=VALUE assignment, joined
// by newlines. A line holding a newline would be read as two assignments
// (a STATUS= text could set READY=1), so it is refused; so is one without
// '=' or with a NUL byte.
func Message(lines ...string) ([]byte, error) {
	for _, l := range lines {
		k, _, ok := strings.Cut(l, "=")
		if !ok || k == "" || strings.ContainsAny(l, "\n\x00") {
			return nil, fmt.Errorf("sd_notify: %q is not one KEY=VALUE line", l)
		}
	}
	return []byte(strings.Join(lines, "\n")), nil
}

// Status is the STATUS= line for text, made one line: systemctl status
// shows it after "Status:".
func Status(text string) string {
	return "STATUS=" + strings.NewReplacer("\n", " ", "\r", " ", "\x00", "").Replace(text)
}

// The notifications this program sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// WatchdogInterval is the watchdog timeout the manager expects keep-alive
// pings within ($WATCHDOG_USEC), or 0 when it expects none: the variable
// unset, or $WATCHDOG_PID set to another process's id (the variables were
// inherited from a parent the manager watches, as sd_watchdog_enabled(3)
// says). A ping should go every half of it.
func WatchdogInterval(getenv func(string) string, pid int) (time.Duration, error) {
	v := getenv("WATCHDOG_USEC")
	if v == "" {
		return 0, nil
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID=%q: not a process id", p)
		}
		if n != pid {
			return 0, nil
		}
	}
	usec, err := strconv.ParseUint(v, 10, 63)
	if err != nil || usec == 0 {
		return 0, errors.New("WATCHDOG_USEC=" + strconv.Quote(v) + ": want a positive number of microseconds")
	}
	return time.Duration(min(usec, uint64(math.MaxInt64/1000))) * time.Microsecond, nil
}
