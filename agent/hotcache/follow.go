package hotcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPoll is how often a Follower looks for new lines when Poll is
// zero. A request then counts within a quarter of a second, far sooner
// than any ranking of what is popular can notice, and four stat calls a
// second cost nothing measurable on an idle host.
const DefaultPoll = 250 * time.Millisecond

// parseReportEvery is how often at most a Follower reports lines it could
// not parse after the first: a stream of bad lines (a scanner probing the
// host, a log format the parser does not know) must not flood the log.
const parseReportEvery = time.Minute

// readChunk is how much a Follower reads at once. Its memory is this
// buffer plus at most maxLineLength of a line waiting for its newline.
const readChunk = 64 << 10

// Follower reads the lines appended to a log file, like `tail -F`, and
// hands each parsed request to Lines.
//
// It starts at the end of a file that exists when Run starts: what the
// cache learns is recent demand, and replaying a day of history would
// count requests long gone cold as if they were happening now. A file
// that appears later (created after the start, or after a rotation) is
// read from its beginning, because every line in it is new.
//
// Only complete lines (ending in '\n') are delivered; a partial last line
// waits for its newline. A line longer than 16 KiB is not parsed: it is
// skipped up to its newline without being held in memory, and counted as
// unparsed.
//
// Rotation by rename (logrotate's default) is found by comparing the
// file at Path with the open one (device and inode). The old file is read
// until a new one at Path has data, since a web server goes on writing to
// the renamed file until it is told to reopen its log; then the old file
// is read to its end and the new one from its beginning. Truncation in
// place (logrotate's copytruncate) is found by the open file becoming
// smaller than what was read; reading starts again from 0. Lines written
// between copytruncate's copy and its truncation are lost, as they are to
// any reader; so is a truncation followed, within one Poll, by more new
// data than was read before it.
//
// It polls (one stat of the open file and one of Path per Poll when idle)
// rather than using inotify: polling works on every file system,
// including network ones that send no events, needs no watch on a
// directory owned by the web server's user, and a rename or truncation is
// one comparison instead of a sequence of events to interpret.
type Follower struct {
	// Path is the access log's path.
	Path string
	// Poll is how often it looks for new lines, rotation and truncation;
	// 0 means DefaultPoll.
	Poll time.Duration
	// Lines is called for each parsed line, in order, from Run's
	// goroutine. It may be nil, then lines are only counted.
	Lines func(Request)
	// Problem is called from Run's goroutine when the state changes to a
	// problem (the file missing or unreadable), and with nil when it is
	// following again. It is also called for lines that could not be
	// parsed, which do not change the state and are not followed by a nil:
	// the first such line, then at most once a minute a count of those
	// since. It is meant for logging; Stats is the current state. It may
	// be nil.
	Problem func(err error)

	lines    atomic.Int64
	unparsed atomic.Int64
	mu       sync.Mutex // guards state
	state    string

	// rounds counts the polls done: tests wait on it to know the file was
	// looked at.
	rounds atomic.Int64
	// beforeStat, if set, runs between reading the open file and looking
	// at Path: tests rotate the file there, where a rotation that is not
	// drained would lose lines.
	beforeStat func()
}

// FollowStats are a Follower's counters, for status and metrics.
type FollowStats struct {
	// Lines is how many lines were parsed and delivered.
	Lines int64
	// Unparsed is how many complete lines could not be parsed, over-long
	// lines included.
	Unparsed int64
	// State is "following", "missing" (no file at Path; one already open
	// is still read to the end, for a server that writes on to a renamed
	// log), or "error: " and the reason (e.g. the file is unreadable);
	// empty before Run first looks at the file.
	State string
}

// Follower states, as in FollowStats.State.
const (
	StateFollowing = "following"
	StateMissing   = "missing"
)

// Stats returns the counters. It is safe to call from any goroutine,
// during Run and after it.
func (f *Follower) Stats() FollowStats {
	f.mu.Lock()
	state := f.state
	f.mu.Unlock()
	return FollowStats{Lines: f.lines.Load(), Unparsed: f.unparsed.Load(), State: state}
}

