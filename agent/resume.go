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

	"golang.org/x/sys/unix"
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
	// StorageClass is the class the upload was created with ("" none:
	// STANDARD). S3 takes the class at CreateMultipartUpload, and the
	// object completes in it, so an upload is resumed only under the same
	// --storage-class. A record written before the field has none.
	StorageClass string `json:"storage_class,omitempty"`
}

// fits reports whether the record is for this version of the file, under
// this key, with this part size and storage class, made by host.
func (r uploadRecord) fits(key string, id fileID, partSize int64, host, class string) bool {
	return r.Key == key && r.Host == host && r.PartSize == partSize && r.StorageClass == class &&
		r.Dev == id.dev && r.Ino == id.ino && r.Size == id.size && r.Mtime.Equal(id.mtime)
}

// resumeRecords keeps the upload records of one host in the watch folder.
// A nil *resumeRecords keeps none: uploads are then never resumed.
//
// The records folder is reached from the watch folder one name at a time
// without following symlinks (see folder), and every record is read,
// written and removed relative to it: a claim folder or records folder
// that is a symlink or not a folder is errNotFolder, so nothing is read
// from, written to or deleted in a folder someone pointed it at.
type resumeRecords struct {
	hostFiles // the records are in WATCH/.offload-claim/.uploads
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
	return &resumeRecords{hostFiles: hostFiles{watch: watch, host: host}}
}

// hostFiles are one host's files in the records folder: its upload records
// and its pending proofs (see pendingProofs).
type hostFiles struct {
	watch string
	host  string
}

// dir opens the records folder, WATCH/.offload-claim/.uploads, making it
// (mode 0700) with create.
func (f hostFiles) dir(create bool) (*folder, error) {
	w, err := openFolder(f.watch)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	return w.sub(filepath.ToSlash(uploadsDir), create, 0o700)
}

// fileName names the host's file of key, ending in ext: a hash of host and
// key, so the files of hosts sharing a watch folder (a network file
// system) never collide, and any key makes a valid file name.
func (f hostFiles) fileName(key, ext string) string {
	h := sha256.Sum256([]byte(f.host + "\x00" + key))
	return hex.EncodeToString(h[:16]) + ext
}

// writeJSON puts v, as JSON, into the host's file name in the records
// folder (made if missing): a temporary file (which start-up removes if a
// crash left it, see removeTemps) renamed into place, so a reader sees the
// old file or the new one, never a part. With durable the file is fsynced
// before the rename and the folder after it.
func (f hostFiles) writeJSON(name string, v any, durable bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	d, err := f.dir(true)
	if err != nil {
		return err
	}
	defer d.Close()
	tmp, tmpName, err := d.createTemp(".tmp-", 0o600)
	if err != nil {
		return err
	}
	defer d.remove(tmpName) // once renamed, there is nothing left to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := unix.Renameat(d.fd(), tmpName, d.fd(), name); err != nil {
		return &os.LinkError{Op: "rename", Old: d.name(tmpName), New: d.name(name), Err: err}
	}
	if !durable {
		return nil
	}
	return d.sync()
}

// name names the upload record of key.
func (r *resumeRecords) name(key string) string { return r.fileName(key, ".json") }

// load returns the record of key, if there is one and it can be read.
func (r *resumeRecords) load(key string) (uploadRecord, bool) {
	if r == nil {
		return uploadRecord{}, false
	}
	d, err := r.dir(false)
	if err != nil {
		return uploadRecord{}, false
	}
	defer d.Close()
	return r.loadIn(d, key)
}

func (r *resumeRecords) loadIn(d *folder, key string) (uploadRecord, bool) {
	b, err := d.readFile(r.name(key))
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
	return r.writeJSON(r.name(rec.Key), rec, true)
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
	d, err := r.dir(false)
	if err != nil {
		return
	}
	defer d.Close()
	if rec, ok := r.loadIn(d, key); ok && uploadID != "" && rec.UploadID != uploadID {
		return
	}
	if r.beforeDelete != nil {
		r.beforeDelete()
	}
	name := r.name(key)
	tmp, taken, err := d.createTemp(".tmp-", 0o600)
	if err != nil {
		return // a record that stays is dropped by a later sweep
	}
	tmp.Close()
	defer d.remove(taken)
	if unix.Renameat(d.fd(), name, d.fd(), taken) != nil {
		return // gone already
	}
	b, err := d.readFile(taken)
	var rec uploadRecord
	if err != nil || json.Unmarshal(b, &rec) != nil || uploadID == "" || rec.UploadID == uploadID {
		return
	}
	// Another upload's: back under its name, unless a newer record has
	// taken the name meanwhile (EEXIST), which then stays.
	renameNoReplace(d, taken, d, name)
}

// removeTemps deletes what a save cut off by a crash left: temporary files
// never renamed into a record. A records folder that is a symlink or not a
// folder is left alone (the sweep's reading of it says so in the log).
func (r *resumeRecords) removeTemps() {
	if r == nil {
		return
	}
	d, err := r.dir(false)
	if err != nil {
		return
	}
	defer d.Close()
	names, _ := d.f.Readdirnames(-1)
	for _, name := range names {
		if strings.HasPrefix(name, ".tmp-") {
			d.remove(name)
		}
	}
}

// byUploadID returns this host's records by upload id, for the sweep.
func (r *resumeRecords) byUploadID() (map[string]uploadRecord, error) {
	out := map[string]uploadRecord{}
	if r == nil {
		return out, nil
	}
	d, err := r.dir(false)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upload records: %w", err)
	}
	defer d.Close()
	names, err := d.f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("upload records: %w", err)
	}
	for _, name := range names {
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := d.readFile(name)
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
