package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"
)

const testQuiet = 2 * time.Second

// files is a watch folder as the scheduler sees it: a version per name.
type files map[string]fileID

func (f files) lstat(rel string) (fileID, error) {
	id, ok := f[rel]
	if !ok {
		return fileID{}, fs.ErrNotExist
	}
	return id, nil
}

// version is a file written at the given time (its mtime and ctime).
func version(ino uint64, size int64, at time.Time) fileID {
	return fileID{ino: ino, size: size, mtime: at, ctime: at}
}

func newTestScheduler(f files, change func(*Config)) *scheduler {
	cfg := Config{Quiet: testQuiet, Ignore: DefaultIgnore, After: AfterArchive}
	if change != nil {
		change(&cfg)
	}
	return newScheduler(cfg, false, f.lstat, time.Now())
}

// dueNames is due's answer as names.
func dueNames(s *scheduler, now time.Time, free int) []string {
	var names []string
	for _, j := range s.due(now, free) {
		names = append(names, j.rel)
	}
	return names
}

// dueOne hands out rel and fails the test if anything else, or nothing, is due.
func dueOne(t *testing.T, s *scheduler, now time.Time, rel string) job {
	t.Helper()
	jobs := s.due(now, 100)
	if len(jobs) != 1 || jobs[0].rel != rel {
		t.Fatalf("due = %v; want only %s", jobs, rel)
	}
	return jobs[0]
}

func TestSchedulerSettles(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name          string
		rel           string
		ctime         time.Duration // relative to the note
		movedIn       bool
		renamedWaits  bool // --quiet-renamed
		wantNote      bool
		wantDueAfter  time.Duration // -1: never pending
		wantPublished bool
	}{
		{"written in place just now", "a.jpg", 0, false, false, false, testQuiet, false},
		{"quiet before it was seen", "a.jpg", -time.Hour, false, false, false, 0, false},
		{"written a second before it was seen", "a.jpg", -time.Second, false, false, false, time.Second, false},
		{"ctime in the future (clock step)", "a.jpg", time.Hour, false, false, false, testQuiet, false},
		{"renamed in", "a.jpg", 0, true, false, true, 0, true},
		{"renamed in, --quiet-renamed", "a.jpg", 0, true, true, true, testQuiet, false},
		{"ignored name", "a.jpg.part", 0, false, false, false, -1, false},
		{"dot folder", ".cache/a.jpg", 0, true, false, false, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := files{tt.rel: version(1, 10, now.Add(tt.ctime))}
			s := newTestScheduler(f, func(c *Config) { c.QuietForRenamed = tt.renamedWaits })
			if got := s.note(candidate{rel: tt.rel, movedIn: tt.movedIn}, now); got != tt.wantNote {
				t.Errorf("note = %v; want %v", got, tt.wantNote)
			}
			if tt.wantDueAfter < 0 {
				if s.len() != 0 {
					t.Errorf("pending = %d; want 0", s.len())
				}
				return
			}
			if tt.wantDueAfter > 0 {
				if got := dueNames(s, now.Add(tt.wantDueAfter-time.Nanosecond), 4); len(got) != 0 {
					t.Errorf("due %s early: %v", tt.wantDueAfter-time.Nanosecond, got)
				}
			}
			j := dueOne(t, s, now.Add(tt.wantDueAfter), tt.rel)
			if j.published != tt.wantPublished || !j.seen.sameVersion(f[tt.rel]) || !j.since.Equal(now) {
				t.Errorf("job = %+v; want published %v, the version seen at the note", j, tt.wantPublished)
			}
			if s.busy() != 1 || s.len() != 1 {
				t.Errorf("busy %d, pending %d; want 1 and 1", s.busy(), s.len())
			}
		})
	}
}

func TestSchedulerNoteChangesAndVanishes(t *testing.T) {
	now := time.Now()
	f := files{"a.jpg": version(1, 10, now)}
	s := newTestScheduler(f, nil)
	s.note(candidate{rel: "a.jpg"}, now)
	// Written again 1.5 s later: its quiet period starts over.
	f["a.jpg"] = version(1, 25, now.Add(1500*time.Millisecond))
	s.note(candidate{rel: "a.jpg"}, now.Add(1500*time.Millisecond))
	if got := dueNames(s, now.Add(testQuiet), 4); len(got) != 0 {
		t.Errorf("due at +2s after a write at +1.5s: %v", got)
	}
	if b := s.snapshot(1); b.bytes != 25 || b.files != 1 {
		t.Errorf("snapshot = %d files, %d bytes; want 1, 25", b.files, b.bytes)
	}
	// The same version noted again (a rescan) changes nothing.
	s.note(candidate{rel: "a.jpg"}, now.Add(3*time.Second))
	dueOne(t, s, now.Add(3500*time.Millisecond), "a.jpg")
	s.finish(result{rel: "a.jpg", outcome: outNotReady}, now.Add(4*time.Second))

	delete(f, "a.jpg")
	s.note(candidate{rel: "a.jpg"}, now.Add(5*time.Second))
	if s.len() != 0 || len(s.queue)+len(s.retries) != 0 || s.bytes != 0 || s.oldest != nil {
		t.Errorf("after the file vanished: pending %d, queued %d, bytes %d; want none", s.len(), len(s.queue)+len(s.retries), s.bytes)
	}
}

