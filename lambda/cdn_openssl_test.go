package lambda_test

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/lambda"
	"github.com/photosleeve/offload/lambda/cdnsign"
)

// openssl runs the openssl command; without it the test cannot check the
// signature independently, which fails a run that requires the stack
// (infra/local/stack installs openssl).
func openssl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		stacktest.Unavailable(t, "openssl not on PATH: the independent check of the resolver's CloudFront signatures cannot run")
	}
	return exec.Command(bin, args...).CombinedOutput()
}

// TestCDNSignatureVerifiesWithOpenSSL: the Location of a CDN-on answer is
// checked as CloudFront documents a canned-policy signed URL, by openssl
// and not by our code: the resource is the URL before Expires; the policy
// {"Statement":[{"Resource":"…","Condition":{"DateLessThan":{"AWS:EpochTime":…}}}]}
// without white space; Signature is its base64 with + = / as - _ ~,
// signed with SHA-1 (RSA) or, with Hash-Algorithm=SHA256, SHA-256 (ECDSA)
// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html).
// Both key types CloudFront takes, keys made by openssl.
func TestCDNSignatureVerifiesWithOpenSSL(t *testing.T) {
	for _, k := range []struct {
		name, hash string
		gen        []string
	}{
		{"rsa-2048", "sha1", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}},
		{"ecdsa-p256", "sha256", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}},
	} {
		t.Run(k.name, func(t *testing.T) {
			dir := t.TempDir()
			priv, pub := filepath.Join(dir, "priv.pem"), filepath.Join(dir, "pub.pem")
			if out, err := openssl(t, append(k.gen, "-out", priv)...); err != nil {
				t.Fatalf("openssl genpkey: %v\n%s", err, out)
			}
			if out, err := openssl(t, "pkey", "-in", priv, "-pubout", "-out", pub); err != nil {
				t.Fatalf("openssl pkey: %v\n%s", err, out)
			}
			pemKey, err := os.ReadFile(priv)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := cdnsign.New("K2JCJMDEHXQW5F", pemKey)
			if err != nil {
				t.Fatal(err)
			}
			c := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
				BaseEndpoint: aws.String("http://127.0.0.1:9000"), UsePathStyle: true})
			h, err := lambda.NewHandler(lambda.Config{Mapping: offload.DefaultMapping, Bucket: "bucket",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				CDN:    &lambda.CDN{BaseURL: "https://d111111abcdef8.cloudfront.net", Signer: signer}}, s3.NewPresignClient(c), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/2026/caf%C3%A9%20+%25%3F%23.html", nil))
			loc := rec.Header().Get("Location")
			if rec.Code != http.StatusFound {
				t.Fatalf("status %d; want 302", rec.Code)
			}
			verifyCloudFrontSignature(t, loc, k.hash, pub)
		})
	}
}

// verifyCloudFrontSignature checks the signed URL loc with openssl and the
// public key pub, and that a tampered policy does not verify.
func verifyCloudFrontSignature(t *testing.T, loc, hash, pub string) {
	t.Helper()
	resource, params, ok := strings.Cut(loc, "&Expires=")
	if !ok {
		resource, params, ok = strings.Cut(loc, "?Expires=")
	}
	if !ok {
		t.Fatalf("no Expires in %s", loc)
	}
	q, err := url.ParseQuery("Expires=" + params)
	if err != nil {
		t.Fatalf("signature parameters of %s: %v", loc, err)
	}
	wantHash := map[string]string{"sha1": "", "sha256": "SHA256"}[hash]
	if q.Get("Hash-Algorithm") != wantHash || q.Get("Key-Pair-Id") != "K2JCJMDEHXQW5F" {
		t.Errorf("Hash-Algorithm %q, Key-Pair-Id %q in %s; want %q and the key's ID", q.Get("Hash-Algorithm"), q.Get("Key-Pair-Id"), loc, wantHash)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.NewReplacer("-", "+", "_", "=", "~", "/").Replace(q.Get("Signature")))
	if err != nil {
		t.Fatalf("Signature of %s: %v", loc, err)
	}
	dir := t.TempDir()
	sigPath := filepath.Join(dir, "sig.bin")
	if err := os.WriteFile(sigPath, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(resource, expires string) (bool, string) {
		policy := `{"Statement":[{"Resource":"` + resource + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + expires + `}}}]}`
		policyPath := filepath.Join(dir, "policy.json")
		if err := os.WriteFile(policyPath, []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := openssl(t, "dgst", "-"+hash, "-verify", pub, "-signature", sigPath, policyPath)
		return err == nil && strings.Contains(string(out), "Verified OK"), strings.TrimSpace(string(out))
	}
	if ok, out := verify(resource, q.Get("Expires")); !ok {
		t.Fatalf("openssl does not verify the resolver's URL %s: %s", loc, out)
	}
	if ok, _ := verify(strings.Replace(resource, "response-content-type=", "response-content-type=x", 1), q.Get("Expires")); ok {
		t.Errorf("openssl verified a policy for another URL")
	}
	if ok, _ := verify(resource, q.Get("Expires")+"0"); ok {
		t.Errorf("openssl verified a policy with another expiry")
	}
}
