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

// TestPackageFirstDay is the README's install section, done on this
// machine against the local stack: the package installed with dpkg -i,
// "offload-agent init" configuring the host from the stack's outputs,
// "offload-agent doctor" passing, the agent started exactly as the
// installed unit says (its User=, Group=, EnvironmentFile=, ExecStart= and
// AmbientCapabilities=; there is no systemd here to read it) offloading a
// file, and lighttpd, configured by the package's conf-available entry and
// init's drop-in, then sending that file's URL to the resolver. Then
// dpkg --purge leaves nothing of the package, and the data folders stay.
func TestPackageFirstDay(t *testing.T) {
	p := installPackage(t)
	st := stacktest.Require(t)
	if _, err := exec.LookPath("lighttpd"); err != nil {
		t.Fatalf("lighttpd is part of the stack (infra/local/stack installs it): %v", err)
	}
	bins := stacktest.Build(t, "./lambda/cmd/offload-resolver")
	prefix := stacktest.Prefix(t)
	shim := st.AWSShimEndpoint(t)

	// The site: a folder every user may search, as /srv is.
	base, err := os.MkdirTemp("", "offload-firstday-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	webroot := filepath.Join(base, "www")
	watch, archive, cache := filepath.Join(webroot, "static"), filepath.Join(base, "archive"), filepath.Join(base, "cache")
	if err := os.Mkdir(webroot, 0o755); err != nil {
		t.Fatal(err)
	}

	// The resolver, with only what template.yaml grants it.
	resolverAddr := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim), "", bins["offload-resolver"],
		"--listen", resolverAddr, "--key-prefix", prefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	resolverBase := "http://" + resolverAddr

	// 1. init, from what "aws cloudformation describe-stacks" prints.
	outputs := filepath.Join(base, "stack.json")
	writeDescribeStacks(t, outputs, st.Region, map[string]string{
		"BucketName": st.Bucket, "TableName": st.Table, "ResolverBase": resolverBase,
		"ResolverUrl": resolverBase + "/",
	})
	out, code := runAgent(t, nil, "init", "--stack-outputs", outputs, "--watch", watch, "--archive", archive, "--cache-dir", cache)
	if code != 0 {
		t.Fatalf("offload-agent init: exit %d\n%s", code, out)
	}
	t.Logf("offload-agent init:\n%s", out)
	for _, want := range []string{"created", p.EnvFile, agentDropIn, lighttpdDropIn} {
		if !strings.Contains(out, want) {
			t.Errorf("init's output does not say %q", want)
		}
	}
	if out, code := runAgent(t, nil, "init", "--stack-outputs", outputs, "--watch", watch, "--archive", archive, "--cache-dir", cache); code != 0 || !allUnchanged(out) {
		t.Errorf("init a second time: exit %d; want every item unchanged:\n%s", code, out)
	}
	offloadUser, err := user.Lookup("offload")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(offloadUser.Gid)
	checkFile(t, p.EnvFile, 0o640, 0, gid)

	// What init does not manage, and a real host would not need: the local
	// stack's endpoints and the agent's credentials (on AWS, an instance
	// profile), and this test's key prefix, which the resolver shares.
	caBundle := ""
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" { // make test-tls: the stack's CA, readable by the agent's user
		caBundle = filepath.Join(base, "ca.pem")
		b, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, caBundle, string(b), 0o644)
	}
	extra := append(st.Env(t, stacktest.Agent),
		"AWS_ENDPOINT_URL_S3="+shim, "AWS_ENDPOINT_URL_DYNAMODB="+st.DynamoDBEndpoint,
		"OFFLOAD_KEY_PREFIX="+prefix, "AWS_EC2_METADATA_DISABLED=true")
	if caBundle != "" {
		extra = append(extra, "AWS_CA_BUNDLE="+caBundle)
	}
	appendFile(t, p.EnvFile, strings.Join(extra, "\n")+"\n")
	checkFile(t, p.EnvFile, 0o640, 0, gid)

	// 2. lighttpd as the package's entry and init's drop-in configure it.
	webAddr := stacktest.FreeAddr(t)
	startPackagedLighttpd(t, p, webroot, webAddr)

	// 3. doctor, as root, reading the env file as the unit does; it checks
	// the folders as the offload user.
	out, code = runAgent(t, []string{"PATH=" + os.Getenv("PATH")}, "doctor", "--web-url", "http://"+webAddr+"/static/")
	t.Logf("offload-agent doctor:\n%s", out)
	if code != 0 {
		t.Fatalf("offload-agent doctor: exit %d; want 0 (every check passes)", code)
	}
	for _, check := range []string{"credentials", "s3-bucket", "s3:PutObject", "dynamodb-table", "watch-folder", "archive-folder", "rename", "leases", "web-fallback", "resolver"} {
		if !hasLine(out, "ok", check) {
			t.Errorf("doctor did not pass %s", check)
		}
	}

	// 4. The agent, exactly as the unit runs it.
	agent := startAsUnit(t, p.Unit, filepath.Join(base, "agent.log"))

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

	// 5. Purge: nothing of the package is left; the data is.
	purgeLeavesNothing(t, p)
	if _, err := os.Stat(filepath.Join(archive, rel)); err != nil {
		t.Errorf("purge touched the archive: %v", err)
	}
}

// writeDescribeStacks writes what "aws cloudformation describe-stacks
// --stack-name offload" prints for a stack with these outputs.
func writeDescribeStacks(t *testing.T, path, region string, outputs map[string]string) {
	t.Helper()
	type output struct{ OutputKey, OutputValue string }
	var outs []output
	for k, v := range outputs {
		outs = append(outs, output{k, v})
	}
	doc := map[string]any{"Stacks": []any{map[string]any{
		"StackId":     "arn:aws:cloudformation:" + region + ":123456789012:stack/offload/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"StackName":   "offload",
		"StackStatus": "CREATE_COMPLETE",
		"Outputs":     outs,
	}}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b), 0o644)
}

// runAgent runs the installed offload-agent as root; env nil is the
// test's environment.
func runAgent(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(agentPath, args...)
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

// startPackagedLighttpd runs lighttpd with the package's conf-available
// entry (as lighty-enable-mod offload would include it) and the
// environment init's drop-in gives the lighttpd unit.
func startPackagedLighttpd(t *testing.T, p *Installed, webroot, addr string) {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	conf := filepath.Join(dir, "lighttpd.conf")
	writeFile(t, conf, fmt.Sprintf("server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = %s\nserver.errorlog = %q\ninclude %q\n",
		webroot, port, filepath.Join(dir, "error.log"), p.Lighttpd), 0o644)
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
