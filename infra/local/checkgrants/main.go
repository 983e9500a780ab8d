// Command checkgrants proves that every S3 action template.yaml grants a
// component is needed: for each one it takes that action away from a copy
// of the template, runs the component's tests on a private stack whose
// credentials come from that copy (OFFLOAD_TEMPLATE), and expects a test to
// fail. It prints which tests failed without each action, and exits 1 when
// an action could be taken away with every test still passing: either the
// grant is more than the code needs, or no test exercises it.
//
// "make check-grants" runs it (a few minutes: one stack and one test run per
// action). With -kms (make check-grants STACK_FLAGS=--kms) the stacks run
// with --kms, and the KMS actions the template grants with KmsKeyArn set
// are taken away in turn too: the stack's AWS shim refuses them as AWS
// does.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// suites are the tests that exercise each component's grants.
var suites = map[string]struct{ pkg, run string }{
	// The agent's tests that use every S3 call it makes; the rest of the
	// suite adds minutes when a call is refused, not coverage.
	templatepolicy.Agent:    {"./agent/...", "^(TestOnceOffloadsEverything|TestConflictNeverOverwrites|TestKill9MidUploadThenRestart|TestNoOrphanAfterFailedAbortOrLostCreate|TestSweepAbortsStrayUploadOfStoredKey|TestOperationsEndpoints|TestResumeAfterKill|TestResumeWithinARun|TestHotPathIsFetchedAndMatchesTheLedger)$"},
	templatepolicy.Resolver: {"./lambda/", ""},
	templatepolicy.Audit:    {"./agent/", "^TestAudit"},
	templatepolicy.Eraser:   {"./agent/", "^TestErase"},
	// The local CloudFront edge reads with the bucket policy's grant.
	templatepolicy.Cloudfront: {"./infra/local/edge/", "^TestEdge"},
}

var failLine = regexp.MustCompile(`^\s*--- FAIL: (\S+)`)

func main() {
	only := flag.String("component", "", "check only this component (agent, resolver, audit, eraser, cloudfront)")
	kms := flag.Bool("kms", false, "run the stacks with --kms and check the KMS grants (KmsKeyArn) too")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *only, *kms); err != nil {
		fmt.Fprintln(os.Stderr, "check-grants:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, only string, kms bool) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	tmpl, err := os.ReadFile(filepath.Join(repo, "template.yaml"))
	if err != nil {
		return fmt.Errorf("run it from the repository root: %w", err)
	}
	dir, err := os.MkdirTemp("", "offload-check-grants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	out := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(out, "component\taction taken away\ttests that failed")
	var unneeded []string
	for _, c := range templatepolicy.Components {
		if only != "" && c != only {
			continue
		}
		doc, err := templatepolicy.S3Policy(tmpl, c, templatepolicy.Target{Bucket: "any"})
		if err != nil {
			return err
		}
		actions := doc.Actions()
		if kms {
			all, err := templatepolicy.Policy(tmpl, c, templatepolicy.Target{Bucket: "any", Table: "any",
				Conditions: map[string]bool{"KmsOn": true}, Parameters: map[string]string{"KmsKeyArn": templatepolicy.KMSKeyARN}})
			if err != nil {
				return err
			}
			for _, a := range all.Actions() {
				if strings.HasPrefix(a, "kms:") {
					actions = append(actions, a)
				}
			}
		}
		for _, action := range actions {
			less, err := templatepolicy.Without(tmpl, c, action)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, c+"-"+strings.ReplaceAll(action, ":", "_")+".yaml")
			if err := os.WriteFile(path, less, 0o644); err != nil {
				return err
			}
			start := time.Now()
			failed, err := failingTests(ctx, repo, path, suites[c].pkg, suites[c].run, kms)
			if err != nil {
				return fmt.Errorf("%s without %s: %w", c, action, err)
			}
			fmt.Fprintf(os.Stderr, "check-grants: %s without %s: %d failed (%s)\n", c, action, len(failed), time.Since(start).Round(time.Second))
			list := strings.Join(failed, ", ")
			if len(failed) == 0 {
				list = "NONE: not needed, or not tested"
				unneeded = append(unneeded, c+" "+action)
			}
			fmt.Fprintf(out, "%s\t%s\t%s\n", c, action, list)
		}
	}
	out.Flush()
	if len(unneeded) > 0 {
		return fmt.Errorf("taking these away failed no test: %s", strings.Join(unneeded, "; "))
	}
	return nil
}

// failingTests runs the tests on a private stack granted from template and
// returns the names of those that failed. A run that fails without naming a
// test (the stack did not come up, a build error) is an error.
func failingTests(ctx context.Context, repo, template, pkg, runRegex string, kms bool) ([]string, error) {
	args := []string{"run", "--", "env", "OFFLOAD_REQUIRE_STACK=1", "go", "test", "-count=1", "-timeout", "5m"}
	if kms {
		args = append([]string{"run", "--kms"}, args[1:]...)
	}
	if runRegex != "" {
		args = append(args, "-run", runRegex)
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "infra/local/stack"), args...)
	cmd.Env = append(os.Environ(), templatepolicy.TemplateEnv+"="+template)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	runErr := cmd.Run()
	var failed []string
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := failLine.FindStringSubmatch(sc.Text()); m != nil && !strings.Contains(m[1], "/") {
			failed = append(failed, m[1])
		}
	}
	if runErr != nil && len(failed) == 0 {
		return nil, fmt.Errorf("%v and no test named as failed:\n%s", runErr, tail(buf.String(), 20))
	}
	return failed, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
