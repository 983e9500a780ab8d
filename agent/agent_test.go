package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload/agent"
)

// TestOnceOffloadsEverything: files already in the folder at start, in
// nested folders, with odd names, empty, small (one PUT) and large (a
// multipart upload of 4 parts) all land whole, recorded and archived, with
// S3 answering as AWS does under AgentPolicy (a missing key is 403 to the
// agent: the HEAD before a multipart upload must not stop it).
func TestOnceOffloadsEverything(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.requireAWSAnswers()
	files := map[string][]byte{
		"small.jpg":                 randomBytes(100<<10, 1),
		"2026/11/nested.jpg":        randomBytes(3000, 2),
		"with space/ünïcödé 写真.jpg": randomBytes(4000, 3),
		"-leading-dash.jpg":         randomBytes(10, 4),
		"empty.jpg":                 {},
		"large.jpg":                 randomBytes(18<<20, 5), // 4 parts of 5 MiB
	}
	for rel, data := range files {
		h.write(rel, data)
	}
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	for rel, data := range files {
		h.assertOffloaded(rel, data)
	}
	if up := h.multipartUploads(); len(up) != 0 {
		t.Errorf("unfinished multipart uploads left: %v", up)
	}
}

// TestAfterDeleteAndKeep: the other two endings of the life of a file.
func TestAfterDeleteAndKeep(t *testing.T) {
	t.Parallel()
	for _, after := range []agent.After{agent.AfterDelete, agent.AfterKeep} {
		t.Run(string(after), func(t *testing.T) {
			h := newHarness(t)
			h.cfg.After, h.cfg.Archive = after, ""
			data := randomBytes(5000, 9)
			h.write("a.jpg", data)
			if err := h.once(); err != nil {
				t.Fatalf("Once: %v", err)
			}
			if got := h.ledgerItem("a.jpg"); got.CRC64NVME != checksum(data) {
				t.Errorf("ledger crc64nvme = %q; want %q", got.CRC64NVME, checksum(data))
			}
			_, err := os.Stat(filepath.Join(h.cfg.Watch, "a.jpg"))
			if kept := err == nil; kept != (after == agent.AfterKeep) {
				t.Errorf("after %s: local file kept = %v", after, kept)
			}
			// A second run finds nothing to do and agrees with the ledger.
			if err := h.once(); err != nil {
				t.Errorf("second Once: %v", err)
			}
		})
	}
}

