package lambda_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
	"github.com/photosleeve/offload/lambda"
)

// TestPresignedGETNeedsKMSDecrypt: with the bucket encrypted with the
// site's KMS key (the template's KmsKeyArn), a resolver whose role lacks
// kms:Decrypt still signs: it answers 302, and its URL is well formed. It
// is the browser's GET of that URL that S3 refuses (403), because S3
// decrypts as the URL's signer. With the template's grants the same GET
// gets the bytes; a HEAD, which returns no data, works either way.
//
// It runs on a private MinIO with a static KMS key (StartKMSMinIO) behind
// the stack's AWS shim, which refuses key use as AWS does (MinIO checks no
// KMS permission), so it runs whether or not the stack is up with --kms.
func TestPresignedGETNeedsKMSDecrypt(t *testing.T) {
	t.Parallel()
	st := stacktest.Require(t)
	if st == nil {
		return
	}
	m := st.StartKMSMinIO(t, "offload-kms")
	tmpl, err := os.ReadFile(templatepolicy.TemplatePath(stacktest.RepoRoot(t)))
	if err != nil {
		t.Fatal(err)
	}
	less, err := templatepolicy.Without(tmpl, templatepolicy.Resolver, "kms:Decrypt")
	if err != nil {
		t.Fatal(err)
	}
	agent := m.Credentials(st, tmpl, stacktest.Agent)
	resolver := m.Credentials(st, tmpl, stacktest.Resolver)
	noDecrypt := m.Credentials(st, less, stacktest.Resolver)
	shim := m.AWSShim(t)
	client := func(c stacktest.Credentials) *s3.Client {
		cfg := st.AWSConfig(t)
		cfg.Credentials = credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
		return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle, o.BaseEndpoint = true, aws.String(shim) })
	}

	// The original, uploaded as the agent uploads it (its grants, through
	// the shim) and recorded in the ledger.
	ctx := context.Background()
	prefix, data := stacktest.Prefix(t), []byte("\xff\xd8\xff an encrypted cat")
	key := prefix + "cat.jpg"
	c := offload.NewCRC64NVME()
	c.Write(data)
	sum := offload.EncodeChecksum(c.Sum64())
	out, err := client(agent).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(m.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentType: aws.String("image/jpeg"), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme, ChecksumCRC64NVME: aws.String(sum),
		IfNoneMatch: aws.String("*")})
	if err != nil {
		t.Fatalf("PutObject with the agent's grants: %v", err)
	}
	h, err := m.S3Root().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(m.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerSideEncryption != s3types.ServerSideEncryptionAwsKms {
		t.Fatalf("the original is stored with %q; want aws:kms (the bucket's default)", h.ServerSideEncryption)
	}
	db := st.DynamoDB(t)
	rec := offload.Record{Key: key, Size: int64(len(data)), CRC64NVME: sum, ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId),
		ContentType: "image/jpeg", Host: "web1", Path: "cat.jpg", UploadedAt: time.Now()}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(st.Table), Item: rec.Item()}); err != nil {
		t.Fatal(err)
	}

	redirect := func(creds stacktest.Credentials, method string) string {
		t.Helper()
		hd, err := lambda.NewHandler(lambda.Config{
			Mapping: offload.Mapping{URLPrefix: "/static/", KeyPrefix: prefix},
			Bucket:  m.Bucket, Table: st.Table, Verify: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, s3.NewPresignClient(client(creds)), db, nil)
		if err != nil {
			t.Fatal(err)
		}
		rr := httptest.NewRecorder()
		hd.ServeHTTP(rr, httptest.NewRequest(method, "/static/cat.jpg", nil))
		loc := rr.Header().Get("Location")
		if rr.Code != http.StatusFound || !strings.HasPrefix(loc, shim+"/"+m.Bucket+"/"+key) {
			t.Fatalf("%s /static/cat.jpg: %d, Location %q; want 302 to %s/%s/%s (signing needs no KMS permission)", method, rr.Code, loc, shim, m.Bucket, key)
		}
		return loc
	}

	if got := fetch(t, redirect(resolver, http.MethodGet)); !bytes.Equal(got, data) {
		t.Errorf("GET with the template's grants: %q; want the original", got)
	}
	loc := redirect(noDecrypt, http.MethodGet) // signed all the same
	if got := stacktest.StatusOf(t, http.MethodGet, loc); got != http.StatusForbidden {
		t.Errorf("the browser's GET of the URL signed without kms:Decrypt: %d; want 403 (AWS decrypts as the signer)", got)
	}
	if n := head(t, redirect(noDecrypt, http.MethodHead)); n != int64(len(data)) {
		t.Errorf("HEAD without kms:Decrypt: Content-Length %d; want %d (a HEAD decrypts nothing)", n, len(data))
	}
}
