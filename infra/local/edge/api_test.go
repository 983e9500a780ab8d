package edge

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/smithy-go"
)

// TestAPIAsTheSDKReadsIt: the SDK's client reads the API's answers and
// errors: a CallerReference sent again with the same paths returns the
// same invalidation, with other paths InvalidationBatchAlreadyExists; a
// Quantity that does not match the paths is InconsistentQuantities; an
// unknown invalidation is NoSuchInvalidation; an access key not allowed is
// AccessDenied.
func TestAPIAsTheSDKReadsIt(t *testing.T) {
	cache, err := newDiskCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newAPI("EDFDVBD6EXAMPLE", []string{"AKIDALLOWED"}, cache, time.Now, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	client := func(key string) *cloudfront.Client {
		return cloudfront.New(cloudfront.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
			Credentials: credentials.NewStaticCredentialsProvider(key, "secret", "")})
	}
	cf := client("AKIDALLOWED")
	ctx := context.Background()
	create := func(c *cloudfront.Client, ref string, quantity int32, paths ...string) (*cloudfront.CreateInvalidationOutput, error) {
		return c.CreateInvalidation(ctx, &cloudfront.CreateInvalidationInput{DistributionId: aws.String("EDFDVBD6EXAMPLE"),
			InvalidationBatch: &cftypes.InvalidationBatch{CallerReference: aws.String(ref), Paths: &cftypes.Paths{Quantity: aws.Int32(quantity), Items: paths}}})
	}
	first, err := create(cf, "r1", 1, "/a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if first.Location == nil || aws.ToString(first.Invalidation.Status) != "Completed" || first.Invalidation.CreateTime == nil {
		t.Errorf("CreateInvalidation: Location %v, %+v; want a Location, Completed and a CreateTime", first.Location, first.Invalidation)
	}
	again, err := create(cf, "r1", 1, "/a.jpg")
	if err != nil || aws.ToString(again.Invalidation.Id) != aws.ToString(first.Invalidation.Id) {
		t.Errorf("the same CallerReference and paths again: %v, %v; want invalidation %s", again, err, aws.ToString(first.Invalidation.Id))
	}
	// The API reference names this code (CallerReference) but the SDK
	// models no type for it.
	var exists smithy.APIError
	if _, err := create(cf, "r1", 1, "/b.jpg"); !errors.As(err, &exists) || exists.ErrorCode() != "InvalidationBatchAlreadyExists" {
		t.Errorf("the same CallerReference, other paths: %v; want InvalidationBatchAlreadyExists", err)
	}
	var inconsistent *cftypes.InconsistentQuantities
	if _, err := create(cf, "r2", 2, "/b.jpg"); !errors.As(err, &inconsistent) {
		t.Errorf("Quantity 2 with one path: %v; want InconsistentQuantities", err)
	}
	var denied *cftypes.AccessDenied
	if _, err := create(client("AKIDOTHER"), "r3", 1, "/b.jpg"); !errors.As(err, &denied) {
		t.Errorf("an access key not allowed: %v; want AccessDenied", err)
	}
	var noInv *cftypes.NoSuchInvalidation
	if _, err := cf.GetInvalidation(ctx, &cloudfront.GetInvalidationInput{DistributionId: aws.String("EDFDVBD6EXAMPLE"), Id: aws.String("INOSUCH")}); !errors.As(err, &noInv) {
		t.Errorf("GetInvalidation of an unknown one: %v; want NoSuchInvalidation", err)
	}
}
