package main

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEraseBatches: each repetition gets one batch for erase and one for
// the plain deletes, the counting run one more, every batch n keys and no
// key in two of them (a key erased once has nothing left to delete); too
// few originals for the plan is an error saying what to change.
func TestEraseBatches(t *testing.T) {
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("p/%02d.jpg", i)
	}
	for _, tc := range []struct{ n, reps int }{{1, 1}, {5, 3}, {10, 2}, {7, 3}} {
		erase, plain, counted, err := eraseBatches(keys, tc.n, tc.reps)
		if err != nil {
			t.Fatalf("eraseBatches(50 keys, %d, %d): %v", tc.n, tc.reps, err)
		}
		if len(erase) != tc.reps || len(plain) != tc.reps {
			t.Fatalf("eraseBatches(50 keys, %d, %d): %d erase and %d plain batches; want %d each", tc.n, tc.reps, len(erase), len(plain), tc.reps)
		}
		seen := map[string]bool{}
		for _, batch := range append(append(slices.Clone(erase), plain...), counted) {
			if len(batch) != tc.n {
				t.Errorf("eraseBatches(50 keys, %d, %d): a batch of %d keys; want %d", tc.n, tc.reps, len(batch), tc.n)
			}
			for _, k := range batch {
				if seen[k] {
					t.Errorf("eraseBatches(50 keys, %d, %d): key %s in two batches", tc.n, tc.reps, k)
				}
				seen[k] = true
			}
		}
	}
	for _, tc := range []struct{ n, reps int }{{8, 3}, {0, 1}, {1, 0}, {51, 1}} {
		if _, _, _, err := eraseBatches(keys, tc.n, tc.reps); err == nil || !strings.Contains(err.Error(), "--erase-keys") {
			t.Errorf("eraseBatches(50 keys, %d, %d) = %v; want an error naming --erase-keys", tc.n, tc.reps, err)
		}
	}
}

// TestPruneSummary: the last line of prune --json is the summary; a run
// whose summary is not every file removed, or that printed none, is an
// error, so a prune that kept files is not timed as if it had done the work.
func TestPruneSummary(t *testing.T) {
	const line = `{"path":"00/IMG_00000.jpg","key":"p/00/IMG_00000.jpg","size":3,"removed":true}`
	done := func(files, removed int, dry bool, kept string) string {
		return fmt.Sprintf(`{"summary":{"files":%d,"removed":%d,"removed_bytes":6,"kept":{%s},"dry_run":%t,"started":"2026-12-06T00:00:00Z","finished":"2026-12-06T00:00:01Z"}}`,
			files, removed, kept, dry)
	}
	for _, tc := range []struct {
		name, out string
		dry       bool
		want      string // "": no error; else a part of the error
	}{
		{"all removed", line + "\n" + line + "\n" + done(2, 2, false, `"young":0,"error":0`) + "\n", false, ""},
		{"dry run", line + "\n" + done(2, 2, true, `"young":0`) + "\n", true, ""},
		{"dry run asked, real run done", done(2, 2, false, ``) + "\n", true, "dry run"},
		{"some young", done(2, 1, false, `"young":1`) + "\n", false, "young 1"},
		{"fewer files", done(1, 1, false, ``) + "\n", false, "looked at 1"},
		{"an error", `{"summary":{"files":2,"removed":2,"kept":{}},"error":"boom"}` + "\n", false, "boom"},
		{"no summary", line + "\n", false, "summary"},
		{"nothing", "", false, "summary"},
	} {
		err := checkPruneOutput(tc.out, 2, tc.dry)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: checkPruneOutput: %v; want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: checkPruneOutput = %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestOperation: the counting proxy names the calls prune and erase send,
// so their requests per file are told apart.
func TestOperation(t *testing.T) {
	for _, tc := range []struct{ method, target, want string }{
		{"HEAD", "/bucket/p/a.jpg?versionId=v1", "HeadObject"},
		{"GET", "/bucket?versions=&prefix=p%2Fa.jpg&max-keys=1", "ListObjectVersions"},
		{"GET", "/bucket/?versions&prefix=p%2Fa.jpg", "ListObjectVersions"},
		{"GET", "/bucket?uploads=&prefix=p%2Fa.jpg", "ListMultipartUploads"},
		{"DELETE", "/bucket/p/a.jpg?versionId=v1", "DeleteObject"},
		{"GET", "/bucket?list-type=2&prefix=p%2F", "ListObjects"},
		{"GET", "/bucket/p/a.jpg", "GetObject"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if got := operation(r); got != tc.want {
			t.Errorf("operation(%s %s) = %q; want %q", tc.method, tc.target, got, tc.want)
		}
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
	if got := operation(r); got != "DynamoDB GetItem" {
		t.Errorf("operation(GetItem) = %q; want %q", got, "DynamoDB GetItem")
	}
}

// TestSpread: the fastest and the slowest run, whatever their order.
func TestSpread(t *testing.T) {
	rs := []result{{took: 2500 * time.Millisecond}, {took: 1250 * time.Millisecond}, {took: 7 * time.Second}}
	if got, want := spread(rs), "1.25–7.00"; got != want {
		t.Errorf("spread = %q; want %q", got, want)
	}
	if got, want := spread(rs[:1]), "2.50–2.50"; got != want {
		t.Errorf("spread of one run = %q; want %q", got, want)
	}
}