func TestSchedulerFinish(t *testing.T) {
	now := time.Now()
	old := version(1, 10, now.Add(-time.Hour))
	tests := []struct {
		name        string
		after       After
		once        bool
		attempts    int // failed attempts before this result
		r           result
		wantPending bool
		wantParked  bool
		wantGaveUp  bool
		wantNextIn  time.Duration // when pending: the next due, at most (0: exactly testQuiet)
		wantState   string
	}{
		{"done", AfterArchive, false, 0, result{outcome: outDone, id: old}, false, false, false, 0, ""},
		{"done, kept", AfterKeep, false, 0, result{outcome: outDone, id: old}, false, true, false, 0, ""},
		{"gone", AfterArchive, false, 0, result{outcome: outGone}, false, false, false, 0, ""},
		{"dry run", AfterArchive, false, 0, result{outcome: outDryRun, id: old, err: errors.New("would upload")}, false, true, false, 0, ""},
		{"skipped", AfterArchive, false, 0, result{outcome: outSkipped, err: errNotRegular}, false, true, false, 0, ""},
		{"refused", AfterArchive, false, 0, result{outcome: outRefused, err: errors.New("bad name")}, false, true, false, 0, ""},
		{"conflict", AfterArchive, false, 0, result{outcome: outConflict, id: old, err: errors.New("other bytes")}, false, true, false, 0, ""},
		{"held open", AfterArchive, false, 0, result{outcome: outNotReady, id: old, err: errWriterHasIt}, true, false, false, 0, "open for writing"},
		{"not settled", AfterArchive, false, 0, result{outcome: outNotReady, id: old}, true, false, false, 0, "settling"},
		{"failed", AfterArchive, false, 0, result{outcome: outFailed, cause: causeS3, err: errors.New("503")}, true, false, false, 2 * backoffBase, "retrying"},
		{"failed, once, second time", AfterArchive, true, 1, result{outcome: outFailed, cause: causeS3, err: errors.New("503")}, true, false, false, 4 * backoffBase, "retrying"},
		{"failed, once, third time", AfterArchive, true, 2, result{outcome: outFailed, cause: causeS3, err: errors.New("503")}, false, false, true, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := files{"a.jpg": old}
			s := newTestScheduler(f, func(c *Config) { c.After = tt.after })
			s.once = tt.once
			s.note(candidate{rel: "a.jpg"}, now)
			dueOne(t, s, now, "a.jpg")
			s.pending["a.jpg"].attempts = tt.attempts
			tt.r.rel = "a.jpg"
			v := s.finish(tt.r, now)
			if _, ok := s.pending["a.jpg"]; ok != tt.wantPending {
				t.Errorf("pending = %v; want %v", ok, tt.wantPending)
			}
			if _, ok := s.parked["a.jpg"]; ok != tt.wantParked {
				t.Errorf("parked = %v; want %v", ok, tt.wantParked)
			}
			if v.gaveUp != tt.wantGaveUp {
				t.Errorf("gave up = %v; want %v", v.gaveUp, tt.wantGaveUp)
			}
			if s.busy() != 0 {
				t.Errorf("busy = %d after the result; want 0", s.busy())
			}
			// Nothing parked is looked at again while it is unchanged.
			s.note(candidate{rel: "a.jpg", movedIn: true}, now)
			if _, ok := s.pending["a.jpg"]; ok != (tt.wantPending || !tt.wantParked) {
				t.Errorf("noted again: pending = %v; want %v", ok, tt.wantPending || !tt.wantParked)
			}
			if !tt.wantPending {
				return
			}
			if got := s.snapshot(1).oldest[0].State; got != tt.wantState {
				t.Errorf("state = %q; want %q", got, tt.wantState)
			}
			next := s.pending["a.jpg"].at.Sub(now)
			if tt.wantNextIn == 0 && next != testQuiet || tt.wantNextIn > 0 && (next <= 0 || next > tt.wantNextIn) {
				t.Errorf("next look in %s; want %s", next, tt.wantNextIn)
			}
			if tt.r.outcome == outFailed && (v.attempts != tt.attempts+1 || v.retryIn != next) {
				t.Errorf("verdict = %+v; want attempt %d, retry in %s", v, tt.attempts+1, next)
			}
		})
	}
}

func TestSchedulerParkedUntilChanged(t *testing.T) {
	now := time.Now()
	f := files{"a.jpg": version(1, 10, now.Add(-time.Hour))}
	s := newTestScheduler(f, nil)
	s.note(candidate{rel: "a.jpg"}, now)
	dueOne(t, s, now, "a.jpg")
	s.finish(result{rel: "a.jpg", outcome: outConflict, id: f["a.jpg"]}, now)
	f["a.jpg"] = version(1, 11, now) // a human replaced it
	s.note(candidate{rel: "a.jpg"}, now)
	if _, ok := s.parked["a.jpg"]; ok || s.len() != 1 {
		t.Errorf("changed after parking: parked %v, pending %d; want it pending again", ok, s.len())
	}
	// Gone while parked: forgotten, so a new file under the name is new.
	s = newTestScheduler(f, nil)
	s.note(candidate{rel: "a.jpg"}, now.Add(-time.Hour))
	dueOne(t, s, now, "a.jpg")
	s.finish(result{rel: "a.jpg", outcome: outRefused, err: errors.New("bad")}, now)
	delete(f, "a.jpg")
	s.note(candidate{rel: "a.jpg"}, now)
	if len(s.parked) != 0 {
		t.Errorf("parked = %v after the file went; want none", s.parked)
	}
}

func TestSchedulerDirtyRenote(t *testing.T) {
	now := time.Now()
	first := version(1, 10, now.Add(-time.Hour))
	tests := []struct {
		name        string
		after       After
		r           result
		change      func(files) // while it runs
		wantPending bool
	}{
		{"rewritten while uploading, then offloaded", AfterArchive, result{outcome: outDone, id: first},
			func(f files) { f["a.jpg"] = version(2, 20, now) }, true},
		{"replaced while kept, then offloaded", AfterKeep, result{outcome: outDone, id: first},
			func(f files) { f["a.jpg"] = version(2, 20, now) }, true},
		{"touched while kept, same version", AfterKeep, result{outcome: outDone, id: first},
			func(f files) {}, false},
		{"deleted while failing", AfterArchive, result{outcome: outFailed, cause: causeS3, err: errors.New("503")},
			func(f files) { delete(f, "a.jpg") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := files{"a.jpg": first}
			s := newTestScheduler(f, func(c *Config) { c.After = tt.after })
			s.note(candidate{rel: "a.jpg"}, now)
			dueOne(t, s, now, "a.jpg")
			tt.change(f)
			if s.note(candidate{rel: "a.jpg", movedIn: true}, now) {
				t.Errorf("note of a running file asked for a dispatch")
			}
			if !s.pending["a.jpg"].dirty {
				t.Fatalf("a note while running did not mark it dirty")
			}
			tt.r.rel = "a.jpg"
			s.finish(tt.r, now.Add(time.Second))
			e, ok := s.pending["a.jpg"]
			if ok != tt.wantPending {
				t.Fatalf("pending after the result = %v; want %v", ok, tt.wantPending)
			}
			if ok && (e.dirty || e.attempts != 0 || !e.seen.sameVersion(f["a.jpg"])) {
				t.Errorf("entry = %+v; want the new version, fresh, not dirty", e)
			}
		})
	}
}

