package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
)

// The prune and erase scenario: originals of the photo-size mix offloaded
// by offload-agent once, then offload-agent prune (dry run and real) and
// offload-agent erase timed as an operator runs them, each against a
// plain baseline in the same run.
//
// The photo-size mix, not files of one size: prune's cost has a part per
// file (a GetItem and a HEAD, bound by round trips, 16 files at once) and a
// part per byte (reading the file through CRC64NVME). Its 30 % of web-sized
// files weigh on the first, its full-resolution JPEGs on the second, as
// on a photo site's disk; 2,000 of them (about 5.6 GiB) read in seconds
// from the page cache yet make a few thousand requests.
const (
	pruneOriginals = 2000
	eraseKeys      = 200
	// pruneInFlight is the files the request baseline checks at once:
	// prune's own bound (agent's defaultPruneParallel).
	pruneInFlight = 16
	// pruneMinAge is the --min-age every prune run is given. prune keeps
	// a file whose ledger item was recorded less than this long before
	// prune started; the items were recorded by the once run before, so
	// the least age the flag takes (more than 0) makes them all old enough
	// without touching the ledger.
	pruneMinAge = "1ms"
)

// The scenario's sizes (--prune-files, --erase-keys).
var (
	pruneFiles     = pruneOriginals
	eraseKeysCount = eraseKeys
)

// pruneBench offloads the originals, times prune and its baselines, then
// erase and its baseline, and prints both tables.
func (b *bench) pruneBench(ctx context.Context, files, keys, reps int) error {
	// The plan first: a run too small for its erase batches fails now,
	// not after the offload.
	if _, _, _, err := eraseBatches(make([]string, files), keys, reps); err != nil {
		return err
	}
	fmt.Printf("\n## Prune and erase: %d originals (photo-size mix) offloaded by offload-agent once; load average %s\n", files, loadAverage())
	o, err := b.offloadOriginals(ctx, "prune", files)
	if err != nil {
		return err
	}
	defer b.deletePrefix(ctx, o.prefix)
	var total int64
	var all []string // the originals' keys
	for _, f := range o.files {
		total += f.size
		all = append(all, o.prefix+f.name)
	}
	if err := b.pruneRuns(ctx, o, total, reps); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if err := b.eraseRuns(ctx, o.prefix, all, keys, reps); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	return nil
}

// pruneTool is one timed way of going over the archive: prune itself, or
// a baseline.
type pruneTool struct {
	name string
	run  func(ctx context.Context) (result, error)
}

