package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/photosleeve/offload"
)

// errVersionCheck marks a failure to learn which version S3 holds under a
// key, when the ledger names another one: S3's part of recording.
var errVersionCheck = errors.New("which version S3 holds under the key")

// recordObject records r, the proof S3 gave of the object version it holds
// under r.Key, in the ledger. Idempotent, like record.
//
// An item that names another version or other bytes is settled by S3's
// current version under the key. The resolver presigns the version the item
// names, so an item naming a version the key no longer serves (deleted by
// an operator, or hidden by a delete marker) is no proof of anything: when
// S3's current version is r's, r replaces that item (conditionally on it,
// see replace). When S3's current version is the item's, the item stays and
// r is out of date: success if r has the same bytes (they are in S3 all the
// same), ErrConflict otherwise. When it is neither, errVersionCheck: the
// next attempt looks again.
//
// The current version is asked with a HEAD of the key, not a HEAD of the
// item's version: for a version that is gone AWS answers 404 NoSuchVersion
// (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html),
// but a missing object is 404 only to a caller with s3:ListBucket and 403 to
// others (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html),
// and AgentPolicy grants no s3:ListBucket; and a version behind a delete
// marker still answers 200 to a HEAD that names it though the key serves
// nothing.
func (a *Agent) recordObject(ctx context.Context, r offload.Record) error {
	err := a.ledger.record(ctx, r)
	var taken *itemTaken
	if !errors.As(err, &taken) {
		return err
	}
	cur, err := a.store.head(ctx, r.Key)
	switch {
	case err != nil:
		return fmt.Errorf("%v: %w: %w", taken, errVersionCheck, err)
	case holds(cur, r):
		if err := a.ledger.replace(ctx, taken.existing, r); err != nil {
			return err
		}
		a.log.Warn("the ledger named a version S3 no longer serves under the key (deleted, or hidden by a delete marker); it now names the one uploaded",
			"key", r.Key, "old_version", taken.existing.VersionID, "old_host", taken.existing.Host, "version", r.VersionID)
		return nil
	case holds(cur, taken.existing) && taken.existing.SameObject(r):
		return nil
	case holds(cur, taken.existing):
		return taken
	}
	return fmt.Errorf("%v: %w: S3 holds version %q with %d bytes, crc64nvme %q", taken, errVersionCheck, cur.VersionID, cur.Size, cur.CRC64NVME)
}

// recordProven records rec, the proof S3 just gave, and keeps the proof
// until the ledger has it: kept before the write (see pendingProofs.keep),
// made durable if the write fails, and recorded later by recordPending,
// whatever becomes of the file meanwhile. A failure comes with its cause,
// causeS3 or causeDynamoDB; ErrConflict (the ledger names S3's current
// version, of other bytes) needs none, and leaves nothing to record.
func (a *Agent) recordProven(ctx context.Context, rec offload.Record) (cause string, err error) {
	if err := a.proofs.keep(rec); err != nil {
		a.log.Warn("could not save the proof of an upload on disk; it is kept in memory until the ledger has it", "key", rec.Key, "err", err)
	}
	err = a.recordObject(ctx, rec)
	switch {
	case err == nil, errors.Is(err, offload.ErrConflict):
		a.proofs.done(rec)
		return "", err
	}
	if perr := a.proofs.persist(rec); perr != nil {
		a.log.Warn("could not save the proof of an upload durably; it is kept until the ledger has it, but a crash of the machine may lose it", "key", rec.Key, "err", perr)
	}
	if errors.Is(err, errVersionCheck) {
		return causeS3, err
	}
	return causeDynamoDB, err
}

// holds reports whether obj, what S3 answered for the key, is the object
// version r names.
func holds(obj objectInfo, r offload.Record) bool {
	return obj.VersionID == r.VersionID && obj.Size == r.Size && obj.CRC64NVME == r.CRC64NVME
}

