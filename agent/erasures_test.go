package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/hotcache"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// testErasePoll is the erasure poll of these tests: short, so a few polls
// pass within a wait; the rules are the same as with a minute.
const testErasePoll = 200 * time.Millisecond

// forgetWait bounds each wait for the hosts to forget: many polls.
const forgetWait = 30 * time.Second

// hostHarness is one host's harness: its own folders and --host, the
// erasure poll short, and the key prefix given (the site's), or its own.
func hostHarness(t *testing.T, host, keyPrefix string) *harness {
	t.Helper()
	h := newHarness(t)
	// Heartbeats are per host name in the shared table: the tests that
	// run at once each name their hosts apart.
	h.cfg.Host = host + "-" + path.Base(h.cfg.Mapping.KeyPrefix)
	h.cfg.ErasePoll = testErasePoll
	if keyPrefix != "" {
		h.cfg.Mapping.KeyPrefix = keyPrefix
	}
	return h
}

// erase runs the erase of rel's key as "offload-agent erase" does, with
// the eraser's credentials (S3 through the AWS shim), and fails the test
// unless it completes.
func (h *harness) erase(rel string) {
	h.t.Helper()
	e := agent.Eraser{S3: h.st.S3For(h.t, stacktest.Eraser, h.st.AWSShimEndpoint(h.t)), DB: h.db,
		Bucket: h.st.Bucket, Table: h.st.Table, KeyPrefix: h.cfg.Mapping.KeyPrefix, By: "tester", Why: "test"}
	if r := e.Erase(context.Background(), h.key(rel)); !r.Done() {
		h.t.Fatalf("erase %s: %+v", rel, r)
	}
}

// readHeartbeat reads host's heartbeat item; ok is false without one.
func (h *harness) readHeartbeat(host string) (hb offload.Heartbeat, ok bool) {
	h.t.Helper()
	out, err := h.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(h.st.Table),
		Key:            map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: offload.HeartbeatKey(host)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		h.t.Fatalf("heartbeat %s: %v", host, err)
	}
	if out.Item == nil {
		return hb, false
	}
	if hb, err = offload.HeartbeatFromItem(out.Item); err != nil {
		h.t.Fatalf("heartbeat %s: %v", host, err)
	}
	return hb, true
}

// acked reports whether every host named acknowledged rel's erasure.
func (h *harness) acked(rel string, hosts ...string) bool {
	h.t.Helper()
	e := h.ledgerItem(rel).Erasure
	if e == nil {
		h.t.Fatalf("%s: no erasure in the ledger", rel)
	}
	for _, host := range hosts {
		if !slices.Contains(e.AckedBy, host) {
			return false
		}
	}
	return true
}

// through waits until host's heartbeat names the key prefix and has acked
// erasures through rel's erased_at at least.
func (h *harness) waitThrough(host, rel string) {
	h.t.Helper()
	at := h.ledgerItem(rel).Erasure.At
	h.waitFor(host+"'s heartbeat through "+rel+"'s erasure", forgetWait, func() bool {
		hb, ok := h.readHeartbeat(host)
		return ok && hb.KeyPrefix == h.cfg.Mapping.KeyPrefix && !hb.ErasuresThrough.Before(at)
	})
}

// gone reports whether nothing (file or symlink) stands at path.
func gone(path string) bool {
	_, err := os.Lstat(path)
	return os.IsNotExist(err)
}

