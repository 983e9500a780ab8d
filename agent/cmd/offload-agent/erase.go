package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/service/cloudfront"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
)

// eraseHelp is erase's help, before its flags.
const eraseHelp = `offload-agent erase [flags] --why REASON PATH_OR_KEY...

  Erase originals for good. Each PATH_OR_KEY is a URL path the site serves
  (/static/2024/cat.jpg, under --url-prefix; a "?query" or "#fragment" is cut off,
  so a pasted signed link works) or an object key (original/2024/cat.jpg, under
  --key-prefix); a name the naming contract refuses is refused here, and then
  nothing is erased. Flags come before the names.

  For each key, in this order: mark its ledger item erased (who: --by, when: S3's
  clock, why: --why; a key never recorded gets a mark too), so the resolver stops
  serving it; abort its open multipart uploads; delete every version and delete
  marker of exactly that key (not of keys that start with it); list its versions
  again; if that listing shows nothing: with --cdn-distribution, invalidate the
  key's path in CloudFront and wait until the invalidation completes; then record
  the erasure done. It prints what it removed and, for what it could not, S3's
  answer and its cause (Object Lock, MFA delete) or the permission the call
  needs. A key that the ledger never recorded and S3 never held is not done:
  check the name. The mark stays either way: run erase again once fixed; a
  second run is harmless and stamps the erasure again, so every host looks at
  it again.

  Exit status: 0 when every key is done, 1 if any is not, 2 for bad usage.
  It needs the stack's EraserPolicy (output EraserPolicyArn), not the agent's.
`

// eraseCommand erases the keys named on the command line.
func eraseCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := newCommandLine("erase")
	c.operands = true
	by := ""
	if u, err := user.Current(); err == nil {
		by = u.Username
	}
	var why string
	var asJSON bool
	parallel := defaultEraseParallel
	c.fs.IntVar(&parallel, "parallel", parallel, fmt.Sprintf("keys erased at once (each key's calls go one after another); 1 to %d, as CloudFront has at most %d wildcard invalidations in progress", maxEraseParallel, maxEraseParallel))
	c.fs.StringVar(&by, "by", by, "who asks for the erasure, recorded in the ledger (default: the user running erase)")
	c.fs.StringVar(&why, "why", "", "why, recorded in the ledger: a request's reference, a court order... (required)")
	c.fs.BoolVar(&asJSON, "json", false, "print each key's report as one JSON object a line")
	opts, ok, code := parseAgentFlags(c, args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	keys, err := eraseKeys(opts.agent.Mapping, c.fs.Args())
	switch {
	case err != nil:
	case strings.TrimSpace(why) == "":
		err = errors.New("--why is required: the ledger records why each original was erased")
	case strings.TrimSpace(by) == "":
		err = errors.New("--by is required: the user running erase has no name")
	case opts.agent.Bucket == "" || opts.agent.Table == "":
		err = errors.New("--bucket and --table are required (or OFFLOAD_BUCKET and OFFLOAD_TABLE)")
	case parallel < 1 || parallel > maxEraseParallel:
		err = fmt.Errorf("--parallel: want 1 to %d keys at once, got %d", maxEraseParallel, parallel)
	}
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent erase: %v\n", oneLine(err))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s3c, db, err := awsClients(ctx, opts.pathStyle, parallel)
	if err != nil {
		fmt.Fprintf(stderr, "offload-agent erase: %v\n", err)
		return 2
	}
	e := &agent.Eraser{S3: s3c, DB: db, Bucket: opts.agent.Bucket, Table: opts.agent.Table,
		KeyPrefix: opts.agent.Mapping.KeyPrefix, By: by, Why: why, CallTimeout: opts.agent.CallTimeout}
	if opts.cdnDistribution != "" {
		cfg, err := sdkConfig(ctx, sdkMaxAttempts, func(t *http.Transport) { t.ResponseHeaderTimeout = responseHeaderTimeout })
		if err != nil {
			fmt.Fprintf(stderr, "offload-agent erase: AWS configuration: %v\n", err)
			return 2
		}
		e.CDN, e.Distribution, e.CDNWait = cloudfront.NewFromConfig(cfg), opts.cdnDistribution, opts.cdnWait
	}
	incomplete := 0
	for r := range eraseAll(ctx, e, keys, parallel) {
		if !r.Done() {
			incomplete++
		}
		if asJSON {
			json.NewEncoder(stdout).Encode(struct {
				agent.EraseReport
				Done bool `json:"done"`
			}{r, r.Done()})
			continue
		}
		printErase(stdout, r)
	}
	if incomplete > 0 {
		fmt.Fprintf(stderr, "offload-agent erase: %d of %d not done; the ledger marks stay, run erase again once fixed\n", incomplete, len(keys))
		return 1
	}
	return 0
}

