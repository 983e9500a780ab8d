package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// Installed is the package as installPackage left it on this machine.
type Installed struct {
	Deb       string // the .deb file
	Version   string // the package's version (dpkg-query ${Version})
	GoVersion string // the binary's module version
	Agent     string // /usr/bin/offload-agent
	Unit      string // /lib/systemd/system/offload-agent.service
	EnvFile   string // /etc/offload/agent.env
	Lighttpd  string // /etc/lighttpd/conf-available/50-offload.conf
	Share     string // /usr/share/offload: lighttpd/, nginx/, apache/
}

// Paths of the installed package.
const (
	agentPath    = "/usr/bin/offload-agent"
	unitPath     = "/lib/systemd/system/offload-agent.service"
	envPath      = "/etc/offload/agent.env"
	lighttpdPath = "/etc/lighttpd/conf-available/50-offload.conf"
	sharePath    = "/usr/share/offload"
	// The systemd drop-ins "offload-agent init" writes; purge removes them.
	agentDropIn    = "/etc/systemd/system/offload-agent.service.d/offload.conf"
	pruneDropIn    = "/etc/systemd/system/offload-prune.service.d/offload.conf"
	lighttpdDropIn = "/etc/systemd/system/lighttpd.service.d/offload.conf"
)

// requirePackaging ends the test unless it can build and install Debian
// packages here: root, dpkg-deb and lintian (which infra/local/stack
// installs with the web servers). A skip, or a failure with
// OFFLOAD_REQUIRE_STACK=1.
func requirePackaging(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		stacktest.Unavailable(t, "installing the package needs root (dpkg -i)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "lintian"} {
		if _, err := exec.LookPath(tool); err != nil {
			stacktest.Unavailable(t, "%s is not installed (infra/local/stack installs lintian with apt; dpkg is Debian's): %v", tool, err)
		}
	}
}

// built is the package this test binary built, once for all its tests
// (a build takes about ten seconds); TestMain removes it.
var built struct {
	once sync.Once
	dir  string
	deb  deb
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildPackage builds the package from this checkout, once per test binary.
func buildPackage(t *testing.T) deb {
	t.Helper()
	repo := stacktest.RepoRoot(t)
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "offload-package-test-"); built.err != nil {
			return
		}
		built.deb, built.err = build(context.Background(), options{Repo: repo, OutDir: built.dir})
	})
	if built.err != nil {
		t.Fatalf("build the package: %v", built.err)
	}
	return built.deb
}

// installPackage builds the package, installs it on this machine with
// dpkg -i, and purges it when the test ends, pass or fail. It is the first
// step of any test that needs the installed package (init, doctor, the
// agent as the unit runs it, lighttpd with the package's snippet), which
// ends with purgeLeavesNothing.
func installPackage(t *testing.T) *Installed {
	t.Helper()
	requirePackaging(t)
	if installedVersion(t) != "" {
		t.Logf("the offload package is installed already (a test that did not finish?): purging it first")
		dpkg(t, "--purge", packageName)
	}
	d := buildPackage(t)
	t.Cleanup(func() {
		if installedVersion(t) != "" {
			if out, err := exec.Command("dpkg", "--purge", packageName).CombinedOutput(); err != nil {
				t.Errorf("clean-up: dpkg --purge %s: %v\n%s", packageName, err, out)
			}
		}
	})
	dpkg(t, "-i", d.Path)
	return &Installed{
		Deb: d.Path, Version: installedVersion(t), GoVersion: d.GoVersion,
		Agent: agentPath, Unit: unitPath, EnvFile: envPath, Lighttpd: lighttpdPath, Share: sharePath,
	}
}

// dpkg runs dpkg with args, non-interactively, and fails the test if it fails.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("dpkg", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// installedVersion is the installed version of the package, "" when it
// is not installed (or only its configuration files are left).
func installedVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", packageName).Output()
	if err != nil {
		return "" // dpkg-query exits 1 for a package it has never seen
	}
	status, version, _ := strings.Cut(string(out), " ")
	if status == "not-installed" || status == "config-files" {
		if status == "config-files" {
			t.Logf("only the configuration files of %s are left", packageName)
		}
		return ""
	}
	return version
}

// TestPackageLintian: lintian, Debian's own checker, finds no error and no
// warning in the package; the few warnings that are intended are
// overridden in debian/offload.lintian-overrides, each with its reason.
func TestPackageLintian(t *testing.T) {
	requirePackaging(t)
	d := buildPackage(t)
	// --fail-on: a warning fails too. (--show-overrides would make the
	// overridden tags fail it, so they are not shown.)
	out, err := exec.Command("lintian", "--pedantic", "--display-info", "--fail-on", "error,warning", d.Path).CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(d.Path), out)
	if err != nil {
		t.Errorf("lintian: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	overrides, err := debian.ReadFile("debian/offload.lintian-overrides")
	if err != nil {
		t.Fatal(err)
	}
	commented := false
	for i, line := range strings.Split(string(overrides), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			commented = true
		case strings.TrimSpace(line) == "":
			commented = false
		default:
			if !commented {
				t.Errorf("debian/offload.lintian-overrides:%d: %q has no comment saying why", i+1, line)
			}
			commented = false
		}
	}
}

