package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// uploadsDir is where this host keeps a record of each multipart upload it
// has in progress, inside the claim folder (which the web server configs
// already refuse to serve, and which holds nothing else under a dot-name:
// a claimed file's path never has one).
var uploadsDir = filepath.Join(claimDir, ".uploads")

// uploadRecord is what a multipart upload in progress was made for: the
// file version (device, inode, size, mtime), the part size and the host.
// S3 keeps nothing of the kind for an upload in progress: ListParts and
// ListMultipartUploads return no metadata, only keys, ids, initiators,
// parts and their checksums
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html,
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListMultipartUploads.html). So the record lives with the file, and an upload is resumed
// only into the very version it was made for, by the host that made it.
type uploadRecord struct {
	Key      string    `json:"key"`
	UploadID string    `json:"upload_id"`
	Host     string    `json:"host"`
	Dev      uint64    `json:"dev"`
	Ino      uint64    `json:"ino"`
	Size     int64     `json:"size"`
	Mtime    time.Time `json:"mtime"`
	PartSize int64     `json:"part_size"`
}

// fits reports whether the record is for this version of the file, under
// this key, with this part size, made by host.
func (r uploadRecord) fits(key string, id fileID, partSize int64, host string) bool {
	return r.Key == key && r.Host == host && r.PartSize == partSize &&
		r.Dev == id.dev && r.Ino == id.ino && r.Size == id.size && r.Mtime.Equal(id.mtime)
}

// resumeRecords keeps the upload records of one host in the watch folder.
// A nil *resumeRecords keeps none: uploads are then never resumed.
type resumeRecords struct {
	dir  string // WATCH/.offload-claim/.uploads
	host string
	// beforeDelete, if set, runs in remove between the check of the
	// record's upload id and its deletion: a test's window for a save.
	beforeDelete func()
}

// hostName is the host whose records these are ("" for none).
func (r *resumeRecords) hostName() string {
	if r == nil {
		return ""
	}
	return r.host
}

func newResumeRecords(watch, host string) *resumeRecords {
	return &resumeRecords{dir: filepath.Join(watch, uploadsDir), host: host}
}

// path names the record of key: a hash of host and key, so records of
// hosts sharing a watch folder (a network file system) never collide, and
// any key makes a valid file name.
func (r *resumeRecords) path(key string) string {
	h := sha256.Sum256([]byte(r.host + "\x00" + key))
	return filepath.Join(r.dir, hex.EncodeToString(h[:16])+".json")
}

// load returns the record of key, if there is one and it can be read.
func (r *resumeRecords) load(key string) (uploadRecord, bool) {
	if r == nil {
		return uploadRecord{}, false
	}
	b, err := os.ReadFile(r.path(key))
	if err != nil {
		return uploadRecord{}, false
	}
	var rec uploadRecord
	if json.Unmarshal(b, &rec) != nil || rec.Key != key || rec.Host != r.host {
		return uploadRecord{}, false
	}
	return rec, true
}

// save writes the record durably: a temporary file, fsynced, renamed into
// place, and the folder fsynced. A record that a crash lost only means the
// upload is not resumed.
func (r *resumeRecords) save(rec uploadRecord) error {
	if r == nil {
		return nil
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(r.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), r.path(rec.Key)); err != nil {
		return err
	}
	return syncDir(r.dir)
}

// remove deletes the record of key if it names uploadID ("" for any).
// A record another goroutine saves meanwhile for a new upload of the key
// (the sweep removing an aborted upload's record while a worker starts
// the next one) survives: the record is first taken from its name by a
// rename, which is atomic, and only then read; one that is not uploadID's
// is put back, unless a newer one has taken its place. A crash in between
// leaves a temporary that the next start removes (removeTemps): that
// upload is then not resumed.
func (r *resumeRecords) remove(key, uploadID string) {
	if r == nil {
		return
	}
	if rec, ok := r.load(key); ok && uploadID != "" && rec.UploadID != uploadID {
		return
	}
	if r.beforeDelete != nil {
		r.beforeDelete()
	}
	name := r.path(key)
	tmp, err := os.CreateTemp(r.dir, ".tmp-*")
	if err != nil {
		return // a record that stays is dropped by a later sweep
	}
	taken := tmp.Name()
	tmp.Close()
	defer os.Remove(taken)
	if os.Rename(name, taken) != nil {
		return // gone already
	}
	b, err := os.ReadFile(taken)
	var rec uploadRecord
	if err != nil || json.Unmarshal(b, &rec) != nil || uploadID == "" || rec.UploadID == uploadID {
		return
	}
	// Another upload's: back under its name. A link fails if a newer
	// record is there already (EEXIST), which then stays; where the file
	// system has no hard links, a rename puts it back.
	if err := os.Link(taken, name); err != nil && !errors.Is(err, fs.ErrExist) {
		os.Rename(taken, name)
	}
}

// removeTemps deletes what a save cut off by a crash left: temporary files
// never renamed into a record.
func (r *resumeRecords) removeTemps() {
	if r == nil {
		return
	}
	temps, _ := filepath.Glob(filepath.Join(r.dir, ".tmp-*"))
	for _, t := range temps {
		os.Remove(t)
	}
}

// byUploadID returns this host's records by upload id, for the sweep.
func (r *resumeRecords) byUploadID() (map[string]uploadRecord, error) {
	out := map[string]uploadRecord{}
	if r == nil {
		return out, nil
	}
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upload records: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		if err != nil {
			continue
		}
		var rec uploadRecord
		if json.Unmarshal(b, &rec) == nil && rec.Host == r.host {
			out[rec.UploadID] = rec
		}
	}
	return out, nil
}