// TestSymlinksAndSpecialFilesAreSkipped: a symlink to a file outside the
// folder is never uploaded, nor is a FIFO; ignored names stay too.
func TestSymlinksAndSpecialFilesAreSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	secret := filepath.Join(t.TempDir(), "secret.jpg")
	if err := os.WriteFile(secret, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(h.cfg.Watch, "link.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(secret), filepath.Join(h.cfg.Watch, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := syscallMkfifo(filepath.Join(h.cfg.Watch, "fifo.jpg")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"upload.tmp", "upload.part", ".hidden.jpg", ".git/config"} {
		p := filepath.Join(h.cfg.Watch, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	for _, rel := range []string{"link.jpg", "linkdir/secret.jpg", "fifo.jpg", "upload.tmp", "upload.part", ".hidden.jpg", ".git/config"} {
		if h.objectExists(rel) {
			t.Errorf("%s was uploaded", rel)
		}
	}
	if _, err := os.Lstat(filepath.Join(h.cfg.Watch, "link.jpg")); err != nil {
		t.Errorf("symlink was moved: %v", err)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "outside" {
		t.Errorf("the symlink's target was touched: %q, %v", b, err)
	}
}

// TestInvalidNameIsRefusedAndKept: a name the naming contract refuses is
// logged, kept, and makes Once report failure.
func TestInvalidNameIsRefusedAndKept(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, name := range []string{`back\slash.jpg`, "new\nline.jpg", "bad\xffutf8.jpg"} {
		h.write(name, []byte("data"))
	}
	err := h.once()
	if !errors.Is(err, agent.ErrIncomplete) {
		t.Fatalf("Once = %v; want ErrIncomplete", err)
	}
	entries, _ := os.ReadDir(h.cfg.Watch)
	if len(entries) != 3 {
		t.Errorf("watch folder has %d files; want the 3 refused ones kept", len(entries))
	}
	if !strings.Contains(h.logs.String(), "refused") {
		t.Errorf("no refusal logged:\n%s", h.logs)
	}
}

// TestConflictNeverOverwrites: the key already holds other bytes (a
// different original with the same name): the object is untouched, the
// local file stays, a conflict is counted and Once fails.
func TestConflictNeverOverwrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first, second := randomBytes(6000, 1), randomBytes(6000, 2)
	if _, err := h.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("same.jpg")), Body: bytes.NewReader(first),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme,
	}); err != nil {
		t.Fatal(err)
	}
	h.write("same.jpg", second)
	a := h.newAgent(h.cfg)
	err := a.Once(context.Background())
	if !errors.Is(err, agent.ErrIncomplete) {
		t.Fatalf("Once = %v; want ErrIncomplete", err)
	}
	if n := a.Stats().Conflicts.Load(); n != 1 {
		t.Errorf("conflicts = %d; want 1", n)
	}
	got, err := h.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key("same.jpg"))})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(got.Body)
	if !bytes.Equal(buf.Bytes(), first) {
		t.Errorf("the object in S3 was overwritten")
	}
	if local, err := os.ReadFile(filepath.Join(h.cfg.Watch, "same.jpg")); err != nil || !bytes.Equal(local, second) {
		t.Errorf("local file not kept as it was: %v", err)
	}
	for _, want := range []string{checksum(first), checksum(second)} {
		if !strings.Contains(h.logs.String(), want) {
			t.Errorf("conflict log does not name checksum %s:\n%s", want, h.logs)
		}
	}
}

// TestDaemonSeesNewFilesAndFolders: Run offloads a file present at start,
// then files written later, also into a folder created after start.
func TestDaemonSeesNewFilesAndFolders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	early := randomBytes(1000, 1)
	h.write("early.jpg", early)
	_, stop := h.runDaemon(h.cfg)
	h.waitFor("early.jpg archived", 30*time.Second, func() bool { return h.archived("early.jpg") })
	late, deep := randomBytes(2000, 2), randomBytes(3000, 3)
	h.write("late.jpg", late)
	h.write("new/folder/deep.jpg", deep)
	h.waitFor("late files archived", 30*time.Second, func() bool { return h.archived("late.jpg") && h.archived("new/folder/deep.jpg") })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertOffloaded("early.jpg", early)
	h.assertOffloaded("late.jpg", late)
	h.assertOffloaded("new/folder/deep.jpg", deep)
}

