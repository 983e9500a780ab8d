package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestScanSendsEveryFileOnce: the scan reads folders in batches, unsorted,
// and still sends every file exactly once, in nested folders and in a
// folder larger than a batch; it does not follow a symlink to a folder (it
// sends the link itself, which the pipeline skips) and skips dot-folders.
func TestScanSendsEveryFileOnce(t *testing.T) {
	root := t.TempDir()
	watch := filepath.Join(root, "watch")
	outside := filepath.Join(root, "outside")
	var want []string
	write := func(rel string) {
		p := filepath.Join(watch, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3*scanBatch + 7 {
		rel := fmt.Sprintf("big/f%05d.jpg", i)
		write(rel)
		want = append(want, rel)
	}
	for _, rel := range []string{"top.jpg", "a/b/c/deep.jpg", "a/side.jpg"} {
		write(rel)
		want = append(want, rel)
	}
	write(".offload-claim/claimed.jpg")
	write("a/.hidden/secret.jpg")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "escape.jpg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(watch, "a", "link")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "a/link")

	out := make(chan candidate) // unbuffered: every send waits, as when the scheduler is full
	w := &watcher{a: &Agent{cfg: Config{Watch: watch}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, out: out}
	errc := make(chan error, 1)
	go func() { errc <- w.scan(context.Background(), "."); close(out) }()
	var got []string
	for c := range out {
		got = append(got, c.rel)
	}
	if err := <-errc; err != nil {
		t.Fatalf("scan: %v", err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("scan sent %d names, want %d; first differences: %v", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(got, want []string) []string {
	var d []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			d = append(d, "extra "+g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			d = append(d, "missing "+w)
		}
	}
	return d[:min(len(d), 10)]
}
