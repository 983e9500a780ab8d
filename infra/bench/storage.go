package main

import (
	"fmt"
	"io"
)

// Storage prices, us-east-1, on-demand, the first 50 TB a month, as read
// on storagePricesDate. AWS's pricing page (https://aws.amazon.com/s3/pricing/)
// renders its tables in the browser, so the figures are those third
// parties quote from it; the sources are in BENCHMARKS.md, "Storage: cost
// per GB-month (issue 29)".
const (
	storagePricesDate = "2026-12-06"
	// Per GB-month (AWS bills a GB as 2^30 bytes).
	priceStandard         = 0.023
	priceITFrequent       = 0.023  // Intelligent-Tiering, Frequent Access tier
	priceITInfrequent     = 0.0125 // after 30 days without access
	priceITArchiveInstant = 0.004  // after 90 days without access
	priceGlacierIR        = 0.004
	// Intelligent-Tiering's monitoring and automation, per object of
	// 128 KB or more a month ($0.0025 per 1,000); smaller objects are not
	// monitored, not charged for it, and always billed at Frequent Access
	// rates (AWS, PutBucketIntelligentTieringConfiguration).
	priceITMonitoring = 0.0025 / 1000
	// Glacier IR: a fee per GB read, and dearer GETs than Standard's.
	priceGlacierIRRetrieval = 0.03
	priceGlacierIRGet       = 0.01 / 1000
	priceStandardGet        = s3PerGet
	// Lifecycle transition requests, per object moved.
	priceTransitionIT        = 0.01 / 1000
	priceTransitionGlacierIR = 0.02 / 1000
)

// minBillable is the minimum billable object size of Glacier IR (and
// Standard-IA, One Zone-IA), and the size under which Intelligent-Tiering
// neither monitors nor tiers an object and the template's lifecycle rules
// move nothing (ObjectSizeGreaterThan 131072): 128 KB, as AWS counts it.
const minBillable = 128 << 10

// sizeBand is a share of the originals whose sizes are drawn uniformly
// from [min, max), as makeOriginals draws them.
type sizeBand struct {
	share    float64
	min, max int64
}

// The band's expectations, sizes taken as continuous (a byte more or less
// does not show in a cent): the mean size, the billable size with the
// 128 KB minimum, the share under 128 KB, and the mean of the bytes of the
// originals of 128 KB or less (0 for those above).
func (b sizeBand) mean() float64 { return float64(b.min+b.max) / 2 }

func (b sizeBand) billable() float64 {
	lo, hi, m := float64(b.min), float64(b.max), float64(minBillable)
	switch {
	case m <= lo:
		return b.mean()
	case m >= hi:
		return m
	}
	return ((m-lo)*m + (hi*hi-m*m)/2) / (hi - lo)
}

func (b sizeBand) shareBelow() float64 {
	lo, hi, m := float64(b.min), float64(b.max), float64(minBillable)
	return min(max((m-lo)/(hi-lo), 0), 1)
}

func (b sizeBand) bytesUpTo() float64 {
	lo, hi, m := float64(b.min), float64(b.max), float64(minBillable)
	top := min(m, hi)
	if top <= lo {
		return 0
	}
	return (top*top - lo*lo) / 2 / (hi - lo)
}

// sizeMix is a photo-size mix: bands whose shares add up to 1.
type sizeMix []sizeBand

// photoBands is the bench's photo-size mix (photoSizes), the one the hot
// cache scenario's originals are drawn from.
func photoBands() sizeMix {
	var m sizeMix
	for _, s := range photoSizes {
		m = append(m, sizeBand{s.share, s.min, s.max})
	}
	return m
}

func (m sizeMix) sum(f func(sizeBand) float64) float64 {
	var s float64
	for _, b := range m {
		s += b.share * f(b)
	}
	return s
}

func (m sizeMix) meanSize() float64 { return m.sum(sizeBand.mean) }

