package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Backfill scenario (issue 15: "a million originals"): offload-agent once
// over a large folder against the same agent over a small one, of files of
// the same size, in the same run. The agent holds at most maxPending files
// (25,000) whatever the folder holds, so the large run must go as fast per
// file as the small one, in the same memory: the upload buffers (part size
// x concurrency, 64 MiB by default) plus 64 MiB.
func (b *bench) backfill(ctx context.Context, files int, size int64, reps int) error {
	const small = 2000
	budget := int64(8<<20)*8 + 64<<20 // the defaults' buffers + 64 MiB
	fmt.Printf("\n## Backfill: offload-agent once over %d and over %d files of %d KiB (memory bound: %d MiB)\n",
		small, files, size>>10, budget>>20)
	fmt.Printf("%-30s %6s %9s %9s %10s %s\n", "run", "reps", "median s", "files/s", "peak RSS", "files/s vs the small run")
	var smallRate float64
	for _, sc := range []scenario{
		{id: "backfill", name: fmt.Sprintf("%d files", small), files: small, size: size},
		{id: "backfill", name: fmt.Sprintf("%d files", files), files: files, size: size},
	} {
		src := filepath.Join(b.work, fmt.Sprintf("backfill-%d-src", sc.files))
		start := time.Now()
		if err := generate(src, sc); err != nil {
			return err
		}
		made := time.Since(start)
		n := reps
		if sc.files > small {
			n = 1 // minutes each; the small run's median is the reference
		}
		var rs []result
		for range n {
			r, err := b.once(ctx, tool{"offload-agent once", b.runAgent}, src)
			if err != nil {
				os.RemoveAll(src)
				return err
			}
			rs = append(rs, r)
		}
		os.RemoveAll(src)
		m := median(rs)
		rate := float64(sc.files) / m.took.Seconds()
		if smallRate == 0 {
			smallRate = rate
		}
		within := "ok"
		if m.rss > budget {
			within = "OVER THE BOUND"
		}
		fmt.Printf("%-30s %6d %9.2f %9.0f %6d MiB %.2f  (files made in %s; peak RSS %s)\n", sc.name, n, m.took.Seconds(), rate,
			m.rss>>20, rate/smallRate, made.Round(100*time.Millisecond), within)
	}
	return nil
}