// TestForgetReachesEveryHost: two hosts of one site (one bucket, ledger and
// key prefix; their own folders and --host). Host a offloads and archives
// a photo; host b holds it in its hot cache. Once it is erased, within a
// few polls a's archive and b's cache no longer hold it, both hosts have
// acknowledged it, and both heartbeats say they are through it.
func TestForgetReachesEveryHost(t *testing.T) {
	t.Parallel()
	a := hostHarness(t, "a", "")
	b := hostHarness(t, "b", a.cfg.Mapping.KeyPrefix)
	data := randomBytes(30<<10, 21)
	a.write("2026/photo.jpg", data)
	agentA, _ := a.runDaemon(a.cfg)
	a.waitFor("the photo archived on a", time.Minute, func() bool { return a.archived("2026/photo.jpg") })

	dir := t.TempDir()
	b.cfg.Cache = hotcache.Config{Dir: filepath.Join(dir, "cache"), AccessLog: filepath.Join(dir, "access.log")}
	if err := os.MkdirAll(b.cfg.Cache.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.cfg.Cache.AccessLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	agentB, _ := b.runDaemon(b.cfg)
	b.waitFor("b's cache following the log", 10*time.Second, func() bool {
		s := agentB.Status().Cache
		return s != nil && s.Log.State == hotcache.StateFollowing
	})
	log, err := os.OpenFile(b.cfg.Cache.AccessLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := range 3 {
		fmt.Fprintf(log, "127.0.0.1 - - [30/Nov/2026:12:00:0%d +0000] \"GET /static/2026/photo.jpg HTTP/1.1\" 302 0 \"-\" \"test\"\n", i)
	}
	cached := filepath.Join(b.cfg.Cache.Dir, "static", "2026", "photo.jpg")
	b.waitFor("the photo in b's cache", 20*time.Second, func() bool {
		got, err := os.ReadFile(cached)
		return err == nil && string(got) == string(data)
	})

	a.erase("2026/photo.jpg")
	archived := filepath.Join(a.cfg.Archive, "2026", "photo.jpg")
	a.waitFor("a's archive and b's cache without the photo, both acknowledged", forgetWait, func() bool {
		return gone(archived) && gone(cached) && a.acked("2026/photo.jpg", a.cfg.Host, b.cfg.Host)
	})
	a.waitThrough(a.cfg.Host, "2026/photo.jpg")
	a.waitThrough(b.cfg.Host, "2026/photo.jpg")
	for host, ag := range map[string]*agent.Agent{a.cfg.Host: agentA, b.cfg.Host: agentB} {
		got := metricSamples(t, scrape(t, ag))
		if got["offload_erasures_forgotten_total"] != 1 || got["offload_erasure_poll_failures_total"] != 0 {
			t.Errorf("host %s: offload_erasures_forgotten_total %v, offload_erasure_poll_failures_total %v; want 1 and 0",
				host, got["offload_erasures_forgotten_total"], got["offload_erasure_poll_failures_total"])
		}
	}
}

// TestForgetAfterRestart: a host that was down when an original was erased
// forgets it when it starts again, resuming from the erasures_through its
// heartbeat kept (set by an earlier erasure it had acknowledged).
func TestForgetAfterRestart(t *testing.T) {
	t.Parallel()
	a := hostHarness(t, "a", "")
	a.write("old.jpg", randomBytes(1000, 22))
	a.write("photo.jpg", randomBytes(1000, 23))
	_, stop := a.runDaemon(a.cfg)
	a.waitFor("both archived", time.Minute, func() bool { return a.archived("old.jpg") && a.archived("photo.jpg") })
	a.erase("old.jpg")
	a.waitFor("old.jpg forgotten", forgetWait, func() bool { return !a.archived("old.jpg") && a.acked("old.jpg", a.cfg.Host) })
	a.waitThrough(a.cfg.Host, "old.jpg")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	before, _ := a.readHeartbeat(a.cfg.Host)

	a.erase("photo.jpg")
	if !a.archived("photo.jpg") || a.acked("photo.jpg", a.cfg.Host) {
		t.Fatal("photo.jpg forgotten while the agent was stopped")
	}
	a.runDaemon(a.cfg)
	a.waitFor("photo.jpg forgotten after the restart", forgetWait, func() bool {
		return !a.archived("photo.jpg") && a.acked("photo.jpg", a.cfg.Host)
	})
	a.waitThrough(a.cfg.Host, "photo.jpg")
	// Not after: erased_at is S3's clock in whole seconds, and both
	// erasures may fall in one.
	if after, _ := a.readHeartbeat(a.cfg.Host); after.ErasuresThrough.Before(before.ErasuresThrough) {
		t.Errorf("erasures_through %s after the restart; want %s or later", after.ErasuresThrough, before.ErasuresThrough)
	}
}

// TestForgetRemovesTheLinkNotItsTarget: where the archived copy was, a
// symlink now points at a file outside the archive; the erasure removes
// the link itself and leaves its target. A copy of the erased original
// back in the watch folder, and the host's upload record of the key, go
// too.
func TestForgetRemovesTheLinkNotItsTarget(t *testing.T) {
	t.Parallel()
	a := hostHarness(t, "a", "")
	data := randomBytes(1000, 24)
	a.write("photo.jpg", data)
	if err := a.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	target := filepath.Join(t.TempDir(), "target.jpg")
	if err := os.WriteFile(target, []byte("not the agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
	archived := filepath.Join(a.cfg.Archive, "photo.jpg")
	if err := os.Remove(archived); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, archived); err != nil {
		t.Fatal(err)
	}
	a.erase("photo.jpg")
	a.write("photo.jpg", data)
	// An upload record that fits the file: the sweeps keep it (and the
	// periodic one does not run within the test), so only the poller
	// removes it.
	agent.PlantUploadRecord(t, a.cfg.Watch, a.cfg.Host, a.key("photo.jpg"), "photo.jpg")
	a.cfg.Rescan = time.Hour

	a.runDaemon(a.cfg)
	watched := filepath.Join(a.cfg.Watch, "photo.jpg")
	a.waitFor("the link, the watched copy and the upload record gone, acknowledged", forgetWait, func() bool {
		return gone(archived) && gone(watched) && !agent.HasUploadRecord(a.cfg.Watch, a.cfg.Host, a.key("photo.jpg")) && a.acked("photo.jpg", a.cfg.Host)
	})
	if got, err := os.ReadFile(target); err != nil || string(got) != "not the agent's" {
		t.Errorf("the link's target: %q, %v; want it untouched", got, err)
	}
}

// TestErasurePollFailureIsCountedAndRetried: while DynamoDB is unreachable
// each erasure poll fails, is counted, and the daemon goes on polling; once
// it answers, the host offloads and forgets as usual.
func TestErasurePollFailureIsCountedAndRetried(t *testing.T) {
	t.Parallel()
	h := hostHarness(t, "a", "")
	proxy := h.st.Proxy(t, h.st.DynamoDBEndpoint)
	h.agentDB = h.st.DynamoDBAt(t, proxy.Endpoint)
	h.cfg.CallTimeout = 5 * time.Second
	proxy.SetEnabled(false)
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("two failed erasure polls", forgetWait, func() bool { return a.Stats().ErasurePollFailures.Load() >= 2 })
	if _, ok := h.readHeartbeat(h.cfg.Host); ok {
		t.Fatal("a heartbeat was written while DynamoDB was unreachable")
	}

	proxy.SetEnabled(true)
	h.write("photo.jpg", randomBytes(1000, 26))
	h.waitFor("photo.jpg archived", time.Minute, func() bool { return h.archived("photo.jpg") })
	h.erase("photo.jpg")
	h.waitFor("photo.jpg forgotten", forgetWait, func() bool { return !h.archived("photo.jpg") && h.acked("photo.jpg", h.cfg.Host) })
	h.waitThrough(h.cfg.Host, "photo.jpg")
	if got := metricSamples(t, scrape(t, a))["offload_erasure_poll_failures_total"]; got < 2 {
		t.Errorf("offload_erasure_poll_failures_total = %v; want at least 2", got)
	}
}

// TestForgetKeepsANewFileUnderAnErasedName: the poller removes a local
// copy under an erased name only when it is the erased original. Four
// names, each erased: the archived original of avatar.jpg goes, and a new
// avatar.jpg (other bytes) written to the watch folder afterwards stays;
// copy.jpg's bytes put back in the watch folder go; of a key never
// recorded (a tombstone without size or checksum), a file older than the
// erasure goes and one written after it stays; a folder in the archive
// under an erased name stays. Each erasure is
// acknowledged all the same (the host holds no copy of the erased
// original), and each kept file is logged once, not at every poll.
func TestForgetKeepsANewFileUnderAnErasedName(t *testing.T) {
	t.Parallel()
	h := hostHarness(t, "a", "")
	copyData := randomBytes(1400, 30)
	h.write("avatar.jpg", randomBytes(1500, 31))
	h.write("copy.jpg", copyData)
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	h.erase("avatar.jpg")
	h.erase("copy.jpg")
	fresh := randomBytes(1700, 32) // the new avatar: other bytes
	h.write("avatar.jpg", fresh)
	h.write("copy.jpg", copyData)
	h.write("never-old.jpg", randomBytes(900, 33))
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("never-old.jpg"), time.Now())
	// Stamped a minute back: the file written next is surely newer (the
	// kernel's file times may lag time.Now by a tick).
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("never-new.jpg"), time.Now().Add(-time.Minute))
	newer := randomBytes(800, 34)
	h.write("never-new.jpg", newer)
	// A folder in the archive under an erased name: not a copy; it is
	// kept and holds nothing back (its unlink used to fail every poll).
	folder := filepath.Join(h.cfg.Archive, "album.jpg")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("album.jpg"), time.Now())

	a, _ := h.runDaemon(h.cfg)
	names := []string{"avatar.jpg", "copy.jpg", "never-old.jpg", "never-new.jpg", "album.jpg"}
	h.waitFor("every erasure acknowledged", forgetWait, func() bool {
		for _, rel := range names {
			if !h.acked(rel, h.cfg.Host) {
				return false
			}
		}
		return a.Stats().Forgotten.Load() == int64(len(names))
	})
	// A few more polls: a kept file must not be logged at each.
	hb0, _ := h.readHeartbeat(h.cfg.Host)
	h.waitFor("three more polls", forgetWait, func() bool {
		hb, _ := h.readHeartbeat(h.cfg.Host)
		return hb.SeenAt.Sub(hb0.SeenAt) >= 3*testErasePoll
	})

	watched := func(rel string) string { return filepath.Join(h.cfg.Watch, rel) }
	for _, c := range []struct {
		rel  string
		want []byte // nil: removed
	}{
		{"avatar.jpg", fresh},
		{"copy.jpg", nil},
		{"never-old.jpg", nil},
		{"never-new.jpg", newer},
	} {
		got, err := os.ReadFile(watched(c.rel))
		switch {
		case c.want == nil && !os.IsNotExist(err):
			t.Errorf("%s in the watch folder: %d bytes, %v; want it removed (the erased original)", c.rel, len(got), err)
		case c.want != nil && (err != nil || string(got) != string(c.want)):
			t.Errorf("%s in the watch folder: %d bytes, %v; want the new file kept, %d bytes", c.rel, len(got), err, len(c.want))
		}
	}
	if h.archived("avatar.jpg") || h.archived("copy.jpg") {
		t.Errorf("an archived erased original is still there: avatar.jpg %v, copy.jpg %v", h.archived("avatar.jpg"), h.archived("copy.jpg"))
	}
	if fi, err := os.Lstat(folder); err != nil || !fi.IsDir() {
		t.Errorf("the folder under an erased name in the archive: %v; want it kept", err)
	}
	for _, p := range []string{watched("avatar.jpg"), watched("never-new.jpg"), folder} {
		if n := strings.Count(h.logs.String(), "kept "+p+": not the erased original"); n != 1 {
			t.Errorf("%s logged as kept %d times; want once", p, n)
		}
	}
}