// defaultEraseParallel and maxEraseParallel bound the keys erase works
// on at once. Each key's calls go one after another (mark, abort, delete,
// list, invalidate, record), so a key waits on a round trip per call; keys
// at once hide that. With the CDN each key has a wildcard invalidation
// ("/KEY*") in progress until it completes, and CloudFront allows 15 of
// those paths in progress at a time: "If you're using the * wildcard, you
// can have requests for up to 15 invalidation paths in progress at one
// time"
// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/InvalidationLimits.html).
const (
	defaultEraseParallel = 8
	maxEraseParallel     = 15
)

// eraseAll erases keys, parallel at once, and yields their reports in the
// order of keys, each as soon as it and every one before it are done. A
// reader that stops stops the erasing: the keys not yet begun are not
// (those begun finish before eraseAll returns).
func eraseAll(ctx context.Context, e *agent.Eraser, keys []string, parallel int) iter.Seq[agent.EraseReport] {
	return func(yield func(agent.EraseReport) bool) {
		reports := make([]chan agent.EraseReport, len(keys))
		for i := range reports {
			reports[i] = make(chan agent.EraseReport, 1)
		}
		// Every key is handed out, even once ctx has ended: its Erase then
		// fails at once, and its report says so.
		next := make(chan int)
		var wg sync.WaitGroup
		for range min(parallel, len(keys)) {
			wg.Go(func() {
				for i := range next {
					reports[i] <- e.Erase(ctx, keys[i])
				}
			})
		}
		stop := make(chan struct{})
		go func() {
			defer close(next)
			for i := range keys {
				select {
				case next <- i:
				case <-stop:
					return
				}
			}
		}()
		defer wg.Wait()
		defer close(stop) // first: no key is handed out once the reader stops
		for i := range keys {
			if !yield(<-reports[i]) {
				return
			}
		}
	}
}

// eraseKeys maps each argument to its object key: a URL path (starting
// with "/") by the URL prefix, anything else as a key under the key
// prefix; duplicates once. Every refusal is the naming contract's. A URL
// path is cut at "?" or "#" first, as the resolver cuts a request's path
// (lambda's requestPath): a pasted signed link then names the original it
// serves. A key is taken whole: "?" and "#" are valid in a key.
func eraseKeys(m offload.Mapping, args []string) ([]string, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, errors.New("no URL path or key to erase (see offload-agent erase --help)")
	}
	var keys []string
	for _, a := range args {
		key := a
		var err error
		if strings.HasPrefix(a, "/") {
			p := a
			if i := strings.IndexAny(p, "?#"); i >= 0 {
				p = p[:i]
			}
			key, err = m.KeyForURL(p)
		} else {
			_, err = m.FileForKey(a)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", shown(a), err)
		}
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// printErase prints one key's report: a line of what was removed, and a
// line for each failure.
func printErase(w io.Writer, r agent.EraseReport) {
	state := "erased"
	if !r.Done() {
		state = "NOT DONE"
	}
	fmt.Fprintf(w, "%s %s: removed %s, %s, %s\n", state, r.Key,
		count(r.Versions, "version"), count(r.DeleteMarkers, "delete marker"), count(r.Uploads, "upload"))
	if r.Invalidation != "" {
		fmt.Fprintf(w, "  CDN invalidation %s\n", r.Invalidation)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  could not %s\n", f)
	}
	if r.Left > 0 {
		fmt.Fprintf(w, "  S3 still holds %s of %s, written during the erase: run erase again\n", count(r.Left, "version or delete marker"), r.Key)
	}
	if r.NothingFound {
		fmt.Fprintf(w, "  nothing was recorded or stored under %s: check the name and --key-prefix (the mark stays, so a host holding a file by that name removes it)\n", r.Key)
	}
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
