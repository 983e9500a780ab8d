package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// errArchiveTaken means the archive already holds different bytes under the
// file's name; neither copy is touched.
var errArchiveTaken = errors.New("archive already holds a different file under this name")

// claimDir is where a file is moved, inside the watch folder (so the move
// is an atomic rename on the same file system), while it is being archived
// or deleted. It is a dot-folder, so the agent never offloads from it; a
// crash leaves files there, and restoreClaimed puts them back at start.
const claimDir = ".offload-claim"

// finishLocal ends the life of the local file rel after it was proven and
// recorded: it claims the file by renaming it aside, checks that the claimed
// file is the very version that was uploaded (same device, inode, size and
// mtime: a back-end may have renamed a new file over the name a moment
// before), and only then archives or deletes it. Another version goes back
// under its name and is errChanged; so does the file when archiving or
// deleting it fails, and when afterClaim, called once the claimed file is
// known to be that version, fails. Idempotent after a crash (see
// restoreClaimed). The folders the renames touched are handed to durable,
// which fsyncs them (see dirSyncer).
//
// Every rename and unlink is made relative to folders opened one name at a
// time without following symlinks (see folder): a symlink or a plain file
// where the claim folder, one of its subfolders, a folder on the file's
// path or an archive folder should be is errNotFolder, and the file stays
// where it is.
func finishLocal(cfg Config, rel string, proven fileID, durable func(dirs ...string), afterClaim func() error) error {
	dir, name := path.Dir(rel), path.Base(rel)
	watch, err := openFolder(cfg.Watch)
	if err != nil {
		return err
	}
	defer watch.Close()
	from, err := watch.sub(dir, false, 0)
	if err != nil {
		return fmt.Errorf("claim %s: %w", rel, err)
	}
	defer from.Close()
	claim, err := watch.sub(path.Join(claimDir, dir), true, 0o755)
	if err != nil {
		return fmt.Errorf("claim %s: %w", rel, err)
	}
	defer claim.Close()
	beforeClaim(from.name(name))
	if err := renameNoReplace(from, name, claim, name); err != nil {
		return fmt.Errorf("claim %s: %w", rel, err)
	}
	putBack := func(err error) error {
		if perr := renameNoReplace(claim, name, from, name); perr != nil {
			return fmt.Errorf("%w, and it could not be put back (it is at %s): %v", err, claim.name(name), perr)
		}
		return err
	}
	if id, lerr := claim.lstat(name); lerr != nil || !id.sameVersion(proven) {
		err = fmt.Errorf("%s: %w just before it was archived", rel, errChanged)
	} else {
		err = afterClaim()
	}
	if err != nil {
		return putBack(err)
	}
	switch cfg.After {
	case AfterDelete:
		err = claim.remove(name)
	case AfterArchive:
		err = archiveFile(claim, name, cfg.Archive, rel, durable)
	}
	if err != nil {
		// Back under its name, so it is served and retried; left in the
		// claim folder it would wait for the next start (the soak found
		// this with an archive folder that refused writes).
		if _, serr := claim.lstat(name); serr == nil {
			return putBack(err)
		}
		return err
	}
	durable(claim.path, from.path)
	return nil
}

// beforeClaim is called just before the claim's rename; tests use it to
// play a writer that opens the file at the worst moment.
var beforeClaim = func(path string) {}

// restoreClaimed puts files a crashed run left in the claim folder back
// under their names (never replacing anything), so they are offloaded again;
// that run finds them already in S3 and the ledger and finishes. Like
// finishLocal it acts only inside real folders: a claim folder, or a folder
// on a file's way back, that is a symlink or not a folder is errNotFolder,
// and what is under it stays where it is.
func restoreClaimed(watch string) (restored int, err error) {
	w, err := openFolder(watch)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	claim, err := w.sub(claimDir, false, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer claim.Close()
	var errs []error // one name that cannot go back must not hold up the rest
	var walk func(from *folder, rel string)
	walk = func(from *folder, rel string) {
		entries, err := from.f.ReadDir(-1)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range entries {
			name, p := e.Name(), path.Join(rel, e.Name())
			if p == path.Base(uploadsDir) {
				continue // records of uploads in progress, not claimed files
			}
			if e.IsDir() { // a symlink is not: it is moved back as it is
				sub, err := from.sub(name, false, 0)
				if err != nil {
					errs = append(errs, fmt.Errorf("put back %s: %w", p, err))
					continue
				}
				walk(sub, p)
				sub.Close()
				continue
			}
			to, err := w.sub(rel, true, 0o755)
			if err == nil {
				err = renameNoReplace(from, name, to, name)
				to.Close()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("put back %s: %w", p, err))
				continue
			}
			restored++
		}
	}
	walk(claim, "")
	return restored, errors.Join(errs...)
}