// undeletable makes the files in dir impossible to unlink until restore
// is called or the test ends: as root, with the immutable flag on the
// folder (chattr +i; a folder's mode does not stop root); otherwise with
// the folder's mode. Skips the test where neither works.
func undeletable(t *testing.T, dir string) (restore func()) {
	t.Helper()
	var once sync.Once
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		restore = func() { once.Do(func() { os.Chmod(dir, 0o755) }) }
		t.Cleanup(restore)
		return restore
	}
	const immutable = 0x10 // FS_IMMUTABLE_FL, linux/fs.h
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|immutable))
	}
	if err != nil {
		t.Skipf("cannot make %s immutable (needs CAP_LINUX_IMMUTABLE and a file system with the flag): %v", dir, err)
	}
	restore = func() {
		once.Do(func() {
			f, err := os.Open(dir)
			if err == nil {
				err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
				f.Close()
			}
			if err != nil {
				t.Errorf("restore the flags of %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// TestForgetWaitsForTheHotCache: the erased original is in this host's hot
// cache and cannot be unlinked (its folder is made immutable). The erasure
// is not acknowledged: each poll fails and is counted, the file stays
// served; once the unlink works again, the next poll removes the file and
// acknowledges.
func TestForgetWaitsForTheHotCache(t *testing.T) {
	t.Parallel()
	h := hostHarness(t, "a", "")
	data := randomBytes(20<<10, 35)
	h.write("photo.jpg", data)
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	dir := t.TempDir()
	h.cfg.Cache = hotcache.Config{Dir: filepath.Join(dir, "cache"), AccessLog: filepath.Join(dir, "access.log")}
	if err := os.MkdirAll(h.cfg.Cache.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.cfg.Cache.AccessLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("the cache following the log", 10*time.Second, func() bool {
		s := a.Status().Cache
		return s != nil && s.Log.State == hotcache.StateFollowing
	})
	log, err := os.OpenFile(h.cfg.Cache.AccessLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := range 3 {
		fmt.Fprintf(log, "127.0.0.1 - - [30/Nov/2026:12:00:0%d +0000] \"GET /static/photo.jpg HTTP/1.1\" 302 0 \"-\" \"test\"\n", i)
	}
	cached := filepath.Join(h.cfg.Cache.Dir, "static", "photo.jpg")
	h.waitFor("the photo in the cache", 20*time.Second, func() bool {
		got, err := os.ReadFile(cached)
		return err == nil && string(got) == string(data)
	})

	writable := undeletable(t, filepath.Dir(cached))
	h.erase("photo.jpg")
	h.waitFor("two failed polls, or the acknowledgement", forgetWait, func() bool {
		return a.Stats().ErasurePollFailures.Load() >= 2 || h.acked("photo.jpg", h.cfg.Host)
	})
	if h.acked("photo.jpg", h.cfg.Host) {
		t.Fatal("acknowledged while the erased original is still in the hot cache")
	}
	if gone(cached) {
		t.Fatal("the cached file is gone from an immutable folder")
	}
	if h.archived("photo.jpg") {
		t.Errorf("the archived copy is still there")
	}

	writable()
	h.waitFor("the cached file gone and the erasure acknowledged", forgetWait, func() bool {
		return gone(cached) && h.acked("photo.jpg", h.cfg.Host)
	})
	if s := a.Status().Cache; s == nil || s.Files != 0 || s.EvictedErased != 1 {
		t.Errorf("cache stats %+v; want no file, 1 evicted as erased", s)
	}
}

// TestForgetKeepsAFileSwappedBeforeTheUnlink: the archived copy is judged
// the erased original, then, before the unlink, another file (other bytes,
// the same size) is renamed over it. The poller keeps it, says so, and
// acknowledges: the erased original is no longer on this host. Not
// parallel: the hook is the package's.
func TestForgetKeepsAFileSwappedBeforeTheUnlink(t *testing.T) {
	h := hostHarness(t, "a", "")
	h.write("photo.jpg", randomBytes(1000, 36))
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	archived := filepath.Join(h.cfg.Archive, "photo.jpg")
	other := randomBytes(1000, 37)
	agent.SimulateChangeBeforeForgetUnlink(t, func(p string) {
		if p != archived {
			return
		}
		tmp := p + ".new"
		if err := os.WriteFile(tmp, other, 0o644); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Error(err)
		}
	})
	h.erase("photo.jpg")
	a, _ := h.runDaemon(h.cfg)
	h.waitFor("the erasure acknowledged", forgetWait, func() bool {
		return h.acked("photo.jpg", h.cfg.Host) && a.Stats().Forgotten.Load() == 1
	})
	if got, err := os.ReadFile(archived); err != nil || string(got) != string(other) {
		t.Errorf("the file swapped in before the unlink: %d bytes, %v; want it kept", len(got), err)
	}
	if !strings.Contains(h.logs.String(), "kept "+archived+": not the erased original") {
		t.Errorf("no log line says the swapped file was kept")
	}
}

// TestForgetLooksAgainWhenEraseRunsAgain: erase stamps erased_at again on
// each run so that every host looks at the erasure again. A host that
// forgot it minutes ago (well within the index's overlap) must do so too:
// here the erased original is back in its watch folder (the back-end wrote
// the same bytes again), and a second run of erase must remove it, as the
// first did, rather than being skipped as already acknowledged.
func TestForgetLooksAgainWhenEraseRunsAgain(t *testing.T) {
	t.Parallel()
	a := hostHarness(t, "a", "")
	data := randomBytes(1200, 24)
	a.write("photo.jpg", data)
	a.runDaemon(a.cfg)
	a.waitFor("photo.jpg archived", time.Minute, func() bool { return a.archived("photo.jpg") })
	a.erase("photo.jpg")
	a.waitFor("photo.jpg forgotten", forgetWait, func() bool { return !a.archived("photo.jpg") && a.acked("photo.jpg", a.cfg.Host) })
	a.waitThrough(a.cfg.Host, "photo.jpg")

	a.write("photo.jpg", data)
	// The second run's stamp: S3's clock, in whole seconds, a second on.
	first := a.ledgerItem("photo.jpg").Erasure.At
	a.markErased(a.cfg.Mapping.KeyPrefix, a.key("photo.jpg"), first.Add(time.Second))
	back := filepath.Join(a.cfg.Watch, "photo.jpg")
	a.waitFor("the erased original back in the watch folder removed by the second erase", forgetWait, func() bool { return gone(back) })
}

// TestErasureSeenByThePollStopsItsUpload: an erasure marked while the
// daemon runs, after it read the erasures at start, reaches the uploads
// through the poller: a file written under the erased name after the
// poll acknowledged the erasure is refused before its upload (a conflict),
// and S3 holds nothing of the key.
func TestErasureSeenByThePollStopsItsUpload(t *testing.T) {
	t.Parallel()
	h := hostHarness(t, "a", "")
	h.write("first.jpg", randomBytes(1000, 40))
	a, stop := h.runDaemon(h.cfg)
	h.waitFor("first.jpg archived", forgetWait, func() bool { return h.archived("first.jpg") })
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("later.jpg"), time.Now())
	h.waitFor("the erasure of later.jpg acknowledged", forgetWait, func() bool { return h.acked("later.jpg", h.cfg.Host) })
	h.write("later.jpg", randomBytes(1100, 41))
	h.waitFor("later.jpg refused as a conflict", forgetWait, func() bool { return a.Stats().Conflicts.Load() > 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if h.objectExists("later.jpg") {
		t.Errorf("later.jpg, written under a name erased while the daemon ran, was uploaded")
	}
	if _, err := os.Stat(filepath.Join(h.cfg.Watch, "later.jpg")); err != nil {
		t.Errorf("later.jpg, a new file under the erased name, is gone from the watch folder: %v; want it kept", err)
	}
}

// TestForgetGoesOnWhileEveryErasureCannotBeRead: a host restarted with a
// watermark reads every erasure of its key prefix (for the uploads'
// check) and, each poll, those since its watermark (to forget them). The
// first read failing, here every Query without a lower bound answered
// 500 (a table throttled or slow under years of erasures), must not stop
// the second: the host still removes an erased original and acknowledges
// it, and uploads meanwhile read the ledger item first.
func TestForgetGoesOnWhileEveryErasureCannotBeRead(t *testing.T) {
	t.Parallel()
	h := hostHarness(t, "a", "")
	h.write("first.jpg", randomBytes(1000, 50))
	h.write("second.jpg", randomBytes(1100, 51))
	_, stop := h.runDaemon(h.cfg)
	h.waitFor("first.jpg and second.jpg archived", time.Minute, func() bool { return h.archived("first.jpg") && h.archived("second.jpg") })
	h.erase("first.jpg")
	h.waitFor("first.jpg forgotten", forgetWait, func() bool { return !h.archived("first.jpg") && h.acked("first.jpg", h.cfg.Host) })
	h.waitThrough(h.cfg.Host, "first.jpg")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	var refused atomic.Int64
	h.agentDB = h.st.DynamoDBAt(t, faultyS3(t, h.st.DynamoDBEndpoint, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".Query") {
			return false
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(":since")) {
			return false
		}
		refused.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"refused by the test"}`)
		return true
	}))
	a, _ := h.runDaemon(h.cfg)
	h.erase("second.jpg")
	h.waitFor("second.jpg forgotten while every erasure cannot be read", forgetWait, func() bool {
		return !h.archived("second.jpg") && h.acked("second.jpg", h.cfg.Host)
	})
	if refused.Load() == 0 {
		t.Errorf("no Query of every erasure was made (and refused)")
	}
	h.write("third.jpg", randomBytes(1200, 52))
	h.waitFor("third.jpg archived", time.Minute, func() bool { return h.archived("third.jpg") })
	if n := a.Stats().Conflicts.Load(); n != 0 {
		t.Errorf("%d conflicts; want none", n)
	}
}

// TestErasureBeforeAnUploadStopsIt: an erasure marked while the daemon
// runs, which its poller has not seen (the poll is an hour here), still
// stops the upload of a file under that name: the upload refreshes what
// it knows of the erasures first (here before every upload; by default at
// most once a second).
func TestErasureBeforeAnUploadStopsIt(t *testing.T) {
	t.Parallel()
	h := hostHarness(t, "a", "")
	h.cfg.ErasePoll = time.Hour
	h.write("first.jpg", randomBytes(1000, 50))
	a, stop := h.runDaemon(agent.RefreshErasuresBeforeEveryUpload(h.cfg))
	h.waitFor("first.jpg archived", forgetWait, func() bool { return h.archived("first.jpg") })
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("late.jpg"), time.Now())
	h.write("late.jpg", randomBytes(1100, 51))
	h.waitFor("late.jpg refused as a conflict", forgetWait, func() bool { return a.Stats().Conflicts.Load() > 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if h.objectExists("late.jpg") {
		t.Errorf("late.jpg, written under a name erased after the daemon's last poll, was uploaded")
	}
}