func TestSchedulerBackoffOrder(t *testing.T) {
	now := time.Now()
	f := files{}
	s := newTestScheduler(f, nil)
	names := []string{"a.jpg", "b.jpg", "c.jpg", "d.jpg"}
	for i, rel := range names {
		f[rel] = version(uint64(i), 10, now.Add(-time.Hour))
		s.note(candidate{rel: rel}, now)
	}
	if got := dueNames(s, now, 2); len(got) != 2 {
		t.Fatalf("due with 2 free = %v; want 2 files", got)
	}
	if got := dueNames(s, now, 4); len(got) != 2 {
		t.Fatalf("then due = %v; want the other 2", got)
	}
	// They fail, each retried after its own backoff: they come back in
	// that order, each only when its time has come.
	retry := map[string]time.Duration{"a.jpg": 30 * time.Second, "b.jpg": 10 * time.Second, "c.jpg": 20 * time.Second, "d.jpg": 40 * time.Second}
	for _, rel := range names {
		s.finish(result{rel: rel, outcome: outFailed, cause: causeLocal, err: errors.New("EIO")}, now)
		e := s.pending[rel]
		e.notBefore = now.Add(retry[rel])
		s.schedule(e)
	}
	var order []string
	for at := now; at.Before(now.Add(time.Minute)); at = at.Add(time.Second) {
		for _, j := range s.due(at, 1) {
			if d := retry[j.rel]; at.Sub(now) != d {
				t.Errorf("%s due at +%s; want +%s", j.rel, at.Sub(now), d)
			}
			order = append(order, j.rel)
		}
	}
	if want := "[b.jpg c.jpg a.jpg d.jpg]"; fmt.Sprint(order) != want {
		t.Errorf("order = %v; want %s", order, want)
	}
}

func TestSchedulerRetryRemoteSoon(t *testing.T) {
	now := time.Now()
	later := now.Add(4 * time.Minute)
	f := files{}
	s := newTestScheduler(f, nil)
	setup := []struct {
		rel       string
		cause     string
		notBefore time.Time
		running   bool
	}{
		{"s3-failed.jpg", causeS3, later, false},
		{"dynamodb-failed.jpg", causeDynamoDB, later, false},
		{"archive-failed.jpg", causeArchive, later, false},
		{"running.jpg", causeS3, later, true},
		{"due-soon.jpg", causeS3, now.Add(time.Second), false},
	}
	for i, x := range setup {
		f[x.rel] = version(uint64(i), 10, now.Add(-time.Hour))
		s.note(candidate{rel: x.rel}, now)
	}
	s.due(now, len(setup))
	for _, x := range setup {
		e := s.pending[x.rel]
		if x.running {
			// It failed on S3 before and is being tried again now.
			e.notBefore, e.attempts = x.notBefore, 7
			s.setRemote(e, true)
			continue
		}
		s.finish(result{rel: x.rel, outcome: outFailed, cause: x.cause, err: errors.New("x")}, now)
		e.notBefore, e.attempts = x.notBefore, 7
		s.schedule(e)
	}
	// Files that never failed are not in the recovery's index at all.
	for i := range 100 {
		rel := fmt.Sprintf("settling-%d.jpg", i)
		f[rel] = version(uint64(100+i), 10, now)
		s.note(candidate{rel: rel}, now)
	}
	if len(s.remote) != 4 {
		t.Fatalf("remote index holds %d files; want the 4 remote failures", len(s.remote))
	}

	s.retryRemoteSoon(now)
	for _, rel := range []string{"s3-failed.jpg", "dynamodb-failed.jpg"} {
		if e := s.pending[rel]; e.notBefore.After(now.Add(recoveryJitter)) || e.at.After(now.Add(recoveryJitter)) || e.attempts != 7 {
			t.Errorf("%s: retry at +%s, attempts %d; want within %s, attempts kept at 7", rel, e.notBefore.Sub(now), e.attempts, recoveryJitter)
		}
	}
	for _, rel := range []string{"archive-failed.jpg", "running.jpg"} {
		if e := s.pending[rel]; !e.notBefore.Equal(later) {
			t.Errorf("%s: retry moved to +%s; want it left at +4m", rel, e.notBefore.Sub(now))
		}
	}
	if e := s.pending["due-soon.jpg"]; !e.notBefore.Equal(now.Add(time.Second)) {
		t.Errorf("due-soon.jpg: retry moved to +%s; want +1s kept", e.notBefore.Sub(now))
	}
	if len(s.remote) != 2 {
		t.Errorf("remote index holds %d files after the recovery; want running.jpg and due-soon.jpg", len(s.remote))
	}
}

// TestSchedulerRecoveryGap: only a success after recoveryGap without one
// pulls in the remote failures.
func TestSchedulerRecoveryGap(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		sinceLast time.Duration
		wantSoon  bool
	}{{time.Second, false}, {recoveryGap + time.Second, true}} {
		f := files{"failed.jpg": version(1, 10, now.Add(-time.Hour)), "ok.jpg": version(2, 10, now.Add(-time.Hour))}
		s := newTestScheduler(f, nil)
		s.lastDone = now.Add(-tt.sinceLast)
		s.note(candidate{rel: "failed.jpg"}, now)
		s.note(candidate{rel: "ok.jpg"}, now)
		s.due(now, 2)
		s.finish(result{rel: "failed.jpg", outcome: outFailed, cause: causeS3, err: errors.New("503")}, now)
		e := s.pending["failed.jpg"]
		e.notBefore = now.Add(time.Minute)
		s.schedule(e)
		s.finish(result{rel: "ok.jpg", outcome: outDone, id: f["ok.jpg"]}, now)
		if soon := !e.at.After(now.Add(recoveryJitter)); soon != tt.wantSoon {
			t.Errorf("success %s after the last: retry pulled in = %v; want %v", tt.sinceLast, soon, tt.wantSoon)
		}
		if !s.lastDone.Equal(now) {
			t.Errorf("lastDone not moved to the success")
		}
	}
}

func TestSchedulerSnapshotOldestFirst(t *testing.T) {
	now := time.Now()
	f := files{}
	s := newTestScheduler(f, nil)
	for i := range 50 {
		rel := fmt.Sprintf("f%02d.jpg", i)
		f[rel] = version(uint64(i), int64(i), now.Add(time.Duration(i)*time.Second-time.Hour))
		s.note(candidate{rel: rel}, now.Add(time.Duration(i)*time.Second))
	}
	// A clock that went back: the file still goes where its time says.
	f["early.jpg"] = version(99, 1000, now)
	s.note(candidate{rel: "early.jpg"}, now.Add(2500*time.Millisecond))

	s.due(now.Add(time.Hour), 1) // f00 is running: still pending, still listed
	s.finish(result{rel: "f01.jpg", outcome: outGone}, now)
	b := s.snapshot(4)
	if b.files != 50 || b.bytes != 49*50/2-1+1000 {
		t.Errorf("snapshot: %d files, %d bytes; want 50, %d", b.files, b.bytes, 49*50/2-1+1000)
	}
	var got []string
	for _, w := range b.oldest {
		got = append(got, w.Path)
	}
	if want := "[f00.jpg f02.jpg early.jpg f03.jpg]"; fmt.Sprint(got) != want {
		t.Errorf("oldest = %v; want %s", got, want)
	}
	if len(b.running) != 1 || b.running[0].Path != "f00.jpg" {
		t.Errorf("running = %v; want f00.jpg", b.running)
	}
}

