package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestSweepFindsUploadsMinIOForgot: MinIO forgets, on a restart, the open
// multipart uploads its unprefixed listing shows (infra/soak's
// TestMinIOListsOpenUploadsByKeyOnly). A stray upload for the key of a
// conflicting file, which stays in the watch folder and is never uploaded
// again, is then found only by listing that key; the sweep must abort it.
func TestSweepFindsUploadsMinIOForgot(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const bucket = "sweep"
	m, root := h.onPrivateMinIO(bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// In S3, one version; in the watch folder, a larger-than-a-part other.
	key := h.key("conflict.jpg")
	if _, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader("the original")}); err != nil {
		t.Fatal(err)
	}
	h.write("conflict.jpg", randomBytes(int(h.cfg.PartSize)+1, 21))
	stray, err := root.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	m.Kill()
	m.Restart()
	uploads := func(prefix *string) int {
		out, err := root.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads)
	}
	if n := uploads(nil); n != 0 {
		t.Fatalf("the unprefixed listing shows %d uploads after the restart; this test needs MinIO to have forgotten the stray one", n)
	}
	if n := uploads(aws.String(key)); n != 1 {
		t.Fatalf("uploads of %s after the restart: %d; want the stray one", key, n)
	}

	_, stop := h.runDaemon(h.cfg)
	defer stop()
	h.waitFor("the conflict", 30*time.Second, func() bool { return strings.Contains(h.logs.String(), "conflict: left in place") })
	h.waitFor("the stray upload "+aws.ToString(stray.UploadId)+" aborted", 30*time.Second, func() bool { return uploads(aws.String(key)) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// onPrivateMinIO starts a MinIO of h's own holding bucket, points h's agent
// at it with the agent's template grants there, and returns it with a
// client of it that has the root credentials.
func (h *harness) onPrivateMinIO(bucket string) (*stacktest.MinIO, *s3.Client) {
	h.t.Helper()
	m := h.st.StartMinIO(h.t, bucket)
	h.cfg.Bucket = bucket
	h.agentS3 = s3.NewFromConfig(h.st.AWSConfig(h.t), func(o *s3.Options) {
		o.UsePathStyle, o.BaseEndpoint = true, aws.String(m.Endpoint)
		o.Credentials = envCredentials(m.Env(h.st, stacktest.Agent))
	})
	return m, h.st.S3At(h.t, m.Endpoint)
}

// envCredentials returns the credentials in environment entries like those
// MinIO.Env returns.
func envCredentials(env []string) aws.CredentialsProvider {
	v := map[string]string{}
	for _, e := range env {
		if k, val, ok := strings.Cut(e, "="); ok {
			v[k] = val
		}
	}
	return credentials.NewStaticCredentialsProvider(v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"], v["AWS_SESSION_TOKEN"])
}
