package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// sdkError is the error the SDK's client for service (s3 or dynamodb)
// returns from one request that the service answers with status and the
// error code, in the service's own error format (S3: XML, DynamoDB: JSON
// with __type). The server answers only that one exact failure; the
// client does not retry, so the error is what the pipeline would see after
// the SDK's retries ran out.
func sdkError(t testing.TB, service string, status int, code string) error {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if service == causeS3 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>m</Message><RequestId>r</RequestId></Error>`, code)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"m"}`, code)
	}))
	defer srv.Close()
	return sdkCall(t, service, srv.URL)
}

// sdkCall makes one request of service to endpoint, without retries, and
// returns its error.
func sdkCall(t testing.TB, service, endpoint string) error {
	t.Helper()
	creds := credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")
	ctx := context.Background()
	if service == causeS3 {
		c := s3.New(s3.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(endpoint), UsePathStyle: true, RetryMaxAttempts: 1})
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k.jpg"), Body: strings.NewReader("x")})
		return translate("put k.jpg", err)
	}
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1})
	_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: map[string]dbtypes.AttributeValue{"k": &dbtypes.AttributeValueMemberS{Value: "v"}}})
	if err == nil {
		return errors.New("no error")
	}
	return fmt.Errorf("ledger put k.jpg: %w", err)
}

// TestFileFault: how each answer of S3 and DynamoDB is classed, from the
// errors the SDK's clients return for them (see blame.go for AWS's pages).
// true: the file's own failure; false: the service's.
func TestFileFault(t *testing.T) {
	tests := []struct {
		service string
		status  int
		code    string
		want    bool
	}{
		{causeS3, http.StatusForbidden, "AccessDenied", true},
		{causeS3, http.StatusBadRequest, "KeyTooLongError", true},
		{causeS3, http.StatusBadRequest, "EntityTooLarge", true},
		{causeS3, http.StatusBadRequest, "InvalidArgument", true},
		{causeS3, http.StatusBadRequest, "BadDigest", true},
		{causeS3, http.StatusNotFound, "NoSuchUpload", true},
		{causeS3, http.StatusConflict, "OperationAborted", true},
		{causeS3, http.StatusServiceUnavailable, "SlowDown", false},
		{causeS3, http.StatusServiceUnavailable, "ServiceUnavailable", false},
		{causeS3, http.StatusInternalServerError, "InternalError", false},
		{causeS3, http.StatusBadRequest, "RequestTimeout", false},
		{causeS3, http.StatusForbidden, "RequestTimeTooSkewed", false},
		{causeS3, http.StatusForbidden, "InvalidAccessKeyId", false},
		{causeS3, http.StatusForbidden, "SignatureDoesNotMatch", false},
		{causeS3, http.StatusBadRequest, "ExpiredToken", false},
		{causeS3, http.StatusNotFound, "NoSuchBucket", false},
		{causeS3, http.StatusTooManyRequests, "TooManyRequests", false},
		{causeDynamoDB, http.StatusBadRequest, "AccessDeniedException", true},
		{causeDynamoDB, http.StatusBadRequest, "ValidationException", true},
		{causeDynamoDB, http.StatusBadRequest, "ProvisionedThroughputExceededException", false},
		{causeDynamoDB, http.StatusBadRequest, "ThrottlingException", false},
		{causeDynamoDB, http.StatusBadRequest, "RequestLimitExceeded", false},
		{causeDynamoDB, http.StatusBadRequest, "ResourceNotFoundException", false},
		{causeDynamoDB, http.StatusBadRequest, "UnrecognizedClientException", false},
		{causeDynamoDB, http.StatusBadRequest, "ExpiredTokenException", false},
		{causeDynamoDB, http.StatusInternalServerError, "InternalServerError", false},
		{causeDynamoDB, http.StatusServiceUnavailable, "ServiceUnavailable", false},
	}
	for _, tt := range tests {
		t.Run(tt.service+"/"+tt.code, func(t *testing.T) {
			err := sdkError(t, tt.service, tt.status, tt.code)
			if got := fileFault(err); got != tt.want {
				t.Errorf("fileFault(%v) = %v; want %v", err, got, tt.want)
			}
			r := result{outcome: outFailed, cause: tt.service, err: err}
			if r.remote() == tt.want {
				t.Errorf("remote() = %v; want %v", r.remote(), !tt.want)
			}
		})
	}
	// No answer at all: the service's.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	for _, service := range []string{causeS3, causeDynamoDB} {
		if err := sdkCall(t, service, srv.URL); fileFault(err) {
			t.Errorf("%s, connection refused: fileFault(%v) = true; want false", service, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fmt.Errorf("put: %w", ctx.Err()); fileFault(err) {
		t.Errorf("fileFault(%v) = true; want false", err)
	}
	// An answer without an error code (a HEAD has no body): its status.
	for _, status := range []int{http.StatusForbidden, http.StatusNotFound} {
		err := sdkError(t, causeS3, status, "")
		if !fileFault(err) {
			t.Errorf("status %d: fileFault(%v) = false; want true", status, err)
		}
	}
}