// TestTrackerWaitingLeavesOutUploading: status counts and lists the
// pending files not uploading, from a snapshot, as before the scheduler.
func TestTrackerWaitingLeavesOutUploading(t *testing.T) {
	since := time.Now()
	w := func(path string, bytes int64) Waiting {
		since = since.Add(time.Second)
		return Waiting{Path: path, Bytes: bytes, Since: since}
	}
	a, b, c, d := w("a", 1), w("b", 10), w("c", 100), w("d", 1000)
	tr := newTracker()
	// a is running and uploading; c was handed out after the snapshot and
	// is uploading; b is running, not uploading yet; 50 more are pending.
	tr.publish(backlog{files: 54, bytes: 1111 + 50, oldest: []Waiting{a, b, c, d}, running: []Waiting{a, b}})
	tr.begin("a", 1)
	tr.begin("c", 100)
	tr.mu.Lock()
	n, bytes, first := tr.waiting(2)
	tr.mu.Unlock()
	if n != 52 || bytes != 1010+50 || len(first) != 2 || first[0].Path != "b" || first[1].Path != "d" {
		t.Errorf("waiting = %d, %d, %v; want 52 files, 1060 bytes, b and d", n, bytes, first)
	}
}

// BenchmarkScheduler measures the scheduler alone with a backlog of
// pending files, none of them due unless said: what a tick costs with
// nothing due, a file handed out and its result taken, a file offloaded and
// a new one arriving, a rescan's note of an unchanged file, and a status
// snapshot. Each should cost the same at 10k as at 1M files.
func BenchmarkScheduler(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			benchScheduler(b, n)
		})
	}
}

func benchScheduler(b *testing.B, n int) {
	// A fake clock: file i is due at t0+quiet+i*step, and a result puts it
	// back a quiet period later, so each step makes exactly one file due.
	const step = time.Microsecond
	quiet := time.Duration(n) * step
	t0 := time.Now()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("d%03d/f%08d.jpg", i%1000, i)
	}
	// New files are offloaded at once, so a few names do for all of them.
	newNames := make([]string, 1024)
	for i := range newNames {
		newNames[i] = fmt.Sprintf("new/f%04d.jpg", i)
	}
	clock := t0
	lstat := func(rel string) (fileID, error) {
		return fileID{ino: uint64(len(rel)), size: 1 << 20, ctime: clock}, nil
	}
	s := newScheduler(Config{Quiet: quiet, Ignore: DefaultIgnore, After: AfterArchive}, false, lstat, t0)
	for i := range n {
		clock = t0.Add(time.Duration(i) * step)
		s.note(candidate{rel: names[i]}, clock)
	}
	now := t0.Add(quiet - step/2) // nothing due yet
	runtime.GC()                  // the setup's garbage is not the scheduler's cost
	const workers = 4

	b.Run("due-none", func(b *testing.B) {
		for b.Loop() {
			if len(s.due(now, workers)) != 0 {
				b.Fatal("something due")
			}
		}
	})
	b.Run("note-unchanged", func(b *testing.B) {
		i := 0
		for b.Loop() {
			s.note(candidate{rel: names[i%n]}, now) // a rescan
			i++
		}
	})
	cycle := now // due-one+finish's clock, kept across -count runs
	b.Run("due-one+finish", func(b *testing.B) {
		for b.Loop() {
			cycle = cycle.Add(step)
			jobs := s.due(cycle, workers)
			if len(jobs) != 1 {
				b.Fatalf("due = %d jobs; want 1", len(jobs))
			}
			s.finish(result{rel: jobs[0].rel, outcome: outNotReady, id: jobs[0].seen}, cycle)
		}
	})
	b.Run("offloaded+new-file", func(b *testing.B) {
		// A new file renamed in goes at once and is offloaded: the backlog
		// keeps its size.
		next := 0
		clock = now.Add(-time.Hour)
		for b.Loop() {
			if !s.note(candidate{rel: newNames[next%len(newNames)], movedIn: true}, now) {
				b.Fatal("a published file not due")
			}
			next++
			jobs := s.due(now, workers)
			if len(jobs) != 1 {
				b.Fatalf("due = %d jobs; want 1", len(jobs))
			}
			s.finish(result{rel: jobs[0].rel, outcome: outDone, id: jobs[0].seen}, now)
		}
		if s.len() != n {
			b.Fatalf("pending = %d; want %d", s.len(), n)
		}
	})
	b.Run("snapshot", func(b *testing.B) {
		for b.Loop() {
			s.snapshot(maxListed + workers)
		}
	})
}

// TestDueQueue: whatever is pushed, moved and removed, the queue hands
// entries out soonest first and every entry knows its place.
func TestDueQueue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var q dueQueue
	var live []*entry
	for range 5000 {
		switch op := r.IntN(4); {
		case op < 2 || len(live) == 0:
			e := &entry{index: -1}
			q.push(e, r.Int64N(1000))
			live = append(live, e)
		case op == 2:
			e := live[r.IntN(len(live))]
			q.fix(e.index, r.Int64N(1000))
		default:
			i := r.IntN(len(live))
			q.remove(live[i].index)
			live = slices.Delete(live, i, i+1)
		}
	}
	for i, x := range q {
		if x.e.index != i {
			t.Fatalf("entry at %d thinks it is at %d", i, x.e.index)
		}
	}
	last := int64(-1)
	for len(q) > 0 {
		at := q[0].at
		if e := q.remove(0); e.index != -1 || at < last {
			t.Fatalf("popped %d after %d (index %d); want ascending, index -1", at, last, e.index)
		}
		last = at
	}
}

// breakerScheduler has n settled files pending, f000.jpg (n bytes) to
// f<n-1>.jpg (1 byte): the later the name, the smaller the file.
func breakerScheduler(t *testing.T, n int, once bool) (*scheduler, files) {
	t.Helper()
	now := time.Now()
	f := files{}
	s := newTestScheduler(f, nil)
	s.once = once
	for i := range n {
		rel := fmt.Sprintf("f%03d.jpg", i)
		f[rel] = version(uint64(i+1), int64(n-i), now.Add(-time.Hour))
		s.note(candidate{rel: rel}, now)
	}
	return s, f
}