// TestPackageInstallUpgradePurge installs the package on this machine
// (which runs no systemd: the maintainer scripts' guards are exercised),
// checks its files, modes and user, upgrades it over itself with an edited
// agent.env, and purges it: nothing the package listed is left, nor
// /etc/offload, init's drop-ins or lighttpd's conf-enabled link.
func TestPackageInstallUpgradePurge(t *testing.T) {
	p := installPackage(t)

	// The files, their owners and modes.
	offload, err := user.Lookup("offload")
	if err != nil {
		t.Fatalf("the offload user: %v", err)
	}
	group, err := user.LookupGroup("offload")
	if err != nil {
		t.Fatalf("the offload group: %v", err)
	}
	uid, _ := strconv.Atoi(offload.Uid)
	gid, _ := strconv.Atoi(group.Gid)
	// Debian's system accounts: 100-999 (adduser.conf, login.defs), as
	// systemd-sysusers and adduser --system allocate them.
	if uid < 100 || uid > 999 || gid < 100 || gid > 999 || offload.Gid != group.Gid {
		t.Errorf("offload is uid %d gid %s, group gid %d; want a system user (100-999) in its own system group", uid, offload.Gid, gid)
	}
	if shell := passwdField(t, "offload", 6); shell != "/usr/sbin/nologin" {
		t.Errorf("offload's shell = %q; want /usr/sbin/nologin", shell)
	}
	for _, f := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{p.Agent, 0o755, 0, 0},
		{p.EnvFile, 0o640, 0, gid},
		{p.Unit, 0o644, 0, 0},
		{p.Lighttpd, 0o644, 0, 0},
		{"/usr/lib/sysusers.d/offload.conf", 0o644, 0, 0},
		{"/usr/share/doc/offload/copyright", 0o644, 0, 0},
		{"/usr/share/doc/offload/changelog.Debian.gz", 0o644, 0, 0},
		{"/usr/share/doc/offload/README.Debian", 0o644, 0, 0},
		{"/usr/share/man/man1/offload-agent.1.gz", 0o644, 0, 0},
		{p.Share + "/lighttpd/offload.conf", 0o644, 0, 0},
		{p.Share + "/lighttpd/offload-fallback.lua", 0o644, 0, 0},
		{p.Share + "/lighttpd/offload-fallback-404.lua", 0o644, 0, 0},
		{p.Share + "/nginx/offload.conf", 0o644, 0, 0},
		{p.Share + "/apache/offload.conf", 0o644, 0, 0},
	} {
		checkFile(t, f.path, f.mode, f.uid, f.gid)
	}
	unit, _ := os.ReadFile(p.Unit)
	if !strings.Contains(string(unit), "\nExecStart=/usr/bin/offload-agent run\n") {
		t.Errorf("%s has no ExecStart=/usr/bin/offload-agent run", p.Unit)
	}
	// Enabled without a running systemd (deb-systemd-helper), not started.
	if target, err := os.Readlink("/etc/systemd/system/multi-user.target.wants/offload-agent.service"); err != nil || target != p.Unit {
		t.Errorf("the unit is not enabled: multi-user.target.wants link -> %q, %v", target, err)
	}
	// The prune timer and its service are installed, not enabled: pruning
	// deletes local copies, so the administrator opts in.
	for _, unit := range []string{"offload-prune.service", "offload-prune.timer"} {
		checkFile(t, "/lib/systemd/system/"+unit, 0o644, 0, 0)
	}
	if _, err := os.Lstat("/etc/systemd/system/timers.target.wants/offload-prune.timer"); err == nil {
		t.Errorf("offload-prune.timer is enabled by the package; want it installed only")
	}

	// The binary names the version the package has.
	out, err := exec.Command(p.Agent, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", p.Agent, err)
	}
	line := strings.TrimSpace(string(out))
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("offload-agent version printed %q", line)
	}
	if got, err := debianVersion(f[1]); err != nil || got != p.Version {
		t.Errorf("offload-agent version prints %q: package version %q (%v); dpkg says %q", line, got, err, p.Version)
	}
	if head, err := exec.Command("git", "-C", stacktest.RepoRoot(t), "rev-parse", "HEAD").Output(); err == nil {
		if rev := strings.TrimSpace(string(head)); !strings.Contains(line, "revision "+rev) {
			t.Errorf("offload-agent version = %q; want revision %s (HEAD)", line, rev)
		}
	}

	checkLighttpdConf(t, p)

	// An upgrade (the same build as revision -2) keeps the administrator's
	// agent.env, its owner and mode.
	edited := "\n# edited by the administrator\nOFFLOAD_BUCKET=kept-across-upgrades\n"
	appendFile(t, p.EnvFile, edited)
	want, _ := os.ReadFile(p.EnvFile)
	next := repackWithRevision(t, p.Deb, "2")
	dpkg(t, "-i", next)
	if v := installedVersion(t); !strings.HasSuffix(v, "-2") {
		t.Fatalf("after the upgrade dpkg says version %q; want the -2 revision", v)
	}
	if got, _ := os.ReadFile(p.EnvFile); string(got) != string(want) {
		t.Errorf("the upgrade changed the edited agent.env:\n%s\nwant:\n%s", got, want)
	}
	checkFile(t, p.EnvFile, 0o640, 0, gid)

	// What init and lighty-enable-mod would leave, for purge to remove.
	for _, dropIn := range []string{agentDropIn, pruneDropIn, lighttpdDropIn} {
		if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dropIn, []byte("[Service]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, "/etc/offload/signing.env", "OFFLOAD_SIGNING_KEY=x\n", 0o600)
	if err := os.Symlink("../conf-available/50-offload.conf", lighttpdEnabled); err != nil {
		t.Fatalf("enable the lighttpd snippet as lighty-enable-mod does: %v", err)
	}

	purgeLeavesNothing(t, p)
}

// lighttpdEnabled is the link "lighty-enable-mod offload" makes.
const lighttpdEnabled = "/etc/lighttpd/conf-enabled/50-offload.conf"

// purgeLeavesNothing purges the package and checks that nothing it listed
// (dpkg -L) is left, nor what init and lighty-enable-mod write: /etc/offload,
// the systemd drop-ins, lighttpd's conf-enabled link, the unit's enablement
// and the stat override. The data folders and the offload user stay.
func purgeLeavesNothing(t *testing.T, p *Installed) {
	t.Helper()
	listed := strings.Split(strings.TrimSpace(dpkg(t, "-L", packageName)), "\n")
	dpkg(t, "--purge", packageName)
	if v := installedVersion(t); v != "" {
		t.Fatalf("after dpkg --purge, version %q is installed", v)
	}
	for _, path := range listed {
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		// Shared folders (/etc, /usr/share/doc, and /lib, a link to
		// usr/lib on a merged-/usr system) stay; the package's own go.
		// The package ships no links, so a link is one of those.
		shared := fi.IsDir() || fi.Mode()&os.ModeSymlink != 0
		if !shared || strings.Contains(path, "offload") {
			t.Errorf("after purge %s is still there", path)
		}
	}
	for _, path := range []string{"/etc/offload", agentDropIn, filepath.Dir(agentDropIn), pruneDropIn, filepath.Dir(pruneDropIn), lighttpdDropIn, filepath.Dir(lighttpdDropIn),
		lighttpdEnabled, "/etc/systemd/system/multi-user.target.wants/offload-agent.service", "/etc/systemd/system/offload-agent.service"} {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("after purge %s is still there", path)
		}
	}
	if out, err := exec.Command("dpkg-statoverride", "--list", p.EnvFile).CombinedOutput(); err == nil {
		t.Errorf("after purge dpkg-statoverride still lists %s: %s", p.EnvFile, out)
	}
}

