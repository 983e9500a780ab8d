package setup

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// init plans the shared folder's fixes by walking it, then applies them: a
// local user who can write in the watch folder (the back-end's user) swaps
// a planned folder and a planned file for symbolic links to files outside
// between the two. init, as root, must change nothing outside the folder:
// no group, mode or default ACL through a link, in the last component or
// in one before it.
func TestSharedFolderFixesFollowNoSwappedLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chgrp)")
	}
	const gid = 54321
	root := t.TempDir()
	watch := filepath.Join(root, "watch")
	outside := filepath.Join(root, "etc")
	for _, d := range []string{watch, filepath.Join(watch, "a"), outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(watch, "a", "f"), filepath.Join(watch, "g"), filepath.Join(outside, "f"), filepath.Join(outside, "shadow")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := planner{c: Config{User: "offload"}, id: ids{gid: gid}}
	fixes, err := p.folderFixes(watch)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixes) != 4 {
		t.Fatalf("want 4 fixes (watch, a, a/f, g), got %d", len(fixes))
	}
	// The swap, between the plan and the apply.
	if err := os.RemoveAll(filepath.Join(watch, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(watch, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(watch, "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(watch, "g")); err != nil {
		t.Fatal(err)
	}
	applyErr := applyFixes(watch, fixes, gid)
	t.Logf("apply: %v", applyErr)

	for _, f := range []string{outside, filepath.Join(outside, "f"), filepath.Join(outside, "shadow")} {
		var st syscall.Stat_t
		if err := syscall.Stat(f, &st); err != nil {
			t.Fatal(err)
		}
		want := uint32(0o600)
		if f == outside {
			want = 0o755
		}
		if st.Gid == gid || st.Mode&0o7777 != want {
			t.Errorf("init changed %s outside the watch folder through a link: gid %d, mode %04o (want gid 0, mode %04o)", f, st.Gid, st.Mode&0o7777, want)
		}
	}
	if a, err := readACL(outside, xattrDefaultACL); err != nil || a != nil {
		t.Errorf("init set a default ACL on %s outside the watch folder through a link: %v %v", outside, a, err)
	}
	// The watch folder itself, which no one swapped, is fixed.
	var st syscall.Stat_t
	if err := syscall.Stat(watch, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid != gid || st.Mode&syscall.S_ISGID == 0 {
		t.Errorf("watch folder not fixed: gid %d mode %04o", st.Gid, st.Mode&0o7777)
	}
}

// The cache folder: planned as a folder, swapped for a link to a folder
// outside before the apply. init must not change the folder the link
// points to (it made it 0777: the link's own mode, or-ed with 0755).
func TestCacheFolderFollowsNoSwappedLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	root := t.TempDir()
	cache, outside := filepath.Join(root, "cache"), filepath.Join(root, "etc")
	for _, d := range []string{cache, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := planner{c: Config{Root: root, CacheDir: "/cache", User: "offload"}, id: ids{uid: 54321, gid: 54321}}
	it := p.cacheFolder()
	if !it.changed || it.apply == nil {
		t.Fatalf("want a planned change, got %+v", it)
	}
	if err := os.Remove(cache); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, cache); err != nil {
		t.Fatal(err)
	}
	t.Logf("apply: %v", it.apply())
	var st syscall.Stat_t
	if err := syscall.Stat(outside, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Mode&0o7777 != 0o700 {
		t.Errorf("init changed %s through a link at the cache folder: uid %d, mode %04o (want uid 0, mode 0700)", outside, st.Uid, st.Mode&0o7777)
	}
}

// A hard link in the watch folder to a file outside it (a user may link a
// file they can read and write but do not own under
// fs.protected_hardlinks=1; any file on the same file system under 0):
// "chgrp -R" and "chmod -R g+rwX" on the folder would hand that file to
// the agent's group. init leaves a file with more than one link alone.
func TestSharedFolderLeavesHardLinksAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chgrp)")
	}
	const gid = 54321
	root := t.TempDir()
	watch, outside := filepath.Join(root, "watch"), filepath.Join(root, "shadow")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(watch, "upload.jpg")); err != nil {
		t.Fatal(err)
	}
	p := planner{c: Config{User: "offload"}, id: ids{gid: gid}}
	fixes, err := p.folderFixes(watch)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyFixes(watch, fixes, gid); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(outside, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid == gid || st.Mode&0o7777 != 0o600 {
		t.Errorf("init changed %s through a hard link in the watch folder: gid %d, mode %04o (want gid 0, mode 0600)", outside, st.Gid, st.Mode&0o7777)
	}
}

// No value init writes may carry a second line (or a blank, a quote, a
// specifier) into agent.env or a drop-in: each is refused before anything
// is written.
func TestValidateRefusesSmuggledLines(t *testing.T) {
	good := Config{Watch: "/srv/www/static", Archive: "/srv/www/archive", CacheDir: "/var/cache/offload", User: "offload", WebGroup: "www-data",
		Bucket: "offload-bucket", Table: "offload-Ledger", Region: "eu-west-1", ResolverBase: "https://x.lambda-url.eu-west-1.on.aws"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, evil := range []string{"\nAWS_SECRET_ACCESS_KEY=x", "\rX=1", " x", "%n", "\\\nX=1", "\"", "$X", "\x00"} {
		for name, set := range map[string]func(*Config){
			"watch":         func(c *Config) { c.Watch += evil },
			"archive":       func(c *Config) { c.Archive += evil },
			"cache-dir":     func(c *Config) { c.CacheDir += evil },
			"bucket":        func(c *Config) { c.Bucket += evil },
			"table":         func(c *Config) { c.Table += evil },
			"region":        func(c *Config) { c.Region += evil },
			"resolver-base": func(c *Config) { c.ResolverBase += evil },
			"access-log":    func(c *Config) { c.AccessLog = "/var/log/lighttpd/access.log" + evil },
		} {
			c := good
			set(&c)
			if err := c.Validate(); err == nil {
				t.Errorf("%s with %q: accepted", name, evil)
			}
		}
	}
}

// The plan may have been shown a file outside through a folder swapped
// for a link while it walked (its inode, one link then); if a hard link to
// that inode is put in the tree before the apply, the inode check alone
// would pass. A file with more than one link at the apply is left alone.
func TestApplyLeavesAFileThatGainedALinkAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chgrp)")
	}
	const gid = 54321
	root := t.TempDir()
	watch, outside := filepath.Join(root, "watch"), filepath.Join(root, "shadow")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := planner{c: Config{User: "offload"}, id: ids{gid: gid}}
	fixes, err := p.folderFixes(watch)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(watch, "f"), outside); err != nil {
		t.Fatal(err)
	}
	if err := applyFixes(watch, fixes, gid); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(outside, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid == gid || st.Mode&0o7777 != 0o600 {
		t.Errorf("init changed a file with a second link outside: gid %d, mode %04o (want gid 0, mode 0600)", st.Gid, st.Mode&0o7777)
	}
}
