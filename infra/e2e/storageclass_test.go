package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestStorageClassServed: the agent uploads with --storage-class, a small
// file in one PutObject and a larger one in a multipart upload; a HEAD
// shows the class (x-amz-storage-class), the ledger records it, and the
// resolver's presigned URL serves the bytes. The local MinIO knows
// REDUCED_REDUNDANCY and STANDARD only, so that is the class here; the
// request the agent builds for the others is TestStorageClassOnTheRequest
// (agent/storageclass_internal_test.go), and MinIO's answer to one it does
// not know is checked below, so a MinIO that learns them is noticed.
func TestStorageClassServed(t *testing.T) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	ctx := context.Background()
	const class = s3types.StorageClassReducedRedundancy

	dir := t.TempDir()
	watch, archive := filepath.Join(dir, "static"), filepath.Join(dir, "archive")
	for _, d := range []string{watch, archive} {
		os.MkdirAll(d, 0o755)
	}
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}
	files := map[string][]byte{
		"small.jpg": randomBytes(3<<10, 41),
		"big.jpg":   randomBytes(6<<20, 42), // two 5 MiB parts
	}
	for rel, data := range files {
		publish(t, filepath.Join(watch, rel), data, true)
	}

	shim := st.AWSShimEndpoint(t)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	once := exec.CommandContext(cctx, bin["offload-agent"], "once", "--watch", watch, "--archive", archive,
		"--key-prefix", m.KeyPrefix, "--quiet", "100ms", "--part-size", "5MiB", "--host", "e2e",
		"--storage-class", string(class))
	once.Env = append(append(os.Environ(), st.Env(t, stacktest.Agent)...), "AWS_ENDPOINT_URL_S3="+shim)
	if out, err := once.CombinedOutput(); err != nil {
		t.Fatalf("offload-agent once --storage-class %s: %v\n%s", class, err, out)
	}

	resolverAddr := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim), "", bin["offload-resolver"],
		"--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	browser := stacktest.HTTPClient(t)
	var hops int
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { hops++; return nil }

	root := st.S3(t)
	for rel, data := range files {
		key, _ := m.KeyForFile(rel)
		head, err := root.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("HEAD %s: %v", key, err)
		}
		var raw string
		if r, ok := awsmiddleware.GetRawResponse(head.ResultMetadata).(*smithyhttp.Response); ok {
			raw = r.Header.Get("X-Amz-Storage-Class")
		}
		if head.StorageClass != class || raw != string(class) {
			t.Errorf("%s: HEAD storage class %q, x-amz-storage-class %q; want %s", rel, head.StorageClass, raw, class)
		}
		rec, err := offload.GetRecord(ctx, st.DynamoDB(t), st.Table, key)
		if err != nil || rec.StorageClass != string(class) || rec.Size != int64(len(data)) {
			t.Errorf("%s: ledger item %+v, %v; want %d bytes in %s", rel, rec, err, len(data), class)
		}
		u, _ := m.URLForKey(key)
		hops = 0
		resp, body := get(t, browser, "http://"+resolverAddr+u)
		if resp.StatusCode != 200 || !bytes.Equal(body, data) || hops != 1 {
			t.Errorf("%s through the resolver: %s, %d bytes after %d redirects; want 200 and the %d bytes after one", rel, resp.Status, len(body), hops, len(data))
		}
	}

	// What MinIO answers for a class AWS has and it does not: a refusal,
	// nothing stored. (AWS stores it; the production difference is in
	// docs/reliability.md, "Production is not the local stack".)
	key := m.KeyPrefix + "glacier-ir.jpg"
	_, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key),
		Body: bytes.NewReader([]byte("x")), StorageClass: s3types.StorageClassGlacierIr})
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Errorf("MinIO PutObject with GLACIER_IR: %v; want 400 (it knows STANDARD and REDUCED_REDUNDANCY only)", err)
	}
	t.Logf("MinIO's answer to GLACIER_IR: %v", err)
}