// pruneRuns times prune --dry-run, prune, and the two baselines, taking
// turns, then counts each prune's requests in one more untimed run.
func (b *bench) pruneRuns(ctx context.Context, o offloaded, total int64, reps int) error {
	archive := filepath.Join(o.dir, "archive")
	watch := filepath.Join(o.www, "static")
	// A hard link of every archived file, to put the archive back after
	// each real prune: the same inodes, so the page cache stays warm, and
	// the ledger and S3 are untouched.
	keep := filepath.Join(o.dir, "archive-links")
	if err := linkTree(archive, keep); err != nil {
		return err
	}
	// The offload just wrote the originals twice (the archive here, MinIO's
	// copy): flush them, so that no timed run shares the disk and the
	// cores with their writeback, and read them once untimed, so that every
	// run reads from the page cache.
	syscall.Sync()
	if _, err := readTreeCRC(archive, runtime.NumCPU()); err != nil {
		return err
	}
	files := len(o.files)
	db := dynamodb.NewFromConfig(b.cfg)
	prune := func(dry bool) func(ctx context.Context) (result, error) {
		return func(ctx context.Context) (result, error) {
			r, err := b.runPrune(ctx, watch, archive, o.prefix, files, dry)
			if err == nil && !dry {
				err = relinkArchive(keep, archive)
			}
			return r, err
		}
	}
	tools := []pruneTool{
		{"offload-agent prune --dry-run", prune(true)},
		{"offload-agent prune", prune(false)},
		{fmt.Sprintf("read + CRC64NVME, %d readers", runtime.NumCPU()), func(context.Context) (result, error) {
			return readTreeCRC(archive, runtime.NumCPU())
		}},
		{fmt.Sprintf("GetItem + HEAD, %d files at once", pruneInFlight), func(ctx context.Context) (result, error) {
			return b.ledgerAndHead(ctx, db, o.prefix, o.files, pruneInFlight)
		}},
	}
	servers := stackServers(map[string]string{"MinIO": b.env.endpoint, "dynalite": os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")})
	times := map[string][]result{}
	for rep := range reps {
		for i := range tools {
			t := tools[(i+rep)%len(tools)] // take turns
			r, err := withServerCPU(servers, t.run)(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			times[t.name] = append(times[t.name], r)
		}
	}

	// One more run of each prune through counting proxies, untimed.
	c, err := b.newCounters()
	if err != nil {
		return err
	}
	defer c.close()
	requests := map[string]string{}
	for _, t := range tools[:2] {
		counts, err := c.count(b, func() error { _, err := t.run(ctx); return err })
		if err != nil {
			return fmt.Errorf("%s (counting run): %w", t.name, err)
		}
		requests[t.name] = perFile(counts, files)
	}

	mib := float64(total) / (1 << 20)
	read, asked := median(times[tools[2].name]), median(times[tools[3].name])
	fmt.Printf("\n### prune --min-age %s over %d archived files (%.0f MiB), %d repetitions, medians\n", pruneMinAge, files, mib, reps)
	fmt.Printf("%-36s %9s %11s %8s %7s %7s %7s %8s %9s %11s %15s\n", "run", "median s", "range s", "files/s", "MiB/s", "CPU s",
		"MinIO", "dynalite", "peak RSS", "time / read", "time / requests")
	for _, t := range tools {
		m := median(times[t.name])
		fmt.Printf("%-36s %9.2f %11s %8.0f %7.0f %7.2f %7.2f %8.2f %9s %11.2f %15.2f\n", t.name, m.took.Seconds(), spread(times[t.name]),
			float64(files)/m.took.Seconds(), mib/m.took.Seconds(), m.cpu.Seconds(), m.servers["MinIO"].Seconds(), m.servers["dynalite"].Seconds(), peakRSS(m),
			m.took.Seconds()/read.took.Seconds(), m.took.Seconds()/asked.took.Seconds())
	}
	both := read.took + asked.took
	fmt.Printf("the two baselines one after the other: %.2f s; prune --dry-run takes %.2f× that, prune %.2f×\n", both.Seconds(),
		median(times[tools[0].name]).took.Seconds()/both.Seconds(), median(times[tools[1].name]).took.Seconds()/both.Seconds())
	fmt.Println("(read: every archived file from the page cache through CRC64NVME, the local lower bound; requests: prune's")
	fmt.Println(" two calls per file alone, a consistent GetItem then a HEAD of the recorded version with its checksum; CPU s is the")
	fmt.Println(" run's own, the baselines' this process's, SDK included; MinIO, dynalite: the CPU s each server used during the run;")
	fmt.Printf(" %d cores in all)\n", runtime.NumCPU())
	fmt.Println("requests per file (S3 and DynamoDB, one untimed run through a counting proxy):")
	for _, t := range tools[:2] {
		fmt.Printf("  %-34s %s\n", t.name, requests[t.name])
	}
	return nil
}

// runPrune runs offload-agent prune over the archive with the settings the
// once run had, and checks from its JSON summary that it looked at every
// file and removed (or, dry, would remove) each one.
func (b *bench) runPrune(ctx context.Context, watch, archive, prefix string, files int, dry bool) (result, error) {
	env := []string{"AWS_ENDPOINT_URL_S3=" + b.s3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB=" + b.dbEndpoint}
	args := []string{"prune", "--watch", watch, "--archive", archive, "--key-prefix", prefix,
		"--min-age", pruneMinAge, "--log-level", "warn", "--json"}
	if dry {
		args = append(args, "--dry-run")
	}
	r, out, err := commandOutput(ctx, env, b.agent, args...)
	if err != nil {
		return r, err
	}
	return r, checkPruneOutput(out, files, dry)
}

// pruneOutput is the last line of prune --json: its summary, as an
// operator's script reads it.
type pruneOutput struct {
	Summary *struct {
		Files   int            `json:"files"`
		Removed int            `json:"removed"`
		Kept    map[string]int `json:"kept"`
		DryRun  bool           `json:"dry_run"`
	} `json:"summary"`
	Error string `json:"error"`
}

// checkPruneOutput reads prune --json's last line and refuses a run that
// did not look at files files, did not remove (dry: would not remove)
// every one, kept any, or was not the kind of run asked for.
func checkPruneOutput(out string, files int, dry bool) error {
	var last string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	var got pruneOutput
	if err := json.Unmarshal([]byte(last), &got); err != nil || got.Summary == nil {
		return fmt.Errorf("prune printed no summary line: %q", tail(out, 500))
	}
	s := got.Summary
	var kept []string
	for why, n := range s.Kept {
		if n > 0 {
			kept = append(kept, fmt.Sprintf("%s %d", why, n))
		}
	}
	slices.Sort(kept)
	switch {
	case got.Error != "":
		return fmt.Errorf("prune: %s", got.Error)
	case s.DryRun != dry:
		return fmt.Errorf("prune's summary says dry run %t; asked for %t", s.DryRun, dry)
	case len(kept) > 0:
		return fmt.Errorf("prune kept files: %s", strings.Join(kept, ", "))
	case s.Files != files || s.Removed != files:
		return fmt.Errorf("prune looked at %d files and removed %d; want %d each", s.Files, s.Removed, files)
	}
	return nil
}

// readTreeCRC reads every regular file under dir through CRC64NVME,
// readers at once: the least time anything that proves the archive's
// bytes can take here.
func readTreeCRC(dir string, readers int) (result, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return result{}, err
	}
	start, cpu0 := time.Now(), selfCPU()
	next := make(chan string)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for p := range next {
				if errs[i] != nil {
					continue
				}
				f, err := os.Open(p)
				if err != nil {
					errs[i] = err
					continue
				}
				_, err = io.CopyBuffer(offload.NewCRC64NVME(), f, buf)
				f.Close()
				errs[i] = err
			}
		}()
	}
	for _, p := range paths {
		next <- p
	}
	close(next)
	wg.Wait()
	return result{took: time.Since(start), cpu: selfCPU() - cpu0}, errors.Join(errs...)
}

// ledgerAndHead sends prune's two calls for every file and nothing else:
// a consistent GetItem of its key, then a HEAD of the version it names
// with the checksum, inFlight files at once; it checks the answers agree.
func (b *bench) ledgerAndHead(ctx context.Context, db *dynamodb.Client, prefix string, files []cacheFile, inFlight int) (result, error) {
	start, cpu0 := time.Now(), selfCPU()
	sem := make(chan struct{}, inFlight)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			key := prefix + f.name
			rec, err := offload.GetRecord(ctx, db, b.env.table, key)
			if err != nil {
				errs[i] = err
				return
			}
			out, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.env.bucket, Key: &key,
				VersionId: aws.String(rec.VersionID), ChecksumMode: types.ChecksumModeEnabled})
			switch {
			case err != nil:
				errs[i] = err
			case aws.ToInt64(out.ContentLength) != f.size || aws.ToString(out.ChecksumCRC64NVME) != rec.CRC64NVME:
				errs[i] = fmt.Errorf("%s: S3 holds %d bytes, crc64nvme %s; ledger %s", key, aws.ToInt64(out.ContentLength),
					aws.ToString(out.ChecksumCRC64NVME), rec.CRC64NVME)
			}
		}()
	}
	wg.Wait()
	return result{took: time.Since(start), cpu: selfCPU() - cpu0}, errors.Join(errs...)
}

