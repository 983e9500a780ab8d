package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	tests := []struct {
		name string
		id   fileID
		j    job
		want bool
	}{
		{"old ctime", fileID{ino: 1, ctime: now.Add(-3 * time.Second)}, job{}, true},
		{"recent ctime, not watched long", id, job{seen: id, since: now.Add(-time.Second)}, false},
		{"recent ctime, watched unchanged long enough", id, job{seen: id, since: now.Add(-2 * time.Second)}, true},
		{"future ctime (clock step), watched long enough", fileID{ino: 1, ctime: now.Add(time.Hour)}, job{seen: fileID{ino: 1, ctime: now.Add(time.Hour)}, since: now.Add(-3 * time.Second)}, true},
		{"changed since seen", id, job{seen: fileID{ino: 1, size: 9}, since: now.Add(-time.Minute)}, false},
	}
	for _, tt := range tests {
		if got := a.settled(tt.id, tt.j, now); got != tt.want {
			t.Errorf("%s: settled = %v; want %v", tt.name, got, tt.want)
		}
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
		{"no workers", func(c *Config) { c.Workers = -1 }, "workers"},
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

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestArchiveFile(t *testing.T) {
	watch, archive := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(watch, "a/b/c.jpg"), "one")
	if err := archiveFile(watch, archive, "a/b/c.jpg"); err != nil {
		t.Fatalf("archiveFile: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(archive, "a/b/c.jpg")); err != nil || string(b) != "one" {
		t.Errorf("archived = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(watch, "a/b/c.jpg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source still there: %v", err)
	}

	// The same bytes already archived (a crash after the rename): the
	// watch-folder copy is redundant and goes.
	writeFile(t, filepath.Join(watch, "a/b/c.jpg"), "one")
	if err := archiveFile(watch, archive, "a/b/c.jpg"); err != nil {
		t.Fatalf("archiveFile onto an identical copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(watch, "a/b/c.jpg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("redundant source still there: %v", err)
	}

	// Different bytes in the archive under the name: nothing is replaced.
	writeFile(t, filepath.Join(watch, "a/b/c.jpg"), "two")
	if err := archiveFile(watch, archive, "a/b/c.jpg"); !errors.Is(err, errArchiveTaken) {
		t.Fatalf("archiveFile onto other bytes = %v; want errArchiveTaken", err)
	}
	for path, want := range map[string]string{filepath.Join(archive, "a/b/c.jpg"): "one", filepath.Join(watch, "a/b/c.jpg"): "two"} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Errorf("%s = %q; want %q", path, b, want)
		}
	}
}

// TestArchiveAcrossFileSystems uses /dev/shm (tmpfs) as the archive, so the
// rename fails with EXDEV and the copy path runs for real.
func TestArchiveAcrossFileSystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "offload-archive-")
	if err != nil {
		t.Skipf("no /dev/shm to archive across file systems: %v", err)
	}
	defer os.RemoveAll(shm)
	watch := t.TempDir()
	writeFile(t, filepath.Join(watch, "x/y.jpg"), strings.Repeat("photo", 300000))
	if err := archiveFile(watch, shm, "x/y.jpg"); err != nil {
		t.Fatalf("archiveFile across file systems: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(shm, "x/y.jpg")); err != nil || len(b) != 1500000 {
		t.Errorf("archived copy: %d bytes, %v", len(b), err)
	}
	if _, err := os.Stat(filepath.Join(watch, "x/y.jpg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source still there: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(shm, "x"))
	if len(entries) != 1 {
		t.Errorf("temporary copies left in the archive: %v", entries)
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