// recordPending records the proofs whose ledger write failed or never ran
// (the agent died first): the objects S3 holds whatever became of their
// files since. It runs at start-up, after every rescan and when Once ends,
// and returns how many are still not recorded. One at a time, and none
// after the ledger failed: DynamoDB unreachable would otherwise cost a
// call timeout a proof, at start-up too.
func (a *Agent) recordPending(ctx context.Context) int {
	pending := a.proofs.list()
	left := 0
	for i, r := range pending {
		if ctx.Err() != nil {
			return left + len(pending) - i
		}
		log := a.log.With("key", r.Key, "version", r.VersionID, "path", r.Path)
		held, err := a.heldAsProven(ctx, r)
		if errors.Is(err, errNotAProof) {
			a.proofs.done(r)
			log.Error("dropped a pending proof that S3 does not bear out: nothing recorded", "err", err)
			continue
		}
		if err == nil {
			err = a.recordObject(ctx, held)
		}
		switch {
		case err == nil:
			a.proofs.done(r)
			log.Info("recorded in the ledger an object S3 accepted earlier, whose ledger write had failed or never ran")
		case errors.Is(err, errErased):
			a.proofs.done(r)
			log.Error("an object S3 accepted earlier is under an erased name: nothing recorded (a re-run of erase removes the object)", "err", err)
		case errors.Is(err, offload.ErrConflict):
			// S3 serves another version under the key now, and the
			// ledger names it: this proof is out of date.
			a.proofs.done(r)
			log.Warn("an object S3 accepted earlier was replaced under its key, and the ledger names the new one: nothing to record", "err", err)
		case errors.Is(err, errVersionCheck):
			left++
			log.Warn("an object in S3 is not recorded in the ledger yet; tried again after the next rescan", "err", err)
		default:
			log.Warn("objects in S3 are not recorded in the ledger yet; tried again after the next rescan", "err", err, "proofs", len(pending)-i)
			return left + len(pending) - i
		}
	}
	return left
}

// errNotAProof: a pending proof read back names a key its path does not
// map to, or an object version S3 does not hold with its size and checksum.
var errNotAProof = errors.New("not a proof of what S3 holds")

// heldAsProven checks a pending proof against S3 before it is recorded, and
// returns the record as S3 holds it. A proof comes back from a file in the
// watch folder, and whoever can write there can replace the claim folder
// with one of theirs: a proof taken on trust would let them write any
// ledger item (another key, a version that never was, a content type of
// text/html that the resolver then serves). So the key must be the one
// its path maps to, and a HEAD of the version it names (checksum mode;
// s3:GetObjectVersion) must show the same size and CRC64NVME; the ETag,
// the content type and the storage class are S3's. A HEAD that fails (S3 unreachable, or a
// version that is gone: 404 NoSuchVersion, or 403 without s3:ListBucket,
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)
// keeps the proof for the next try, as a failed ledger write does.
func (a *Agent) heldAsProven(ctx context.Context, r offload.Record) (offload.Record, error) {
	if key, err := a.cfg.Mapping.KeyForFile(r.Path); err != nil || key != r.Key {
		return r, fmt.Errorf("%w: path %q does not map to the key", errNotAProof, r.Path)
	}
	obj, err := a.store.headVersion(ctx, r.Key, r.VersionID)
	if err != nil {
		return r, fmt.Errorf("%w: %w", errVersionCheck, err)
	}
	if obj.Size != r.Size || obj.CRC64NVME != r.CRC64NVME || obj.VersionID != r.VersionID {
		return r, fmt.Errorf("%w: S3 holds version %q with %d bytes, crc64nvme %q; the proof says %q, %d bytes, %q",
			errNotAProof, obj.VersionID, obj.Size, obj.CRC64NVME, r.VersionID, r.Size, r.CRC64NVME)
	}
	r.ETag, r.ContentType, r.StorageClass = obj.ETag, obj.ContentType, obj.StorageClass
	return r, nil
}

