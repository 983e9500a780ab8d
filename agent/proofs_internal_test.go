package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/photosleeve/offload"
)

func proofFiles(t *testing.T, watch string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(watch, uploadsDir, "*.proof"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestPendingProofsOutliveTheProcess: a proof kept by one run is listed by
// the next (a new store on the same folder, as after a crash); a newer
// proof of the same key replaces it, and done of the older one keeps the
// newer; done of the newer leaves nothing. Another host's proofs in a
// shared folder are not this host's to record.
func TestPendingProofsOutliveTheProcess(t *testing.T) {
	watch := t.TempDir()
	at := time.Date(2026, 12, 6, 1, 2, 3, 4, time.UTC)
	v1 := offload.Record{Key: "p/a.jpg", Size: 3, CRC64NVME: "x", VersionID: "v1", Host: "web1", Path: "a.jpg", UploadedAt: at}
	v2 := v1
	v2.VersionID = "v2"

	if err := newPendingProofs(watch, "web1").keep(v1); err != nil {
		t.Fatalf("keep: %v", err)
	}
	other := v1
	other.Key, other.Host = "p/b.jpg", "web2"
	if err := newPendingProofs(watch, "web2").keep(other); err != nil {
		t.Fatalf("keep on web2: %v", err)
	}

	next := newPendingProofs(watch, "web1")
	got := next.list()
	if len(got) != 1 || !got[0].SameVersion(v1) || !got[0].UploadedAt.Equal(at) || got[0].Path != "a.jpg" {
		t.Fatalf("the next run lists %+v; want only %+v", got, v1)
	}
	if err := next.keep(v2); err != nil {
		t.Fatal(err)
	}
	next.done(v1)
	if got := newPendingProofs(watch, "web1").list(); len(got) != 1 || !got[0].SameVersion(v2) {
		t.Fatalf("after done of the older proof: %+v on disk; want the newer %+v", got, v2)
	}
	next.done(v2)
	if got := next.list(); len(got) != 0 {
		t.Errorf("after done of the newer proof: %+v held; want none", got)
	}
	if got := newPendingProofs(watch, "web1").list(); len(got) != 0 {
		t.Errorf("after done: %+v on disk; want none", got)
	}
	if files := proofFiles(t, watch); len(files) != 1 {
		t.Errorf("proof files left: %v; want only web2's", files)
	}
}

// TestPendingProofsRefuseSymlinkedFolder: with the upload records' folder
// replaced by a symlink, no proof is written through it; the proof is
// still held in memory for this run.
func TestPendingProofsRefuseSymlinkedFolder(t *testing.T) {
	watch := t.TempDir()
	elsewhere := filepath.Join(watch, "photos")
	if err := os.MkdirAll(filepath.Join(watch, claimDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(watch, uploadsDir)); err != nil {
		t.Fatal(err)
	}
	p := newPendingProofs(watch, "web1")
	r := offload.Record{Key: "p/a.jpg", Size: 3, CRC64NVME: "x", VersionID: "v1", Host: "web1"}
	if err := p.keep(r); err == nil {
		t.Error("keep through a symlinked folder: nil error; want a refusal")
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("the symlink's target holds %d entries; want none", len(ents))
	}
	if got := p.list(); len(got) != 1 || !got[0].SameVersion(r) {
		t.Errorf("held: %+v; want %+v in memory", got, r)
	}
}

// BenchmarkPendingProofKeepDone: what keeping a proof costs every upload
// (written, not fsynced, then removed once recorded).
func BenchmarkPendingProofKeepDone(b *testing.B) {
	p := newPendingProofs(b.TempDir(), "web1")
	r := offload.Record{Key: "p/a.jpg", Size: 3, CRC64NVME: "x", VersionID: "v1", Host: "web1", UploadedAt: time.Now()}
	for b.Loop() {
		if err := p.keep(r); err != nil {
			b.Fatal(err)
		}
		p.done(r)
	}
}
