package stacktest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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
}

// StartMinIO starts a private MinIO with the stack's credentials and the
// named bucket, using the binary the stack installed (OFFLOAD_MINIO).
func (s *Stack) StartMinIO(t testing.TB, bucket string) *MinIO {
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
	m.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s in the private MinIO: %v", bucket, err)
	}
	return m
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
