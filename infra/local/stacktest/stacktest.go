// Package stacktest connects integration tests to the real local stack that
// infra/local/stack starts (MinIO or versitygw, dynalite, Toxiproxy).
//
// The stack is described by the environment "infra/local/stack env" prints.
// Without it an integration test is skipped, unless OFFLOAD_REQUIRE_STACK=1
// (as in "make test" and CI): then it fails, so a missing stack can never
// pass for a green run.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/infra/local/loopback"
)

// RequireEnv names the variable that turns a missing stack from a skip into
// a failure.
const RequireEnv = "OFFLOAD_REQUIRE_STACK"

// Stack is the running local stack.
type Stack struct {
	S3Endpoint       string // AWS_ENDPOINT_URL_S3
	DynamoDBEndpoint string // AWS_ENDPOINT_URL_DYNAMODB
	Region           string // AWS_REGION
	Bucket           string // OFFLOAD_BUCKET
	Table            string // OFFLOAD_TABLE
	ToxiproxyURL     string // TOXIPROXY_URL
	ToxiproxyCLI     string // OFFLOAD_TOXIPROXY_CLI
	LambdaRIE        string // OFFLOAD_AWS_LAMBDA_RIE
	S3Kind           string // OFFLOAD_STACK_S3: minio or versitygw
	MinIO            string // OFFLOAD_MINIO: the MinIO binary, for private servers
	// DynaliteRestartsFile is OFFLOAD_DYNALITE_RESTARTS: where the stack's
	// supervisor records each restart of dynalite (see DynaliteRestarts).
	DynaliteRestartsFile string
	// KMSKeyFile is OFFLOAD_KMS_KEY_FILE, set when the stack runs with
	// --kms: MinIO's static KMS key (name:base64), and the bucket's
	// default encryption is SSE-KMS with it. StartMinIO follows it.
	KMSKeyFile string
}

// Require returns the running stack. Without one it skips the test, or
// fails it when OFFLOAD_REQUIRE_STACK=1.
func Require(t testing.TB) *Stack {
	t.Helper()
	s := &Stack{
		S3Endpoint:       os.Getenv("AWS_ENDPOINT_URL_S3"),
		DynamoDBEndpoint: os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"),
		Region:           os.Getenv("AWS_REGION"),
		Bucket:           os.Getenv("OFFLOAD_BUCKET"),
		Table:            os.Getenv("OFFLOAD_TABLE"),
		ToxiproxyURL:     os.Getenv("TOXIPROXY_URL"),
		ToxiproxyCLI:     os.Getenv("OFFLOAD_TOXIPROXY_CLI"),
		LambdaRIE:        os.Getenv("OFFLOAD_AWS_LAMBDA_RIE"),
		S3Kind:           os.Getenv("OFFLOAD_STACK_S3"),
		MinIO:            os.Getenv("OFFLOAD_MINIO"),

		DynaliteRestartsFile: os.Getenv("OFFLOAD_DYNALITE_RESTARTS"),
		KMSKeyFile:           os.Getenv("OFFLOAD_KMS_KEY_FILE"),
	}
	missing := func(why string) {
		t.Helper()
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("the local stack is required (%s=1) but %s; run the tests through \"make test\" or eval \"$(infra/local/stack env)\"", RequireEnv, why)
		}
		t.Skipf("no local stack (%s); run \"make test\", or infra/local/stack up and eval \"$(infra/local/stack env)\"", why)
	}
	for name, v := range map[string]string{
		"AWS_ENDPOINT_URL_S3": s.S3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB": s.DynamoDBEndpoint,
		"AWS_REGION": s.Region, "OFFLOAD_BUCKET": s.Bucket, "OFFLOAD_TABLE": s.Table, "TOXIPROXY_URL": s.ToxiproxyURL,
	} {
		if v == "" {
			missing(name + " is not set")
			return nil
		}
	}
	for _, endpoint := range []string{s.S3Endpoint, s.DynamoDBEndpoint, s.ToxiproxyURL} {
		err := answers(endpoint)
		if err != nil && endpoint == s.DynamoDBEndpoint && s.DynaliteRestartsFile != "" {
			// The stack's dynalite is supervised: a test that resets a
			// request mid-body kills it, and it answers again a moment
			// later. A test that starts in that moment waits for it.
			err = answersWithin(endpoint, dynaliteRestartWait)
		}
		if err != nil {
			missing(err.Error())
			return nil
		}
	}
	return s
}

// dynaliteRestartWait bounds how long Require waits for the supervised
// dynalite to come back; a restart takes about a second.
const dynaliteRestartWait = 30 * time.Second

// answersWithin is answers, asked again until it succeeds or d has passed.
func answersWithin(endpoint string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := answers(endpoint)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Unavailable ends a test that lacks something outside the stack it needs
// (a second file system, a system tool): a skip, or a failure when
// OFFLOAD_REQUIRE_STACK=1, so a complete run cannot pass without it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("required (%s=1) but unavailable: "+format, append([]any{RequireEnv}, args...)...)
	}
	t.Skipf("unavailable: "+format, args...)
}

// answers checks that something accepts connections at the endpoint, which
// must be on loopback: the tests never send traffic anywhere else.
func answers(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
		return &net.AddrError{Err: "not a loopback address", Addr: u.Host}
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// AWSConfig returns an SDK configuration for the stack, loaded from the
// environment the way the agent and the resolver load theirs, but never from
// the shared config files of the machine.
func (s *Stack) AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
	)
	if err != nil {
		t.Fatalf("load AWS config for the local stack: %v", err)
	}
	return cfg
}

// S3 returns an S3 client for the stack (path-style, as MinIO and
// versitygw on an IP address need).
func (s *Stack) S3(t testing.TB) *s3.Client { return s.S3At(t, s.S3Endpoint) }

// S3At returns an S3 client for the stack that connects to endpoint, for
// example a Proxy's.
func (s *Stack) S3At(t testing.TB, endpoint string) *s3.Client {
	return s3.NewFromConfig(s.AWSConfig(t), func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = aws.String(endpoint)
	})
}

// DynamoDB returns a DynamoDB client for the stack.
func (s *Stack) DynamoDB(t testing.TB) *dynamodb.Client { return s.DynamoDBAt(t, s.DynamoDBEndpoint) }

// DynamoDBAt returns a DynamoDB client that connects to endpoint.
func (s *Stack) DynamoDBAt(t testing.TB, endpoint string) *dynamodb.Client {
	return dynamodb.NewFromConfig(s.AWSConfig(t), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

var unsafeInKey = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Prefix returns a key prefix no other test uses ("test/TestName/1a2b3c4d/"),
// so tests can share the bucket and the table and run in parallel.
func Prefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "test/" + unsafeInKey.ReplaceAllString(t.Name(), "_") + "/" + hex.EncodeToString(b[:]) + "/"
}

// FreeAddr returns a free "127.0.0.1:PORT" for a server a test starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
