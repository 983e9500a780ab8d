package stacktest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/photosleeve/offload"
)

// TestS3ChecksumAndConditionalWrite proves what the agent relies on from S3:
// it checks a full-object CRC64NVME sent with the upload, refuses a wrong
// one, refuses to overwrite with If-None-Match: *, and reports the checksum
// on HEAD.
func TestS3ChecksumAndConditionalWrite(t *testing.T) {
	t.Parallel()
	st := Require(t)
	ctx := context.Background()
	client := st.S3(t)
	key := Prefix(t) + "photo.jpg"
	body := bytes.Repeat([]byte("offload "), 4096)
	h := offload.NewCRC64NVME()
	h.Write(body)
	sum := offload.EncodeChecksum(h.Sum64())

	put := func(b []byte, checksum string) (*s3.PutObjectOutput, error) {
		return client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:            aws.String(st.Bucket),
			Key:               aws.String(key),
			Body:              bytes.NewReader(b),
			ContentLength:     aws.Int64(int64(len(b))),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme,
			ChecksumCRC64NVME: aws.String(checksum),
			IfNoneMatch:       aws.String("*"),
		})
	}

	// A checksum that does not match the bytes is refused, and nothing is stored.
	wrong := offload.EncodeChecksum(h.Sum64() ^ 1)
	if _, err := put(body, wrong); httpStatus(err) != http.StatusBadRequest {
		t.Fatalf("PutObject with a wrong CRC64NVME: err = %v (status %d); want 400", err, httpStatus(err))
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key)}); httpStatus(err) != http.StatusNotFound {
		t.Fatalf("HeadObject after a refused upload: err = %v; want 404", err)
	}

	out, err := put(body, sum)
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if got := aws.ToString(out.ChecksumCRC64NVME); got != sum {
		t.Errorf("PutObject returned CRC64NVME %q; want %q", got, sum)
	}

	// The original is never overwritten: a second write of the key is a 412.
	_, err = put([]byte("other bytes"), offload.EncodeChecksum(0))
	if got := httpStatus(err); got != http.StatusPreconditionFailed {
		t.Fatalf("second PutObject with If-None-Match: *: err = %v (status %d); want 412", err, got)
	}

	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(st.Bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if got := aws.ToString(head.ChecksumCRC64NVME); got != sum {
		t.Errorf("HeadObject CRC64NVME = %q; want %q", got, sum)
	}
	if got := aws.ToInt64(head.ContentLength); got != int64(len(body)) {
		t.Errorf("HeadObject size = %d; want %d", got, len(body))
	}
}

// TestDynamoDBConditionalPut proves the ledger's first-writer-wins write.
func TestDynamoDBConditionalPut(t *testing.T) {
	t.Parallel()
	st := Require(t)
	ctx := context.Background()
	db := st.DynamoDB(t)
	key := Prefix(t) + "photo.jpg"
	put := func(size string) error {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(st.Table),
			Item: map[string]dbtypes.AttributeValue{
				offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key},
				"size":                     &dbtypes.AttributeValueMemberN{Value: size},
			},
			ConditionExpression: aws.String("attribute_not_exists(" + offload.LedgerPartitionKey + ")"),
		})
		return err
	}
	if err := put("1"); err != nil {
		t.Fatalf("first PutItem: %v", err)
	}
	var failed *dbtypes.ConditionalCheckFailedException
	if err := put("2"); !errors.As(err, &failed) {
		t.Fatalf("second PutItem: err = %v; want ConditionalCheckFailedException", err)
	}
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(st.Table),
		Key:            map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if n, ok := got.Item["size"].(*dbtypes.AttributeValueMemberN); !ok || n.Value != "1" {
		t.Errorf("GetItem size = %v; want the first writer's 1", got.Item["size"])
	}
}

// TestRequireFailsWithoutStack runs this test binary again with no stack in
// its environment: with OFFLOAD_REQUIRE_STACK=1 the test must fail, not skip.
// The same for Unavailable.
func TestRequireFailsWithoutStack(t *testing.T) {
	switch os.Getenv("STACKTEST_CHILD") {
	case "1":
		Require(t)
		return
	case "unavailable":
		Unavailable(t, "no %s here", "thing")
		return
	}
	for _, tt := range []struct {
		child, require string
		wantFail       bool
	}{{"1", "1", true}, {"1", "", false}, {"unavailable", "1", true}, {"unavailable", "", false}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireFailsWithoutStack$", "-test.v")
		cmd.Env = []string{"STACKTEST_CHILD=" + tt.child, RequireEnv + "=" + tt.require, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		failed := err != nil
		if failed != tt.wantFail {
			t.Errorf("child %s, %s=%q: failed = %v; want %v\n%s", tt.child, RequireEnv, tt.require, failed, tt.wantFail, out)
		}
		if !tt.wantFail && !strings.Contains(string(out), "SKIP") {
			t.Errorf("child %s, %s unset: did not skip\n%s", tt.child, RequireEnv, out)
		}
	}
}

// httpStatus returns the HTTP status of an SDK error, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