// eraseParallel is the keys erase works on at once here (its --parallel,
// given as its default), and the baseline's deletes at once.
const eraseParallel = 8

// eraseRuns times offload-agent erase of n keys in one invocation against
// a DeleteObject of each of n other keys' versions, eraseParallel at once
// as erase works on keys, taking turns; then counts erase's requests in
// one more untimed run.
func (b *bench) eraseRuns(ctx context.Context, prefix string, all []string, n, reps int) error {
	erase, plain, counted, err := eraseBatches(all, n, reps)
	if err != nil {
		return err
	}
	db := dynamodb.NewFromConfig(b.cfg)
	// The versions the plain deletes remove: those the ledger recorded,
	// looked up before the timing.
	versions := map[string]string{}
	for _, batch := range plain {
		for _, key := range batch {
			rec, err := offload.GetRecord(ctx, db, b.env.table, key)
			if err != nil {
				return err
			}
			versions[key] = rec.VersionID
		}
	}
	names := []string{"offload-agent erase", fmt.Sprintf("DeleteObject per version, %d at once", eraseParallel)}
	servers := stackServers(map[string]string{"MinIO": b.env.endpoint, "dynalite": os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")})
	times := map[string][]result{}
	for rep := range reps {
		runs := []func(context.Context) (result, error){
			func(ctx context.Context) (result, error) { return b.runErase(ctx, prefix, erase[rep]) },
			func(ctx context.Context) (result, error) { return b.deleteVersions(ctx, plain[rep], versions) },
		}
		for i := range runs {
			j := (i + rep) % len(runs)
			r, err := withServerCPU(servers, runs[j])(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", names[j], err)
			}
			times[names[j]] = append(times[names[j]], r)
		}
	}

	c, err := b.newCounters()
	if err != nil {
		return err
	}
	defer c.close()
	counts, err := c.count(b, func() error { _, err := b.runErase(ctx, prefix, counted); return err })
	if err != nil {
		return fmt.Errorf("erase (counting run): %w", err)
	}
	requests := perFile(counts, n)

	plainTime := median(times[names[1]]).took
	fmt.Printf("\n### offload-agent erase of %d keys (one version each) in one invocation, %d repetitions, medians\n", n, reps)
	fmt.Printf("%-42s %9s %11s %7s %7s %7s %8s %9s %s\n", "run", "median s", "range s", "keys/s", "CPU s", "MinIO", "dynalite", "peak RSS", "time / plain deletes")
	for _, name := range names {
		m := median(times[name])
		fmt.Printf("%-42s %9.2f %11s %7.0f %7.2f %7.2f %8.2f %9s %.2f\n", name, m.took.Seconds(), spread(times[name]), float64(n)/m.took.Seconds(),
			m.cpu.Seconds(), m.servers["MinIO"].Seconds(), m.servers["dynalite"].Seconds(), peakRSS(m), m.took.Seconds()/plainTime.Seconds())
	}
	fmt.Printf("requests per key (S3 and DynamoDB, one untimed run through a counting proxy):\n  %-40s %s\n", names[0], requests)
	return nil
}

// runErase erases keys with offload-agent erase, all in one invocation;
// its exit status 0 says every key is done.
func (b *bench) runErase(ctx context.Context, prefix string, keys []string) (result, error) {
	env := []string{"AWS_ENDPOINT_URL_S3=" + b.s3Endpoint, "AWS_ENDPOINT_URL_DYNAMODB=" + b.dbEndpoint}
	args := append([]string{"erase", "--key-prefix", prefix, "--by", "bench", "--why", "bench: erase timing", "--parallel", strconv.Itoa(eraseParallel)}, keys...)
	r, _, err := commandOutput(ctx, env, b.agent, args...)
	return r, err
}

// deleteVersions is erase's baseline: the one DeleteObject with a version
// id that each key's version needs, eraseParallel keys at once, and
// nothing else.
func (b *bench) deleteVersions(ctx context.Context, keys []string, versions map[string]string) (result, error) {
	start, cpu0 := time.Now(), selfCPU()
	next := make(chan string)
	errs := make([]error, eraseParallel)
	var wg sync.WaitGroup
	for w := range eraseParallel {
		wg.Go(func() {
			for key := range next {
				if errs[w] != nil {
					continue
				}
				_, errs[w] = b.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.env.bucket, Key: aws.String(key),
					VersionId: aws.String(versions[key])})
			}
		})
	}
	for _, key := range keys {
		next <- key
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	return result{took: time.Since(start), cpu: selfCPU() - cpu0}, nil
}

// eraseBatches splits keys into the erase runs' batches of n: for each
// repetition one for erase and one for the plain deletes, then one for the
// counting run. No key is in two batches: a key erased once has nothing
// left to delete.
func eraseBatches(keys []string, n, reps int) (erase, plain [][]string, counted []string, err error) {
	need := n * (2*reps + 1)
	if n < 1 || reps < 1 || need > len(keys) {
		return nil, nil, nil, fmt.Errorf("--erase-keys %d with --reps %d needs %d originals (one batch each for erase and the plain deletes in each repetition, one for the counting run); there are %d: raise --prune-files or lower --erase-keys",
			n, reps, need, len(keys))
	}
	batch := func(i int) []string { return keys[i*n : (i+1)*n] }
	for rep := range reps {
		erase = append(erase, batch(2*rep))
		plain = append(plain, batch(2*rep+1))
	}
	return erase, plain, batch(2 * reps), nil
}

// linkTree hard-links every regular file under src to the same path under
// dst.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return os.Link(p, target)
		}
		return nil
	})
}

