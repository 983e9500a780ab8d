package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// MinIO is a private MinIO server for one test, for faults that would
// disturb the stack's shared one, such as a restart. It speaks plain HTTP
// on a free loopback port and has one bucket.
type MinIO struct {
	Endpoint string
	Bucket   string
	addr     string
	args     []string
	env      []string
	log      string
	proc     *Process
	root     *s3.Client
	t        testing.TB
	// KMS: the server has a static KMS key and the bucket encrypts with
	// SSE-KMS by default (the stack's --kms, or StartKMSMinIO).
	KMS bool
	// kmsGrants are what the template each credential was made from
	// (Credentials) grants on the KMS key, by access key, for AWSShim.
	kmsGrants map[string]templatepolicy.KMS
}

// StartMinIO starts a private MinIO with the stack's credentials and the
// named bucket, using the binary the stack installed (OFFLOAD_MINIO).
//
// On a stack up with --kms it follows the flag: the same static KMS key,
// and SSE-KMS as the bucket's default encryption.
func (s *Stack) StartMinIO(t testing.TB, bucket string) *MinIO {
	t.Helper()
	var key string
	if s.KMSKeyFile != "" {
		b, err := os.ReadFile(s.KMSKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		key = string(b)
	}
	return s.startMinIO(t, bucket, key)
}

// StartKMSMinIO is StartMinIO with SSE-KMS whatever the stack's flags: a
// static KMS key of its own (the stack's with --kms), and SSE-KMS with it
// as the bucket's default encryption.
func (s *Stack) StartKMSMinIO(t testing.TB, bucket string) *MinIO {
	t.Helper()
	if s.KMSKeyFile != "" {
		return s.StartMinIO(t, bucket)
	}
	var k [32]byte
	_, _ = rand.Read(k[:])
	return s.startMinIO(t, bucket, kmsKeyName+":"+base64.StdEncoding.EncodeToString(k[:]))
}

// kmsKeyName is the name of the static KMS key, as the stack's (stackctl's
// kms.go).
const kmsKeyName = "offload-site-key"

func (s *Stack) startMinIO(t testing.TB, bucket, kmsKey string) *MinIO {
	t.Helper()
	if s.MinIO == "" {
		t.Fatal("OFFLOAD_MINIO is not set: this test needs the MinIO binary infra/local/stack installs")
	}
	dir := t.TempDir()
	m := &MinIO{Bucket: bucket, addr: FreeAddr(t), log: filepath.Join(dir, "minio.log"), t: t}
	m.Endpoint = "http://" + m.addr
	m.root = s.S3At(t, m.Endpoint)
	m.args = []string{"server", "--quiet", "--address", m.addr, "--console-address", FreeAddr(t), filepath.Join(dir, "data")}
	m.env = []string{"MINIO_ROOT_USER=" + os.Getenv("AWS_ACCESS_KEY_ID"), "MINIO_ROOT_PASSWORD=" + os.Getenv("AWS_SECRET_ACCESS_KEY"),
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION=" + s.Region}
	if kmsKey != "" {
		m.env = append(m.env, "MINIO_KMS_SECRET_KEY="+kmsKey)
		m.KMS = true
	}
	m.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s in the private MinIO: %v", bucket, err)
	}
	if m.KMS {
		_, err := m.root.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(bucket),
			ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
				ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{
					SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(kmsKeyName)},
				BucketKeyEnabled: aws.Bool(true),
			}}}})
		if err != nil {
			t.Fatalf("SSE-KMS on the private MinIO's bucket %s: %v", bucket, err)
		}
	}
	return m
}

// Credentials returns temporary credentials on this server restricted to
// the S3 part of what template (a copy of template.yaml, perhaps with an
// action taken away: templatepolicy.Without) grants component, and notes
// what it grants on the KMS key for AWSShim.
func (m *MinIO) Credentials(s *Stack, template []byte, component string) Credentials {
	m.t.Helper()
	doc, err := templatepolicy.S3Policy(template, component, templatepolicy.Target{Bucket: m.Bucket})
	if err != nil {
		m.t.Fatal(err)
	}
	kms, err := templatepolicy.KMSGrants(template, component)
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := templatepolicy.Assume(ctx, s.AWSConfig(m.t), m.Endpoint, component, doc, time.Hour)
	if err != nil {
		m.t.Fatalf("the private MinIO: %v", err)
	}
	if m.kmsGrants == nil {
		m.kmsGrants = map[string]templatepolicy.KMS{}
	}
	m.kmsGrants[c.AccessKeyID] = kms
	return Credentials{c.AccessKeyID, c.SecretAccessKey, c.SessionToken}
}

