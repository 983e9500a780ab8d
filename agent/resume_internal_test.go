package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	smithyhttp "github.com/aws/smithy-go/transport/http"
	"net/http"
)

// TestResumableAfter: an upload is kept for resuming after no answer, a
// server error, a timeout or shutdown; aborted after the file changed or
// could not be read, or S3 refused a request.
func TestResumableAfter(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("upload part 3: %w", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("x")})
	}
	for _, tt := range []struct {
		err  error
		keep bool
	}{
		{status(0), true},
		{status(500), true},
		{status(503), true},
		{status(429), true},
		{status(400), false},
		{status(403), false},
		{status(404), false},
		{context.Canceled, true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", errChanged), false},
		{fmt.Errorf("%w: disk", errRead), false},
		{fmt.Errorf("complete: %w", errObjectExists), false},
	} {
		if got := resumableAfter(tt.err); got != tt.keep {
			t.Errorf("resumableAfter(%v) = %v; want %v", tt.err, got, tt.keep)
		}
	}
}

// TestUploadRecordFits: a record fits only the very file version, key,
// part size and host it was made for; records survive a reload, are per
// host, and are never put back as claimed files.
func TestUploadRecordFits(t *testing.T) {
	watch := t.TempDir()
	id := fileID{dev: 1, ino: 2, size: 3 << 20, mtime: time.Unix(100, 5)}
	r := newResumeRecords(watch, "web-1")
	rec := uploadRecord{Key: "k/a.mov", UploadID: "u1", Host: "web-1", Dev: 1, Ino: 2, Size: 3 << 20, Mtime: id.mtime, PartSize: 8 << 20}
	if err := r.save(rec); err != nil {
		t.Fatal(err)
	}
	got, ok := r.load("k/a.mov")
	if !ok || !got.fits("k/a.mov", id, 8<<20, "web-1", "") {
		t.Fatalf("reloaded record %+v, %v; want it to fit", got, ok)
	}
	for name, other := range map[string]fileID{
		"size":  {dev: 1, ino: 2, size: 4 << 20, mtime: id.mtime},
		"mtime": {dev: 1, ino: 2, size: 3 << 20, mtime: time.Unix(100, 6)},
		"inode": {dev: 1, ino: 9, size: 3 << 20, mtime: id.mtime},
	} {
		if got.fits("k/a.mov", other, 8<<20, "web-1", "") {
			t.Errorf("fits a file with another %s", name)
		}
	}
	if got.fits("k/a.mov", id, 16<<20, "web-1", "") || got.fits("k/a.mov", id, 8<<20, "web-2", "") || got.fits("k/b.mov", id, 8<<20, "web-1", "") {
		t.Error("fits another part size, host or key")
	}
	if _, ok := newResumeRecords(watch, "web-2").load("k/a.mov"); ok {
		t.Error("another host loads this host's record")
	}
	if n, err := restoreClaimed(watch); err != nil || n != 0 {
		t.Errorf("restoreClaimed = %d, %v; want the records left alone", n, err)
	}
	if _, err := os.Stat(filepath.Join(watch, uploadsDir)); err != nil {
		t.Errorf("records folder: %v", err)
	}
	r.remove("k/a.mov", "someone-else")
	if _, ok := r.load("k/a.mov"); !ok {
		t.Error("remove with another upload id removed the record")
	}
	r.remove("k/a.mov", "u1")
	if _, ok := r.load("k/a.mov"); ok {
		t.Error("record still there after remove")
	}
}

// TestRemoveKeepsARecordSavedMeanwhile: the sweep removes the record of an
// upload it aborted while a worker may be saving the record of a new
// upload of the same key. A save between remove's look at the record and
// its deletion must survive: the new upload stays resumable (and, after a
// crash, known as this host's).
func TestRemoveKeepsARecordSavedMeanwhile(t *testing.T) {
	r := newResumeRecords(t.TempDir(), "web-1")
	old := uploadRecord{Key: "k/a.mov", UploadID: "old", Host: "web-1", PartSize: 8 << 20}
	if err := r.save(old); err != nil {
		t.Fatal(err)
	}
	fresh := old
	fresh.UploadID = "new"
	r.beforeDelete = func() {
		r.beforeDelete = nil
		if err := r.save(fresh); err != nil {
			t.Error(err)
		}
	}
	r.remove("k/a.mov", "old")
	got, ok := r.load("k/a.mov")
	if !ok || got.UploadID != "new" {
		t.Fatalf("after removing upload old while upload new was saved: record %+v, %v; want upload new's", got, ok)
	}
	r.remove("k/a.mov", "new")
	if _, ok := r.load("k/a.mov"); ok {
		t.Error("record still there after remove")
	}
}
