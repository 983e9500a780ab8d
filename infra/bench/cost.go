package main

import (
	"fmt"
	"math"
	"time"
)

// AWS prices, us-east-1, on-demand, without the free tier, as read on
// 2026-11-30 (the sources and what could not be read on an AWS page are in
// BENCHMARKS.md, "Hot cache: cost per 1,000 views").
const (
	pricesDate = "2026-11-30"
	// Lambda: $0.20 per 1M requests (AWS, "How AWS Pricing Works").
	lambdaPerRequest = 0.20 / 1e6
	// Lambda duration, Arm: 20 % below x86's $0.0000166667 per GB-second
	// (AWS's Graviton2 announcement), the first 7.5 billion GB-s a month.
	lambdaArmPerGBSecond = 0.0000133334
	// lambdaMemoryGB: the template's 128 MB function.
	lambdaMemoryGB = 128.0 / 1024
	// DynamoDB on-demand: $0.125 per million read request units since the
	// November 2024 reduction; a strongly consistent read of up to 4 KB is
	// one unit (AWS's on-demand pricing page).
	dynamoPerRead = 0.125 / 1e6
	// S3 Standard: $0.0004 per 1,000 GET requests.
	s3PerGet = 0.0004 / 1000
	// Data transfer out of S3 to the internet, first 10 TB a month, per GB
	// (AWS bills a GB as 2^30 bytes).
	s3OutPerGB = 0.09
)

// viewCost is what 1,000 views cost at AWS, item by item.
type viewCost struct {
	requests, duration, reads, gets, out float64
}

func (c viewCost) total() float64 { return c.requests + c.duration + c.reads + c.gets + c.out }

// costPer1000 prices a run: every redirect is a Lambda invocation billed
// at the measured duration rounded up to the millisecond, and one ledger
// read (an upper bound: a warm resolver reads each object once per signing
// window); every S3 GET (the browsers' and the cache's fetches) is a GET
// and the object's bytes out. Views served by the web host cost nothing at
// AWS.
func costPer1000(r streamResult, st cacheStatus, resolver time.Duration) viewCost {
	views := float64(r.local + r.redirects)
	per := 1000 / views
	billed := math.Ceil(float64(resolver)/float64(time.Millisecond)) / 1000 // seconds
	redirects := float64(r.redirects) * per
	fetches := float64(st.Fetches) * per
	return viewCost{
		requests: redirects * lambdaPerRequest,
		duration: redirects * lambdaMemoryGB * billed * lambdaArmPerGBSecond,
		reads:    (redirects + fetches) * dynamoPerRead,
		gets:     (redirects + fetches) * s3PerGet,
		out:      float64(r.bytesS3+st.FetchedBytes) * per / (1 << 30) * s3OutPerGB,
	}
}

// costRun is one run's figures for the cost table.
type costRun struct {
	name string
	res  streamResult
	st   cacheStatus
}

// printCostTable prints the cost per 1,000 views of each run, the first
// being the run without the cache, item by item.
func printCostTable(runs []costRun, resolver time.Duration) {
	costs := make([]viewCost, len(runs))
	for i, r := range runs {
		costs[i] = costPer1000(r.res, r.st, resolver)
	}
	fmt.Printf("\ncost per 1,000 views, US$, AWS us-east-1 prices of %s (Lambda 128 MB arm64 billed %d ms per redirect):\n",
		pricesDate, int(math.Ceil(float64(resolver)/float64(time.Millisecond))))
	fmt.Printf("%-40s", "")
	for _, r := range runs {
		fmt.Printf(" %20s", r.name)
	}
	fmt.Println()
	for _, row := range []struct {
		item string
		v    func(viewCost) float64
	}{
		{"Lambda requests ($0.20 / 1M)", func(c viewCost) float64 { return c.requests }},
		{"Lambda duration ($0.0000133334 / GB-s)", func(c viewCost) float64 { return c.duration }},
		{"DynamoDB reads ($0.125 / 1M RRU)", func(c viewCost) float64 { return c.reads }},
		{"S3 GETs ($0.0004 / 1,000)", func(c viewCost) float64 { return c.gets }},
		{"S3 data transfer out ($0.09 / GB)", func(c viewCost) float64 { return c.out }},
		{"total", viewCost.total},
		{"× the cost without the cache", func(c viewCost) float64 { return c.total() / costs[0].total() }},
	} {
		fmt.Printf("%-40s", row.item)
		for _, c := range costs {
			fmt.Printf(" %20.6f", row.v(c))
		}
		fmt.Println()
	}
}
