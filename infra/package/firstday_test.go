package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// capLease is CAP_LEASE's number (linux/capability.h), which the unit's
// AmbientCapabilities= gives the agent.
const capLease = 28

// TestPackageFirstDay runs the command block of docs/install.md's "The
// first day" on this machine against the local stack, line by line in the
// page's order, each through firstDayCommands: the table of what this test
// machine does for each documented command, and why it differs. A line, or
// a part of a line joined by "&&", that the table does not know fails the
// test, and so does a command of the table the page no longer has: a
// command added to the page, removed from it or misspelt in it fails.
//
// Done so: the package is built and installed with dpkg -i, "offload-agent
// init" configures the host from the stack's outputs, "offload-agent
// doctor" passes, and the agent, started exactly as the installed unit
// says (its User=, Group=, EnvironmentFile=, ExecStart= and
// AmbientCapabilities=; there is no systemd here to read it), offloads a
// file, and lighttpd, configured by the package's conf-available entry and
// init's drop-in, then sends that file's URL to the resolver. Then
// dpkg --purge leaves nothing of the package, and the data folders stay.
func TestPackageFirstDay(t *testing.T) {
	requirePackaging(t)
	steps := firstDaySteps(t, firstDayBlock(t))
	st := stacktest.Require(t)
	if _, err := exec.LookPath("lighttpd"); err != nil {
		t.Fatalf("lighttpd is part of the stack (infra/local/stack installs it): %v", err)
	}
	bins := stacktest.Build(t, "./lambda/cmd/offload-resolver")
	prefix := stacktest.Prefix(t)
	shim := st.AWSShimEndpoint(t)

	// The working folder the commands run in, as a reader's shell would
	// (the checkout, for "make package"), and the site: a folder every user
	// may search, as /srv is.
	base, err := os.MkdirTemp("", "offload-firstday-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	fd := &firstDay{t: t, dir: base, webroot: filepath.Join(base, "www"), archive: filepath.Join(base, "archive"), cache: filepath.Join(base, "cache")}
	fd.watch = filepath.Join(fd.webroot, "static")
	if err := os.Mkdir(fd.webroot, 0o755); err != nil {
		t.Fatal(err)
	}

	// The resolver, with only what template.yaml grants it.
	resolverAddr := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim), "", bins["offload-resolver"],
		"--listen", resolverAddr, "--key-prefix", prefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	fd.resolverBase = "http://" + resolverAddr
	// What "aws cloudformation describe-stacks" prints for the stack.
	fd.outputs = map[string]string{
		"BucketName": st.Bucket, "TableName": st.Table, "ResolverBase": fd.resolverBase,
		"ResolverUrl": fd.resolverBase + "/",
	}
	fd.region = st.Region

	// What init does not manage, and a real host would not need: the local
	// stack's endpoints and the agent's credentials (on AWS, an instance
	// profile), and this test's key prefix, which the resolver shares.
	fd.agentEnv = append(st.Env(t, stacktest.Agent),
		"AWS_ENDPOINT_URL_S3="+shim, "AWS_ENDPOINT_URL_DYNAMODB="+st.DynamoDBEndpoint,
		"OFFLOAD_KEY_PREFIX="+prefix, "AWS_EC2_METADATA_DISABLED=true")
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" { // make test-tls: the stack's CA, readable by the agent's user
		caBundle := filepath.Join(base, "ca.pem")
		b, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, caBundle, string(b), 0o644)
		fd.agentEnv = append(fd.agentEnv, "AWS_CA_BUNDLE="+caBundle)
	}
	// lighttpd's address: the page's http://127.0.0.1/ (port 80).
	fd.webAddr = stacktest.FreeAddr(t)

	for _, s := range steps {
		t.Logf("%s: %s", firstDayDoc, s.part)
		s.cmd.run(fd, s)
	}
	if fd.agent == nil || fd.p == nil {
		t.Fatalf("the page's block installed no package or started no agent")
	}
	agent, watch, archive, webAddr, resolverBase := fd.agent, fd.watch, fd.archive, fd.webAddr, fd.resolverBase

	// A back-end writes an original; it ends up archived, and its URL is
	// the resolver's.
	rel := "2026/12/first.jpg"
	body := []byte("a photo, first day " + prefix)
	// mkdir -p's mode, 0777: with the default ACL init set, the umask is
	// not applied and the offload group gets rwx (a back-end that asks for
	// 0755 itself closes the folder to the group, whose files are then
	// uploaded and recorded but not archived until that is fixed).
	if err := os.MkdirAll(filepath.Join(watch, "2026/12"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, rel), body, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(archive, rel)); err == nil {
			break
		}
		if agent.exited() || time.Now().After(deadline) {
			t.Fatalf("%s was not archived (agent exited: %v); agent log:\n%s", rel, agent.exited(), tail(agent.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + webAddr + "/static/" + rel)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != resolverBase+"/static/"+rel {
		t.Fatalf("lighttpd answered %s, Location %q; want 302 to %s/static/%s", resp.Status, loc, resolverBase, rel)
	}
	got := stacktest.HTTPClient(t)
	r2, err := got.Get(resolverBase + "/static/" + rel) // resolver, then the presigned S3 URL
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(body)+1)
	n, _ := r2.Body.Read(b)
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK || string(b[:n]) != string(body) {
		t.Errorf("following the resolver: %s, %q; want 200 and the original", r2.Status, b[:n])
	}
	if err := agent.stop(); err != nil {
		t.Errorf("the agent on SIGTERM: %v; want exit 0\n%s", err, tail(agent.log))
	}

	// Purge: nothing of the package is left; the data is.
	purgeLeavesNothing(t, fd.p)
	if _, err := os.Stat(filepath.Join(archive, rel)); err != nil {
		t.Errorf("purge touched the archive: %v", err)
	}
}

