package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestBandMoments: the expectations over one band of uniformly drawn sizes
// that the cost table rests on, against sums over every whole KiB.
func TestBandMoments(t *testing.T) {
	const kib = 1 << 10
	for _, b := range []sizeBand{
		{1, 100 * kib, 500 * kib}, // straddles 128 KiB
		{1, 500 * kib, 3 << 20},   // all above
		{1, 10 * kib, 100 * kib},  // all below
	} {
		var n, mean, billable, below, smallBytes float64
		for s := b.min; s < b.max; s += kib {
			x := float64(s) + kib/2 // the middle of each KiB
			n++
			mean += x
			billable += math.Max(x, minBillable)
			if x < minBillable {
				below++
			}
			if x <= minBillable {
				smallBytes += x
			}
		}
		for what, got := range map[string][2]float64{
			"mean":                {b.mean(), mean / n},
			"billable":            {b.billable(), billable / n},
			"share under 128 KiB": {b.shareBelow(), below / n},
			"bytes up to 128 KiB": {b.bytesUpTo(), smallBytes / n},
		} {
			if math.Abs(got[0]-got[1]) > 1e-6*math.Max(1, got[1]) {
				t.Errorf("band %d..%d KiB: %s = %v; summed over each KiB %v", b.min/kib, b.max/kib, what, got[0], got[1])
			}
		}
	}
}

// TestStorageCosts: the table for the bench's photo-size mix, against
// figures worked out by hand: Standard is its price per GB; Glacier IR
// uploaded in the class pays for 128 KiB at least, so a little more than
// its price; Intelligent-Tiering adds its monitoring fee per object of
// 128 KiB or more; a lifecycle transition costs its request per object
// moved, and leaves the small ones in Standard.
func TestStorageCosts(t *testing.T) {
	rows := storageCosts(photoBands())
	by := map[string]storageRow{}
	for _, r := range rows {
		by[r.id] = r
	}
	if r := by["standard"]; !near(r.perGBMonth(), priceStandard) || r.transitionPerGB != 0 {
		t.Errorf("standard: %+v; want $%v/GB-month, no transition", r, priceStandard)
	}
	mix := photoBands()
	// Mean original: 30 % of 300 KiB, 40 % of 1,786 KiB, 25 % of 5.5 MiB, 5 % of 14 MiB.
	wantMean := (0.30*300 + 0.40*1786 + 0.25*5632 + 0.05*14336) * 1024
	if got := mix.meanSize(); !near(got, wantMean) {
		t.Fatalf("mean original = %.0f bytes; want %.0f", got, wantMean)
	}
	perGB := (1 << 30) / wantMean
	// 7 % of the first band (100..128 of 100..500 KiB) is under 128 KiB.
	monitored := perGB * (1 - 0.30*28.0/400)
	gir := by["glacier-ir"]
	if gir.perGBMonth() <= priceGlacierIR || gir.perGBMonth() > priceGlacierIR*1.001 {
		t.Errorf("glacier-ir uploaded: $%v/GB-month; want a little over $%v (the 128 KiB minimum on the few small originals)", gir.perGBMonth(), priceGlacierIR)
	}
	if r := by["it-archive-instant"]; !near(r.monitoringPerGB, monitored*priceITMonitoring) {
		t.Errorf("intelligent-tiering monitoring = $%v/GB-month; want %v objects x $%v", r.monitoringPerGB, monitored, priceITMonitoring)
	}
	lc := by["glacier-ir-lifecycle"]
	if !near(lc.transitionPerGB, monitored*priceTransitionGlacierIR) {
		t.Errorf("glacier-ir by lifecycle: transition $%v per GB; want %v objects over 128 KiB x $%v", lc.transitionPerGB, monitored, priceTransitionGlacierIR)
	}
	if !(lc.perGBMonth() > gir.perGBMonth() && lc.perGBMonth() < by["standard"].perGBMonth()) {
		t.Errorf("glacier-ir by lifecycle $%v/GB-month: want between uploaded in it ($%v) and Standard", lc.perGBMonth(), gir.perGBMonth())
	}
	var out bytes.Buffer
	printStorageCosts(&out, mix)
	for _, want := range []string{"S3 Standard", "Glacier Instant Retrieval", "Intelligent-Tiering", "10 TiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the printed table lacks %q:\n%s", want, out.String())
		}
	}
}