// archiveFile moves the claimed file name in the claim folder to rel in the
// archive folder and makes the move durable. It never replaces a file in
// the archive: if one with the same bytes is there (a run that crashed
// after archiving, or a second copy of an offloaded file), the claimed copy
// is redundant and removed; different bytes, or something other than a
// regular file, are errArchiveTaken. Across file systems it copies, fsyncs,
// compares, and only then unlinks. Folders it creates are fsynced into
// their parents at once, so none a copy lands in can vanish in a crash
// after its source is gone; a folder on the way that is a symlink or not a
// folder is errNotFolder.
func archiveFile(claim *folder, name, archive, rel string, durable func(dirs ...string)) error {
	arch, err := openFolder(archive)
	if err != nil {
		return err
	}
	defer arch.Close()
	dst, err := arch.sub(path.Dir(rel), true, 0o755)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer dst.Close()
	err = renameNoReplace(claim, name, dst, name)
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		same, cerr := sameFiles(claim, name, dst, name)
		if cerr != nil {
			return cerr
		}
		if !same {
			return fmt.Errorf("%s: %w", dst.name(name), errArchiveTaken)
		}
		if err := syncFileIn(dst, name); err != nil {
			return err
		}
		if err := claim.remove(name); err != nil {
			return err
		}
	case errors.Is(err, unix.EXDEV):
		if err := copyAcross(claim, name, arch, dst); err != nil {
			return err
		}
		if err := claim.remove(name); err != nil {
			return err
		}
	default:
		return fmt.Errorf("archive: %w", err)
	}
	durable(dst.path)
	return nil
}

// copyDir is the folder, in the archive, that copies across file systems
// are written in before they are renamed into place: one place to empty
// after a crash (see removeCopies), never a temporary left beside an
// archived file. It is a dot-folder, which the audit skips.
const copyDir = ".offload-copy"

// removeCopies deletes what a crashed run left in the archive's copyDir:
// copies never renamed into place, whose sources are still in the watch or
// claim folder. It returns how many. A copyDir that is a symlink or not a
// folder is errNotFolder, and nothing is deleted; a folder in it is not a
// copy of ours, and is left alone.
func removeCopies(archive string) (int, error) {
	arch, err := openFolder(archive)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer arch.Close()
	dir, err := arch.sub(copyDir, false, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	names, err := dir.f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, name := range names {
		if err := dir.remove(name); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// copyAcross copies the claimed file name to the same name in dst, a folder
// of the archive arch on another file system: into a temporary name in the
// archive's copyDir, fsync, compare byte for byte with the source, then
// rename it into place without replacing anything.
func copyAcross(claim *folder, name string, arch, dst *folder) error {
	in, err := claim.open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	dir, err := arch.sub(copyDir, true, 0o755)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer dir.Close()
	tmp, tmpName, err := dir.createTemp("copy-", 0o600)
	if err != nil {
		return err
	}
	defer dir.remove(tmpName) // once renamed, there is nothing left to remove
	defer tmp.Close()
	if _, err := io.Copy(tmp, in); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	same, err := sameContent(in, tmp)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("copy of %s to %s differs from the original", claim.name(name), dst.name(name))
	}
	if fi, err := in.Stat(); err == nil {
		_ = tmp.Chmod(fi.Mode().Perm())
		mtime := unix.NsecToTimespec(fi.ModTime().UnixNano())
		_ = unix.UtimesNanoAt(dir.fd(), tmpName, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err := renameNoReplace(dir, tmpName, dst, name); err != nil {
		if errors.Is(err, unix.EEXIST) {
			if same, cerr := sameFiles(claim, name, dst, name); cerr == nil && same {
				// Possibly left by a run that crashed before its fsync:
				// durable before the caller unlinks the source.
				if err := syncFileIn(dst, name); err != nil {
					return err
				}
				return dst.sync()
			}
			return fmt.Errorf("%s: %w", dst.name(name), errArchiveTaken)
		}
		return err
	}
	// The copy's name must be durable before the caller unlinks the source.
	return errors.Join(dst.sync(), dir.sync())
}

// sameFiles compares the regular file aName in a with bName in b byte for
// byte; bName not a regular file is a difference.
func sameFiles(a *folder, aName string, b *folder, bName string) (bool, error) {
	fa, err := a.open(aName)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := b.open(bName)
	if errors.Is(err, errNotRegular) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer fb.Close()
	return sameContent(fa, fb)
}

// sameContent compares two open files byte for byte, from their starts.
func sameContent(fa, fb *os.File) (bool, error) {
	sa, err := fa.Stat()
	if err != nil {
		return false, err
	}
	sb, err := fb.Stat()
	if err != nil {
		return false, err
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	ra, rb := io.NewSectionReader(fa, 0, sa.Size()), io.NewSectionReader(fb, 0, sb.Size())
	const chunk = 1 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for {
		na, ea := io.ReadFull(ra, ba)
		nb, eb := io.ReadFull(rb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// syncFileIn fsyncs the regular file name in d.
func syncFileIn(d *folder, name string) error {
	f, err := d.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncDir fsyncs a folder by its path, making the names in it durable: the
// dirSyncer's later fsync of folders a rename touched (an fsync moves
// nothing, so a path is enough there); a variable so that a test can see
// which folders are synced.
var syncDir = func(dir string) error { return syncFile(dir) }
