package agent

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// liveness is the scheduling loop's heartbeat. The loop beats on every
// turn, and it turns at least every tick (at most 100 ms) whatever the
// workers are doing: it never waits on S3 or DynamoDB itself. A loop that
// stops turning is wedged (a lock never released, a log write or a file
// system call that never returns): /healthz then answers 503, and the
// service's watchdog is no longer petted, so systemd restarts the agent.
type liveness struct {
	state   atomic.Int32 // loopStarting, loopRunning, loopEnded
	beat    atomic.Int64 // Unix nanoseconds of the last turn
	running chan struct{}
	once    sync.Once
}

const (
	loopStarting = iota // checks and start-up recovery: not judged
	loopRunning
	loopEnded // draining in-flight uploads or returned: not judged
)

// healthStall is how long the loop may go without a turn before /healthz
// says the agent is wedged: far beyond its tick, and beyond a slow disk's
// or a busy journal's pause.
const healthStall = time.Minute

func newLiveness() *liveness { return &liveness{running: make(chan struct{})} }

func (l *liveness) start() {
	l.tick(time.Now())
	l.state.Store(loopRunning)
	l.once.Do(func() { close(l.running) })
}

func (l *liveness) tick(now time.Time) { l.beat.Store(now.UnixNano()) }

func (l *liveness) end() { l.state.Store(loopEnded) }

// stalled is nil unless the loop is running and has not turned within
// limit.
func (l *liveness) stalled(now time.Time, limit time.Duration) error {
	if l.state.Load() != loopRunning {
		return nil
	}
	if since := now.Sub(time.Unix(0, l.beat.Load())); since > limit {
		return fmt.Errorf("the scheduling loop has not turned for %s", since.Round(time.Second))
	}
	return nil
}

// Running is closed once the scheduling loop has started: the checks and
// the recovery of what an earlier run left are done, the watcher and the
// workers are up. A service manager is told the agent is ready then.
func (a *Agent) Running() <-chan struct{} { return a.live.running }

// Alive is nil while the scheduling loop turns, or has not started yet, or
// has ended (it is draining or done); else an error saying how long it has
// not turned, when that is longer than within. /healthz asks it with one
// minute; the watchdog with its ping interval.
func (a *Agent) Alive(within time.Duration) error { return a.live.stalled(time.Now(), within) }
