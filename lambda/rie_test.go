package lambda_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestBootstrapUnderRIE runs the real Lambda binary (built as "make build"
// builds the bootstrap, for this machine's architecture) under
// aws-lambda-rie on loopback and invokes it with an events/ file.
func TestBootstrapUnderRIE(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	if w.st.LambdaRIE == "" {
		t.Fatal("OFFLOAD_AWS_LAMBDA_RIE is not set: the stack installs aws-lambda-rie")
	}
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/offload-resolver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build bootstrap: %v\n%s", err, out)
	}
	// The function's credentials (only what template.yaml grants it), S3
	// through the AWS shim.
	creds := append(w.st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+w.s3Endpoint)
	out, raw := invokeUnderRIE(t, w.st.LambdaRIE, bin, append(creds, "OFFLOAD_KEY_PREFIX="+w.prefix, "OFFLOAD_URL_PREFIX=/static/", "OFFLOAD_LOG_FORMAT=text")...)
	if out.StatusCode != http.StatusFound {
		t.Fatalf("status %d; want 302 (response %s)", out.StatusCode, raw)
	}
	w.checkLocation(t, "bootstrap get-hit", out.Headers["Location"])
	if got := fetch(t, out.Headers["Location"]); !bytes.Equal(got, w.files["cat.jpg"]) {
		t.Errorf("presigned URL from the bootstrap returned %q", got)
	}

	// A required setting missing: the function still answers, with a bare
	// 500 that leaks nothing.
	out, raw = invokeUnderRIE(t, w.st.LambdaRIE, bin, append(creds, "OFFLOAD_BUCKET=")...)
	if out.StatusCode != http.StatusInternalServerError || strings.Contains(string(raw), "bucket") {
		t.Errorf("misconfigured bootstrap answered %s; want a bare 500", raw)
	}
}

// invokeUnderRIE starts the binary under aws-lambda-rie on loopback with
// extra environment, invokes it once with events/get-hit.json and stops it.
func invokeUnderRIE(t *testing.T, rie, bin string, env ...string) (events.LambdaFunctionURLResponse, []byte) {
	t.Helper()
	rieAddr, apiAddr := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", rieAddr, "--runtime-api-address", apiAddr, bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	body, _ := os.ReadFile(filepath.Join("..", "events", "get-hit.json"))
	invoke := "http://" + rieAddr + "/2015-03-31/functions/function/invocations"
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err = http.Post(invoke, "application/json", bytes.NewReader(body)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("invoke through aws-lambda-rie: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out events.LambdaFunctionURLResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response %q: %v", raw, err)
	}
	return out, raw
}