// failAll hands out up to free due files and fails each with cause.
func failAll(s *scheduler, now time.Time, free int, cause string) (v verdict, handed []string) {
	for _, j := range s.due(now, free) {
		handed = append(handed, j.rel)
	}
	for _, rel := range handed {
		w := s.finish(result{rel: rel, outcome: outFailed, cause: cause, err: errors.New("x")}, now)
		v.tripped = v.tripped || w.tripped
		v.closed = v.closed || w.closed
		v.gaveUp = v.gaveUp || w.gaveUp
	}
	return v, handed
}

func TestBreakerTrips(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		run      func(s *scheduler) // fails files in turn
		wantOpen bool
	}{
		{"threshold of different files", func(s *scheduler) {
			failAll(s, now, breakerThreshold, causeS3)
		}, true},
		{"dynamodb counts too", func(s *scheduler) {
			failAll(s, now, breakerThreshold, causeDynamoDB)
		}, true},
		{"one file fewer", func(s *scheduler) {
			failAll(s, now, breakerThreshold-1, causeS3)
		}, false},
		{"one bad file, failing again and again", func(s *scheduler) {
			e := s.pending["f000.jpg"]
			for range 3 * breakerThreshold {
				s.queueOf(e).fix(e.index, s.key(now.Add(-2*time.Hour))) // due first, whatever its backoff
				if got := dueNames(s, now, 1); len(got) != 1 || got[0] != "f000.jpg" {
					t.Fatalf("due = %v; want f000.jpg", got)
				}
				s.finish(result{rel: "f000.jpg", outcome: outFailed, cause: causeS3, err: errors.New("403")}, now)
			}
		}, false},
		{"a success in between starts the count again", func(s *scheduler) {
			failAll(s, now, breakerThreshold-1, causeS3)
			j := dueNames(s, now, 1)
			s.finish(result{rel: j[0], outcome: outDone}, now)
			failAll(s, now, breakerThreshold-1, causeS3)
		}, false},
		{"an archive failure proves the remote answered", func(s *scheduler) {
			failAll(s, now, breakerThreshold-1, causeS3)
			failAll(s, now, 1, causeArchive)
			failAll(s, now, breakerThreshold-1, causeDynamoDB)
		}, false},
		{"local failures never trip it", func(s *scheduler) {
			failAll(s, now, 3*breakerThreshold, causeLocal)
			failAll(s, now, 3*breakerThreshold, causeArchive)
		}, false},
		{"local failures do not reset the count", func(s *scheduler) {
			failAll(s, now, breakerThreshold-1, causeS3)
			failAll(s, now, 2, causeLocal)
			failAll(s, now, 1, causeS3)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := breakerScheduler(t, 50, false)
			tt.run(s)
			if s.brk.open != tt.wantOpen {
				t.Errorf("open = %v; want %v", s.brk.open, tt.wantOpen)
			}
			if st := s.snapshot(1).breaker; (st.State == "open") != tt.wantOpen || st.Trips != map[bool]int64{true: 1}[tt.wantOpen] {
				t.Errorf("status = %+v; want open %v, trips %d", st, tt.wantOpen, map[bool]int64{true: 1}[tt.wantOpen])
			}
		})
	}
}

func TestBreakerOneProbeAtATime(t *testing.T) {
	now := time.Now()
	s, f := breakerScheduler(t, 100, false)
	v, failed := failAll(s, now, 16, causeS3)
	if !v.tripped || !s.brk.open {
		t.Fatalf("16 files failed on S3: tripped %v, open %v; want open", v.tripped, s.brk.open)
	}
	if st := s.snapshot(1); st.oldest[0].State != "breaker open" || st.breaker.NextProbe.IsZero() || st.breaker.Cause != causeS3 || st.breaker.ConsecutiveFailures != 16 {
		t.Errorf("snapshot = %+v, %+v; want the files waiting on the breaker, a next probe, cause s3, 16 failures", st.oldest[0], st.breaker)
	}
	// 84 files never tried are due, and new files keep arriving: none goes
	// before the probe interval.
	f["new.jpg"] = version(999, 1, now.Add(-time.Hour))
	if s.note(candidate{rel: "new.jpg", movedIn: true}, now) && len(s.due(now, 16)) > 0 {
		t.Errorf("a new published file went while the breaker is open")
	}
	if got := dueNames(s, now.Add(probeFloor-time.Nanosecond), 16); len(got) != 0 {
		t.Fatalf("due before the first probe = %v; want nothing", got)
	}
	at := s.brk.nextProbe
	// The probe is the smallest file among those that failed on S3.
	got := dueNames(s, at, 16)
	want := slices.MinFunc(failed, func(a, b string) int { return int(f[a].size - f[b].size) })
	if len(got) != 1 || got[0] != want {
		t.Fatalf("probe = %v; want only %s, the smallest that failed", got, want)
	}
	if got := dueNames(s, at.Add(time.Hour), 16); len(got) != 0 {
		t.Fatalf("due while the probe runs = %v; want nothing", got)
	}
	// Failed probes back off: each interval between probeFloor and
	// probeFloor doubled, up to probeCap.
	probe := got[0]
	for i := 1; i <= 8; i++ {
		s.finish(result{rel: probe, outcome: outFailed, cause: causeS3, err: errors.New("x")}, at)
		wait := s.brk.nextProbe.Sub(at)
		if hi := min(probeCap, probeFloor<<i); wait < probeFloor || wait < hi/2 || wait > hi {
			t.Errorf("after %d failed probes: next in %s; want %s to %s", i, wait, max(probeFloor, hi/2), hi)
		}
		if got := dueNames(s, s.brk.nextProbe.Add(-time.Nanosecond), 16); len(got) != 0 {
			t.Fatalf("due before the next probe = %v", got)
		}
		at = s.brk.nextProbe
		got := dueNames(s, at, 16)
		if len(got) != 1 {
			t.Fatalf("probe %d = %v; want one file", i+1, got)
		}
		probe = got[0]
	}
	if !s.brk.open || s.brk.probes != 8 || s.snapshot(1).breaker.Probing != probe {
		t.Errorf("open %v, failed probes %d, probing %q; want open, 8, %s", s.brk.open, s.brk.probes, s.snapshot(1).breaker.Probing, probe)
	}
	// A probe that says nothing about the remote (not settled) frees the
	// slot at once, without backing off.
	s.finish(result{rel: probe, outcome: outNotReady, id: f[probe]}, at)
	if got := dueNames(s, at, 16); len(got) != 1 || s.brk.probes != 8 {
		t.Errorf("after a probe not settled: due %v, failed probes %d; want another probe, still 8", got, s.brk.probes)
	}
}

