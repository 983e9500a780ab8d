package main

import (
	"math"
	"testing"
	"time"
)

// TestCostPer1000 prices one stream S3 direct and through the CDN: the
// redirects cost the same either way; with the CDN the browsers' GETs and
// bytes are CloudFront's, S3 bills only the edge's misses (as GETs, with no
// transfer), and the host cache's fetches stay S3 GETs and S3 transfer out.
func TestCostPer1000(t *testing.T) {
	const gib = 1 << 30
	// 1,000 views: 600 served by the host, 400 redirects of 1 GiB each, of
	// which the edge had 300 and fetched 100; the host cache fetched 10 GiB.
	res := streamResult{local: 600, redirects: 400, bytesLocal: 600 * gib, bytesS3: 400 * gib,
		edgeHits: 300, edgeMisses: 100, bytesEdgeMiss: 100 * gib}
	st := cacheStatus{Fetches: 10, FetchedBytes: 10 * gib}
	resolver := 700 * time.Microsecond // billed as 1 ms
	lambda := viewCost{
		requests: 400 * lambdaPerRequest,
		duration: 400 * lambdaMemoryGB * 0.001 * lambdaArmPerGBSecond,
		reads:    410 * dynamoPerRead,
	}
	for _, tc := range []struct {
		name string
		cdn  bool
		want viewCost
	}{
		{"S3 direct", false, viewCost{gets: 410 * s3PerGet, out: 410 * s3OutPerGB}},
		{"CDN", true, viewCost{gets: 110 * s3PerGet, out: 10 * s3OutPerGB, cfRequests: 400 * cfPerHTTPSRequest, cfOut: 400 * cfOutPerGB}},
	} {
		want := tc.want
		want.requests, want.duration, want.reads = lambda.requests, lambda.duration, lambda.reads
		got := costPer1000(res, st, resolver, tc.cdn)
		for _, item := range []struct {
			name      string
			got, want float64
		}{
			{"Lambda requests", got.requests, want.requests},
			{"Lambda duration", got.duration, want.duration},
			{"DynamoDB reads", got.reads, want.reads},
			{"S3 GETs", got.gets, want.gets},
			{"S3 transfer out", got.out, want.out},
			{"CloudFront requests", got.cfRequests, want.cfRequests},
			{"CloudFront transfer out", got.cfOut, want.cfOut},
			{"total", got.total(), want.total()},
		} {
			if math.Abs(item.got-item.want) > 1e-12 {
				t.Errorf("%s: %s = %.9f; want %.9f", tc.name, item.name, item.got, item.want)
			}
		}
	}
}
