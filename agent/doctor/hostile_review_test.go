package doctor

import (
	"path/filepath"
	"syscall"
	"testing"
)

// The foreign file sits in the watch folder, where other users write: one
// may swap it for a fifo before the child (the service user) opens it.
// Opening a fifo for reading waits for a writer: the check must not hang
// (doctor would sit until its two-minute deadline killed the child).
func TestLeaseCheckDoesNotWaitOnASwappedFifo(t *testing.T) {
	watch := t.TempDir()
	fifo := filepath.Join(watch, ".offload-doctor-foreign-x")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	r := Folders{Watch: watch, ForeignFile: fifo}.checkLeases()
	if r.Status != Fail {
		t.Errorf("a fifo in place of the foreign file: %+v; want a failure naming it", r)
	}
}
