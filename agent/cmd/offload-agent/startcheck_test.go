package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// startEnv is an environment in which AWS is a closed loopback port: no
// request leaves the machine, and none is answered.
func startEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	closed := "http://" + stacktest.FreeAddr(t)
	env := []string{"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_S3=" + closed, "AWS_ENDPOINT_URL_DYNAMODB=" + closed, "AWS_ENDPOINT_URL_STS=", "AWS_ENDPOINT_URL=",
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"), "AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_PROFILE=", "OFFLOAD_BUCKET=offload-originals", "OFFLOAD_TABLE=offload-ledger"}
	return append(env, extra...)
}

func agentFolders(t *testing.T) []string {
	dir := t.TempDir()
	w, a := filepath.Join(dir, "watch"), filepath.Join(dir, "archive")
	os.Mkdir(w, 0o755)
	os.Mkdir(a, 0o755)
	return []string{"--watch", w, "--archive", a}
}

// runAgent runs the binary to its end and returns its output and status.
func runAgent(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("offload-agent %s → exit %d\n%s", strings.Join(args, " "), code, out.String())
	return out.String(), code
}

// TestOnceWithoutCredentialsExits4: with no credentials anywhere in the
// SDK's chain, once stops at start with exit status 4 and says how to give
// the agent credentials. Before: it logged one warning (the orphan sweep's)
// and exited 0 with nothing done.
func TestOnceWithoutCredentialsExits4(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	out, code := runAgent(t, bin, startEnv(t, "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN="),
		append([]string{"once"}, agentFolders(t)...)...)
	if code != exitAWSStart {
		t.Errorf("exit %d; want %d", code, exitAWSStart)
	}
	for _, want := range []string{"no AWS credentials", "AWS_ACCESS_KEY_ID", "/etc/offload/agent.env", "instance profile"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not mention %q", want)
		}
	}
}

// TestUnreachableAWSAtStart: when nothing answers at start, once exits 4
// (a one-shot run that cannot reach AWS has nothing to wait for), but run
// carries on: an outage at start is an outage like any later one, which
// the breaker and /readyz handle, and infra/soak restarts the agent during
// 60 s outages and counts an exit as a crash.
func TestUnreachableAWSAtStart(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	env := startEnv(t, "AWS_ACCESS_KEY_ID=AKIAEXAMPLE0000TEST", "AWS_SECRET_ACCESS_KEY=secret")

	out, code := runAgent(t, bin, env, append([]string{"once"}, agentFolders(t)...)...)
	if code != exitAWSStart || !strings.Contains(out, "AWS cannot be reached") {
		t.Errorf("once: exit %d; want %d and \"AWS cannot be reached\"", code, exitAWSStart)
	}

	logPath := filepath.Join(t.TempDir(), "run.log")
	p := stacktest.Start(t, env, logPath, bin, append([]string{"run"}, agentFolders(t)...)...)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "carrying on") && strings.Contains(string(b), "offload-agent starting") {
			break
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("run did not carry on past an unreachable AWS at start (exited: %v):\n%s", p.Exited(), b)
		}
	}
	if err := p.Stop(30 * time.Second); err != nil {
		t.Errorf("run after SIGTERM: %v; want exit 0", err)
	}
}

// TestRunWithRefusedCredentialsExits4: credentials S3 refuses (a wrong
// secret key: SignatureDoesNotMatch) stop run at start with exit status 4,
// for systemd to restart, rather than an agent that stays up and fails
// every file.
func TestRunWithRefusedCredentialsExits4(t *testing.T) {
	t.Parallel()
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	c := st.Credentials(t, stacktest.Agent)
	env := []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=not-" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken}
	out, code := runAgent(t, bin, env, append([]string{"run", "--key-prefix", stacktest.Prefix(t)}, agentFolders(t)...)...)
	if code != exitAWSStart {
		t.Errorf("exit %d; want %d", code, exitAWSStart)
	}
	if !strings.Contains(out, "refused the credentials") {
		t.Errorf("output does not say the credentials were refused")
	}
}