// pendingProofs keeps the proofs S3 gave of the objects it accepted until
// the ledger has recorded them: in memory, and on disk next to the upload
// records (one file a key, named like its upload record, ending in
// .proof), so that one a crash or a failed ledger write left is recorded
// later even if its file has gone or changed meanwhile. A nil
// *pendingProofs keeps none (--dry-run, which uploads nothing).
//
// The files are reached as the upload records are (see resumeRecords): the
// folder is opened one name at a time without following symlinks, so a
// claim folder or records folder that is a symlink is refused.
type pendingProofs struct {
	hostFiles
	mu   sync.Mutex
	held map[string]offload.Record // by key
}

func newPendingProofs(watch, host string) *pendingProofs {
	return &pendingProofs{hostFiles: hostFiles{watch: watch, host: host}, held: map[string]offload.Record{}}
}

// name is the file of key's proof.
func (p *pendingProofs) name(key string) string { return p.fileName(key, ".proof") }

// keep holds r until done(r): in memory, and on disk. A proof not written
// to disk is still kept in memory; the error says why. It replaces an
// older proof of the same key: S3 accepted a new version only because the
// old one was no longer there.
//
// The file is not fsynced here: kept before every ledger write, it must
// cost little. Written, renamed and removed it cost 0.08 to 0.55 ms a
// file (BenchmarkPendingProofKeepDone, a shared 2-core VM, ext4, runs far
// apart); with the file and its folder fsynced too, 0.7 to 4.6 ms. A
// written file outlives the agent's own crash (kill -9, out of memory),
// which is what the moment between S3's answer and the ledger's is
// exposed to; only a crash of the machine in that moment can lose it, and
// then only a file that also changed before the restart leaves its object
// unrecorded (the audit reports it: object-without-ledger). A proof whose
// ledger write failed, and so may wait long, is made durable (see
// persist).
func (p *pendingProofs) keep(r offload.Record) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held[r.Key] = r
	return p.write(r, false)
}

// persist makes r's file durable (fsynced, in a fsynced folder), if r is
// still the proof held for its key.
func (p *pendingProofs) persist(r offload.Record) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if held, ok := p.held[r.Key]; !ok || !held.SameVersion(r) {
		return nil
	}
	return p.write(r, true)
}

// done forgets r once the ledger has it. A newer proof of the same key is
// kept, in memory and on disk: the check and the removal are one step
// under the lock, which keep takes too.
func (p *pendingProofs) done(r offload.Record) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if held, ok := p.held[r.Key]; ok && !held.SameVersion(r) {
		return
	}
	delete(p.held, r.Key)
	if d, err := p.dir(false); err == nil {
		d.remove(p.name(r.Key)) // one left behind is recorded again: idempotent
		d.Close()
	}
}

// drop forgets key's proof, whatever version it names: the key was
// erased, so it is never recorded.
func (p *pendingProofs) drop(key string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, key)
	if d, err := p.dir(false); err == nil {
		d.remove(p.name(key))
		d.Close()
	}
}

// list returns the proofs still held, those on disk included (left by an
// earlier run of this host).
func (p *pendingProofs) list() []offload.Record {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loadLocked()
	out := make([]offload.Record, 0, len(p.held))
	for _, r := range p.held {
		out = append(out, r)
	}
	return out
}

// loadLocked adds the proofs on disk that memory does not hold.
func (p *pendingProofs) loadLocked() {
	d, err := p.dir(false)
	if err != nil {
		return
	}
	defer d.Close()
	names, _ := d.f.Readdirnames(-1)
	for _, n := range names {
		if !strings.HasSuffix(n, ".proof") || strings.HasPrefix(n, ".") {
			continue
		}
		b, err := d.readFile(n)
		if err != nil {
			continue
		}
		var r offload.Record
		if json.Unmarshal(b, &r) != nil || r.Key == "" || r.Host != p.host {
			continue
		}
		if _, ok := p.held[r.Key]; !ok {
			p.held[r.Key] = r
		}
	}
}

// write puts r into its file: a temporary file (which start-up removes if
// a crash left it, see removeTemps) renamed into place; with durable, the
// file is fsynced before the rename and the folder after it.
func (p *pendingProofs) write(r offload.Record, durable bool) error {
	return p.writeJSON(p.name(r.Key), r, durable)
}
