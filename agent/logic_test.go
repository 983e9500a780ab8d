package agent

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

func TestIgnored(t *testing.T) {
	for rel, want := range map[string]bool{
		"cat.jpg": false, "a/b/cat.jpg": false, "cat.jpg.tmp": true, "up.part": true,
		".hidden": true, "a/.git/config": true, ".cache/x.jpg": true, "a/b.tmp/c.jpg": false,
		"tmp": false, "..jpg": true,
	} {
		if got := ignored(rel, DefaultIgnore); got != want {
			t.Errorf("ignored(%q) = %v; want %v", rel, got, want)
		}
	}
	if !ignored("a/raw.cr2", []string{"*.cr2"}) || ignored("a/raw.cr2", nil) {
		t.Errorf("custom globs not applied")
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	for attempt := range 40 {
		limit := backoffCap
		if attempt < 20 {
			limit = min(backoffCap, backoffBase<<attempt)
		}
		seen := map[time.Duration]bool{}
		for range 50 {
			d := backoff(attempt)
			if d <= 0 || d > limit {
				t.Fatalf("backoff(%d) = %s; want in (0, %s]", attempt, d, limit)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("backoff(%d) has no jitter", attempt)
		}
	}
}

func TestTickInterval(t *testing.T) {
	for quiet, want := range map[time.Duration]time.Duration{
		0: 20 * time.Millisecond, 200 * time.Millisecond: 50 * time.Millisecond, 2 * time.Second: 100 * time.Millisecond, time.Hour: 100 * time.Millisecond,
	} {
		if got := tickInterval(quiet); got != want {
			t.Errorf("tickInterval(%s) = %s; want %s", quiet, got, want)
		}
	}
}

func TestSettled(t *testing.T) {
	a := &Agent{cfg: Config{Quiet: 2 * time.Second}}
	now := time.Now()
	id := fileID{ino: 1, size: 10, mtime: now.Add(-time.Second), ctime: now.Add(-time.Second)}
	fresh := job{seen: id, since: now}
	published := job{seen: id, since: now, published: true}
	tests := []struct {
		name     string
		id       fileID
		j        job
		noWriter bool
		want     bool
	}{
		{"old ctime", fileID{ino: 1, ctime: now.Add(-3 * time.Second)}, job{}, false, true},
		{"recent ctime, not watched long", id, job{seen: id, since: now.Add(-time.Second)}, true, false},
		{"recent ctime, watched unchanged long enough", id, job{seen: id, since: now.Add(-2 * time.Second)}, false, true},
		{"future ctime (clock step), watched long enough", fileID{ino: 1, ctime: now.Add(time.Hour)}, job{seen: fileID{ino: 1, ctime: now.Add(time.Hour)}, since: now.Add(-3 * time.Second)}, false, true},
		{"changed since seen", id, job{seen: fileID{ino: 1, size: 9}, since: now.Add(-time.Minute)}, true, false},
		{"just written in place, no writer", id, fresh, true, false},
		{"just renamed in, no writer", id, published, true, true},
		{"just renamed in, writers unknown (no lease)", id, published, false, false},
		{"renamed in, then changed", fileID{ino: 1, size: 11, ctime: now}, published, true, false},
	}
	for _, tt := range tests {
		if got := a.settled(tt.id, tt.j, now, tt.noWriter); got != tt.want {
			t.Errorf("%s: settled = %v; want %v", tt.name, got, tt.want)
		}
	}
	// --quiet-renamed: a renamed file waits like any other.
	strict := &Agent{cfg: Config{Quiet: 2 * time.Second, QuietForRenamed: true}}
	if strict.settled(id, published, now, true) {
		t.Errorf("with QuietForRenamed, a just renamed file is settled")
	}
}

func TestContentType(t *testing.T) {
	for rel, want := range map[string]string{"a.jpg": "image/jpeg", "b/c.PNG": "image/png", "noext": "application/octet-stream", "x.unknownext": "application/octet-stream"} {
		if got := contentType(rel); got != want {
			t.Errorf("contentType(%q) = %q; want %q", rel, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	watch, archive, file := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	inside := filepath.Join(watch, "archive")
	os.Mkdir(inside, 0o755)
	good := Config{Watch: watch, Archive: archive, Bucket: "b", Table: "t"}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no bucket", func(c *Config) { c.Bucket = "" }, "bucket: required"},
		{"no table", func(c *Config) { c.Table = "" }, "table: required"},
		{"no watch", func(c *Config) { c.Watch = "" }, "watch: required"},
		{"missing watch", func(c *Config) { c.Watch = filepath.Join(watch, "nope") }, "watch:"},
		{"watch is a file", func(c *Config) { c.Watch = file }, "not a folder"},
		{"archive inside watch", func(c *Config) { c.Archive = inside }, "must not contain one another"},
		{"watch inside archive", func(c *Config) { c.Watch, c.Archive = inside, watch }, "must not contain one another"},
		{"same folder", func(c *Config) { c.Archive = watch }, "must not contain one another"},
		{"no archive", func(c *Config) { c.Archive = "" }, "archive: required"},
		{"bad after", func(c *Config) { c.After = "move" }, "after:"},
		{"bad glob", func(c *Config) { c.Ignore = []string{"[x"} }, "bad glob"},
		{"tiny parts", func(c *Config) { c.PartSize = 1 << 20 }, "part size"},
		{"bad key prefix", func(c *Config) { c.Mapping.KeyPrefix = "a//" }, "key prefix"},
		{"negative quiet", func(c *Config) { c.Quiet = -time.Second }, "quiet"},
		{"negative bwlimit", func(c *Config) { c.BandwidthLimit = -1 }, "bwlimit: must not be negative"},
		{"bwlimit too low for the parts in flight", func(c *Config) { c.BandwidthLimit = 100 << 10 }, "bwlimit: at 102400 bytes/s, the uploads in flight (up to the memory budget, 8 parts of 8 MiB) take 10m55s to send"},
		{"no workers", func(c *Config) { c.Workers = -1 }, "workers"},
		{"archive storage class", func(c *Config) { c.StorageClass = "GLACIER" }, "storage class: GLACIER (S3 Glacier Flexible Retrieval) must be restored before a GET"},
		{"unknown storage class", func(c *Config) { c.StorageClass = "glacier_ir" }, `storage class: "glacier_ir" is not an S3 storage class`},
	}
	for _, tt := range tests {
		c := good
		tt.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v; want an error containing %q", tt.name, err, tt.want)
		}
	}
	for _, after := range []After{AfterDelete, AfterKeep} {
		c := good
		c.After, c.Archive = after, ""
		if err := c.Validate(); err != nil {
			t.Errorf("after %s without archive: %v", after, err)
		}
	}
}

// TestCheckStorageClass: the classes whose objects a presigned GET reads at
// once are taken; those that need a restore first, those of other kinds of
// bucket, and anything not spelled as S3 spells a class are refused, each
// with the reason.
func TestCheckStorageClass(t *testing.T) {
	for _, ok := range []string{"", "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"} {
		if err := CheckStorageClass(ok); err != nil {
			t.Errorf("CheckStorageClass(%q) = %v; want nil", ok, err)
		}
	}
	for class, want := range map[string]string{
		"GLACIER":         "must be restored before a GET",
		"DEEP_ARCHIVE":    "must be restored before a GET",
		"EXPRESS_ONEZONE": "not in a general purpose bucket",
		"OUTPOSTS":        "not in a general purpose bucket",
		"SNOW":            "not in a general purpose bucket",
		"FSX_OPENZFS":     "not in a general purpose bucket",
		"standard":        "not an S3 storage class",
		"GLACIER-IR":      "not an S3 storage class",
		" STANDARD":       "not an S3 storage class",
	} {
		if err := CheckStorageClass(class); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckStorageClass(%q) = %v; want an error saying %q", class, err, want)
		}
	}
}

// TestValidateCapsConcurrencyWorkersAndMemory: concurrency and workers are
// refused past 1,024 and accepted at it, and the memory budget (part size ×
// concurrency) is accepted up to the machine's memory and refused one part
// beyond it; a configuration at every limit at once builds an agent
// (nothing is allocated up front).
func TestValidateCapsConcurrencyWorkersAndMemory(t *testing.T) {
	ram := physicalMemory()
	if ram == 0 {
		t.Fatal("sysinfo reports no memory; the budget check cannot be tested here")
	}
	// The most parts of at least S3's minimum that fit in the memory, and
	// the largest part size for that many.
	parts := min(maxConcurrency, int(ram/minPartSize))
	fits := int64(ram / uint64(parts))
	good := Config{Watch: t.TempDir(), Archive: t.TempDir(), Bucket: "b", Table: "t"}.WithDefaults()
	for _, tt := range []struct {
		name   string
		change func(*Config)
		want   string // "" when accepted
	}{
		{"1,024 workers", func(c *Config) { c.Workers = 1024 }, ""},
		{"1,025 workers", func(c *Config) { c.Workers = 1025 }, "workers: 1025 is outside 1 to 1024"},
		{"1,024 parts of 5 MiB", func(c *Config) { c.Concurrency, c.PartSize = 1024, minPartSize }, ""},
		{"1,025 parts", func(c *Config) { c.Concurrency, c.PartSize = 1025, minPartSize }, "concurrency: 1025 is outside 1 to 1024"},
		{"no parts", func(c *Config) { c.Concurrency = 0 }, "concurrency: 0 is outside 1 to 1024"},
		{"99999999999 parts", func(c *Config) { c.Concurrency = 99999999999 }, "concurrency: 99999999999 is outside 1 to 1024"},
		{"a budget of the machine's memory", func(c *Config) { c.Concurrency, c.PartSize = parts, fits }, ""},
		{"a budget one part beyond it", func(c *Config) { c.Concurrency, c.PartSize = parts, fits+1 },
			fmt.Sprintf("part size × concurrency: a memory budget of %d MiB for upload buffers is more than this machine's %d MiB of memory", (fits+1)*int64(parts)>>20, ram>>20)},
		{"5 GiB parts, 1,024 of them", func(c *Config) { c.Concurrency, c.PartSize = 1024, maxPartSize }, "part size × concurrency"},
	} {
		c := good
		tt.change(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v; want it accepted", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Validate() = %v; want an error containing %q", tt.name, err, tt.want)
		}
	}
	c := good
	c.Workers, c.Concurrency, c.PartSize = maxWorkers, parts, fits
	a, err := New(c, s3.New(s3.Options{Region: "us-east-1"}), dynamodb.New(dynamodb.Options{Region: "us-east-1"}))
	if err != nil {
		t.Fatalf("every limit at once (%d workers, %d parts of %d MiB): New: %v", c.Workers, c.Concurrency, c.PartSize>>20, err)
	}
	a.Close()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFinishLocal(t *testing.T) {
	watch, archive := t.TempDir(), t.TempDir()
	cfg := Config{Watch: watch, Archive: archive, After: AfterArchive}
	idOfPath := func(p string) fileID {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := idOf(fi)
		return id
	}
	src := filepath.Join(watch, "a/b/c.jpg")
	writeFile(t, src, "one")
	if err := finishLocal(cfg, "a/b/c.jpg", idOfPath(src), syncNow, noCheck); err != nil {
		t.Fatalf("finishLocal: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(archive, "a/b/c.jpg")); err != nil || string(b) != "one" {
		t.Errorf("archived = %q, %v", b, err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source still there: %v", err)
	}

	// The same bytes already archived (a crash after archiving): the
	// watch-folder copy is redundant and goes.
	writeFile(t, src, "one")
	if err := finishLocal(cfg, "a/b/c.jpg", idOfPath(src), syncNow, noCheck); err != nil {
		t.Fatalf("finishLocal onto an identical copy: %v", err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("redundant source still there: %v", err)
	}

	// Different bytes in the archive under the name: nothing is replaced,
	// and the file is back under its name.
	writeFile(t, src, "two")
	if err := finishLocal(cfg, "a/b/c.jpg", idOfPath(src), syncNow, noCheck); !errors.Is(err, errArchiveTaken) {
		t.Fatalf("finishLocal onto other bytes = %v; want errArchiveTaken", err)
	}
	for p, want := range map[string]string{filepath.Join(archive, "a/b/c.jpg"): "one", src: "two"} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s = %q; want %q", p, b, want)
		}
	}

	// A new file renamed over the name after the upload was proven: it is
	// not the proven version, so it stays where it is.
	proven := idOfPath(src)
	writeFile(t, src+".new", "three")
	os.Rename(src+".new", src)
	for _, after := range []After{AfterArchive, AfterDelete} {
		cfg.After = after
		if err := finishLocal(cfg, "a/b/c.jpg", proven, syncNow, noCheck); !errors.Is(err, errChanged) {
			t.Fatalf("after %s: finishLocal of a replaced file = %v; want errChanged", after, err)
		}
		if b, _ := os.ReadFile(src); string(b) != "three" {
			t.Errorf("after %s: the new file is %q; want it kept as three", after, b)
		}
	}
}

func TestRestoreClaimed(t *testing.T) {
	watch := t.TempDir()
	writeFile(t, filepath.Join(watch, claimDir, "x/y.jpg"), "claimed")
	writeFile(t, filepath.Join(watch, claimDir, "taken.jpg"), "old")
	writeFile(t, filepath.Join(watch, "taken.jpg"), "new")
	n, err := restoreClaimed(watch)
	if n != 1 || err == nil {
		t.Errorf("restoreClaimed = %d, %v; want 1 and an error for the taken name", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(watch, "x/y.jpg")); string(b) != "claimed" {
		t.Errorf("x/y.jpg = %q; want it put back", b)
	}
	if b, _ := os.ReadFile(filepath.Join(watch, "taken.jpg")); string(b) != "new" {
		t.Errorf("taken.jpg = %q; an existing file was replaced", b)
	}
}

// TestArchiveAcrossFileSystems archives into /dev/shm (tmpfs) from a watch
// folder on another file system, so the rename fails with EXDEV and the
// copy path runs for real. What shows it ran: the source's inode was
// unlinked (a rename would keep it linked, under the new name) and the
// archived file is another inode, on the archive's device, with the
// source's bytes, mode and mtime. Without a /dev/shm on another file system
// than the test's temporary folder it skips, or fails under
// OFFLOAD_REQUIRE_STACK=1.
func TestArchiveAcrossFileSystems(t *testing.T) {
	watch := t.TempDir()
	shm, err := os.MkdirTemp("/dev/shm", "offload-archive-")
	if err != nil {
		stacktest.Unavailable(t, "no /dev/shm to archive across file systems: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	var watchFS, archiveFS unix.Stat_t
	if err := unix.Stat(watch, &watchFS); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(shm, &archiveFS); err != nil {
		t.Fatal(err)
	}
	if watchFS.Dev == archiveFS.Dev {
		stacktest.Unavailable(t, "/dev/shm and the temporary folder %s are one file system (device %d): no rename between them fails", watch, watchFS.Dev)
	}

	// 1.5 MB of bytes that do not repeat, past sameContent's 1 MiB chunk,
	// so a copy that drops, repeats or reorders any part differs.
	want := make([]byte, 1500000)
	rand.NewChaCha8([32]byte{1}).Read(want)
	src := filepath.Join(watch, "x/y.jpg")
	writeFile(t, src, string(want))
	mtime := time.Date(2024, 2, 29, 12, 0, 0, 123456789, time.UTC) // not now: a copy must carry it over
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(src)
	id, _ := idOf(fi)
	original, err := os.Open(src) // held open to see what becomes of the inode
	if err != nil {
		t.Fatal(err)
	}
	defer original.Close()

	var synced []string
	durable := func(dirs ...string) { synced = append(synced, dirs...) }
	if err := finishLocal(Config{Watch: watch, Archive: shm, After: AfterArchive}, "x/y.jpg", id, durable, noCheck); err != nil {
		t.Fatalf("finishLocal across file systems: %v", err)
	}

	dst := filepath.Join(shm, "x/y.jpg")
	var was, archived unix.Stat_t
	if err := unix.Fstat(int(original.Fd()), &was); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(dst, &archived); err != nil {
		t.Fatalf("archived copy: %v", err)
	}
	if was.Nlink != 0 {
		t.Errorf("the source's inode has %d links after archiving; want 0 (copied, then unlinked)", was.Nlink)
	}
	if archived.Dev != archiveFS.Dev || archived.Dev == was.Dev {
		t.Errorf("archived copy on device %d, the source on %d, the archive is %d; want the archive's", archived.Dev, was.Dev, archiveFS.Dev)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("archived copy: %d bytes, %v; want the original's %d bytes exactly", len(got), err, len(want))
	}
	if gi, err := os.Lstat(dst); err != nil || gi.Mode() != 0o640 || !gi.ModTime().Equal(mtime) {
		t.Errorf("archived copy: %v, %v; want a regular file, mode 0640, mtime %s", gi, err, mtime)
	}
	for _, p := range []string{src, filepath.Join(watch, claimDir, "x/y.jpg")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after archiving: %v", p, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(shm, "x"))
	if len(entries) != 1 {
		t.Errorf("temporary copies left in the archive: %v", entries)
	}
	if !slices.Contains(synced, filepath.Dir(dst)) {
		t.Errorf("folders made durable %v; want the archive's %s among them", synced, filepath.Dir(dst))
	}
}

func TestOpenLocalRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "real.jpg"), "x")
	os.Symlink(filepath.Join(dir, "real.jpg"), filepath.Join(dir, "link.jpg"))
	os.Mkdir(filepath.Join(dir, "folder.jpg"), 0o755)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, rel := range []string{"link.jpg", "folder.jpg"} {
		if f, _, err := openLocal(root, rel); !errors.Is(err, errNotRegular) {
			if f != nil {
				f.Close()
			}
			t.Errorf("openLocal(%q) = %v; want errNotRegular", rel, err)
		}
	}
	f, id, err := openLocal(root, "real.jpg")
	if err != nil || id.size != 1 {
		t.Fatalf("openLocal(real.jpg) = %+v, %v", id, err)
	}
	defer f.Close()
	if err := stillSame(root, "real.jpg", f, id); err != nil {
		t.Errorf("stillSame on an untouched file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "real.jpg"), []byte("xy"), 0o644)
	if err := stillSame(root, "real.jpg", f, id); !errors.Is(err, errChanged) {
		t.Errorf("stillSame after a write = %v; want errChanged", err)
	}
}

// TestStillSameSeesARewriteWithItsMtimePutBack: the file is rewritten in
// place with other bytes of the same size and its mtime is put back, as
// touch -d does: size, mtime and inode are the same, only the ctime says
// it changed.
func TestStillSameSeesARewriteWithItsMtimePutBack(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "photo.jpg")
	writeFile(t, p, "first bytes")
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, id, err := openLocal(root, "photo.jpg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("other bytes"), 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.Chtimes(p, id.mtime, id.mtime); err != nil {
		t.Fatal(err)
	}
	if now, _ := idOf(mustLstat(t, p)); !now.sameVersion(id) {
		t.Fatalf("size, mtime or inode changed (%+v, was %+v): the test needs them unchanged", now, id)
	}
	if err := stillSame(root, "photo.jpg", f, id); !errors.Is(err, errChanged) {
		t.Errorf("stillSame after a same-size rewrite with the mtime put back = %v; want errChanged", err)
	}
}

func mustLstat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// noCheck is finishLocal's afterClaim when no lease is held.
func noCheck() error { return nil }

// syncNow fsyncs folders at once, for finishLocal without a dirSyncer.
func syncNow(dirs ...string) {
	for _, d := range dirs {
		_ = syncDir(d)
	}
}

// TestOpenForWritingOnSharedFileSystems: where a lease says nothing about
// other hosts' writers (NFS, SMB, EFS, FUSE...), EAGAIN must not be read as
// "a writer has it": the quiet period decides (sure is false). On a local
// file system EAGAIN still means a writer.
func TestOpenForWritingOnSharedFileSystems(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	oldType, oldLease := fsTypeOf, setLease
	defer func() { fsTypeOf, setLease = oldType, oldLease }()
	const ext4 = 0xef53
	for _, tt := range []struct {
		name          string
		fsType        int64
		lease         error
		writing, sure bool
	}{
		{"nfs, no delegation", unix.NFS_SUPER_MAGIC, unix.EAGAIN, false, false},
		{"smb2", unix.SMB2_SUPER_MAGIC, unix.EAGAIN, false, false},
		{"cifs", unix.CIFS_SUPER_MAGIC, nil, false, false},
		{"fuse", unix.FUSE_SUPER_MAGIC, nil, false, false},
		{"ext4, a writer", ext4, unix.EAGAIN, true, true},
		{"ext4, no writer", ext4, nil, false, true},
		{"ext4, no CAP_LEASE", ext4, unix.EACCES, false, false},
	} {
		fsTypeOf = func(int) (int64, error) { return tt.fsType, nil }
		setLease = func(int, int) error { return tt.lease }
		if w, s := openForWriting(f); w != tt.writing || s != tt.sure {
			t.Errorf("%s: writing, sure = %v, %v; want %v, %v", tt.name, w, s, tt.writing, tt.sure)
		}
	}
}
