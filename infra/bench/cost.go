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
	// CloudFront, as read on 2026-12-06 (BENCHMARKS.md, "CDN: cost per 1,000
	// views"). Data transfer out to the internet from edges in the United
	// States, Mexico and Canada, first 10 TB a month, per GB
	// (https://aws.amazon.com/cloudfront/pricing/). Origin fetches from S3
	// carry no transfer charge ("Free for origin fetches from any AWS origin
	// such as Amazon Simple Storage Service (S3)", same page), but each is
	// an S3 GET (s3PerGet). The always-free tier (1 TB and 10,000,000
	// requests a month) is left out, like the other free tiers.
	cfPricesDate = "2026-12-06"
	cfOutPerGB   = 0.085
	// CloudFront HTTPS requests in the United States: $0.0100 per 10,000.
	// The template's behaviour is https-only. A third party's figure: the
	// request table of AWS's pricing page could not be read.
	cfPerHTTPSRequest = 0.0100 / 10_000
)

// viewCost is what 1,000 views cost at AWS, item by item.
type viewCost struct {
	requests, duration, reads, gets, out float64
	cfRequests, cfOut                    float64 // CloudFront; 0 without the CDN
}

func (c viewCost) total() float64 {
	return c.requests + c.duration + c.reads + c.gets + c.out + c.cfRequests + c.cfOut
}

// costPer1000 prices a run: every redirect is a Lambda invocation billed
// at the measured duration rounded up to the millisecond, and one ledger
// read (an upper bound: a warm resolver reads each object once per signing
// window); every S3 GET (the browsers' and the cache's fetches) is a GET
// and the object's bytes out. Views served by the web host cost nothing at
// AWS.
//
// With cdn, the browsers' GETs after a redirect go to CloudFront: each is
// a CloudFront request and its bytes go out at CloudFront's price; S3 sees
// only the edge's misses, as GETs without a transfer charge. The host
// cache still fetches from S3 directly (GetObject, agent/hotcache), at
// S3's transfer price.
func costPer1000(r streamResult, st cacheStatus, resolver time.Duration, cdn bool) viewCost {
	views := float64(r.local + r.redirects)
	per := 1000 / views
	billed := math.Ceil(float64(resolver)/float64(time.Millisecond)) / 1000 // seconds
	redirects := float64(r.redirects) * per
	fetches := float64(st.Fetches) * per
	c := viewCost{
		requests: redirects * lambdaPerRequest,
		duration: redirects * lambdaMemoryGB * billed * lambdaArmPerGBSecond,
		reads:    (redirects + fetches) * dynamoPerRead,
		gets:     (redirects + fetches) * s3PerGet,
		out:      float64(r.bytesS3+st.FetchedBytes) * per / (1 << 30) * s3OutPerGB,
	}
	if cdn {
		c.gets = (float64(r.edgeMisses)*per + fetches) * s3PerGet
		c.out = float64(st.FetchedBytes) * per / (1 << 30) * s3OutPerGB
		c.cfRequests = redirects * cfPerHTTPSRequest
		c.cfOut = float64(r.bytesS3) * per / (1 << 30) * cfOutPerGB
	}
	return c
}

// costRun is one run's figures for the cost table.
type costRun struct {
	name string
	res  streamResult
	st   cacheStatus
	cdn  bool // the redirects lead to CloudFront
}

// printCostTable prints the cost per 1,000 views of each run, item by
// item, and each run's total against the first's (named by base). The
// CloudFront rows are printed when a run went through the CDN.
func printCostTable(runs []costRun, resolver time.Duration, base string) {
	costs := make([]viewCost, len(runs))
	anyCDN := false
	for i, r := range runs {
		costs[i] = costPer1000(r.res, r.st, resolver, r.cdn)
		anyCDN = anyCDN || r.cdn
	}
	cf := ""
	if anyCDN {
		cf = ", CloudFront's for edges in the United States of " + cfPricesDate
	}
	fmt.Printf("\ncost per 1,000 views, US$, AWS us-east-1 prices of %s%s, free tiers left out (Lambda 128 MB arm64 billed %d ms per redirect):\n",
		pricesDate, cf, int(math.Ceil(float64(resolver)/float64(time.Millisecond))))
	fmt.Printf("%-40s", "")
	for _, r := range runs {
		fmt.Printf(" %20s", r.name)
	}
	fmt.Println()
	type row struct {
		item string
		v    func(viewCost) float64
	}
	rows := []row{
		{"Lambda requests ($0.20 / 1M)", func(c viewCost) float64 { return c.requests }},
		{"Lambda duration ($0.0000133334 / GB-s)", func(c viewCost) float64 { return c.duration }},
		{"DynamoDB reads ($0.125 / 1M RRU)", func(c viewCost) float64 { return c.reads }},
		{"S3 GETs ($0.0004 / 1,000)", func(c viewCost) float64 { return c.gets }},
		{"S3 data transfer out ($0.09 / GB)", func(c viewCost) float64 { return c.out }},
	}
	if anyCDN {
		rows = append(rows,
			row{"CloudFront HTTPS requests ($0.01 / 10k)", func(c viewCost) float64 { return c.cfRequests }},
			row{"CloudFront transfer out ($0.085 / GB)", func(c viewCost) float64 { return c.cfOut }})
	}
	rows = append(rows,
		row{"total", viewCost.total},
		row{"× the cost " + base, func(c viewCost) float64 { return c.total() / costs[0].total() }})
	for _, row := range rows {
		fmt.Printf("%-40s", row.item)
		for _, c := range costs {
			fmt.Printf(" %20.6f", row.v(c))
		}
		fmt.Println()
	}
}
