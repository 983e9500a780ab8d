package agent

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/photosleeve/offload"
)

// TestForgetMakesTheUnlinkDurable: the forgetter acknowledges an erasure
// once removeErased says this host's copy is gone, and never looks at it
// again. An unlink still only in the page cache is undone by a power
// loss, which would bring the erased original back on a host that has
// acknowledged it. So removeErased fsyncs the file's folder before it
// returns, also when it finds the file already gone (an earlier poll's
// unlink, maybe not yet on disk). Not parallel: it sets syncDirFD.
func TestForgetMakesTheUnlinkDurable(t *testing.T) {
	var synced []string
	old := syncDirFD
	syncDirFD = func(fd int, dir string) error { synced = append(synced, dir); return old(fd, dir) }
	defer func() { syncDirFD = old }()
	dir := t.TempDir()
	data := "the erased original"
	writeFile(t, filepath.Join(dir, "2026", "photo.jpg"), data)
	h := offload.NewCRC64NVME()
	h.Write([]byte(data))
	rec := offload.Record{Key: "original/2026/photo.jpg", Size: int64(len(data)), CRC64NVME: offload.EncodeChecksum(h.Sum64()),
		Erasure: &offload.Erasure{At: time.Now()}}
	folder := filepath.Join(dir, "2026")
	for _, want := range []removal{removedCopy, nothingThere} {
		synced = nil
		done, why, err := removeErased(dir, "2026/photo.jpg", rec)
		if err != nil || done != want {
			t.Fatalf("removeErased = %v, %q, %v; want %v", done, why, err, want)
		}
		if !slices.Contains(synced, folder) {
			t.Errorf("removeErased returned %v without an fsync of %s (synced: %q): a power loss may bring the file back after the acknowledgement", done, folder, synced)
		}
	}
}
