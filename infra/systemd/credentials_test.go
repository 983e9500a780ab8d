package systemd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// This file checks docs/install.md's "Credentials for the agent": the drop-in
// it gives, the modes of the files it installs, and that the agent, with
// nothing in its environment but what the section sets, takes credentials
// from its shared config file (credential_process) and from its shared
// credentials file, and reaches S3 with them.

// docCredentials returns docs/install.md's "Credentials for the agent"
// section and its fenced blocks.
func docCredentials(t *testing.T) (section string, blocks []string) {
	t.Helper()
	section = stacktest.DocSection(t, "docs/install.md", "Credentials for the agent")
	return section, stacktest.DocBlocks(section)
}

// docBlock returns the one fenced block of the section that starts with
// first and contains has.
func docBlock(t *testing.T, first, has string) string {
	t.Helper()
	_, blocks := docCredentials(t)
	var found []string
	for _, b := range blocks {
		if strings.HasPrefix(b, first) && strings.Contains(b, has) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/install.md, Credentials for the agent: %d blocks start with %q and contain %q; want 1", len(found), first, has)
	}
	return found[0]
}

// keyValues reads "key = value" (or key=value) lines.
func keyValues(block string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(block, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestDocumentedCredentialDropInVerifies: the documented LoadCredential= drop-in,
// beside the unit, passes systemd-analyze verify; it hands the agent the
// root-only file the page installs, under the name the SDK's variable
// then points at in the credentials directory (%d).
func TestDocumentedCredentialDropInVerifies(t *testing.T) {
	dropIn := docBlock(t, "[Service]\n", "LoadCredential=")
	kv := keyValues(dropIn)
	id, source, ok := strings.Cut(kv["LoadCredential"], ":")
	if !ok || id == "" || !strings.HasPrefix(source, "/etc/offload/") {
		t.Errorf("drop-in LoadCredential=%q; want ID:/etc/offload/FILE", kv["LoadCredential"])
	}
	if want := "AWS_SHARED_CREDENTIALS_FILE=%d/" + id; kv["Environment"] != want {
		t.Errorf("drop-in Environment=%q; want %q (%%d is the credentials directory, systemd.unit(5))", kv["Environment"], want)
	}
	section, _ := docCredentials(t)
	if !strings.Contains(section, "install -m 0600 -o root -g root /dev/null "+source+"\n") {
		t.Errorf("docs/install.md does not install %s with mode 0600 owned by root", source)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		stacktest.Unavailable(t, "systemd-analyze (Debian package systemd): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "offload-agent")
	build := exec.Command("go", "build", "-o", bin, "./agent/cmd/offload-agent")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile("offload-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	exe := strings.Fields(unitKeys(t, "offload-agent.service")["Service"]["ExecStart"][0])[0]
	unitPath := filepath.Join(dir, "offload-agent.service")
	if err := os.WriteFile(unitPath, []byte(strings.ReplaceAll(string(unit), exe, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// systemd-analyze verify reads the drop-in folder beside the unit it is
	// given, as systemd reads /etc/systemd/system/NAME.service.d/.
	overrides := filepath.Join(dir, "offload-agent.service.d")
	if err := os.Mkdir(overrides, 0o755); err != nil {
		t.Fatal(err)
	}
	verify := func(dropIn string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(overrides, "override.conf"), []byte(dropIn), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", unitPath).CombinedOutput()
		if err != nil {
			return err.Error() + ": " + string(out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := verify(dropIn); out != "" {
		t.Errorf("systemd-analyze verify with the documented drop-in:\n%s\n--- drop-in:\n%s", out, dropIn)
	}
	// The check sees the drop-in: a mistake in it is reported.
	if out := verify(dropIn + "LoadCredentail=x:/y\nEnvironment=X=%Q\n"); !strings.Contains(out, "LoadCredentail") || !strings.Contains(out, "%Q") {
		t.Errorf("systemd-analyze verify did not report the mistakes in the drop-in: %q", out)
	}
}

// TestDocumentedCredentialFilesAreClosed: every file the section installs is
// closed to other users (no read bit for "other"), and those that hold a
// secret are root's alone or the offload group's.
func TestDocumentedCredentialFilesAreClosed(t *testing.T) {
	section, _ := docCredentials(t)
	installs := 0
	for _, line := range strings.Split(section, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "sudo" || fields[1] != "install" {
			continue
		}
		installs++
		mode := ""
		for i, f := range fields {
			if f == "-m" && i+1 < len(fields) {
				mode = fields[i+1]
			}
		}
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			t.Errorf("%q: no -m MODE (install's default, 0755, lets everyone read)", line)
			continue
		}
		if m&0o007 != 0 {
			t.Errorf("%q: mode %s lets every local user in", line, mode)
		}
		if !strings.Contains(line, "-o root") {
			t.Errorf("%q: not owned by root", line)
		}
	}
	if installs < 3 {
		t.Errorf("found %d install lines in the section; want the credentials file, the config file and the certificate", installs)
	}
	if strings.Contains(section, "sudo tee /etc/offload") {
		t.Errorf("the section writes a file with sudo tee, which creates it 0644")
	}
}

// TestAgentTakesCredentialsFromDocumentedFiles runs offload-agent once with no
// credential in its environment, no home (the unit's ProtectHome=yes) and
// no instance metadata, but the files docs/install.md writes: a shared config
// file whose credential_process prints the stack's agent credentials in
// the SDK's JSON format, or a shared credentials file at the path the
// drop-in's %d gives. Either way the agent offloads a file to MinIO, under
// the template's AgentPolicy; with neither it offloads nothing.
func TestAgentTakesCredentialsFromDocumentedFiles(t *testing.T) {
	st := stacktest.Require(t)
	creds := st.Credentials(t, stacktest.Agent)
	dir := t.TempDir()
	bin := filepath.Join(dir, "offload-agent")
	build := exec.Command("go", "build", "-o", bin, "./agent/cmd/offload-agent")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	// credential_process: the documented config file, its command a script
	// that prints what the credential helper would. The format:
	// https://docs.aws.amazon.com/sdkref/latest/guide/feature-process-credentials.html
	// (Version 1, AccessKeyId, SecretAccessKey, and for temporary
	// credentials SessionToken and Expiration).
	processOut, err := json.Marshal(map[string]any{
		"Version": 1, "AccessKeyId": creds.AccessKeyID, "SecretAccessKey": creds.SecretAccessKey,
		"SessionToken": creds.SessionToken, "Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "credential-helper")
	ran := filepath.Join(dir, "credential-helper-ran")
	script := "#!/bin/sh\ntouch '" + ran + "'\ncat <<'EOF'\n" + string(processOut) + "\nEOF\n"
	if err := os.WriteFile(helper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	configBlock := docBlock(t, "[default]\n", "credential_process")
	var config []string
	for _, line := range strings.Split(configBlock, "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "credential_process" {
			line = k + "= " + helper
		}
		config = append(config, line)
	}
	configFile := filepath.Join(dir, "aws-config")
	writeFile(t, configFile, strings.Join(config, "\n"), 0o640)
	configEnv := keyValues(docBlock(t, "AWS_CONFIG_FILE=", ""))["AWS_CONFIG_FILE"]
	if configEnv != "/etc/offload/aws-config" || !strings.Contains(configBlock, "[default]") {
		t.Fatalf("docs/install.md: AWS_CONFIG_FILE=%q; want the config file it writes, /etc/offload/aws-config", configEnv)
	}

	// The shared credentials file, as LoadCredential= presents it: a copy
	// in the credentials directory, under the drop-in's ID.
	credsBlock := docBlock(t, "[default]\n", "aws_access_key_id")
	id, _, _ := strings.Cut(keyValues(docBlock(t, "[Service]\n", "LoadCredential="))["LoadCredential"], ":")
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(credsBlock), "\n") {
		k, _, ok := strings.Cut(line, "=")
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			line = k + "= " + creds.AccessKeyID
		case "aws_secret_access_key":
			line = k + "= " + creds.SecretAccessKey
		default:
			if ok {
				t.Fatalf("docs/install.md credentials file: unexpected line %q", line)
			}
		}
		lines = append(lines, line)
	}
	if creds.SessionToken != "" { // the stack's credentials are temporary; an IAM user's are not
		lines = append(lines, "aws_session_token = "+creds.SessionToken)
	}
	credDir := filepath.Join(dir, "credentials")
	if err := os.Mkdir(credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(credDir, id), strings.Join(lines, "\n")+"\n", 0o400)

	for _, tt := range []struct {
		name      string
		env       []string
		offloaded bool
	}{
		{"credential_process in AWS_CONFIG_FILE", []string{"AWS_CONFIG_FILE=" + configFile}, true},
		{"AWS_SHARED_CREDENTIALS_FILE=%d/" + id, []string{"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(credDir, id)}, true},
		{"no credentials", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(ran)
			watch, archive := filepath.Join(t.TempDir(), "static"), filepath.Join(t.TempDir(), "archive")
			for _, d := range []string{watch, archive} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(watch, "photo.jpg"), "an original", 0o644)
			// Old enough to be settled at once.
			old := time.Now().Add(-time.Hour)
			os.Chtimes(filepath.Join(watch, "photo.jpg"), old, old)
			prefix := stacktest.Prefix(t)

			cmd := exec.Command(bin, "once", "--watch", watch, "--archive", archive, "--key-prefix", prefix, "--host", "test-host")
			cmd.Env = append(agentEnv(t, st), tt.env...)
			out, runErr := cmd.CombinedOutput()
			t.Logf("offload-agent once (%v):\n%s", runErr, out)

			list, err := st.S3(t).ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(st.Bucket), Prefix: aws.String(prefix)})
			if err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(filepath.Join(archive, "photo.jpg"))
			archived := statErr == nil
			if got := len(list.Contents) == 1 && archived; got != tt.offloaded {
				t.Errorf("offloaded = %v (objects under the prefix: %d, archived: %v); want %v", got, len(list.Contents), archived, tt.offloaded)
			}
			if tt.offloaded && runErr != nil {
				t.Errorf("offload-agent once: %v", runErr)
			}
			if strings.Contains(tt.name, "credential_process") {
				if _, err := os.Stat(ran); err != nil {
					t.Errorf("the SDK did not run the credential_process command: %v", err)
				}
			}
		})
	}
}

// agentEnv is the stack's environment for the agent with every source of
// credentials but the ones under test taken away: no keys, no profile or
// shared files, no home (ProtectHome=yes) and no instance metadata (the
// SDK would try 169.254.169.254); S3 through the AWS shim.
func agentEnv(t *testing.T, st *stacktest.Stack) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
			"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
			"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "HOME", "AWS_ENDPOINT_URL_S3":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME=/nonexistent", "AWS_EC2_METADATA_DISABLED=true", "AWS_ENDPOINT_URL_S3="+st.AWSShimEndpoint(t))
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != mode {
		t.Fatal(errors.Join(err, errors.New("mode not set")))
	}
}
