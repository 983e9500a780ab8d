package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/photosleeve/offload/agent/setup"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// These tests run "offload-agent init" for real, as root, against a
// temporary --root, with a user and groups of their own made with
// useradd/groupadd and removed afterwards.

const stackJSON = "../../setup/testdata/describe-stacks.json"

// TestMain lets a test run init as another user: the test binary started
// with OFFLOAD_TEST_RUN_INIT=1 is "offload-agent init".
func TestMain(m *testing.M) {
	if os.Getenv("OFFLOAD_TEST_RUN_INIT") == "1" {
		os.Exit(initCommand(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	required := os.Getenv("OFFLOAD_REQUIRE_STACK") != ""
	if os.Geteuid() != 0 {
		if required {
			t.Fatal("init's tests change owners and make users: they need root")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"getfacl", "setfacl", "useradd", "groupadd"} {
		if _, err := exec.LookPath(tool); err != nil {
			if required {
				t.Fatalf("%s missing (packages acl, passwd)", tool)
			}
			t.Skipf("%s missing", tool)
		}
	}
}

// accounts is a service user with its own group and a web server group,
// made for one test.
type accounts struct {
	user, web string
	uid, gid  int
}

func newAccounts(t *testing.T) accounts {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "oat" + hex.EncodeToString(b)
	a := accounts{user: name, web: name + "w"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("groupadd", "--system", a.user)
	t.Cleanup(func() { exec.Command("groupdel", a.user).Run() })
	run("useradd", "--system", "-g", a.user, "-M", "-N", "-s", "/usr/sbin/nologin", a.user)
	t.Cleanup(func() { exec.Command("userdel", a.user).Run() }) // runs before groupdel
	run("groupadd", "--system", a.web)
	t.Cleanup(func() { exec.Command("groupdel", a.web).Run() })
	u, err := user.Lookup(a.user)
	if err != nil {
		t.Fatal(err)
	}
	a.uid, _ = strconv.Atoi(u.Uid)
	a.gid, _ = strconv.Atoi(u.Gid)
	return a
}

// tempRoot is a --root other users can walk through (t.TempDir is 0700).
func tempRoot(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "offload-init-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func runInit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = initCommand(args, func(string) string { return "" }, &o, &e)
	return code, o.String(), e.String()
}

func (a accounts) args(root string, more ...string) []string {
	return append([]string{"--stack-outputs", stackJSON, "--root", root, "--user", a.user, "--web-group", a.web}, more...)
}

// actions maps each item's path (without the root) to its action.
var itemLine = regexp.MustCompile(`^(created|changed|unchanged|would create|would change) +(\S+)  \(.*\)$`)

func actions(t *testing.T, root, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if m := itemLine.FindStringSubmatch(l); m != nil {
			got[strings.TrimPrefix(m[2], root)] = m[1]
		}
	}
	if len(got) != 7 {
		t.Fatalf("want 7 item lines, got %d:\n%s", len(got), out)
	}
	return got
}

func allAre(t *testing.T, got map[string]string, want string) {
	t.Helper()
	for p, a := range got {
		if a != want {
			t.Errorf("%s: %s, want %s", p, a, want)
		}
	}
}

// snapshot is every file's and folder's bytes, mode, owner and ACLs
// under root, to show that a run changed nothing.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %o %d:%d %d\n", p, st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		if fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			b.Write(data)
		}
		return nil
	})
	out, err := exec.Command("getfacl", "-R", "-p", "-n", root).Output()
	if err != nil {
		t.Fatal(err)
	}
	b.Write(out)
	return b.String()
}

