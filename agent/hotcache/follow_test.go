package hotcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testPoll is short so that the tests do not wait long for the follower;
// nothing depends on its length.
const testPoll = 5 * time.Millisecond

// waitDeadline is how long a test waits for the follower before failing;
// generous, because a loaded machine running -race can be slow.
const waitDeadline = 10 * time.Second

// followed is a running Follower and what it delivered.
type followed struct {
	f      *Follower
	mu     sync.Mutex
	got    []string // targets, in order
	probs  []error  // Problem calls, nil included
	cancel context.CancelFunc
	done   chan error
}

// follow starts a Follower on path and stops it when the test ends.
func follow(t *testing.T, path string) *followed {
	t.Helper()
	return followWith(t, path, nil)
}

// followWith is follow with a chance to change the Follower before Run.
func followWith(t *testing.T, path string, setup func(*Follower)) *followed {
	t.Helper()
	fw := &followed{done: make(chan error, 1)}
	fw.f = &Follower{
		Path: path,
		Poll: testPoll,
		Lines: func(r Request) {
			fw.mu.Lock()
			fw.got = append(fw.got, r.Target)
			fw.mu.Unlock()
		},
		Problem: func(err error) {
			fw.mu.Lock()
			fw.probs = append(fw.probs, err)
			fw.mu.Unlock()
		},
	}
	if setup != nil {
		setup(fw.f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fw.cancel = cancel
	go func() { fw.done <- fw.f.Run(ctx) }()
	t.Cleanup(func() { fw.stop(t) })
	return fw
}

// stop cancels Run and waits for it to return nil.
func (fw *followed) stop(t *testing.T) {
	t.Helper()
	fw.cancel()
	select {
	case err := <-fw.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(waitDeadline):
		t.Fatalf("Run did not return within %v of cancel", waitDeadline)
	}
}

func (fw *followed) targets() []string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return slices.Clone(fw.got)
}

func (fw *followed) problems() []error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return slices.Clone(fw.probs)
}

// waitFor polls cond until it holds, failing the test after waitDeadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitDeadline); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitDeadline, what)
		}
	}
}

// waitState waits until the follower's state is state.
func (fw *followed) waitState(t *testing.T, state string) {
	t.Helper()
	waitFor(t, "state "+state, func() bool { return fw.f.Stats().State == state })
}

// waitLines waits until n lines have been delivered.
func (fw *followed) waitLines(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d lines", n), func() bool { return len(fw.targets()) >= n })
}

// waitRounds waits until the follower has polled n more times, so that it
// has certainly looked at whatever was written before the call.
func (fw *followed) waitRounds(t *testing.T, n int64) {
	t.Helper()
	until := fw.f.rounds.Load() + n
	waitFor(t, fmt.Sprintf("%d polls", n), func() bool { return fw.f.rounds.Load() >= until })
}

// logLines returns nginx combined lines for the targets /name.jpg.
func logLines(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] \"GET /%s.jpg HTTP/1.1\" 200 48213 \"-\" \"Mozilla/5.0\"\n", n)
	}
	return b.String()
}

// targets returns the targets logLines writes for names.
func targets(names ...string) []string {
	var ts []string
	for _, n := range names {
		ts = append(ts, "/"+n+".jpg")
	}
	return ts
}

// appendTo appends s to the file at path as a web server does, creating
// the file if needed.
func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func names(prefix string, n int) []string {
	var ns []string
	for i := range n {
		ns = append(ns, fmt.Sprintf("%s%d", prefix, i))
	}
	return ns
}

func checkTargets(t *testing.T, fw *followed, want []string) {
	t.Helper()
	if got := fw.targets(); !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
}

func TestFollowAppended(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendTo(t, path, "")
	fw := follow(t, path)
	fw.waitState(t, StateFollowing)

	all := names("a", 60)
	for i := 0; i < len(all); i += 7 {
		appendTo(t, path, logLines(all[i:min(i+7, len(all))]...))
	}
	fw.waitLines(t, len(all))
	fw.waitRounds(t, 3)
	checkTargets(t, fw, targets(all...))
	if st := fw.f.Stats(); st.Lines != int64(len(all)) || st.Unparsed != 0 || st.State != StateFollowing {
		t.Errorf("Stats = %+v, want %d lines, 0 unparsed, following", st, len(all))
	}
}

func TestFollowStartsAtEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  string // in the file before the follower starts
		rest string // completes old's last line, if it is partial
	}{
		{"complete lines", logLines("old1", "old2"), ""},
		{"ends mid-line", logLines("old1") + "203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] \"GET /ol", "d2.jpg HTTP/1.1\" 200 5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			appendTo(t, path, tc.old)
			fw := follow(t, path)
			fw.waitState(t, StateFollowing)
			appendTo(t, path, tc.rest+logLines("new1", "new2"))
			fw.waitLines(t, 2)
			fw.waitRounds(t, 3)
			checkTargets(t, fw, targets("new1", "new2"))
			if st := fw.f.Stats(); st.Unparsed != 0 {
				t.Errorf("Unparsed = %d, want 0: the line begun before the start is not a bad line", st.Unparsed)
			}
		})
	}
}

func TestFollowPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendTo(t, path, "")
	fw := follow(t, path)
	fw.waitState(t, StateFollowing)

	b := logLines("b")
	// One write, so that once a is delivered the half of b has been read.
	appendTo(t, path, logLines("a")+b[:40])
	fw.waitLines(t, 1)
	fw.waitRounds(t, 3)
	checkTargets(t, fw, targets("a"))

	appendTo(t, path, b[40:])
	fw.waitLines(t, 2)
	checkTargets(t, fw, targets("a", "b"))
	if st := fw.f.Stats(); st.Unparsed != 0 {
		t.Errorf("Unparsed = %d, want 0", st.Unparsed)
	}
}

func TestFollowRotation(t *testing.T) {
	t.Run("rename and create", func(t *testing.T) {
		dir := t.TempDir()
		path, old := filepath.Join(dir, "access.log"), filepath.Join(dir, "access.log.1")
		appendTo(t, path, logLines("before"))
		fw := follow(t, path)
		fw.waitState(t, StateFollowing)

		// No waiting between these: the follower sees them in any order
		// of its polls.
		appendTo(t, path, logLines("a1", "a2", "a3"))
		if err := os.Rename(path, old); err != nil {
			t.Fatal(err)
		}
		appendTo(t, old, logLines("a4")) // the server has not reopened yet
		appendTo(t, path, logLines("b1", "b2"))
		appendTo(t, path, logLines("b3"))

		fw.waitLines(t, 7)
		fw.waitRounds(t, 3)
		checkTargets(t, fw, targets("a1", "a2", "a3", "a4", "b1", "b2", "b3"))
	})

	t.Run("rotated between a read and the look at Path", func(t *testing.T) {
		dir := t.TempDir()
		path, old := filepath.Join(dir, "access.log"), filepath.Join(dir, "access.log.1")
		appendTo(t, path, "")
		var armed atomic.Bool
		var rotated sync.Once
		fw := followWith(t, path, func(f *Follower) {
			// Runs on Run's goroutine, so t.Fatal is not allowed here.
			f.beforeStat = func() {
				if !armed.Load() {
					return
				}
				rotated.Do(func() {
					if err := os.Rename(path, old); err != nil {
						t.Error(err)
					}
					if err := os.WriteFile(path, []byte(logLines("b1")), 0o644); err != nil {
						t.Error(err)
					}
					if f, err := os.OpenFile(old, os.O_WRONLY|os.O_APPEND, 0); err != nil {
						t.Error(err)
					} else {
						f.WriteString(logLines("a2"))
						f.Close()
					}
				})
			}
		})
		fw.waitState(t, StateFollowing)
		appendTo(t, path, logLines("a1"))
		fw.waitLines(t, 1)
		armed.Store(true)

		fw.waitLines(t, 3)
		fw.waitRounds(t, 3)
		checkTargets(t, fw, targets("a1", "a2", "b1"))
	})

	t.Run("old file written after the new one is created", func(t *testing.T) {
		dir := t.TempDir()
		path, old := filepath.Join(dir, "access.log"), filepath.Join(dir, "access.log.1")
		appendTo(t, path, "")
		fw := follow(t, path)
		fw.waitState(t, StateFollowing)
		appendTo(t, path, logLines("a1"))
		fw.waitLines(t, 1)

		if err := os.Rename(path, old); err != nil {
			t.Fatal(err)
		}
		fw.waitState(t, StateMissing)
		appendTo(t, path, "") // logrotate's create
		fw.waitState(t, StateFollowing)
		// The follower has seen the new, empty file; the server writes
		// to the old one until it is told to reopen its log.
		appendTo(t, old, logLines("a2"))
		fw.waitRounds(t, 3)
		appendTo(t, path, logLines("b1"))

		fw.waitLines(t, 3)
		fw.waitRounds(t, 3)
		checkTargets(t, fw, targets("a1", "a2", "b1"))
	})
}

func TestFollowCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendTo(t, path, "")
	fw := follow(t, path)
	fw.waitState(t, StateFollowing)

	long := names("before-truncation-with-a-long-name-", 5)
	appendTo(t, path, logLines(long...))
	fw.waitLines(t, len(long))

	// What logrotate's copytruncate does after copying: the server goes
	// on appending at the new end.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, logLines("c1", "c2"))
	fw.waitLines(t, len(long)+2)
	fw.waitRounds(t, 3)
	checkTargets(t, fw, append(targets(long...), targets("c1", "c2")...))
	if st := fw.f.Stats(); st.Unparsed != 0 {
		t.Errorf("Unparsed = %d, want 0", st.Unparsed)
	}
}

func TestFollowMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	fw := follow(t, path)
	fw.waitState(t, StateMissing)
	fw.waitRounds(t, 5)

	// Written before the follower finds the file, and still delivered:
	// a file that appears is read from its beginning.
	if err := os.WriteFile(path, []byte(logLines("a1", "a2")), 0o644); err != nil {
		t.Fatal(err)
	}
	fw.waitLines(t, 2)
	appendTo(t, path, logLines("a3"))
	fw.waitLines(t, 3)
	checkTargets(t, fw, targets("a1", "a2", "a3"))
	fw.waitState(t, StateFollowing)
	checkProblems(t, fw, fs.ErrNotExist, nil)
}

func TestFollowDeletedAndRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendTo(t, path, "")
	fw := follow(t, path)
	fw.waitState(t, StateFollowing)
	appendTo(t, path, logLines("a1"))
	fw.waitLines(t, 1)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fw.waitState(t, StateMissing)
	fw.waitRounds(t, 5)
	appendTo(t, path, logLines("b1", "b2"))
	fw.waitLines(t, 3)
	fw.waitState(t, StateFollowing)
	checkTargets(t, fw, targets("a1", "b1", "b2"))
	checkProblems(t, fw, fs.ErrNotExist, nil)
}

// checkProblems checks the Problem calls: one per state change, each
// matching the error in want (nil for back to following).
func checkProblems(t *testing.T, fw *followed, want ...error) {
	t.Helper()
	got := fw.problems()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = want[i] == nil && got[i] == nil || want[i] != nil && errors.Is(got[i], want[i])
	}
	if !ok {
		t.Errorf("Problem calls %v, want %v", got, want)
	}
}

func TestFollowUnreadable(t *testing.T) {
	t.Run("not a regular file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
		fw := follow(t, path)
		waitFor(t, "an error state", func() bool { return strings.HasPrefix(fw.f.Stats().State, "error: ") })
		fw.waitRounds(t, 5)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		appendTo(t, path, logLines("a1"))
		fw.waitLines(t, 1)
		fw.waitState(t, StateFollowing)
		checkTargets(t, fw, targets("a1"))
		// Between the removal and the creation the follower may see the
		// file missing too.
		got := fw.problems()
		if len(got) < 2 || got[0] == nil || !strings.Contains(got[0].Error(), "not a regular file") || got[len(got)-1] != nil || slices.Contains(got[:len(got)-1], nil) {
			t.Errorf("Problem calls %v, want errors, the first for not a regular file, then nil", got)
		}
	})

	t.Run("permission denied", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads a file whatever its mode")
		}
		path := filepath.Join(t.TempDir(), "access.log")
		appendTo(t, path, logLines("old"))
		// Write-only, as a log the web server's user writes and we may not
		// read.
		if err := os.Chmod(path, 0o200); err != nil {
			t.Fatal(err)
		}
		fw := follow(t, path)
		waitFor(t, "an error state", func() bool { return strings.HasPrefix(fw.f.Stats().State, "error: ") })
		appendTo(t, path, logLines("a1"))
		fw.waitRounds(t, 5)
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		fw.waitState(t, StateFollowing)
		// The file was there at the start: what it held then is history,
		// what came after is not.
		fw.waitLines(t, 1)
		checkTargets(t, fw, targets("a1"))
		checkProblems(t, fw, fs.ErrPermission, nil)
	})
}

func TestFollowLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendTo(t, path, "")
	fw := follow(t, path)
	fw.waitState(t, StateFollowing)

	appendTo(t, path, logLines("a1"))
	chunk := strings.Repeat("x", 64<<10)
	for range 16 { // 1 MiB with no newline, over many polls
		appendTo(t, path, chunk)
	}
	fw.waitRounds(t, 3)
	appendTo(t, path, "\n"+logLines("b1", "b2"))
	fw.waitLines(t, 3)
	fw.waitRounds(t, 3)
	checkTargets(t, fw, targets("a1", "b1", "b2"))
	if st := fw.f.Stats(); st.Lines != 3 || st.Unparsed != 1 {
		t.Errorf("Stats = %+v, want 3 lines, 1 unparsed", st)
	}
}

func TestLineSplitterBound(t *testing.T) {
	var s lineSplitter
	var lines []string
	overlong := 0
	line := func(b []byte) { lines = append(lines, string(b)) }
	over := func() { overlong++ }

	s.feed([]byte("first\nsecond-"), line, over)
	chunk := bytes.Repeat([]byte("x"), 4<<10)
	for range 256 { // 1 MiB
		s.feed(chunk, line, over)
		if len(s.partial) > maxLineLength || cap(s.partial) > 2*maxLineLength {
			t.Fatalf("holding %d bytes (capacity %d) of a line, want at most %d", len(s.partial), cap(s.partial), maxLineLength)
		}
	}
	s.feed([]byte("\nthird\n"), line, over)
	if want := []string{"first", "third"}; !slices.Equal(lines, want) || overlong != 1 {
		t.Errorf("lines %q and %d over-long, want %q and 1", lines, overlong, want)
	}
}

func TestFollowParseErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendTo(t, path, "")
	fw := follow(t, path)
	fw.waitState(t, StateFollowing)

	appendTo(t, path, "garbage 1\n"+logLines("a1")+"garbage 2\ngarbage 3\n")
	fw.waitLines(t, 1)
	fw.waitRounds(t, 5)
	if st := fw.f.Stats(); st.Lines != 1 || st.Unparsed != 3 || st.State != StateFollowing {
		t.Errorf("Stats = %+v, want 1 line, 3 unparsed, following", st)
	}
	// Only the first is reported at once; the rest wait for the minute.
	if got := fw.problems(); len(got) != 1 || got[0] == nil || !strings.Contains(got[0].Error(), "garbage 1") {
		t.Errorf("Problem calls %v, want one for garbage 1", got)
	}
}

func TestParseErrorReports(t *testing.T) {
	var got []error
	tl := &tail{f: &Follower{Problem: func(err error) { got = append(got, err) }}}
	for i := range 3 {
		tl.badLine(fmt.Appendf(nil, "garbage %d", i), errors.New("bad"))
	}
	tl.flushParseErrors(false)
	if len(got) != 1 {
		t.Fatalf("%d reports within the minute, want 1: %v", len(got), got)
	}
	tl.lastReport = tl.lastReport.Add(-parseReportEvery) // as if the minute had passed
	tl.flushParseErrors(false)
	if len(got) != 2 || !strings.Contains(got[1].Error(), "2 access log lines") || !strings.Contains(got[1].Error(), "garbage 2") {
		t.Fatalf("reports %v, want a second one counting 2 lines and showing the last", got)
	}
	tl.flushParseErrors(false)
	if len(got) != 2 {
		t.Errorf("reports %v, want none more with nothing new", got)
	}
}

func TestFollowCancel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		create bool
	}{
		{"following", true},
		{"missing", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			if tc.create {
				appendTo(t, path, logLines("old"))
			}
			// A poll far longer than the deadline: Run must not wait it out.
			f := &Follower{Path: path, Poll: time.Hour}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- f.Run(ctx) }()
			waitFor(t, "the first poll", func() bool { return f.rounds.Load() > 0 })
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(waitDeadline):
				t.Fatalf("Run did not return within %v of cancel", waitDeadline)
			}
		})
	}
}

func TestFollowNoPath(t *testing.T) {
	if err := (&Follower{}).Run(context.Background()); err == nil {
		t.Error("Run with no Path returned nil, want an error")
	}
}