// relinkArchive puts back the archive a real prune emptied, from the hard
// links kept.
func relinkArchive(keep, archive string) error {
	if err := os.RemoveAll(archive); err != nil {
		return err
	}
	return linkTree(keep, archive)
}

// loadAverage is the machine's load over 1, 5 and 15 minutes, for the
// record with the figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

// withServerCPU wraps a timed run to record the CPU time each of the
// stack's servers used during it: on two shared cores, what a run costs
// the servers is part of why it takes the time it does.
func withServerCPU(servers []server, run func(context.Context) (result, error)) func(context.Context) (result, error) {
	return func(ctx context.Context) (result, error) {
		before := map[string]time.Duration{}
		for _, s := range servers {
			before[s.name] = cpuTime(s.pid)
		}
		r, err := run(ctx)
		r.servers = map[string]time.Duration{}
		for _, s := range servers {
			r.servers[s.name] = cpuTime(s.pid) - before[s.name]
		}
		return r, err
	}
}

func peakRSS(r result) string {
	if r.rss <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d MiB", r.rss>>20)
}

// spread is the fastest and slowest of the runs, in seconds: how far
// apart repetitions of one run fell, next to their median.
func spread(rs []result) string {
	lo, hi := rs[0].took, rs[0].took
	for _, r := range rs[1:] {
		lo, hi = min(lo, r.took), max(hi, r.took)
	}
	return fmt.Sprintf("%.2f–%.2f", lo.Seconds(), hi.Seconds())
}