// checkFile checks a file's type (regular), mode and owner.
func checkFile(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: %v %d:%d; want a regular file %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

// passwdField is field n (0-based) of user name's line in /etc/passwd.
func passwdField(t *testing.T, name string, n int) string {
	t.Helper()
	f, err := os.Open("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), ":"); len(fields) == 7 && fields[0] == name {
			return fields[n]
		}
	}
	return ""
}

// checkLighttpdConf has lighttpd check (-tt: parse and load the modules) a
// configuration that includes the package's conf-available entry, so the
// paths in it reach the installed scripts. Skipped without lighttpd and
// mod_magnet, which infra/e2e needs anyway.
func checkLighttpdConf(t *testing.T, p *Installed) {
	t.Helper()
	lighttpd, err := exec.LookPath("lighttpd")
	if _, err2 := os.Stat("/usr/lib/lighttpd/mod_magnet.so"); err != nil || err2 != nil {
		t.Logf("lighttpd with mod_magnet is not installed: the conf-available entry is not checked by lighttpd (%v, %v)", err, err2)
		return
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "lighttpd.conf")
	writeFile(t, conf, fmt.Sprintf("server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = 1\ninclude %q\n", dir, p.Lighttpd), 0o644)
	cmd := exec.Command(lighttpd, "-tt", "-f", conf)
	cmd.Env = append(os.Environ(), "OFFLOAD_RESOLVER_BASE=http://127.0.0.1:1", "OFFLOAD_CACHE_ROOT="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("lighttpd -tt with the package's %s: %v\n%s", p.Lighttpd, err, out)
	}
}

// repackWithRevision rebuilds deb with its Debian revision replaced: the
// same files as a newer version, for an upgrade.
func repackWithRevision(t *testing.T, debPath, revision string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("dpkg-deb", "-R", debPath, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R: %v\n%s", err, out)
	}
	control := filepath.Join(dir, "DEBIAN", "control")
	b, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			line = "Version: " + v[:strings.LastIndex(v, "-")+1] + revision
		}
		lines = append(lines, line)
	}
	writeFile(t, control, strings.Join(lines, "\n"), 0o644)
	out := filepath.Join(filepath.Dir(dir), "next.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", dir, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, b)
	}
	return out
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}
