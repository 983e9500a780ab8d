package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"

	"github.com/photosleeve/offload"
)

// invalidations counts this process's CloudFront invalidations, for their
// caller references.
var invalidations atomic.Int64

// The CDN's part of an erasure. With the template's Cdn=on, copies of an
// original may sit in CloudFront's edge caches for up to the cache
// policy's TTL after S3 has lost every version, and a URL the resolver
// signed before the erasure still reaches them. So, once the last listing
// shows nothing of the key (an edge that misses from then on finds nothing
// at the origin to cache again), the eraser invalidates the key's path and
// waits until CloudFront reports the invalidation Completed; only then is
// the erasure recorded done.
//
// The path is the key's, as viewers request it, with the wildcard: the
// edge caches one object per query string the cache policy keeps
// (versionId, response-content-type, response-content-disposition), and
// "If client requests include five different query strings for the same
// file, you can either invalidate the file five times, once for each query
// string, or you can use the * wildcard" ("What you need to know when
// invalidating paths",
// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/invalidation-specifying-objects.html).
// "/KEY*" also drops keys that begin with KEY (KEY.bak, KEY/x): they are
// fetched from S3 again at their next view, which costs a GET, not a byte
// of anyone's data. The path is percent-encoded as the resolver writes it
// (offload.CDNPath, which encodes a "*" in the key, so only the last one is
// a wildcard): "If the path includes non-ASCII characters or unsafe
// characters ..., URL-encode those characters" (Paths,
// https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_Paths.html).
// An invalidation path costs the same with or without the wildcard.

// CDNInvalidator is what erase calls on CloudFront; *cloudfront.Client has it.
type CDNInvalidator interface {
	CreateInvalidation(ctx context.Context, in *cloudfront.CreateInvalidationInput, opts ...func(*cloudfront.Options)) (*cloudfront.CreateInvalidationOutput, error)
	GetInvalidation(ctx context.Context, in *cloudfront.GetInvalidationInput, opts ...func(*cloudfront.Options)) (*cloudfront.GetInvalidationOutput, error)
}

var _ CDNInvalidator = (*cloudfront.Client)(nil)

// DefaultCDNWait is how long erase waits for an invalidation to complete
// before it reports the key not done (a re-run invalidates again).
// CloudFront documents no bound; its invalidations usually complete in
// minutes.
const DefaultCDNWait = 15 * time.Minute

// cdnPollInterval is how often erase asks whether an invalidation has
// completed; tests shorten it.
var cdnPollInterval = 5 * time.Second

// invalidate asks CloudFront to drop its copies of key and waits until it
// reports the invalidation Completed. It returns the invalidation's ID,
// also when waiting failed.
func (e *Eraser) invalidate(ctx context.Context, key string) (string, error) {
	path := offload.CDNPath(key) + "*"
	cctx, cancel := context.WithTimeout(ctx, e.callTimeout())
	out, err := e.CDN.CreateInvalidation(cctx, &cloudfront.CreateInvalidationInput{
		DistributionId: aws.String(e.Distribution),
		InvalidationBatch: &cftypes.InvalidationBatch{
			// Unique per call: a repeated reference with the same paths
			// returns the earlier invalidation, which may have completed
			// before this run's deletes, and one with other paths fails
			// (https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_InvalidationBatch.html).
			// Keys erased at once may call within one clock tick: the
			// time, this process and a count of its invalidations.
			CallerReference: aws.String(fmt.Sprintf("offload-erase-%s-%d-%d", strconv.FormatInt(time.Now().UnixNano(), 36), os.Getpid(), invalidations.Add(1))),
			Paths:           &cftypes.Paths{Quantity: aws.Int32(1), Items: []string{path}},
		},
	})
	cancel()
	if err != nil {
		return "", err
	}
	if out.Invalidation == nil || out.Invalidation.Id == nil {
		return "", errors.New("CreateInvalidation answered without an invalidation ID")
	}
	id := aws.ToString(out.Invalidation.Id)
	wait := e.CDNWait
	if wait <= 0 {
		wait = DefaultCDNWait
	}
	deadline := time.Now().Add(wait)
	status := aws.ToString(out.Invalidation.Status)
	for status != "Completed" {
		if time.Now().After(deadline) {
			return id, fmt.Errorf("invalidation %s still %s after %s", id, status, wait)
		}
		select {
		case <-ctx.Done():
			return id, ctx.Err()
		case <-time.After(cdnPollInterval):
		}
		cctx, cancel := context.WithTimeout(ctx, e.callTimeout())
		got, err := e.CDN.GetInvalidation(cctx, &cloudfront.GetInvalidationInput{DistributionId: aws.String(e.Distribution), Id: aws.String(id)})
		cancel()
		if err != nil {
			return id, err
		}
		if got.Invalidation != nil {
			status = aws.ToString(got.Invalidation.Status)
		}
	}
	return id, nil
}