// TestFirstDayCommandsKnown needs neither root nor the stack: every
// command of the first-day block is one firstDayCommands knows, and each
// of those is there once. (TestPackageFirstDay then runs them.)
func TestFirstDayCommandsKnown(t *testing.T) {
	steps := firstDaySteps(t, firstDayBlock(t))
	if len(steps) != len(firstDayCommands) {
		t.Errorf("%d steps; want %d", len(steps), len(firstDayCommands))
	}
}

// The page and section whose command block TestPackageFirstDay runs.
const (
	firstDayDoc     = "docs/install.md"
	firstDaySection = "The first day"
	firstDayMarker  = "<!-- run by: TestPackageFirstDay in infra/package/firstday_test.go -->"
)

// firstDayBlock is the fenced block that follows the section's run-by
// marker.
func firstDayBlock(t *testing.T) string {
	t.Helper()
	section := stacktest.DocSection(t, firstDayDoc, firstDaySection)
	_, after, ok := strings.Cut(section, firstDayMarker+"\n")
	if !ok {
		t.Fatalf("%s, %q: no line %s", firstDayDoc, firstDaySection, firstDayMarker)
	}
	blocks := stacktest.DocBlocks(after)
	if len(blocks) == 0 || !strings.HasPrefix(after, "```") {
		t.Fatalf("%s, %q: no fenced block right after %s", firstDayDoc, firstDaySection, firstDayMarker)
	}
	return blocks[0]
}

// firstDay is what the commands of the page have done so far on this
// machine.
type firstDay struct {
	t   *testing.T
	dir string // the working folder: relative paths in the commands are relative to it
	// The site and the agent's folders, which init is given on top of the
	// page's arguments: a test machine must not use /srv/www.
	webroot, watch, archive, cache string
	resolverBase                   string
	region                         string
	outputs                        map[string]string // the stack's outputs, for describe-stacks
	agentEnv                       []string          // added to agent.env after init: the local stack's endpoints and credentials
	webAddr                        string            // lighttpd's address, for the page's http://127.0.0.1/

	deb     deb          // make package
	p       *Installed   // apt install
	include string       // lighty-enable-mod: the file lighttpd includes for offload
	agent   *unitProcess // systemctl start offload-agent
}

// firstDayStep is one command of the page's block: a line, or a part of
// one joined by "&&".
type firstDayStep struct {
	line, part string
	cmd        *firstDayCommand
	args       []string // the words after the command's own
}

// firstDayCommand is a command the page may hold, and what this machine
// does for it.
type firstDayCommand struct {
	doc string // the command's words as the page writes them; "..." at the end: followed by arguments
	run func(fd *firstDay, s firstDayStep)
}