// storageRow is what one way of storing the mix costs, per GB of
// originals (their real bytes).
type storageRow struct {
	id, name        string
	storagePerGB    float64 // a month, the storage alone
	monitoringPerGB float64 // a month, Intelligent-Tiering's fee per object
	transitionPerGB float64 // once, when a lifecycle rule moves the originals
	retrievalPerGB  float64 // per GB read
	getPer1000      float64 // per 1,000 GET requests
}

func (r storageRow) perGBMonth() float64 { return r.storagePerGB + r.monitoringPerGB }

// storageCosts prices the mix in each class: uploaded in it
// (--storage-class), or moved there by the template's lifecycle rule
// (StorageTransition), which moves only originals over 128 KB.
func storageCosts(mix sizeMix) []storageRow {
	const gb = 1 << 30
	mean := mix.meanSize()
	perGB := gb / mean                          // originals in a GB
	small := mix.sum(sizeBand.bytesUpTo) / mean // share of the bytes in originals of 128 KB or less
	large := perGB * (1 - mix.sum(sizeBand.shareBelow))
	monitoring := large * priceITMonitoring
	tiered := func(price float64) float64 { return small*priceITFrequent + (1-small)*price }
	return []storageRow{
		{"standard", "S3 Standard", priceStandard, 0, 0, 0, priceStandardGet},
		{"it-frequent", "Intelligent-Tiering, read in the last 30 days", priceITFrequent, monitoring, large * priceTransitionIT, 0, priceStandardGet},
		{"it-infrequent", "Intelligent-Tiering, 30 days unread", tiered(priceITInfrequent), monitoring, large * priceTransitionIT, 0, priceStandardGet},
		{"it-archive-instant", "Intelligent-Tiering, 90 days unread", tiered(priceITArchiveInstant), monitoring, large * priceTransitionIT, 0, priceStandardGet},
		{"glacier-ir", "Glacier Instant Retrieval, uploaded in it", priceGlacierIR * mix.sum(sizeBand.billable) / mean, 0, 0, priceGlacierIRRetrieval, priceGlacierIRGet},
		{"glacier-ir-lifecycle", "Glacier Instant Retrieval, by the lifecycle rule", small*priceStandard + (1-small)*priceGlacierIR, 0,
			large * priceTransitionGlacierIR, priceGlacierIRRetrieval, priceGlacierIRGet},
	}
}

// printStorageCosts prints the cost per GB-month of the mix in each class,
// and what a view read from Glacier IR costs on top.
func printStorageCosts(w io.Writer, mix sizeMix) {
	mean := mix.meanSize()
	fmt.Fprintf(w, "\n## storage: cost per GB-month of the photo-size mix (mean original %.2f MiB, %.1f originals a GB, %.1f %% of them 128 KB or less)\n",
		mean/(1<<20), (1<<30)/mean, 100*mix.sum(sizeBand.shareBelow))
	fmt.Fprintf(w, "US$, AWS us-east-1 prices of %s, first 50 TB a month; \"transition\" is once per GB, when a lifecycle rule moves the originals (none when uploaded in the class)\n\n", storagePricesDate)
	fmt.Fprintf(w, "%-50s %10s %10s %10s %12s %11s %9s %10s\n", "", "storage", "monitoring", "total", "10 TiB/month", "transition", "read/GB", "GET/1,000")
	for _, r := range storageCosts(mix) {
		fmt.Fprintf(w, "%-50s %10.5f %10.5f %10.5f %12.2f %11.5f %9.3f %10.4f\n", r.name, r.storagePerGB, r.monitoringPerGB, r.perGBMonth(),
			r.perGBMonth()*10*1024, r.transitionPerGB, r.retrievalPerGB, r.getPer1000*1000)
	}
	view := priceGlacierIRRetrieval*mean/(1<<30) + priceGlacierIRGet - priceStandardGet
	fmt.Fprintf(w, "\nA view read from S3 in Glacier IR costs $%.6f more than from Standard (the mean original's retrieval and the dearer GET),\n", view)
	fmt.Fprintf(w, "so Glacier IR costs less than Standard while under %.0f %% of the stored bytes are read from S3 a month.\n",
		100*(priceStandard-priceGlacierIR)/priceGlacierIRRetrieval)
}
