package stacktest

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestMissingKeyAnswers makes the one documented difference between AWS
// and MinIO that the code must not depend on visible: a HEAD or GET of a
// missing key by a caller without s3:ListBucket (the agent, the resolver)
// is 403 on AWS and 404 on MinIO. The AWS shim answers as AWS does; a
// caller with s3:ListBucket (the audit, root) gets 404 through it, and an
// existing key is served to everyone whose policy allows it.
func TestMissingKeyAnswers(t *testing.T) {
	t.Parallel()
	st := Require(t)
	if st.S3Kind != "minio" {
		t.Skip("only MinIO enforces the components' policies")
	}
	ctx := context.Background()
	shim := st.AWSShimEndpoint(t)
	prefix := Prefix(t)
	present, missing := prefix+"present.jpg", prefix+"missing.jpg"
	if _, err := st.S3(t).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(present),
		Body: bytes.NewReader([]byte("x")), ContentLength: aws.Int64(1)}); err != nil {
		t.Fatal(err)
	}
	head := func(c *s3.Client, key string) int {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key)})
		return statusOf(err)
	}
	for _, tt := range []struct {
		who      string
		client   *s3.Client
		endpoint string
		missing  int
	}{
		{"agent at MinIO", st.S3For(t, Agent, st.S3Endpoint), "minio", http.StatusNotFound},
		{"agent through the shim", st.S3For(t, Agent, shim), "shim", http.StatusForbidden},
		{"resolver through the shim", st.S3For(t, Resolver, shim), "shim", http.StatusForbidden},
		{"audit through the shim", st.S3For(t, Audit, shim), "shim", http.StatusNotFound},
		{"root through the shim", st.S3At(t, shim), "shim", http.StatusNotFound},
	} {
		if got := head(tt.client, missing); got != tt.missing {
			t.Errorf("%s: HEAD of a missing key: %d; want %d", tt.who, got, tt.missing)
		}
		if got := head(tt.client, present); got != http.StatusOK {
			t.Errorf("%s: HEAD of a present key: %d; want 200", tt.who, got)
		}
	}

	// A browser following the resolver's redirect to a missing key: the
	// URL is presigned with the resolver's credentials, and AWS says 403.
	presign := s3.NewPresignClient(st.S3For(t, Resolver, shim))
	req, err := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(missing)}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := StatusOf(t, http.MethodGet, req.URL); got != http.StatusForbidden {
		t.Errorf("presigned GET of a missing key through the shim: %d; want 403", got)
	}
}

// TestComponentsHaveOnlyTheirGrants: the credentials the stack hands out
// carry the template's limits, not root's. The agent may not list the
// bucket or delete; the resolver may not write; the audit may not write;
// the eraser may neither write nor list keys (only versions); CloudFront
// may only read.
func TestComponentsHaveOnlyTheirGrants(t *testing.T) {
	t.Parallel()
	st := Require(t)
	if st.S3Kind != "minio" {
		t.Skip("only MinIO enforces the components' policies")
	}
	ctx := context.Background()
	key := Prefix(t) + "x.jpg"
	put := func(c *s3.Client) int {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key),
			Body: bytes.NewReader([]byte("x")), ContentLength: aws.Int64(1), IfNoneMatch: aws.String("*")})
		return statusOf(err)
	}
	list := func(c *s3.Client) int {
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(st.Bucket), Prefix: aws.String(key)})
		return statusOf(err)
	}
	del := func(c *s3.Client) int {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key)})
		return statusOf(err)
	}
	agent, resolver, audit := st.S3For(t, Agent, st.S3Endpoint), st.S3For(t, Resolver, st.S3Endpoint), st.S3For(t, Audit, st.S3Endpoint)
	eraser, cloudfront := st.S3For(t, Eraser, st.S3Endpoint), st.S3For(t, Cloudfront, st.S3Endpoint)
	for _, tt := range []struct {
		what string
		got  int
		want int
	}{
		{"resolver PutObject", put(resolver), http.StatusForbidden},
		{"audit PutObject", put(audit), http.StatusForbidden},
		{"agent PutObject", put(agent), http.StatusOK},
		{"agent ListObjectsV2", list(agent), http.StatusForbidden},
		{"audit ListObjectsV2", list(audit), http.StatusOK},
		{"agent DeleteObject", del(agent), http.StatusForbidden},
		{"audit DeleteObject", del(audit), http.StatusForbidden},
		{"eraser PutObject", put(eraser), http.StatusForbidden},
		{"eraser ListObjectsV2", list(eraser), http.StatusForbidden},
		{"cloudfront PutObject", put(cloudfront), http.StatusForbidden},
		{"cloudfront ListObjectsV2", list(cloudfront), http.StatusForbidden},
		{"cloudfront DeleteObject", del(cloudfront), http.StatusForbidden},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: %d; want %d", tt.what, tt.got, tt.want)
		}
	}
}

// statusOf is the HTTP status of an SDK call: 200 without an error.
func statusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return httpStatus(err)
}

// TestEraserDeletesOnlyVersions: the eraser's grant is
// s3:DeleteObjectVersion, which AWS checks for a DeleteObject that names a
// version and MinIO does not (it checks s3:DeleteObject, which the stack
// adds for it: templatepolicy.Document.ForMinIO). So through the AWS shim,
// as on AWS, the eraser deletes a version but may not delete without one
// (which would add a delete marker); the agent may do neither.
func TestEraserDeletesOnlyVersions(t *testing.T) {
	t.Parallel()
	st := Require(t)
	if st.S3Kind != "minio" {
		t.Skip("only MinIO enforces the components' policies")
	}
	ctx := context.Background()
	shim := st.AWSShimEndpoint(t)
	key := Prefix(t) + "a.jpg"
	put, err := st.S3(t).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key),
		Body: bytes.NewReader([]byte("x")), ContentLength: aws.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	del := func(c *s3.Client, version *string) int {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key), VersionId: version})
		return statusOf(err)
	}
	eraser, agent := st.S3For(t, Eraser, shim), st.S3For(t, Agent, shim)
	if got := del(eraser, nil); got != http.StatusForbidden {
		t.Errorf("eraser through the shim, DeleteObject without a version: %d; want 403, as AWS refuses it without s3:DeleteObject", got)
	}
	if got := del(agent, put.VersionId); got != http.StatusForbidden {
		t.Errorf("agent through the shim, DeleteObject of a version: %d; want 403", got)
	}
	if got := del(eraser, put.VersionId); got != http.StatusOK {
		t.Errorf("eraser through the shim, DeleteObject of a version: %d; want 200 (204)", got)
	}
}