// TestSlowWriterIsUploadedWholeOnce: a file written in place over several
// seconds, in bursts closer together than the quiet period, is uploaded
// once, whole, after the writer is done. Then the writer keeps the file
// open and goes quiet for longer than the quiet period: only the
// open-for-writing check holds the upload back now, and the test waits
// until the agent has looked at the file twice more after the quiet period
// ran out and said so each time; without that check the file would be
// uploaded at the first of those looks.
func TestSlowWriterIsUploadedWholeOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a, stop := h.runDaemon(h.cfg)
	data := randomBytes(12<<20, 7)
	path := filepath.Join(h.cfg.Watch, "slow.jpg")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := len(data) / 20
	for i := 0; i < len(data); i += chunk {
		if _, err := f.Write(data[i:min(i+chunk, len(data))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(h.cfg.Quiet / 2) // the writer's pace, not a wait for the agent
	}
	// The writer keeps the file open and writes no more: once its last
	// write is a quiet period old, the quiet rule alone would let it go.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	lastWrite := time.Unix(fi.Sys().(*syscall.Stat_t).Ctim.Unix())
	h.waitFor("the quiet period since the last write", time.Minute, func() bool { return time.Since(lastWrite) > h.cfg.Quiet })
	heldBack := func() int { return strings.Count(h.logs.String(), `reason="slow.jpg: a writer has it open"`) }
	before := heldBack()
	// The first new look may have begun before the quiet period ran out;
	// the second began after the first ended.
	h.waitFor("two looks held back by the open writer", 30*time.Second, func() bool {
		return heldBack() >= before+2 || h.objectExists("slow.jpg") || h.archived("slow.jpg")
	})
	if h.objectExists("slow.jpg") || h.archived("slow.jpg") {
		t.Fatalf("uploaded while the writer still had the file open, after the quiet period")
	}
	// Status is published every 500 ms: it may lag the look just logged.
	openForWriting := func() bool {
		st := a.Status()
		return st.Oldest != nil && st.Oldest.Path == "slow.jpg" && st.Oldest.State == "open for writing"
	}
	h.waitFor("status to show slow.jpg open for writing", 10*time.Second, openForWriting)
	f.Close()
	h.waitFor("slow.jpg archived", 30*time.Second, func() bool { return h.archived("slow.jpg") })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertOffloaded("slow.jpg", data)
	if n := a.Stats().Uploaded.Load(); n != 1 {
		t.Errorf("uploaded %d times; want 1", n)
	}
}

// TestTwoAgentsRaceOnOneName: two web hosts (two watch folders) share the
// bucket and the table. Identical bytes under one name: both succeed, one
// object, one ledger item. Different bytes: exactly one wins, the other
// reports a conflict and keeps its file.
func TestTwoAgentsRaceOnOneName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		identical bool
	}{{"identical", true}, {"different", false}} {
		t.Run(tt.name, func(t *testing.T) {
			h1 := newHarness(t)
			h2 := newHarness(t)
			h2.cfg.Mapping = h1.cfg.Mapping // same keys
			size := 11 << 20                // multipart, so both uploads overlap
			d1 := randomBytes(size, 1)
			d2 := d1
			if !tt.identical {
				d2 = randomBytes(size, 2)
			}
			h1.write("race.jpg", d1)
			h2.write("race.jpg", d2)
			a1, a2 := h1.newAgent(h1.cfg), h2.newAgent(h2.cfg)
			done := make(chan error, 1)
			go func() { done <- a1.Once(context.Background()) }()
			e2 := a2.Once(context.Background())
			e1 := <-done
			conflicts := a1.Stats().Conflicts.Load() + a2.Stats().Conflicts.Load()
			if tt.identical {
				if e1 != nil || e2 != nil {
					t.Fatalf("Once errors: %v, %v; want both nil", e1, e2)
				}
				h1.assertOffloaded("race.jpg", d1)
				if !h2.archived("race.jpg") {
					t.Errorf("second host did not archive its identical copy")
				}
				if conflicts != 0 {
					t.Errorf("conflicts = %d; want 0", conflicts)
				}
				return
			}
			if (e1 == nil) == (e2 == nil) {
				t.Fatalf("Once errors: %v, %v; want exactly one to fail", e1, e2)
			}
			if conflicts != 1 {
				t.Errorf("conflicts = %d; want 1", conflicts)
			}
			winner, loser, wdata, ldata := h1, h2, d1, d2
			if e1 != nil {
				winner, loser, wdata, ldata = h2, h1, d2, d1
			}
			winner.assertOffloaded("race.jpg", wdata)
			if b, err := os.ReadFile(filepath.Join(loser.cfg.Watch, "race.jpg")); err != nil || !bytes.Equal(b, ldata) {
				t.Errorf("the losing host's file was not kept: %v", err)
			}
		})
	}
}