// firstDayCommands is every command the first-day block may hold; the
// block must hold each exactly once. Each entry says why this machine
// does it differently from a host, where it does.
var firstDayCommands = []*firstDayCommand{
	// The test builds the package with the code "make package" runs (go
	// run ./infra/package), once per test binary; the build lands in a
	// temporary folder, linked from the Makefile's -o folder under the
	// working folder so the next line's glob can find it there.
	{"make package", (*firstDay).makePackage},
	// dpkg -i (installPackage) instead of apt: the .deb is the one the
	// page's glob finds, and the other packages named must be installed
	// already (infra/local/stack installs lighttpd-modules-lua with apt).
	{"sudo apt install ...", (*firstDay).aptInstall},
	// No AWS here: the test writes, at the path the redirect names, what
	// describe-stacks prints for a stack of that name with the local
	// stack's bucket, table and resolver as its outputs.
	{"aws cloudformation describe-stacks ...", (*firstDay).describeStacks},
	// The installed agent, as root (the test runs as root; sudo dropped),
	// with the page's arguments, in the working folder, and the test's own
	// --watch, --archive and --cache-dir after them: a test machine must
	// not use /srv/www.
	{"sudo offload-agent init ...", (*firstDay).initHost},
	// lighty-enable-mod for real when lighttpd's package provides it here
	// (the link goes at the end of the test: purge removes it), else the
	// conf-available entry it would link is included directly.
	{"sudo lighty-enable-mod offload", (*firstDay).lightyEnableMod},
	// systemd does not run here: there is nothing to reload. The test reads
	// lighttpd's drop-in itself when it starts lighttpd (the agent's
	// drop-in only sets ReadWritePaths=, a sandbox the test does not apply).
	{"sudo systemctl daemon-reload", func(*firstDay, firstDayStep) {}},
	// systemd does not run here: lighttpd is started by hand with the
	// environment of init's drop-in, on a free port of 127.0.0.1.
	{"sudo systemctl restart lighttpd", (*firstDay).restartLighttpd},
	// The installed agent, as root, with the page's arguments; the page's
	// http://127.0.0.1/ (port 80) is replaced by lighttpd's address here.
	{"sudo offload-agent doctor ...", (*firstDay).doctor},
	// systemd does not run here: the agent is started as the installed
	// unit says (startAsUnit).
	{"sudo systemctl start offload-agent", (*firstDay).startAgent},
}

