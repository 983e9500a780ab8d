package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen binds a real unixgram socket, as systemd binds its notify socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("read the notify socket: %v", err)
	}
	return string(b[:n])
}

// TestNotifyPathAndAbstract: a message reaches a socket named by a path and
// one in the abstract namespace ("@name"), as one datagram.
func TestNotifyPathAndAbstract(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@offload-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
	} {
		c := listen(t, name)
		n, err := New(func(k string) string { return map[string]string{"NOTIFY_SOCKET": name}[k] })
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Notify(Ready, Status("offloading: 3 pending")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := receive(t, c), "READY=1\nSTATUS=offloading: 3 pending"; got != want {
			t.Errorf("%s received %q; want %q", name, got, want)
		}
	}
}

// TestNotifyUnset: with no NOTIFY_SOCKET nothing is sent and nothing fails.
func TestNotifyUnset(t *testing.T) {
	n, err := New(func(string) string { return "" })
	if err != nil || n.Enabled() {
		t.Fatalf("New with no NOTIFY_SOCKET = %v, %v; want a disabled notifier", n, err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("Notify on a disabled notifier: %v", err)
	}
	if _, err := New(func(string) string { return "relative/notify" }); err == nil {
		t.Error("a relative NOTIFY_SOCKET was accepted")
	}
}

// TestNotifyNoListener: a socket nobody reads is an error the caller sees
// (and logs), not a hang.
func TestNotifyNoListener(t *testing.T) {
	name := filepath.Join(t.TempDir(), "gone")
	n, _ := New(func(string) string { return name })
	if err := n.Notify(Watchdog); err == nil || !strings.Contains(err.Error(), "sd_notify") {
		t.Errorf("Notify to a missing socket: %v; want an sd_notify error", err)
	}
}

func TestMessage(t *testing.T) {
	for _, tt := range []struct {
		lines []string
		want  string // "" is an error
	}{
		{[]string{"READY=1"}, "READY=1"},
		{[]string{"STOPPING=1", "STATUS=stopping: 2 in flight"}, "STOPPING=1\nSTATUS=stopping: 2 in flight"},
		{[]string{"STATUS=a\nREADY=1"}, ""}, // a newline would smuggle a second assignment
		{[]string{"READY"}, ""},
		{[]string{"=1"}, ""},
		{[]string{"STATUS=a\x00b"}, ""},
	} {
		got, err := Message(tt.lines...)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Message(%q) = %q; want an error", tt.lines, got)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("Message(%q) = %q, %v; want %q", tt.lines, got, err, tt.want)
		}
	}
	if got := Status("breaker open\nfor s3"); got != "STATUS=breaker open for s3" {
		t.Errorf("Status = %q; want one line", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	const pid = 4242
	for _, tt := range []struct {
		usec, wpid string
		want       time.Duration
		err        bool
	}{
		{"", "", 0, false},
		{"180000000", "", 3 * time.Minute, false},
		{"180000000", "4242", 3 * time.Minute, false},
		{"180000000", "1", 0, false}, // inherited: meant for another process
		{"0", "", 0, true},
		{"soon", "", 0, true},
		{"1000", "x", 0, true},
	} {
		env := map[string]string{"WATCHDOG_USEC": tt.usec, "WATCHDOG_PID": tt.wpid}
		got, err := WatchdogInterval(func(k string) string { return env[k] }, pid)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v (error %v)", tt.usec, tt.wpid, got, err, tt.want, tt.err)
		}
	}
}