// TestPublishedFilesSkipTheQuietPeriod: a file renamed into its name with
// no writer holding it open is finished, so it is offloaded at once, even
// with a quiet period of an hour. A file written in place, and one renamed
// in while its writer still has it open, wait for the quiet period.
func TestPublishedFilesSkipTheQuietPeriod(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.Quiet = time.Hour
	_, stop := h.runDaemon(h.cfg)
	h.waitFor("the agent to watch", 30*time.Second, func() bool { return strings.Contains(h.logs.String(), "msg=watching") })

	held, err := os.Create(filepath.Join(h.cfg.Watch, "held.jpg.part"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Write(randomBytes(4000, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(held.Name(), filepath.Join(h.cfg.Watch, "held.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.cfg.Watch, "in-place.jpg"), randomBytes(5000, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	published := randomBytes(6000, 3)
	h.write("published.jpg", published)

	h.waitFor("published.jpg archived", 30*time.Second, func() bool { return h.archived("published.jpg") })
	h.waitFor("held.jpg looked at", 30*time.Second, func() bool {
		return strings.Contains(h.logs.String(), "held.jpg: a writer has it open")
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertOffloaded("published.jpg", published)
	for _, rel := range []string{"held.jpg", "in-place.jpg"} {
		if h.objectExists(rel) || h.archived(rel) {
			t.Errorf("%s was offloaded within its quiet period", rel)
		}
	}
}

// TestDaemonFollowsMovedFolders: a folder moved into the watch folder is
// watched and its files offloaded; a folder renamed within the watch folder
// keeps being watched under its new name, and a file written into it later
// is offloaded under that name.
func TestDaemonFollowsMovedFolders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.Rescan = time.Hour // only inotify may find the files
	_, stop := h.runDaemon(h.cfg)
	h.waitFor("the agent to watch", 30*time.Second, func() bool { return strings.Contains(h.logs.String(), "msg=watching") })

	outside := filepath.Join(t.TempDir(), "album")
	if err := os.MkdirAll(filepath.Join(outside, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	moved := randomBytes(3000, 1)
	if err := os.WriteFile(filepath.Join(outside, "inner", "moved.jpg"), moved, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(outside, filepath.Join(h.cfg.Watch, "album")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("album/inner/moved.jpg archived", 30*time.Second, func() bool { return h.archived("album/inner/moved.jpg") })

	if err := os.Rename(filepath.Join(h.cfg.Watch, "album"), filepath.Join(h.cfg.Watch, "renamed")); err != nil {
		t.Fatal(err)
	}
	// Written only once the agent has taken in the move, so that only an
	// event under the new name can find it.
	h.waitFor("the renamed folder watched", 30*time.Second, func() bool {
		return strings.Contains(h.logs.String(), "msg=\"watching new folder\" folder=renamed")
	})
	later := randomBytes(4000, 2)
	h.write("renamed/inner/later.jpg", later)
	h.waitFor("renamed/inner/later.jpg archived", 30*time.Second, func() bool { return h.archived("renamed/inner/later.jpg") })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertOffloaded("album/inner/moved.jpg", moved)
	h.assertOffloaded("renamed/inner/later.jpg", later)
}

// TestBandwidthLimitHolds: with a limit of 2 MiB/s, 8 MiB of files (a
// multipart one and single PUTs, at once) never reach S3 faster than the
// limit allows: the bytes a TCP relay in front of S3 counts are at most the
// limiter's burst plus the limit times the whole of Once, start to return,
// measured around it, plus 128 KiB for the requests' own headers (about
// 17 KiB here) and TLS. A limiter 25 % too fast breaks it (by about 1 MiB;
// 10 % too fast hides in the slack some runs); a limit per upload instead
// of one shared by all (three at once), or none, breaks it several times
// over. Only this upper bound is asserted: a starved CPU
// makes Once longer, which can only loosen it, whereas a lower bound (that
// the agent leaves little of the limit unused) would fail when other tests
// starve the agent; the rate reached is logged.
func TestBandwidthLimitHolds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const (
		limit = 2 << 20
		// burst is what the limiter lets out at once (bwBurst in
		// bwlimit.go), on top of the rate.
		burst = 64 << 10
		// headers: what the requests carry besides the files' bytes.
		headers = 128 << 10
	)
	h.cfg.BandwidthLimit = limit
	// The files are written before Once starts; without this their quiet
	// period would sit in the measured window after the start-up sweep.
	h.cfg.Quiet = time.Millisecond
	relay := newByteCounter(t, h.st.S3Endpoint)
	h.agentS3 = h.agentS3At(relay.endpoint)
	big := randomBytes(6<<20, 1)
	h.write("big.jpg", big)
	total := len(big)
	for i := range 2 {
		h.write("small-"+strconv.Itoa(i)+".jpg", randomBytes(1<<20, byte(i+2)))
		total += 1 << 20
	}
	start := time.Now()
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	took := time.Since(start)
	sent, window := relay.upstream()
	allowed := burst + limit*took.Seconds() + headers
	t.Logf("%.1f MiB (files: %d MiB) sent in %s (%.2f MiB/s from the first byte to the last), Once took %s: at most %.1f MiB allowed",
		float64(sent)/(1<<20), total>>20, window.Round(time.Millisecond), float64(sent)/window.Seconds()/(1<<20), took.Round(time.Millisecond), allowed/(1<<20))
	if sent < int64(total) {
		t.Errorf("the relay counted %d bytes; want at least the %d bytes of the files", sent, total)
	}
	if float64(sent) > allowed {
		t.Errorf("%d bytes reached S3 during a Once of %s; want at most %.0f (%d MiB/s for that long, the %d KiB burst, %d KiB for headers)", sent, took.Round(time.Millisecond), allowed, limit>>20, burst>>10, headers>>10)
	}
	h.assertOffloaded("big.jpg", big)
}

// byteCounter is a TCP relay on loopback that counts the bytes sent
// upstream and when the first and the last of them passed.
type byteCounter struct {
	endpoint    string
	mu          sync.Mutex
	bytes       int64
	first, last time.Time
}

func newByteCounter(t *testing.T, upstream string) *byteCounter {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &byteCounter{endpoint: u.Scheme + "://" + ln.Addr().String()}
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", u.Host)
			if err != nil {
				down.Close()
				continue
			}
			go func() { io.Copy(down, up); down.Close() }()
			go func() { io.Copy(countingWriter{up, c}, down); up.Close() }()
		}
	}()
	return c
}

type countingWriter struct {
	w io.Writer
	c *byteCounter
}

func (cw countingWriter) Write(p []byte) (int, error) {
	now := time.Now()
	cw.c.mu.Lock()
	if cw.c.first.IsZero() {
		cw.c.first = now
	}
	cw.c.last, cw.c.bytes = now, cw.c.bytes+int64(len(p))
	cw.c.mu.Unlock()
	return cw.w.Write(p)
}

func (c *byteCounter) upstream() (int64, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.last.Sub(c.first)
}

// TestNetworkFileSystemUsesTheQuietRule: on NFSv4, SMB or EFS a client
// without a delegation is refused a lease (EAGAIN) whether or not anyone
// writes, which the agent used to read as "a writer has it": nothing on a
// shared web root was ever offloaded. With the file system detected, the
// quiet period decides, and a renamed file waits for it too (no lease, no
// proof that the writer is done). Not parallel: it swaps system calls.
func TestNetworkFileSystemUsesTheQuietRule(t *testing.T) {
	h := newHarness(t)
	agent.SimulateNetworkFS(t)
	h.write("on-nfs.jpg", randomBytes(3000, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.newAgent(h.cfg).Once(ctx); err != nil {
		t.Fatalf("Once on a network file system: %v", err)
	}
	h.assertOffloaded("on-nfs.jpg", randomBytes(3000, 1))
}