// firstDaySteps matches each command of the block to firstDayCommands. It
// fails the test, before anything is installed, for a command the table
// does not know and for a command of the table the block does not hold
// exactly once.
func firstDaySteps(t *testing.T, block string) []firstDayStep {
	t.Helper()
	var steps []firstDayStep
	seen := map[*firstDayCommand]int{}
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		for _, part := range strings.Split(line, " && ") {
			s, ok := matchFirstDay(line, strings.TrimSpace(part))
			if !ok {
				t.Errorf("%s, %q: the line %q: %q is not a command this test knows how to run (firstDayCommands in infra/package/firstday_test.go); a new or changed command needs an entry there", firstDayDoc, firstDaySection, line, part)
				continue
			}
			seen[s.cmd]++
			steps = append(steps, s)
		}
	}
	for _, c := range firstDayCommands {
		if seen[c] != 1 {
			t.Errorf("%s, %q: the block has %q %d times; want once (firstDayCommands in infra/package/firstday_test.go)", firstDayDoc, firstDaySection, c.doc, seen[c])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return steps
}

// matchFirstDay finds the command of part in firstDayCommands. Words are
// split at spaces: no shell runs the commands, so quoting, variables,
// pipes and lists other than "&&" are not known.
func matchFirstDay(line, part string) (firstDayStep, bool) {
	if strings.ContainsAny(part, "'\"$`\\;|&<") {
		return firstDayStep{}, false
	}
	words := strings.Fields(part)
	for _, c := range firstDayCommands {
		want := strings.Fields(c.doc)
		args := want[len(want)-1] == "..."
		if args {
			want = want[:len(want)-1]
		}
		if len(words) < len(want) || (!args && len(words) != len(want)) || !slices.Equal(words[:len(want)], want) {
			continue
		}
		return firstDayStep{line: line, part: part, cmd: c, args: words[len(want):]}, true
	}
	return firstDayStep{}, false
}

// fatalf ends the test with a message naming the page's line.
func (fd *firstDay) fatalf(s firstDayStep, format string, args ...any) {
	fd.t.Helper()
	fd.t.Fatalf("%s, %q: the line %q: %s", firstDayDoc, firstDaySection, s.line, fmt.Sprintf(format, args...))
}

// makePackage builds the package as "make package" does: the Makefile's
// package target must run ./infra/package, whose build this is, and its
// -o folder is where the .deb is then found.
func (fd *firstDay) makePackage(s firstDayStep) {
	recipe := makeRecipe(fd.t, "package")
	words := strings.Fields(strings.Join(recipe, " "))
	i := slices.Index(words, "-o")
	if !slices.Contains(words, "./infra/package") || i < 0 || i+1 >= len(words) {
		fd.fatalf(s, "the Makefile's package target runs %q; this test builds with ./infra/package and needs its -o folder", recipe)
	}
	fd.deb = buildPackage(fd.t)
	out := filepath.Join(fd.dir, words[i+1])
	if err := os.MkdirAll(out, 0o755); err != nil {
		fd.t.Fatal(err)
	}
	if err := os.Symlink(fd.deb.Path, filepath.Join(out, filepath.Base(fd.deb.Path))); err != nil {
		fd.t.Fatal(err)
	}
}

// makeRecipe is the recipe of a target of the repository's Makefile.
func makeRecipe(t *testing.T, target string) []string {
	t.Helper()
	var recipe []string
	in := false
	makefile, err := os.ReadFile(filepath.Join(stacktest.RepoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(makefile), "\n") {
		switch {
		case strings.HasPrefix(l, target+":"):
			in = true
		case in && strings.HasPrefix(l, "\t"):
			recipe = append(recipe, strings.TrimSpace(l))
		case in:
			return recipe
		}
	}
	if !in {
		t.Fatalf("the Makefile has no target %s", target)
	}
	return recipe
}

// aptInstall installs the .deb the page's glob finds in the working
// folder (installPackage: dpkg -i) and checks that the other packages
// named are installed.
func (fd *firstDay) aptInstall(s firstDayStep) {
	var debs []string
	for _, a := range s.args {
		if !strings.HasPrefix(a, "./") && !strings.HasPrefix(a, "/") {
			out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", a).Output()
			if err != nil || string(out) != "installed" {
				fd.fatalf(s, "the package %s is not installed here (dpkg-query: %q, %v); infra/local/stack installs the web servers' packages", a, out, err)
			}
			continue
		}
		found, err := filepath.Glob(filepath.Join(fd.dir, a))
		if err != nil || len(found) != 1 {
			fd.fatalf(s, "%s finds %d files in the working folder (%v); want the one make package wrote", a, len(found), err)
		}
		debs = append(debs, found[0])
	}
	if len(debs) != 1 || fd.deb.Path == "" {
		fd.fatalf(s, "want one .deb to install, the one make package wrote; have %q", debs)
	}
	if real, err := filepath.EvalSymlinks(debs[0]); err != nil || real != fd.deb.Path {
		fd.fatalf(s, "the glob finds %s (%s, %v); make package wrote %s", debs[0], real, err, fd.deb.Path)
	}
	fd.p = installPackage(fd.t)
}

// describeStacks writes what "aws cloudformation describe-stacks
// --stack-name NAME > FILE" would.
func (fd *firstDay) describeStacks(s firstDayStep) {
	a := s.args
	if len(a) != 4 || a[0] != "--stack-name" || a[2] != ">" {
		fd.fatalf(s, "this test knows describe-stacks as \"aws cloudformation describe-stacks --stack-name NAME > FILE\" only")
	}
	writeDescribeStacks(fd.t, fd.path(a[3]), a[1], fd.region, fd.outputs)
}

// path is a path of a command resolved against the working folder.
func (fd *firstDay) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(fd.dir, p)
}

// initHost runs "offload-agent init" with the page's arguments and the test's
// folders, twice (the second changes nothing), and then adds to agent.env
// what a host on AWS would not need.
func (fd *firstDay) initHost(s firstDayStep) {
	t := fd.t
	args := append(append([]string{"init"}, s.args...), "--watch", fd.watch, "--archive", fd.archive, "--cache-dir", fd.cache)
	out, code := runAgent(t, fd.dir, nil, args...)
	if code != 0 {
		fd.fatalf(s, "offload-agent %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	t.Logf("offload-agent init:\n%s", out)
	for _, want := range []string{"created", envPath, agentDropIn, lighttpdDropIn} {
		if !strings.Contains(out, want) {
			t.Errorf("init's output does not say %q", want)
		}
	}
	if out, code := runAgent(t, fd.dir, nil, args...); code != 0 || !allUnchanged(out) {
		t.Errorf("init a second time: exit %d; want every item unchanged:\n%s", code, out)
	}
	offloadUser, err := user.Lookup("offload")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(offloadUser.Gid)
	checkFile(t, envPath, 0o640, 0, gid)
	appendFile(t, envPath, strings.Join(fd.agentEnv, "\n")+"\n")
	checkFile(t, envPath, 0o640, 0, gid)
}

// lightyEnableMod checks the conf-available entry the page's module name
// stands for, and links it with lighty-enable-mod where lighttpd's package
// provides that.
func (fd *firstDay) lightyEnableMod(s firstDayStep) {
	if _, err := os.Stat(lighttpdPath); err != nil {
		fd.fatalf(s, "%v", err)
	}
	fd.include = lighttpdPath
	if _, err := exec.LookPath("lighty-enable-mod"); err != nil {
		fd.t.Logf("lighty-enable-mod is not installed here: lighttpd includes %s itself", lighttpdPath)
		return
	}
	fd.t.Cleanup(func() { os.Remove(lighttpdEnabled) }) // purge removes it; this is for a test that ends early
	out, err := exec.Command("lighty-enable-mod", strings.Fields(s.part)[2:]...).CombinedOutput()
	fd.t.Logf("lighty-enable-mod offload:\n%s", out)
	if err != nil {
		fd.fatalf(s, "lighty-enable-mod: %v\n%s", err, out)
	}
	if target, err := filepath.EvalSymlinks(lighttpdEnabled); err != nil || target != lighttpdPath {
		fd.fatalf(s, "after lighty-enable-mod, %s -> %q (%v); want %s", lighttpdEnabled, target, err, lighttpdPath)
	}
	fd.include = lighttpdEnabled
}

// restartLighttpd starts lighttpd as the lighttpd unit would, with the
// module lighty-enable-mod enabled.
func (fd *firstDay) restartLighttpd(s firstDayStep) {
	if fd.include == "" {
		fd.fatalf(s, "lighttpd starts before lighty-enable-mod offload: offload is not in its configuration")
	}
	startPackagedLighttpd(fd.t, fd.include, fd.webroot, fd.webAddr)
}

// doctor runs "offload-agent doctor" with the page's arguments as root,
// reading the env file as the unit does; it checks the folders as the
// offload user. Every check must pass.
func (fd *firstDay) doctor(s firstDayStep) {
	args := []string{"doctor"}
	for _, a := range s.args {
		// The page's web server listens on port 80; this one on a free port.
		args = append(args, strings.Replace(a, "http://127.0.0.1/", "http://"+fd.webAddr+"/", 1))
	}
	out, code := runAgent(fd.t, fd.dir, []string{"PATH=" + os.Getenv("PATH")}, args...)
	fd.t.Logf("offload-agent doctor:\n%s", out)
	if code != 0 {
		fd.fatalf(s, "offload-agent %s: exit %d; want 0 (every check passes)", strings.Join(args, " "), code)
	}
	for _, check := range []string{"credentials", "s3-bucket", "s3:PutObject", "dynamodb-table", "watch-folder", "archive-folder", "rename", "leases", "web-fallback", "resolver"} {
		if !hasLine(out, "ok", check) {
			fd.t.Errorf("doctor did not pass %s", check)
		}
	}
}

// startAgent starts the agent exactly as the installed unit runs it.
func (fd *firstDay) startAgent(s firstDayStep) {
	fd.agent = startAsUnit(fd.t, unitPath, filepath.Join(fd.dir, "agent.log"))
}

// writeDescribeStacks writes what "aws cloudformation describe-stacks
// --stack-name NAME" prints for a stack with these outputs.
func writeDescribeStacks(t *testing.T, path, stackName, region string, outputs map[string]string) {
	t.Helper()
	type output struct{ OutputKey, OutputValue string }
	var outs []output
	for k, v := range outputs {
		outs = append(outs, output{k, v})
	}
	doc := map[string]any{"Stacks": []any{map[string]any{
		"StackId":     "arn:aws:cloudformation:" + region + ":123456789012:stack/" + stackName + "/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"StackName":   stackName,
		"StackStatus": "CREATE_COMPLETE",
		"Outputs":     outs,
	}}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b), 0o644)
}

// runAgent runs the installed offload-agent as root in folder dir; env
// nil is the test's environment.
func runAgent(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(agentPath, args...)
	cmd.Dir = dir
	cmd.Env = env
	if env == nil {
		cmd.Env = os.Environ()
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s %v: %v", agentPath, args, err)
	}
	return string(out), 0
}

// allUnchanged reports whether every item init printed (the lines before
// its "next:" steps) is unchanged.
func allUnchanged(out string) bool {
	items, _, _ := strings.Cut(out, "\nnext:")
	n := 0
	for _, l := range strings.Split(items, "\n") {
		if l == "" {
			continue
		}
		if f := strings.Fields(l); f[0] != "unchanged" {
			return false
		}
		n++
	}
	return n > 0
}

// hasLine reports whether doctor's output has a line "RESULT  NAME ...".
func hasLine(out, result, name string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == result && f[1] == name {
			return true
		}
	}
	return false
}

// startPackagedLighttpd runs lighttpd with include, the package's
// conf-available entry or lighty-enable-mod's link to it, and the
// environment init's drop-in gives the lighttpd unit.
func startPackagedLighttpd(t *testing.T, include, webroot, addr string) {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	conf := filepath.Join(dir, "lighttpd.conf")
	writeFile(t, conf, fmt.Sprintf("server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = %s\nserver.errorlog = %q\ninclude %q\n",
		webroot, port, filepath.Join(dir, "error.log"), include), 0o644)
	env := dropInEnvironment(t, lighttpdDropIn)
	for _, k := range []string{"OFFLOAD_RESOLVER_BASE", "OFFLOAD_CACHE_ROOT"} {
		if !strings.Contains(strings.Join(env, "\n"), k+"=") {
			t.Fatalf("init's %s does not set %s", lighttpdDropIn, k)
		}
	}
	stacktest.Start(t, env, filepath.Join(dir, "lighttpd.log"), "lighttpd", "-D", "-f", conf)
	stacktest.WaitListening(t, addr)
}

// dropInEnvironment is the Environment= assignments of a systemd drop-in.
func dropInEnvironment(t *testing.T, path string) []string {
	t.Helper()
	var env []string
	for _, l := range readLines(t, path) {
		if v, ok := strings.CutPrefix(l, "Environment="); ok {
			env = append(env, strings.Trim(v, `"`))
		}
	}
	return env
}

// unitProcess is the agent started as its unit says.
type unitProcess struct {
	cmd  *exec.Cmd
	log  string
	done chan error
	err  error
}

func (u *unitProcess) exited() bool {
	select {
	case err := <-u.done:
		u.err = err
		close(u.done)
		u.done = nil
		return true
	default:
		return u.done == nil
	}
}

// stop sends SIGTERM, as systemctl stop does, and waits (the unit's
// TimeoutStopSec is 60 s).
func (u *unitProcess) stop() error {
	if u.done == nil {
		return u.err
	}
	u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-u.done:
		u.done = nil
		return err
	case <-time.After(60 * time.Second):
		u.cmd.Process.Kill()
		err := <-u.done
		u.done = nil
		return fmt.Errorf("did not stop within 60 s of SIGTERM; killed (%v)", err)
	}
}

