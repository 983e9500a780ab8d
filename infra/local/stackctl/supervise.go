package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// The supervisor's timing.
const (
	// minRestartDelay is the pause before the first restart. "down" signals
	// the whole process group, so the supervisor may see its child die
	// before its own SIGTERM arrives; the pause lets that signal win, and
	// it is still short next to the SDK retries of the callers.
	minRestartDelay = 250 * time.Millisecond
	// maxRestartDelay caps the doubling pause of a child that dies again
	// at once (a taken port, a broken install): it costs little CPU and
	// leaves a readable log, and the next attempt is never far off.
	maxRestartDelay = 5 * time.Second
	// stableAfter is how long a child must have run for its next crash to
	// count as a new one, restarted after minRestartDelay again.
	stableAfter = 10 * time.Second
	// superviseStopGrace is how long the child gets to exit after SIGTERM
	// before the supervisor kills it; it is below stopTimeout, so the
	// supervisor has reaped its child before "down" kills the group.
	superviseStopGrace = 5 * time.Second
)

// supervisor runs one server as its child and starts it again, with the
// same arguments, each time it exits while no stop was asked for. It is how
// the stack runs dynalite, which dies when a client aborts a request in the
// middle of its body (dynalite 4.0.0 rethrows the request's "aborted"
// error): the soak's connection resets do exactly that.
//
// The child stays in the supervisor's process group and writes to the
// supervisor's stdout and stderr (the service's log), so "down", which
// signals the group and waits for the recorded PID, stops both.
type supervisor struct {
	Name string   // for the log: "dynalite"
	Argv []string // the child's command
	// Restarts is a file that gets one line per restart: the time the
	// child exited and the time it was started again (RFC 3339 with
	// nanoseconds), then why it exited. It is created empty at start, so
	// its line count is the number of restarts.
	Restarts string
	Log      *slog.Logger
}

// supervise is the hidden "supervise" command:
//
//	stackctl supervise --name NAME --restarts FILE -- COMMAND [ARG...]
func supervise(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := &supervisor{Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	fs.StringVar(&s.Name, "name", "child", "name of the child in the log")
	fs.StringVar(&s.Restarts, "restarts", "", "file that gets one line per restart")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	s.Argv = fs.Args()
	if len(s.Argv) == 0 || s.Restarts == "" {
		return 2, errors.New("usage: supervise --name NAME --restarts FILE -- COMMAND [ARG...]")
	}
	if err := s.Run(ctx); err != nil {
		return 1, err
	}
	return 0, nil
}

// supervisedArgv is the command that runs argv under "stackctl supervise",
// counting restarts in the file restarts.
func supervisedArgv(name, restarts string, argv ...string) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find stackctl's own binary for the supervisor: %w", err)
	}
	return append([]string{self, "supervise", "--name", name, "--restarts", restarts, "--"}, argv...), nil
}

// Run starts the child and restarts it until ctx ends; then it stops the
// child (SIGTERM, SIGKILL after superviseStopGrace) and returns nil. It
// returns an error only when the child cannot be started at all.
func (s *supervisor) Run(ctx context.Context) error {
	if err := os.WriteFile(s.Restarts, nil, 0o644); err != nil {
		return err
	}
	delay := minRestartDelay
	var exited time.Time
	var reason error
	for {
		started := time.Now()
		cmd, done, err := s.start()
		if err != nil {
			return err
		}
		if !exited.IsZero() {
			if err := s.recordRestart(exited, started, reason); err != nil {
				s.Log.Error("cannot record the restart", "file", s.Restarts, "err", err)
			}
			s.Log.Info("restarted", "name", s.Name, "pid", cmd.Process.Pid)
		}
		select {
		case <-ctx.Done():
			s.stop(cmd, done)
			return nil
		case reason = <-done:
		}
		exited = time.Now()
		ran := exited.Sub(started)
		if ran >= stableAfter {
			delay = minRestartDelay
		}
		s.Log.Warn("exited unexpectedly; restarting", "name", s.Name, "pid", cmd.Process.Pid,
			"err", exitReason(reason), "ran", ran.Round(time.Millisecond), "in", delay)
		select {
		case <-ctx.Done():
			// The stop signal that ended the child reached us second.
			s.Log.Info("stopped; not restarting", "name", s.Name)
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRestartDelay)
	}
}

// start starts the child and reaps it in the background: done gets its
// Wait result.
func (s *supervisor) start() (*exec.Cmd, <-chan error, error) {
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// If the supervisor itself is killed (kill -9 of its PID alone), the
	// child must not live on unsupervised and unrecorded. (The kernel sends
	// this when the thread that started the child ends; Go ends a thread
	// only under runtime.LockOSThread, which nothing here uses.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done, nil
}

// stop ends the child: SIGTERM, then SIGKILL after superviseStopGrace.
func (s *supervisor) stop(cmd *exec.Cmd, done <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(superviseStopGrace):
		s.Log.Warn("ignored SIGTERM; killing it", "name", s.Name, "pid", cmd.Process.Pid, "after", superviseStopGrace)
		_ = cmd.Process.Kill()
		<-done
	}
	s.Log.Info("stopped", "name", s.Name)
}

// recordRestart appends one line to the restarts file with a single write,
// so a reader sees whole lines.
func (s *supervisor) recordRestart(exited, started time.Time, reason error) error {
	f, err := os.OpenFile(s.Restarts, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s %s %s\n", exited.UTC().Format(time.RFC3339Nano), started.UTC().Format(time.RFC3339Nano), exitReason(reason))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// exitReason says how the child ended: "exit status 1", "signal: killed".
func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
