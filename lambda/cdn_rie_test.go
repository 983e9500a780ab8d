package lambda_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// TestBootstrapUnderRIECDN is TestBootstrapUnderRIE with the CDN on: the
// real Lambda binary under aws-lambda-rie, configured as template.yaml
// configures it with Cdn=on, reads its private key from the Secrets
// Manager stand-in with the resolver's credentials (the grant derived
// from the template) and answers a 302 to a CloudFront signed URL that
// openssl verifies. The same binary with credentials the template does
// not let read the secret answers a bare 500.
func TestBootstrapUnderRIECDN(t *testing.T) {
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

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	// Who may read the secret: whom the template grants it with Cdn=on.
	const secret = "arn:aws:secretsmanager:us-east-1:000000000000:secret:offload-cdn-key-AbCdEf"
	raw, err := os.ReadFile(templatepolicy.TemplatePath(stacktest.RepoRoot(t)))
	if err != nil {
		t.Fatal(err)
	}
	var allowed []string
	for _, c := range []string{stacktest.Resolver, stacktest.Agent} {
		doc, err := templatepolicy.Policy(raw, c, templatepolicy.Target{Bucket: w.st.Bucket, Table: w.st.Table,
			Conditions: map[string]bool{"CdnOn": true}, Parameters: map[string]string{"CdnPrivateKeySecret": secret}})
		if err != nil {
			t.Fatal(err)
		}
		if doc.Allows("secretsmanager:GetSecretValue", secret) {
			allowed = append(allowed, w.st.Credentials(t, c).AccessKeyID)
		}
	}
	sm := stacktest.StartSecretsManager(t, map[string]string{secret: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))}, allowed...)

	const cdn = "https://d111111abcdef8.cloudfront.net"
	env := []string{"AWS_ENDPOINT_URL_S3=" + w.s3Endpoint, "AWS_ENDPOINT_URL_SECRETS_MANAGER=" + sm,
		"OFFLOAD_KEY_PREFIX=" + w.prefix, "OFFLOAD_URL_PREFIX=/static/", "OFFLOAD_LOG_FORMAT=text",
		"OFFLOAD_CDN_URL=" + cdn, "OFFLOAD_CDN_KEY_PAIR_ID=K2JCJMDEHXQW5F", "OFFLOAD_CDN_PRIVATE_KEY_SECRET=" + secret}
	out, rawResp := invokeUnderRIE(t, w.st.LambdaRIE, bin, append(w.st.Env(t, stacktest.Resolver), env...)...)
	if out.StatusCode != http.StatusFound {
		t.Fatalf("status %d; want 302 (response %s)", out.StatusCode, rawResp)
	}
	loc := out.Headers["Location"]
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(loc, cdn+"/") || u.Path != "/"+w.prefix+"cat.jpg" || u.Query().Get("response-content-type") != "image/jpeg" {
		t.Fatalf("Location %q (%v); want the CloudFront URL of %scat.jpg as image/jpeg", loc, err, w.prefix)
	}
	verifyCloudFrontSignature(t, loc, "sha256", pub)

	// The agent's credentials: the stand-in answers AccessDeniedException,
	// and the function a bare 500.
	out, rawResp = invokeUnderRIE(t, w.st.LambdaRIE, bin, append(w.st.Env(t, stacktest.Agent), env...)...)
	if out.StatusCode != http.StatusInternalServerError || strings.Contains(string(rawResp), "secret") || strings.Contains(string(rawResp), "PRIVATE") {
		t.Errorf("bootstrap that may not read the key answered %s; want a bare 500", rawResp)
	}
}
