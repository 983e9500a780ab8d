package stacktest

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// The components that run under their own credentials, restricted by the
// stack to the S3 part of what template.yaml grants each.
const (
	Agent    = templatepolicy.Agent
	Resolver = templatepolicy.Resolver
	Audit    = templatepolicy.Audit
	Eraser   = templatepolicy.Eraser
)

// Credentials are a component's credentials in the stack.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// Credentials returns what the stack granted component (agent, resolver,
// audit, eraser, cloudfront): temporary credentials whose only permissions are the S3 part of
// the component's policy in template.yaml. The stack's root credentials
// (AWS_ACCESS_KEY_ID) are for setting up and inspecting only.
//
// Only MinIO enforces policies; on a versitygw stack the root credentials
// are returned, and the test says so in its log.
func (s *Stack) Credentials(t testing.TB, component string) Credentials {
	t.Helper()
	p := "OFFLOAD_" + strings.ToUpper(component) + "_"
	c := Credentials{os.Getenv(p + "AWS_ACCESS_KEY_ID"), os.Getenv(p + "AWS_SECRET_ACCESS_KEY"), os.Getenv(p + "AWS_SESSION_TOKEN")}
	if c.AccessKeyID != "" && c.SecretAccessKey != "" {
		return c
	}
	if s.S3Kind == "versitygw" {
		t.Logf("versitygw enforces no IAM policy: the %s runs with the stack's root credentials", component)
		return Credentials{os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""}
	}
	t.Fatalf("the stack exported no credentials for the %s (%sAWS_ACCESS_KEY_ID): bring it up with this version of infra/local/stack", component, p)
	return c
}

// Env is the component's credentials as environment entries for a command
// the test starts: they replace the stack's root credentials.
func (s *Stack) Env(t testing.TB, component string) []string {
	t.Helper()
	c := s.Credentials(t, component)
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken}
}

// EnvWithout is Env for credentials granted from a copy of the template
// that lacks one action of the component's policy (as make check-grants
// builds them): a test shows what the component does without that grant.
// Made on the stack's MinIO at each call; on versitygw, which enforces no
// policy, the test is skipped.
func (s *Stack) EnvWithout(t testing.TB, component, action string) []string {
	t.Helper()
	if s.S3Kind == "versitygw" {
		t.Skipf("versitygw enforces no IAM policy: the %s cannot be refused %s", component, action)
	}
	if strings.HasPrefix(action, "kms:") {
		// MinIO checks no KMS permission and the stack's AWS shim knows
		// only the credentials made at its start.
		t.Fatalf("EnvWithout(%s, %s): the stack cannot refuse a KMS action to credentials made now; use StartKMSMinIO, MinIO.Credentials and MinIO.AWSShim", component, action)
	}
	tmpl, err := os.ReadFile(templatepolicy.TemplatePath(RepoRoot(t)))
	if err != nil {
		t.Fatal(err)
	}
	less, err := templatepolicy.Without(tmpl, component, action)
	if err != nil {
		t.Fatal(err)
	}
	// The stack's grants are for every key (its KeyPrefix is empty), as here.
	doc, err := templatepolicy.S3Policy(less, component, templatepolicy.Target{Bucket: s.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := templatepolicy.Assume(ctx, s.AWSConfig(t), s.S3Endpoint, component, doc, time.Hour)
	if err != nil {
		t.Fatalf("credentials without %s: %v", action, err)
	}
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken}
}

// ConfigFor returns an SDK configuration with the component's credentials.
func (s *Stack) ConfigFor(t testing.TB, component string) aws.Config {
	t.Helper()
	cfg := s.AWSConfig(t)
	c := s.Credentials(t, component)
	cfg.Credentials = credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	return cfg
}

// S3For returns an S3 client with the component's credentials that
// connects to endpoint (the stack's S3Endpoint, AWSShimEndpoint, or a
// Proxy's).
func (s *Stack) S3For(t testing.TB, component, endpoint string) *s3.Client {
	t.Helper()
	return s3.NewFromConfig(s.ConfigFor(t, component), func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = aws.String(endpoint)
	})
}

// StatusOf sends one request without a body to url, as a browser following
// a presigned URL does, and returns the status S3 answered with.
func StatusOf(t testing.TB, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := HTTPClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// AWSShimEndpoint is MinIO behind the stack's AWS shim, which answers what
// AWS documents differently from MinIO (a GET or HEAD of a missing key by a
// caller without s3:ListBucket: 403, not 404). Without a shim (versitygw)
// it is the S3 endpoint itself.
func (s *Stack) AWSShimEndpoint(t testing.TB) string {
	t.Helper()
	if e := os.Getenv("OFFLOAD_AWS_SHIM_S3"); e != "" {
		return e
	}
	if s.S3Kind == "versitygw" {
		return s.S3Endpoint
	}
	t.Fatal("the stack exported no OFFLOAD_AWS_SHIM_S3: bring it up with this version of infra/local/stack")
	return ""
}