// AWSShim starts the stack's AWS shim (stackctl aws-shim) in front of this
// server for the test, and returns its endpoint. On a KMS server it
// refuses, as AWS does, the key's use to the callers Credentials made
// whose template lacks the KMS permission. Plain HTTP. Call it after
// Credentials: the shim knows the callers made before it starts.
func (m *MinIO) AWSShim(t testing.TB) string {
	t.Helper()
	addr := FreeAddr(t)
	args := []string{"aws-shim", "--listen", addr, "--upstream", m.Endpoint, "--bucket", m.Bucket}
	if m.KMS {
		var noDecrypt, noGenerate []string
		for key, g := range m.kmsGrants {
			if !g.Decrypt {
				noDecrypt = append(noDecrypt, key)
			}
			if !g.GenerateDataKey {
				noGenerate = append(noGenerate, key)
			}
		}
		args = append(args, "--kms", "--no-kms-decrypt", strings.Join(noDecrypt, ","), "--no-kms-generate-data-key", strings.Join(noGenerate, ","))
	}
	bin := Build(t, "./infra/local/stackctl")["stackctl"]
	Start(t, nil, filepath.Join(t.TempDir(), "aws-shim.log"), bin, args...)
	WaitListening(t, addr)
	return "http://" + addr
}

// Env returns environment entries that give a command the credentials of
// component (Agent, Resolver, Audit) on this server: temporary
// credentials whose only permissions are the S3 part of what template.yaml
// grants the component, for this server's bucket, as the stack makes for
// its own MinIO. MinIO keeps them on disk, so they outlive a Restart.
func (m *MinIO) Env(s *Stack, component string) []string {
	m.t.Helper()
	tmpl, err := os.ReadFile(templatepolicy.TemplatePath(RepoRoot(m.t)))
	if err != nil {
		m.t.Fatal(err)
	}
	doc, err := templatepolicy.S3Policy(tmpl, component, templatepolicy.Target{Bucket: m.Bucket})
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Longer than any soak.
	c, err := templatepolicy.Assume(ctx, s.AWSConfig(m.t), m.Endpoint, component, doc, 12*time.Hour)
	if err != nil {
		m.t.Fatalf("the private MinIO: %v", err)
	}
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken}
}

func (m *MinIO) start() {
	m.t.Helper()
	m.proc = Start(m.t, m.env, m.log, os.Getenv("OFFLOAD_MINIO"), m.args...)
	// MinIO listens before it serves, and its health endpoint says ready
	// before its object layer is (S3 calls answer 503 "Server not
	// initialized yet" for a moment): wait for both.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if ready(m.Endpoint+"/minio/health/ready") && m.serves() {
			return
		}
		if time.Now().After(deadline) || m.proc.Exited() {
			b, _ := os.ReadFile(m.log)
			m.t.Fatalf("private MinIO on %s did not become ready:\n%s", m.addr, b)
		}
	}
}

// S3Root returns an S3 client for this server with the root credentials,
// to set up and inspect.
func (m *MinIO) S3Root() *s3.Client { return m.root }

// Kill stops the server with SIGKILL, the way a crash would.
func (m *MinIO) Kill() { m.proc.Kill() }

// Restart starts the server again after Kill, on the same address and data.
func (m *MinIO) Restart() {
	m.t.Helper()
	// The port was just ours; wait until the kernel lets it be bound again.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l, err := net.Listen("tcp", m.addr); err == nil {
			l.Close()
			break
		}
	}
	m.start()
}

// serves reports whether MinIO answers an S3 call other than with a 5xx.
func (m *MinIO) serves() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := m.root.ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	var re interface{ HTTPStatusCode() int }
	return err == nil || errors.As(err, &re) && re.HTTPStatusCode() < 500
}

func ready(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