func getfacl(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("getfacl", "-p", path).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// TestInitConfiguresHost: a first run creates everything with the owners,
// modes, setgid and default ACLs the documented install step gave by hand; a
// second run says "unchanged" for every item and changes nothing; a value
// a person changed in the env file, or a drop-in a person edited, is
// refused (exit 1, the difference printed, nothing changed) until --force;
// keys init does not manage stay.
func TestInitConfiguresHost(t *testing.T) {
	needRoot(t)
	a := newAccounts(t)
	root := tempRoot(t)
	// The site exists: the back-end (uid 30001) owns the web root and
	// already wrote a folder and a file with umask 022.
	watch := filepath.Join(root, "srv/www/static")
	if err := os.MkdirAll(filepath.Join(watch, "2026-11"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "2026-11/a.jpg"), []byte("photo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(root, "srv/www"), watch, filepath.Join(watch, "2026-11"), filepath.Join(watch, "2026-11/a.jpg")} {
		if err := os.Chown(p, 30001, 30001); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errOut := runInit(t, a.args(root)...)
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("first run:\n%s", out)
	got := actions(t, root, out)
	for p, want := range map[string]string{
		setup.EnvFile: "created", "/srv/www/static": "changed", "/srv/www/archive": "created",
		"/var/cache/offload": "created", setup.AgentDropIn: "created", setup.LighttpdDropIn: "created",
		setup.PruneDropIn: "created",
	} {
		if got[p] != want {
			t.Errorf("%s: %s, want %s", p, got[p], want)
		}
	}
	if !strings.Contains(out, "next:\n") || !strings.Contains(out, "offload-agent doctor") {
		t.Errorf("no next steps:\n%s", out)
	}

	// The env file: 0640 root:GROUP, the stack's values.
	env := filepath.Join(root, setup.EnvFile)
	checkOwnerMode(t, env, 0, a.gid, 0o640)
	envText := readFile(t, env)
	for _, l := range []string{
		"OFFLOAD_WATCH=/srv/www/static", "OFFLOAD_ARCHIVE=/srv/www/archive",
		"OFFLOAD_BUCKET=offload-originalsbucket-x1y2z3w4v5u6", "OFFLOAD_TABLE=offload-Ledger-1R2T3Y4U5I6O",
		"AWS_REGION=eu-west-1", "OFFLOAD_RESOLVER_BASE=https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws",
	} {
		if !strings.Contains(envText, "\n"+l+"\n") {
			t.Errorf("env file lacks %s:\n%s", l, envText)
		}
	}
	// The folders: group, g+rwX, setgid, default ACL; the cache as systemd's CacheDirectory= makes it.
	for _, p := range []string{watch, filepath.Join(watch, "2026-11"), filepath.Join(root, "srv/www/archive")} {
		acl := getfacl(t, p)
		for _, want := range []string{"# group: " + a.user + "\n", "# flags: -s-\n", "group::rwx\n", "default:group:" + a.user + ":rwx\n", "default:mask::rwx\n"} {
			if !strings.Contains(acl, want) {
				t.Errorf("%s lacks %q:\n%s", p, want, acl)
			}
		}
	}
	checkOwnerMode(t, filepath.Join(root, "srv/www/archive"), 0, a.gid, 0o2775)
	checkOwnerMode(t, watch, 30001, a.gid, 0o2775)
	checkOwnerMode(t, filepath.Join(watch, "2026-11/a.jpg"), 30001, a.gid, 0o664)
	checkOwnerMode(t, filepath.Join(root, "var/cache/offload"), a.uid, a.gid, 0o755)
	// The drop-ins.
	checkOwnerMode(t, filepath.Join(root, setup.AgentDropIn), 0, 0, 0o644)
	if s := readFile(t, filepath.Join(root, setup.AgentDropIn)); !strings.Contains(s, "[Service]\nReadWritePaths=\nReadWritePaths=/srv/www/static /srv/www/archive /var/cache/offload\n") {
		t.Errorf("agent drop-in:\n%s", s)
	}
	// The prune unit may write the archive alone.
	if s := readFile(t, filepath.Join(root, setup.PruneDropIn)); !strings.Contains(s, "[Service]\nReadWritePaths=\nReadWritePaths=/srv/www/archive\n") {
		t.Errorf("prune drop-in:\n%s", s)
	}
	if s := readFile(t, filepath.Join(root, setup.LighttpdDropIn)); !strings.Contains(s, "[Service]\nEnvironment=OFFLOAD_RESOLVER_BASE=https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws\nEnvironment=OFFLOAD_CACHE_ROOT=/var/cache/offload\n") {
		t.Errorf("lighttpd drop-in:\n%s", s)
	}

	// A second run: every item unchanged, nothing touched.
	before := snapshot(t, root)
	code, out, errOut = runInit(t, a.args(root)...)
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("second run:\n%s", out)
	allAre(t, actions(t, root, out), "unchanged")
	if after := snapshot(t, root); after != before {
		t.Errorf("the second run changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A person adds a key of their own and changes a managed one.
	edited := strings.Replace(envText, "OFFLOAD_BUCKET=offload-originalsbucket-x1y2z3w4v5u6", "OFFLOAD_BUCKET=my-other-bucket", 1) + "AWS_PROFILE=host\n"
	if err := os.WriteFile(env, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, root)
	code, out, errOut = runInit(t, a.args(root)...)
	if code != 1 || !strings.Contains(errOut, `OFFLOAD_BUCKET: the file has "my-other-bucket", init would write "offload-originalsbucket-x1y2z3w4v5u6"`) || !strings.Contains(errOut, "--force") {
		t.Errorf("a person's value: exit %d, want 1 and the difference\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if after := snapshot(t, root); after != before {
		t.Error("a refused run changed files")
	}
	// --dry-run --force says what it would change, and changes nothing.
	code, out, errOut = runInit(t, a.args(root, "--dry-run", "--force")...)
	if code != 0 || !strings.Contains(out, "would change  "+env+"  (OFFLOAD_BUCKET \"my-other-bucket\" -> \"offload-originalsbucket-x1y2z3w4v5u6\" (--force))") {
		t.Errorf("dry run with --force: exit %d\n%s%s", code, out, errOut)
	}
	if after := snapshot(t, root); after != before {
		t.Error("a dry run changed files")
	}
	// --force puts the stack's value back and keeps the person's own key.
	code, out, errOut = runInit(t, a.args(root, "--force")...)
	if code != 0 || actions(t, root, out)[setup.EnvFile] != "changed" {
		t.Fatalf("--force: exit %d\n%s%s", code, out, errOut)
	}
	if s := readFile(t, env); s != envText+"AWS_PROFILE=host\n" {
		t.Errorf("after --force the env file is:\n%s\nwant:\n%sAWS_PROFILE=host\n", s, envText)
	}
	checkOwnerMode(t, env, 0, a.gid, 0o640)

	// An env file left 0644 root:root (what a plain "sudo tee" makes) is
	// closed again: the key is a secret's neighbour.
	if err := os.Chmod(env, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(env, 0, 0); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runInit(t, a.args(root)...)
	if code != 0 || !strings.Contains(out, "changed       "+env+"  (mode 0644 -> 0640; owner 0:0 -> root:"+a.user+")") {
		t.Errorf("a 0644 env file: exit %d\n%s%s", code, out, errOut)
	}
	checkOwnerMode(t, env, 0, a.gid, 0o640)

	// A drop-in a person edited is refused the same way.
	drop := filepath.Join(root, setup.LighttpdDropIn)
	if err := os.WriteFile(drop, []byte(readFile(t, drop)+"Environment=MINE=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runInit(t, a.args(root)...)
	if code != 1 || !strings.Contains(errOut, "+ Environment=MINE=1") && !strings.Contains(errOut, "- Environment=MINE=1") {
		t.Errorf("an edited drop-in: exit %d, want 1 and the difference\n%s", code, errOut)
	}
}

// TestInitDryRunChangesNothing: on a bare host, --dry-run says "would
// create" for every item and leaves the root empty.
func TestInitDryRunChangesNothing(t *testing.T) {
	needRoot(t)
	a := newAccounts(t)
	root := tempRoot(t)
	code, out, errOut := runInit(t, a.args(root, "--dry-run")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	allAre(t, actions(t, root, out), "would create")
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("the dry run made %v", entries)
	}
}

// TestInitRefusals: what init refuses before it changes anything, and
// its exit status.
func TestInitRefusals(t *testing.T) {
	needRoot(t)
	a := newAccounts(t)
	root := tempRoot(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such user", []string{"--stack-outputs", stackJSON, "--root", root, "--user", a.user + "x", "--web-group", a.web}, "does not exist: install the offload-agent package"},
		{"no such web group", []string{"--stack-outputs", stackJSON, "--root", root, "--user", a.user, "--web-group", a.web + "x"}, "web server group"},
		{"bad bucket", a.args(root, "--bucket", "Bad_Bucket!!"), "lowercase letters, digits, dots and hyphens only"},
		{"resolver with a slash", a.args(root, "--resolver-base", "https://x.example/"), "no trailing slash"},
		{"a newline in a value", a.args(root, "--table", "ledger\nAWS_PROFILE=x"), "not allowed in a table name"},
		{"no outputs, no flags", []string{"--root", root, "--user", a.user, "--web-group", a.web}, "--bucket (or the BucketName output): missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runInit(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want 2 with %q\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("a refused run made %v", entries)
			}
		})
	}
}

// TestInitNeedsRoot: run as another user, init names what needs root and
// exits 2 before it looks at anything.
func TestInitNeedsRoot(t *testing.T) {
	needRoot(t)
	root := tempRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "offload-agent.test")
	copyFile(t, self, bin, 0o755)
	cmd := exec.Command(bin, "--stack-outputs", "-", "--root", filepath.Join(root, "host"))
	cmd.Env = append(os.Environ(), "OFFLOAD_TEST_RUN_INIT=1")
	cmd.Stdin, _ = os.Open(stackJSON)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 2 || !strings.Contains(stderr.String(), "init must run as root: it writes /etc/offload/agent.env") {
		t.Errorf("as nobody: %v (exit %d), want exit 2 naming what needs root\n%s", err, code, stderr.String())
	}
}

// TestInitFoldersMatchDocumentedCommands: on the same starting tree, init
// leaves the watch and archive folders exactly as docs/install.md's permission
// commands (the ones TestDocumentedPermissionsCoverNewFolders runs) do: owners,
// modes and ACLs, entry by entry, as getfacl prints them.
func TestInitFoldersMatchDocumentedCommands(t *testing.T) {
	needRoot(t)
	a := newAccounts(t)
	byInit, byDocs := tempRoot(t), tempRoot(t)
	for _, r := range []string{byInit, byDocs} {
		site(t, r)
	}
	if code, out, errOut := runInit(t, a.args(byInit)...); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	watch, archive := filepath.Join(byDocs, "srv/www/static"), filepath.Join(byDocs, "srv/www/archive")
	if err := os.Mkdir(archive, 0o755); err != nil { // as a site would have it
		t.Fatal(err)
	}
	for _, c := range stacktest.PermissionCommands(t, watch, archive, a.user) {
		if out, err := exec.Command("sh", "-c", c).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
	}
	for _, dir := range []string{"srv/www/static", "srv/www/archive"} {
		got, want := aclTree(t, byInit, dir), aclTree(t, byDocs, dir)
		if got != want {
			t.Errorf("%s: init left\n%s\ndocs/install.md's commands leave\n%s", dir, got, want)
		}
	}
}

// TestInitFoldersCoverNewFolders is TestDocumentedPermissionsCoverNewFolders
// with init's folders: a folder the back-end makes later with umask 022
// still lets a user of the agent's group claim a file in it and archive it.
func TestInitFoldersCoverNewFolders(t *testing.T) {
	needRoot(t)
	a := newAccounts(t)
	root := tempRoot(t)
	site(t, root)
	if code, out, errOut := runInit(t, a.args(root)...); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	watch, archive := filepath.Join(root, "srv/www/static"), filepath.Join(root, "srv/www/archive")
	if err := asUser(30001, 30001, nil, fmt.Sprintf("umask 022; mkdir %s/2026-12 && echo photo > %s/2026-12/a.jpg", watch, watch)); err != nil {
		t.Fatalf("the back-end: %v", err)
	}
	// The agent, as its own user and group, claims the file and archives it, as finishLocal does.
	if err := asUser(a.uid, a.gid, []uint32{uint32(a.gid)}, fmt.Sprintf(
		"mkdir -p %[1]s/.offload-claim/2026-12 && mv %[1]s/2026-12/a.jpg %[1]s/.offload-claim/2026-12/a.jpg && mkdir -p %[2]s/2026-12 && mv %[1]s/.offload-claim/2026-12/a.jpg %[2]s/2026-12/a.jpg",
		watch, archive)); err != nil {
		t.Errorf("the agent cannot archive from a folder the back-end made after init: %v", err)
	}
	// And the web server (any other user) still reads what is left.
	if err := asUser(30005, 30005, nil, fmt.Sprintf("ls %s/2026-12 >/dev/null && cat %s/2026-12/a.jpg >/dev/null", watch, archive)); err != nil {
		t.Errorf("another user cannot read the folders: %v", err)
	}
}

// site is a web root as a host has it before init: the back-end's
// (uid 30001) folder with a day folder and a file, made with umask 022.
func site(t *testing.T, root string) {
	t.Helper()
	watch := filepath.Join(root, "srv/www/static")
	if err := os.MkdirAll(filepath.Join(watch, "2026-11"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "2026-11/a.jpg"), []byte("photo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"srv/www", "srv/www/static", "srv/www/static/2026-11", "srv/www/static/2026-11/a.jpg", "srv/www/static/run.sh"} {
		if err := os.Chown(filepath.Join(root, p), 30001, 30001); err != nil {
			t.Fatal(err)
		}
	}
}

// aclTree is getfacl -R of root/dir with root cut off, and each entry's owner and mode.
func aclTree(t *testing.T, root, dir string) string {
	t.Helper()
	cmd := exec.Command("getfacl", "-R", "-n", dir)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl: %v\n%s", err, out)
	}
	var modes strings.Builder
	filepath.Walk(filepath.Join(root, dir), func(p string, fi os.FileInfo, err error) error {
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&modes, "%s %o %d:%d\n", strings.TrimPrefix(p, root), st.Mode, st.Uid, st.Gid)
		return nil
	})
	return modes.String() + string(out)
}

func asUser(uid, gid int, groups []uint32, script string) error {
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func checkOwnerMode(t *testing.T, path string, uid, gid int, mode uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Uid) != uid || int(st.Gid) != gid || st.Mode&0o7777 != mode {
		t.Errorf("%s: %d:%d %04o, want %d:%d %04o", path, st.Uid, st.Gid, st.Mode&0o7777, uid, gid, mode)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestInitHelp: --help prints init's own help on stdout, once, exit 0; a
// flag it does not know is exit 2 with the error on stderr.
func TestInitHelp(t *testing.T) {
	code, out, errOut := runInit(t, "--help")
	if code != 0 || errOut != "" || strings.Count(out, "offload-agent init [--stack-outputs") != 1 || !strings.Contains(out, "--stack-outputs") {
		t.Errorf("--help: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = runInit(t, "--bukket", "x")
	if code != 2 || out != "" || !strings.Contains(errOut, "unknown flag --bukket: did you mean --bucket?") {
		t.Errorf("--bukket: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// TestInitDropInsVerify: systemd reads init's drop-ins with the agent's
// and the prune units and with Debian's lighttpd unit without a complaint
// (systemd-analyze verify loads UNIT.d/*.conf next to the unit file).
func TestInitDropInsVerify(t *testing.T) {
	needRoot(t)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatal("systemd-analyze missing (package systemd)")
		}
		t.Skip("systemd-analyze missing")
	}
	a := newAccounts(t)
	root := tempRoot(t)
	if code, out, errOut := runInit(t, a.args(root)...); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agentUnit := strings.ReplaceAll(readFile(t, "../../../infra/systemd/offload-agent.service"), "/usr/local/bin/offload-agent", self)
	agentUnit = strings.ReplaceAll(agentUnit, "/usr/bin/offload-agent", self)
	pruneUnit := strings.ReplaceAll(readFile(t, "../../../infra/systemd/offload-prune.service"), "/usr/bin/offload-agent", self)
	units := map[string]string{"offload-agent.service": agentUnit, "offload-prune.service": pruneUnit}
	if b, err := os.ReadFile("/lib/systemd/system/lighttpd.service"); err == nil {
		units["lighttpd.service"] = string(b)
	} else {
		t.Log("no lighttpd.service on this machine: only the agent's drop-in is verified")
	}
	for name, unit := range units {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		dropIn := filepath.Join(root, "etc/systemd/system", name+".d", "offload.conf")
		if err := os.Mkdir(filepath.Join(dir, name+".d"), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, dropIn, filepath.Join(dir, name+".d", "offload.conf"), 0o644)
		out, err := exec.Command(analyze, "verify", filepath.Join(dir, name)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("systemd-analyze verify %s with init's drop-in: %v\n%s", name, err, out)
		}
	}
}

// TestInitHotCache: --access-log turns the hot cache on in the env file,
// and the next steps say to let the agent's user read the web server's log.
func TestInitHotCache(t *testing.T) {
	needRoot(t)
	a := newAccounts(t)
	root := tempRoot(t)
	code, out, errOut := runInit(t, a.args(root, "--access-log", "/var/log/lighttpd/access.log")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	env := readFile(t, filepath.Join(root, setup.EnvFile))
	for _, l := range []string{"OFFLOAD_CACHE_DIR=/var/cache/offload", "OFFLOAD_ACCESS_LOG=/var/log/lighttpd/access.log"} {
		if !strings.Contains(env, "\n"+l+"\n") {
			t.Errorf("env file lacks %s:\n%s", l, env)
		}
	}
	if want := "usermod -aG " + a.web + " " + a.user; !strings.Contains(out, want) {
		t.Errorf("next steps lack %q:\n%s", want, out)
	}
	// Once the user is in the group, the step is gone.
	if b, err := exec.Command("usermod", "-aG", a.web, a.user).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v\n%s", err, b)
	}
	if _, out, _ = runInit(t, a.args(root, "--access-log", "/var/log/lighttpd/access.log")...); strings.Contains(out, "usermod") {
		t.Errorf("next steps still name usermod:\n%s", out)
	}
}