func TestBreakerClosesAndReleasesAtRate(t *testing.T) {
	for _, how := range []string{"offloaded", "archive failed", "another file offloaded", "conflict", "dry run"} {
		t.Run(how, func(t *testing.T) {
			now := time.Now()
			s, _ := breakerScheduler(t, 200, false)
			_, failed := failAll(s, now, 16, causeS3)
			// One of the first files is still in flight when it trips.
			if !s.brk.open {
				t.Fatal("not open")
			}
			probe := dueNames(s, s.brk.nextProbe, 16)[0]
			at := s.brk.nextProbe.Add(time.Second)
			var v verdict
			switch how {
			case "offloaded":
				v = s.finish(result{rel: probe, outcome: outDone}, at)
			case "archive failed":
				v = s.finish(result{rel: probe, outcome: outFailed, cause: causeArchive, err: errors.New("EACCES")}, at)
			case "conflict":
				v = s.finish(result{rel: probe, outcome: outConflict, err: errors.New("other bytes")}, at)
			case "dry run":
				v = s.finish(result{rel: probe, outcome: outDryRun, err: errors.New("would upload")}, at)
			case "another file offloaded":
				s.brk.probe = nil // as if the probe were some other file
				v = s.finish(result{rel: probe, outcome: outDone}, at)
			}
			if !v.closed || s.brk.open || s.snapshot(1).breaker.State != "closed" {
				t.Fatalf("closed = %v, open %v; want closed", v.closed, s.brk.open)
			}
			// The files that failed on S3 are due within recoveryJitter, the
			// rest are due now; they go out releaseFirst at first, doubling.
			for _, rel := range failed {
				if e := s.pending[rel]; e != nil && rel != probe && e.at.After(at.Add(recoveryJitter)) {
					t.Errorf("%s: due in %s after the breaker closed; want within %s", rel, e.at.Sub(at), recoveryJitter)
				}
			}
			total := 0
			for i, want := range []int{releaseFirst, releaseFirst, 2 * releaseFirst, 4 * releaseFirst} {
				got := 0
				for range 3 { // a tick or two more within the second adds nothing
					n := len(s.due(at.Add(time.Duration(i)*releaseDoubling), 1000))
					got += n
				}
				total += got
				if got != want {
					t.Errorf("second %d after closing: %d files went; want %d", i, got, want)
				}
			}
			if n := len(s.due(at.Add(releaseRamp), 1000)); n != s.len()-total {
				t.Errorf("after the ramp: %d went; want all %d left", n, s.len()-total)
			}
		})
	}
}

// TestBreakerOnceGivesUp: Once over a dead remote ends: after onceAttempts
// failed probes every file still waiting is given up, and so is a file
// whose failure comes back later.
func TestBreakerOnceGivesUp(t *testing.T) {
	now := time.Now()
	s, _ := breakerScheduler(t, 100, true)
	jobs := dueNames(s, now, 6)
	for _, rel := range jobs[:5] {
		s.finish(result{rel: rel, outcome: outFailed, cause: causeS3, err: errors.New("x")}, now)
	}
	at, gaveUp := now, 0
	for i := range onceAttempts {
		if s.abandon() != 0 {
			t.Fatalf("gave up after %d probes; want %d", i, onceAttempts)
		}
		at = s.brk.nextProbe
		probe := dueNames(s, at, 16)
		if len(probe) != 1 {
			t.Fatalf("probe %d: due %v", i+1, probe)
		}
		if v := s.finish(result{rel: probe[0], outcome: outFailed, cause: causeS3, err: errors.New("x")}, at); v.gaveUp {
			gaveUp++ // a probe that failed onceAttempts times itself
		}
	}
	if n := s.abandon(); n+gaveUp != 99 || s.len() != 1 {
		t.Errorf("gave up %d files, %d left pending; want every one but the one in flight", n, s.len())
	}
	if got := dueNames(s, at.Add(time.Hour), 16); len(got) != 0 {
		t.Errorf("due after giving up = %v", got)
	}
	if v := s.finish(result{rel: jobs[5], outcome: outFailed, cause: causeS3, err: errors.New("x")}, at); !v.gaveUp || s.len() != 0 {
		t.Errorf("the file in flight failed: gave up %v, pending %d; want given up, none", v.gaveUp, s.len())
	}
}

func TestProbeInterval(t *testing.T) {
	for failed := range 40 {
		hi := min(probeCap, probeFloor<<min(failed, 10))
		for range 100 {
			if d := probeInterval(failed); d < max(probeFloor, hi/2) || d > hi {
				t.Fatalf("probeInterval(%d) = %s; want %s to %s", failed, d, max(probeFloor, hi/2), hi)
			}
		}
	}
}

