// Package doctor checks what a first day of offload-agent gets wrong: the
// credentials and who they are, the region, the bucket and the table and
// each grant the agent needs, the folders as the service user, leases and
// the file system, and the web server's and the resolver's answers for a
// missing original. Every check is one Result; none leaves anything behind
// in S3, DynamoDB or the folders.
package doctor

import (
	"fmt"
	"io"
	"strings"
)

// Status is a check's outcome.
type Status string

// The outcomes. Only Fail makes doctor exit non-zero: a Skip says why the
// check could not be made (and is no pass in disguise: its detail says what
// is left untold); a Warn passes, with what to know.
const (
	OK   Status = "ok"
	Fail Status = "FAIL"
	Skip Status = "skip"
	Warn Status = "warn"
)

// Result is one check's outcome, printed on one line.
type Result struct {
	Status Status `json:"status"`
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Fix says what to do, for a Fail (and a Warn where there is a fix).
	Fix string `json:"fix,omitempty"`
}

func ok(name, format string, args ...any) Result {
	return Result{Status: OK, Name: name, Detail: fmt.Sprintf(format, args...)}
}

func skip(name, format string, args ...any) Result {
	return Result{Status: Skip, Name: name, Detail: fmt.Sprintf(format, args...)}
}

func fail(name, fix, format string, args ...any) Result {
	return Result{Status: Fail, Name: name, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// Print writes one line per result: "STATUS  NAME  detail", and for a
// failure (or a warning with a fix) a second, indented line with the fix.
func Print(w io.Writer, results []Result) {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Name))
	}
	for _, r := range results {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", r.Status, width, r.Name, oneLine(r.Detail))
		if r.Fix != "" && (r.Status == Fail || r.Status == Warn) {
			fmt.Fprintf(w, "%-4s  %-*s  fix: %s\n", "", width, "", oneLine(r.Fix))
		}
	}
}

// Passed reports whether no result is a failure.
func Passed(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return false
		}
	}
	return true
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