// Run follows the file until ctx ends and returns nil then. It never
// returns an error for the file being missing, rotated or truncated: it
// waits and carries on. Run must not be called again before it returns.
func (f *Follower) Run(ctx context.Context) error {
	if f.Path == "" {
		return errors.New("follow access log: no path")
	}
	poll := f.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	t := &tail{f: f, chunk: make([]byte, readChunk)}
	// The file at Path now, if any, is where the history ends: when it is
	// opened (now, or later if it is unreadable now) reading starts at
	// this size.
	if fi, err := os.Stat(f.Path); err == nil {
		t.resume, t.resumeAt = fi, fi.Size()
	}
	defer t.close()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		t.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// tail is the state of one Run.
type tail struct {
	f      *Follower
	file   *os.File
	info   os.FileInfo // file's identity, for comparing with Path
	offset int64       // how far file has been read
	chunk  []byte
	split  lineSplitter

	// resume is a file not to read from its beginning when it is opened,
	// but from resumeAt: the file at Path when Run started (at its size
	// then), or one closed after an error (where reading stopped).
	resume   os.FileInfo
	resumeAt int64

	parseErrs    int64 // bad lines not yet reported
	lastParseErr error
	lastReport   time.Time
}

// poll does one round: open the file if none is open, read what was
// appended, and switch files if Path has been rotated.
func (t *tail) poll(ctx context.Context) {
	defer t.f.rounds.Add(1)
	defer t.flushParseErrors(false)
	if t.file == nil {
		file, fi, err := t.open()
		if err != nil {
			t.setProblem(err)
			return
		}
		t.switchTo(file, fi)
	}
	if err := t.read(ctx); err != nil {
		t.setProblem(err)
		t.closeToResume()
		return
	}
	if t.f.beforeStat != nil {
		t.f.beforeStat()
	}
	fi, err := os.Stat(t.f.Path)
	switch {
	case err != nil:
		// Keep the open file: a server renaming its own log writes on to
		// the old one until it creates the new.
		t.setProblem(err)
		return
	case os.SameFile(fi, t.info):
		t.f.setState(StateFollowing, nil)
		return
	case fi.Size() == 0:
		// Rotated, but the server has not written to the new file yet, so
		// it may still be writing to the old one.
		t.f.setState(StateFollowing, nil)
		return
	}
	file, fi, err := t.open()
	if err != nil {
		t.setProblem(err) // the old file stays open and is read on
		return
	}
	if err := t.read(ctx); err != nil {
		// The old file cannot be read to its end; the new one can.
		t.f.report(fmt.Errorf("follow access log: finish rotated file: %w", err))
	}
	if ctx.Err() != nil {
		file.Close()
		return
	}
	if t.split.pending() {
		t.badLine(nil, errors.New("rotated file ends without a newline"))
	}
	t.close()
	t.switchTo(file, fi)
	if err := t.read(ctx); err != nil {
		t.setProblem(err)
		t.closeToResume()
		return
	}
	t.f.setState(StateFollowing, nil)
}

// report passes err to Problem, if set, without changing the state.
func (f *Follower) report(err error) {
	if f.Problem != nil {
		f.Problem(err)
	}
}

// open opens Path and returns the file with its identity.
func (t *tail) open() (*os.File, os.FileInfo, error) {
	// Opening a named pipe would block until a writer opens it, and
	// neither a pipe nor a directory can be read at an offset.
	if fi, err := os.Stat(t.f.Path); err != nil {
		return nil, nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file (mode %s)", t.f.Path, fi.Mode())
	}
	file, err := os.Open(t.f.Path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, nil, err
	}
	return file, fi, nil
}

// switchTo makes file the one being read: from its beginning, unless it
// is the resume file. A resume file now smaller than where reading was to
// resume has been truncated meanwhile, and is read from its beginning.
func (t *tail) switchTo(file *os.File, fi os.FileInfo) {
	t.file, t.info, t.offset = file, fi, 0
	t.split.reset()
	if t.resume != nil && os.SameFile(t.resume, fi) && t.resumeAt <= fi.Size() {
		t.offset = t.resumeAt
		// Starting in the middle of a line would deliver its tail as a
		// line of its own.
		var last [1]byte
		if t.offset > 0 {
			if _, err := file.ReadAt(last[:], t.offset-1); err == nil && last[0] != '\n' {
				t.split.skipFirst()
			}
		}
	}
	t.resume = nil
}

// close closes the open file, if any.
func (t *tail) close() {
	if t.file != nil {
		t.file.Close()
		t.file, t.info = nil, nil
	}
}

// closeToResume closes the open file after an error, remembering where
// to go on if the same file can be opened again.
func (t *tail) closeToResume() {
	if t.file != nil {
		t.resume, t.resumeAt = t.info, t.offset
	}
	t.close()
}

// read reads the open file from the offset to its end, or until ctx ends,
// and delivers the complete lines. If the file is now smaller than the
// offset it was truncated, and reading starts again from 0.
func (t *tail) read(ctx context.Context) error {
	fi, err := t.file.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < t.offset {
		t.offset = 0
		t.split.reset()
	}
	if fi.Size() == t.offset {
		return nil // the usual idle poll: no read at all
	}
	for ctx.Err() == nil {
		n, err := t.file.ReadAt(t.chunk, t.offset)
		t.offset += int64(n)
		t.split.feed(t.chunk[:n], t.line, func() {
			t.badLine(nil, fmt.Errorf("line longer than %d bytes", maxLineLength))
		})
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
	return nil
}

// line parses and delivers one complete line.
func (t *tail) line(b []byte) {
	req, err := ParseLine(b)
	if err != nil {
		t.badLine(b, err)
		return
	}
	t.f.lines.Add(1)
	if t.f.Lines != nil {
		t.f.Lines(req)
	}
}

// badLine counts a line that could not be parsed and reports it: the
// first at once, the rest at most every parseReportEvery.
func (t *tail) badLine(b []byte, err error) {
	t.f.unparsed.Add(1)
	if b != nil {
		const show = 120 // enough to recognise the line, not a flood
		if len(b) > show {
			b = b[:show]
		}
		err = fmt.Errorf("access log line %q: %w", b, err)
	}
	t.parseErrs++
	t.lastParseErr = err
	t.flushParseErrors(t.lastReport.IsZero())
}

// flushParseErrors reports the bad lines not reported yet, if now is set
// or the last report is old enough.
func (t *tail) flushParseErrors(now bool) {
	if t.parseErrs == 0 || !now && time.Since(t.lastReport) < parseReportEvery {
		return
	}
	err := t.lastParseErr
	if t.parseErrs > 1 {
		err = fmt.Errorf("%d access log lines could not be parsed, the last: %w", t.parseErrs, err)
	}
	t.parseErrs, t.lastParseErr, t.lastReport = 0, nil, time.Now()
	t.f.report(err)
}

// setProblem sets the state for err from opening, reading or looking at
// the file, and reports it if the state changed.
func (t *tail) setProblem(err error) {
	err = fmt.Errorf("follow access log: %w", err)
	if errors.Is(err, fs.ErrNotExist) {
		t.f.setState(StateMissing, err)
		return
	}
	t.f.setState("error: "+err.Error(), err)
}

// setState records the state and calls Problem if it changed: with err
// for a problem, with nil on going back to following after one.
func (f *Follower) setState(state string, err error) {
	f.mu.Lock()
	prev := f.state
	f.state = state
	f.mu.Unlock()
	if state == prev || f.Problem == nil {
		return
	}
	if err != nil {
		f.Problem(err)
	} else if prev != "" {
		f.Problem(nil)
	}
}

// lineSplitter cuts a stream of bytes into lines, holding at most
// maxLineLength bytes of a line that has not ended yet.
type lineSplitter struct {
	partial []byte
	// discard is set while skipping the rest of a line that cannot be
	// delivered; counted says whether its end is reported as over-long.
	discard bool
	counted bool
}

// feed splits b, calling line for each complete line (without its
// newline; the slice is valid only during the call) and overlong once for
// each line longer than maxLineLength, when its newline arrives.
func (s *lineSplitter) feed(b []byte, line func([]byte), overlong func()) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if s.discard {
				return
			}
			if len(s.partial)+len(b) > maxLineLength {
				s.partial = s.partial[:0]
				s.discard, s.counted = true, true
				return
			}
			s.partial = append(s.partial, b...)
			return
		}
		l := b[:i]
		b = b[i+1:]
		switch {
		case s.discard:
			if s.counted {
				overlong()
			}
			s.discard = false
		case len(s.partial)+len(l) > maxLineLength:
			s.partial = s.partial[:0]
			overlong()
		case len(s.partial) > 0:
			s.partial = append(s.partial, l...)
			line(s.partial)
			s.partial = s.partial[:0]
		default:
			line(l)
		}
	}
}

// pending reports whether part of a line is waiting for its newline.
func (s *lineSplitter) pending() bool {
	return len(s.partial) > 0 || s.discard && s.counted
}

// skipFirst drops everything up to the next newline without counting it.
func (s *lineSplitter) skipFirst() {
	s.partial = s.partial[:0]
	s.discard, s.counted = true, false
}

// reset forgets any partial line.
func (s *lineSplitter) reset() {
	s.partial = s.partial[:0]
	s.discard, s.counted = false, false
}