// BenchmarkHeldFile measures what one pending file costs in memory: the
// scheduler's entry, its name as the scan makes it, and its place in the
// map and the queue (B/held-file). maxPending's reason rests on it.
func BenchmarkHeldFile(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		t0 := time.Now()
		lstat := func(rel string) (fileID, error) { return fileID{ino: uint64(len(rel)), size: 1 << 20, ctime: t0}, nil }
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := newScheduler(Config{Quiet: time.Hour, Ignore: DefaultIgnore, After: AfterArchive}, false, lstat, t0)
		for i := range n {
			// A name as long as a dated upload path: 2026/11/30/IMG_20261130_123456.jpg
			s.note(candidate{rel: fmt.Sprintf("2026/11/%02d/IMG_20261130_%06d.jpg", i%30, i)}, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.len() != n {
			b.Fatalf("held %d", s.len())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/held-file")
		runtime.KeepAlive(s)
	}
}

// TestBreakerPerFileRefusalsDoNotTrip: S3 or DynamoDB refusing one file's
// request (its key denied, too long, the item invalid) is the file's
// failure, not the service's: refused files fewer than refusalsToTrip in a
// row leave the breaker closed, and the end of an outage does not pull their
// retries in. Each is retried on its own backoff, and Once gives up only
// the refused files themselves.
func TestBreakerPerFileRefusalsDoNotTrip(t *testing.T) {
	refusals := []struct {
		cause string
		err   error
	}{
		{causeS3, sdkError(t, causeS3, http.StatusForbidden, "AccessDenied")},
		{causeS3, sdkError(t, causeS3, http.StatusBadRequest, "KeyTooLongError")},
		{causeDynamoDB, sdkError(t, causeDynamoDB, http.StatusBadRequest, "AccessDeniedException")},
		{causeDynamoDB, sdkError(t, causeDynamoDB, http.StatusBadRequest, "ValidationException")},
	}
	for _, once := range []bool{false, true} {
		t.Run(fmt.Sprintf("once=%v", once), func(t *testing.T) {
			now := time.Now()
			s, _ := breakerScheduler(t, 50, once)
			for i := range 3 * breakerThreshold {
				r := refusals[i%len(refusals)]
				for _, j := range s.due(now, 1) {
					s.finish(result{rel: j.rel, outcome: outFailed, cause: r.cause, err: r.err}, now)
				}
			}
			if st := s.snapshot(1).breaker; s.brk.open || st.State != "closed" || st.Trips != 0 {
				t.Errorf("after %d refusals: breaker %+v; want closed, never tripped", 3*breakerThreshold, st)
			}
			if len(s.remote) != 0 {
				t.Errorf("%d refused files wait for the end of an outage; want none", len(s.remote))
			}
			if n := s.abandon(); n != 0 || s.len() != 50 {
				t.Errorf("abandoned %d, %d pending; want none given up, all 50 pending", n, s.len())
			}
		})
	}
}

// TestBreakerProbeRotates: while the breaker is open the probe is never
// the same file twice in a row while others wait, and files that never
// failed take their turn: a file that fails whatever the service does
// (one S3 refuses with a 500, say) cannot hold the breaker open alone.
func TestBreakerProbeRotates(t *testing.T) {
	now := time.Now()
	s, _ := breakerScheduler(t, 100, false)
	_, failed := failAll(s, now, breakerThreshold, causeS3)
	if !s.brk.open {
		t.Fatal("not open")
	}
	var probes []string
	healthy := false
	for i := range 10 {
		got := dueNames(s, s.brk.nextProbe, 16)
		if len(got) != 1 {
			t.Fatalf("probe %d = %v; want one file", i+1, got)
		}
		if i > 0 && got[0] == probes[i-1] {
			t.Fatalf("probes %v, then %s again; want another file while 99 wait", probes, got[0])
		}
		probes = append(probes, got[0])
		healthy = healthy || !slices.Contains(failed, got[0])
		s.finish(result{rel: got[0], outcome: outFailed, cause: causeS3, err: errors.New("x")}, s.brk.nextProbe)
	}
	if !healthy {
		t.Errorf("probes %v: only files that had failed; want files never tried among them", probes)
	}
	if !s.brk.open || s.brk.probes != 10 {
		t.Errorf("open %v, failed probes %d; want open, 10", s.brk.open, s.brk.probes)
	}
}

// TestSchedulerFullOfFailingFilesMakesRoom: a scheduler full of files
// that keep failing for their own reasons still takes new files, each in
// the place of one of those (the rescan finds it again), and never holds
// more than its limit. Files waiting for the service, files not tried yet
// and Once make no room.
func TestSchedulerFullOfFailingFilesMakesRoom(t *testing.T) {
	const limit = 10
	refused := sdkError(t, causeS3, http.StatusForbidden, "AccessDenied")
	tests := []struct {
		name      string
		once      bool
		fail      func(s *scheduler, now time.Time) // the files held
		wantRoom  bool
		wantEvict bool
	}{
		{"refused", false, func(s *scheduler, now time.Time) {
			for _, j := range s.due(now, limit) {
				s.finish(result{rel: j.rel, outcome: outFailed, cause: causeS3, err: refused}, now)
			}
		}, true, true},
		{"archive failing", false, func(s *scheduler, now time.Time) { failAll(s, now, limit, causeArchive) }, true, true},
		{"the service failing", false, func(s *scheduler, now time.Time) { failAll(s, now, limit, causeS3) }, false, false},
		{"not tried yet", false, func(*scheduler, time.Time) {}, false, false},
		{"once", true, func(s *scheduler, now time.Time) { failAll(s, now, limit, causeArchive) }, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			s, f := breakerScheduler(t, limit, tt.once)
			s.limit = limit
			tt.fail(s, now)
			if !s.full() {
				t.Fatalf("%d pending; want full at %d", s.len(), limit)
			}
			if got := s.room(); got != tt.wantRoom {
				t.Fatalf("room() = %v; want %v", got, tt.wantRoom)
			}
			if st := s.snapshot(1); st.full == tt.wantRoom {
				t.Errorf("snapshot full = %v; want %v (the scan waits)", st.full, !tt.wantRoom)
			}
			if !tt.wantRoom {
				return
			}
			// The first new file takes the place of a failing one, which,
			// found again by a rescan before its backoff ends, takes none;
			// after it, it comes back with the attempts it had.
			held := maps.Clone(s.pending)
			f["first.jpg"] = version(999, 1, now.Add(-time.Hour))
			s.note(candidate{rel: "first.jpg"}, now)
			var gone *entry
			for rel, e := range held {
				if s.pending[rel] == nil {
					gone = e
				}
			}
			if gone == nil || s.pending["first.jpg"] == nil || s.len() != limit {
				t.Fatalf("first.jpg held %v, %d pending, made room: %v; want held in a failing file's place", s.pending["first.jpg"] != nil, s.len(), gone != nil)
			}
			s.note(candidate{rel: gone.rel}, now)
			if s.pending[gone.rel] != nil || s.evicted != 1 {
				t.Fatalf("%s found again during its backoff: held %v, %d made room; want not held, 1", gone.rel, s.pending[gone.rel] != nil, s.evicted)
			}
			later := gone.notBefore.Add(time.Second)
			s.note(candidate{rel: gone.rel}, later)
			if e := s.pending[gone.rel]; e == nil || e.attempts != gone.attempts || s.evicted != 2 || s.len() != limit {
				t.Fatalf("%s found again after its backoff: %+v, %d made room, %d pending; want held again after %d attempts, 2, %d", gone.rel, e, s.evicted, s.len(), gone.attempts, limit)
			}
			s.evicted = 0
			for i := range 3 * limit {
				if !s.room() {
					break // as the loop does: the scan waits
				}
				rel := fmt.Sprintf("new%02d.jpg", i)
				f[rel] = version(uint64(1000+i), 1, now.Add(-time.Hour))
				s.note(candidate{rel: rel}, now)
				if _, ok := s.pending[rel]; !ok && i < limit {
					t.Fatalf("%s not held while %d failing files could make room", rel, limit-i)
				}
				if s.len() > limit {
					t.Fatalf("%d pending; want at most %d", s.len(), limit)
				}
			}
			// The one held again still fails for its own reason: it may make
			// room again.
			if s.evicted != limit-1 || s.room() {
				t.Errorf("evicted %d, room %v; want the %d failing files left gone for new ones, no more room", s.evicted, s.room(), limit-1)
			}
		})
	}
}

// TestBreakerRefusalsOfEveryFileTrip: S3 or DynamoDB refusing the requests
// of many different files in a row, with not one file offloaded between
// them (the role lost s3:PutObject or dynamodb:PutItem, a bucket or KMS key
// policy refusing every key), is the service refusing everyone: the
// breaker opens as in an outage, its cause says refused. A few refused
// files, or any number with a success between, do not open it.
func TestBreakerRefusalsOfEveryFileTrip(t *testing.T) {
	s3Refused := sdkError(t, causeS3, http.StatusForbidden, "AccessDenied")
	dbRefused := sdkError(t, causeDynamoDB, http.StatusBadRequest, "AccessDeniedException")
	refuse := func(s *scheduler, now time.Time, n int, cause string, err error) {
		for range n {
			for _, j := range s.due(now, 1) {
				s.finish(result{rel: j.rel, outcome: outFailed, cause: cause, err: err}, now)
			}
		}
	}
	tests := []struct {
		name      string
		files     int
		run       func(s *scheduler, now time.Time)
		wantCause string // "": closed, never tripped
	}{
		{"s3 refusing every file", 100, func(s *scheduler, now time.Time) {
			refuse(s, now, refusalsToTrip, causeS3, s3Refused)
		}, "s3-refused"},
		{"dynamodb refusing every item", 100, func(s *scheduler, now time.Time) {
			refuse(s, now, refusalsToTrip, causeDynamoDB, dbRefused)
		}, "dynamodb-refused"},
		{"one file fewer", 100, func(s *scheduler, now time.Time) {
			refuse(s, now, refusalsToTrip-1, causeS3, s3Refused)
		}, ""},
		{"a success in between starts the count again", 100, func(s *scheduler, now time.Time) {
			refuse(s, now, refusalsToTrip-1, causeS3, s3Refused)
			j := dueNames(s, now, 1)
			s.finish(result{rel: j[0], outcome: outDone}, now)
			refuse(s, now, refusalsToTrip-1, causeS3, s3Refused)
		}, ""},
		{"the same files refused again and again", breakerThreshold, func(s *scheduler, now time.Time) {
			refuse(s, now, breakerThreshold, causeS3, s3Refused)
			for i := range 10 {
				at := now.Add(time.Duration(i+1) * time.Hour) // their backoff over, and no new file is due
				for _, rel := range []string{"f000.jpg", "f001.jpg", "f002.jpg", "f003.jpg", "f004.jpg"} {
					e := s.pending[rel]
					e.notBefore = at
					s.schedule(e)
				}
				for _, j := range s.due(at, 16) {
					s.finish(result{rel: j.rel, outcome: outFailed, cause: causeS3, err: s3Refused}, at)
				}
			}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			s, _ := breakerScheduler(t, tt.files, false)
			tt.run(s, now)
			st := s.snapshot(1).breaker
			if tt.wantCause == "" {
				if s.brk.open || st.Trips != 0 {
					t.Errorf("breaker %+v; want closed, never tripped", st)
				}
				return
			}
			if !s.brk.open || st.State != "open" || st.Trips != 1 || st.Cause != tt.wantCause {
				t.Errorf("breaker %+v; want open, 1 trip, cause %s", st, tt.wantCause)
			}
		})
	}
}

// TestBreakerOpenOnRefusalsProbesUntriedFiles: while the breaker is open
// because every file tried was refused, the probe is a file never tried,
// not one of the refused files whose backoff ended ahead of it: a file the
// refusal does not concern (another subtree, a grant put back) goes at the
// next probe and closes the breaker.
func TestBreakerOpenOnRefusalsProbesUntriedFiles(t *testing.T) {
	refused := sdkError(t, causeS3, http.StatusForbidden, "AccessDenied")
	now := time.Now()
	s, f := breakerScheduler(t, refusalsToTrip, false)
	for range refusalsToTrip {
		for _, j := range s.due(now, 1) {
			s.finish(result{rel: j.rel, outcome: outFailed, cause: causeS3, err: refused}, now)
		}
	}
	if !s.brk.open {
		t.Fatalf("every one of %d files refused: breaker %+v; want open", refusalsToTrip, s.brk.status(now))
	}
	// An hour later every refused file's backoff is over, and new files
	// arrive: they come due after the refused ones.
	at := now.Add(time.Hour)
	var fresh []string
	for i := range 3 {
		rel := fmt.Sprintf("new%d.jpg", i)
		f[rel] = version(uint64(1000+i), 1000, at.Add(-time.Hour))
		s.note(candidate{rel: rel}, at)
		fresh = append(fresh, rel)
	}
	for i := range 2 {
		if s.brk.nextProbe.After(at) {
			at = s.brk.nextProbe
		}
		got := dueNames(s, at, 16)
		if len(got) != 1 || !slices.Contains(fresh, got[0]) {
			t.Fatalf("probe %d = %v; want one of the files never tried, %v", i+1, got, fresh)
		}
		if i == 0 {
			s.finish(result{rel: got[0], outcome: outFailed, cause: causeS3, err: refused}, at)
			continue
		}
		if v := s.finish(result{rel: got[0], outcome: outDone}, at); !v.closed || s.brk.open {
			t.Errorf("the probe offloaded: closed %v, open %v; want closed", v.closed, s.brk.open)
		}
	}
}

// TestBreakerOnceWaitsForUntriedFiles: in Once, with the breaker open on
// refusals, the probe is not a refused file whose backoff ended while a
// file never tried waits to settle: three refused probes would end the
// run and give up that file untried. Run probes the refused file, as it
// gives up nothing.
func TestBreakerOnceWaitsForUntriedFiles(t *testing.T) {
	refused := sdkError(t, causeS3, http.StatusForbidden, "AccessDenied")
	for _, once := range []bool{false, true} {
		t.Run(fmt.Sprintf("once=%v", once), func(t *testing.T) {
			now := time.Now()
			s, f := breakerScheduler(t, refusalsToTrip, once)
			for range refusalsToTrip {
				for _, j := range s.due(now, 1) {
					s.finish(result{rel: j.rel, outcome: outFailed, cause: causeS3, err: refused}, now)
				}
			}
			if !s.brk.open {
				t.Fatalf("breaker %+v; want open", s.brk.status(now))
			}
			// A file written an hour later, not settled for a quiet period;
			// by then every refused file's backoff is over.
			at := now.Add(time.Hour)
			f["late.jpg"] = version(999, 1000, at)
			s.note(candidate{rel: "late.jpg"}, at)
			got := dueNames(s, at, 16)
			switch {
			case once && len(got) != 0:
				t.Fatalf("probe = %v while late.jpg settles; want none yet", got)
			case !once && (len(got) != 1 || got[0] == "late.jpg"):
				t.Fatalf("probe = %v; want one refused file", got)
			case !once:
				return
			}
			at = at.Add(testQuiet)
			if got := dueNames(s, at, 16); len(got) != 1 || got[0] != "late.jpg" {
				t.Fatalf("probe once late.jpg settled = %v; want late.jpg", got)
			}
		})
	}
}