// startAsUnit starts ExecStart= of the installed unit as its User= and
// Group= (with the user's other groups, as systemd gives them), with
// EnvironmentFile='s settings as the whole environment and the capability
// AmbientCapabilities= names; it is stopped by PID when the test ends.
func startAsUnit(t *testing.T, unit, logPath string) *unitProcess {
	t.Helper()
	keys := map[string]string{}
	for _, l := range readLines(t, unit) {
		if k, v, ok := strings.Cut(l, "="); ok {
			keys[k] = v
		}
	}
	if keys["AmbientCapabilities"] != "CAP_LEASE" {
		t.Fatalf("the unit's AmbientCapabilities= is %q; this test gives CAP_LEASE only", keys["AmbientCapabilities"])
	}
	u, err := user.Lookup(keys["User"])
	if err != nil {
		t.Fatalf("the unit's User=%s: %v", keys["User"], err)
	}
	g, err := user.LookupGroup(keys["Group"])
	if err != nil {
		t.Fatalf("the unit's Group=%s: %v", keys["Group"], err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	var groups []uint32
	ids, _ := u.GroupIds()
	for _, id := range ids {
		n, _ := strconv.Atoi(id)
		groups = append(groups, uint32(n))
	}
	var env []string
	for _, l := range readLines(t, keys["EnvironmentFile"]) {
		if strings.Contains(l, "=") && !strings.HasPrefix(l, "#") {
			env = append(env, l)
		}
	}
	argv := strings.Fields(keys["ExecStart"])
	if len(argv) == 0 || argv[0] != agentPath {
		t.Fatalf("the unit's ExecStart=%q; want %s first", keys["ExecStart"], agentPath)
	}
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
		AmbientCaps: []uintptr{capLease},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v as %s: %v", argv, keys["User"], err)
	}
	p := &unitProcess{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if p.done != nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	return lines
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
