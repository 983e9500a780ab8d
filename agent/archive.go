package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

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
func finishLocal(cfg Config, rel string, proven fileID, durable func(dirs ...string), afterClaim func() error) error {
	claimed := filepath.Join(cfg.Watch, claimDir, filepath.FromSlash(rel))
	src := filepath.Join(cfg.Watch, filepath.FromSlash(rel))
	if err := mkdirAllSynced(cfg.Watch, path.Join(claimDir, path.Dir(rel))); err != nil {
		return err
	}
	beforeClaim(src)
	if err := renameNoReplace(src, claimed); err != nil {
		return fmt.Errorf("claim %s: %w", rel, err)
	}
	fi, err := os.Lstat(claimed)
	if err != nil {
		return err
	}
	if id, _ := idOf(fi); !id.sameVersion(proven) {
		err = fmt.Errorf("%s: %w just before it was archived", rel, errChanged)
	} else {
		err = afterClaim()
	}
	if err != nil {
		if perr := renameNoReplace(claimed, src); perr != nil {
			return fmt.Errorf("%w, and it could not be put back (it is at %s): %v", err, claimed, perr)
		}
		return err
	}
	switch cfg.After {
	case AfterDelete:
		err = os.Remove(claimed)
	case AfterArchive:
		err = archiveFile(claimed, cfg.Archive, rel, durable)
	}
	if err != nil {
		// Back under its name, so it is served and retried; left in the
		// claim folder it would wait for the next start (the soak found
		// this with an archive folder that refused writes).
		if _, serr := os.Lstat(claimed); serr == nil {
			if rerr := renameNoReplace(claimed, src); rerr != nil {
				return fmt.Errorf("%w; and putting %s back failed (it is at %s): %v", err, rel, claimed, rerr)
			}
		}
		return err
	}
	durable(filepath.Dir(claimed), filepath.Dir(src))
	return nil
}

// beforeClaim is called just before the claim's rename; tests use it to
// play a writer that opens the file at the worst moment.
var beforeClaim = func(path string) {}

// restoreClaimed puts files a crashed run left in the claim folder back
// under their names (never replacing anything), so they are offloaded again;
// that run finds them already in S3 and the ledger and finishes.
func restoreClaimed(watch string) (restored int, err error) {
	base := filepath.Join(watch, claimDir)
	var errs []error // one name that cannot go back must not hold up the rest
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(watch, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := renameNoReplace(p, dst); err != nil {
			errs = append(errs, fmt.Errorf("put back %s: %w", rel, err))
			return nil
		}
		restored++
		return nil
	})
	return restored, errors.Join(append(errs, err)...)
}

// archiveFile moves the claimed file to rel in the archive folder and makes
// the move durable. It never replaces a file in the archive: if one with the
// same bytes is there (a run that crashed after archiving, or a second copy
// of an offloaded file), the claimed copy is redundant and removed;
// different bytes are errArchiveTaken. Across file systems it copies,
// fsyncs, compares, and only then unlinks. Folders it creates are fsynced
// into their parents at once, so none a copy lands in can vanish in a
// crash after its source is gone.
func archiveFile(claimed, archive, rel string, durable func(dirs ...string)) error {
	dst := filepath.Join(archive, filepath.FromSlash(rel))
	if err := mkdirAllSynced(archive, path.Dir(rel)); err != nil {
		return err
	}
	err := renameNoReplace(claimed, dst)
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		same, cerr := sameContent(claimed, dst)
		if cerr != nil {
			return cerr
		}
		if !same {
			return fmt.Errorf("%s: %w", dst, errArchiveTaken)
		}
		if err := syncFile(dst); err != nil {
			return err
		}
		if err := os.Remove(claimed); err != nil {
			return err
		}
	case errors.Is(err, unix.EXDEV):
		if err := copyAcross(claimed, archive, dst); err != nil {
			return err
		}
		if err := os.Remove(claimed); err != nil {
			return err
		}
	default:
		return fmt.Errorf("archive: %w", err)
	}
	durable(filepath.Dir(dst))
	return nil
}

// renameNoReplace renames without ever replacing an existing file.
func renameNoReplace(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
}

// mkdirAllSynced creates the folders of rel under base, fsyncing each new
// folder's parent so the folder survives a crash.
func mkdirAllSynced(base, rel string) error {
	if rel == "." {
		return nil
	}
	dir := base
	for _, seg := range strings.Split(rel, "/") {
		next := filepath.Join(dir, seg)
		err := os.Mkdir(next, 0o755)
		if err == nil {
			if err := syncDir(dir); err != nil {
				return err
			}
		} else if !errors.Is(err, os.ErrExist) {
			return err
		}
		dir = next
	}
	return nil
}

// copyDir is the folder, in the archive, that copies across file systems
// are written in before they are renamed into place: one place to empty
// after a crash (see removeCopies), never a temporary left beside an
// archived file. It is a dot-folder, which the audit skips.
const copyDir = ".offload-copy"

// removeCopies deletes what a crashed run left in the archive's copyDir:
// copies never renamed into place, whose sources are still in the watch or
// claim folder. It returns how many.
func removeCopies(archive string) (int, error) {
	dir := filepath.Join(archive, copyDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// copyAcross copies src to dst on another file system: into a temporary
// name in the archive's copyDir, fsync, compare byte for byte with the
// source, then rename it into place without replacing anything.
func copyAcross(src, archive, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := mkdirAllSynced(archive, copyDir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(archive, copyDir), "copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, in); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	same, err := sameContent(src, tmp.Name())
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("copy of %s to %s differs from the original", src, dst)
	}
	if fi, err := in.Stat(); err == nil {
		_ = tmp.Chmod(fi.Mode().Perm())
		_ = os.Chtimes(tmp.Name(), fi.ModTime(), fi.ModTime())
	}
	if err := renameNoReplace(tmp.Name(), dst); err != nil {
		if errors.Is(err, unix.EEXIST) {
			if same, cerr := sameContent(src, dst); cerr == nil && same {
				// Possibly left by a run that crashed before its fsync:
				// durable before the caller unlinks the source.
				if err := syncFile(dst); err != nil {
					return err
				}
				return syncDir(filepath.Dir(dst))
			}
			return fmt.Errorf("%s: %w", dst, errArchiveTaken)
		}
		return err
	}
	// The copy's name must be durable before the caller unlinks the source.
	return errors.Join(syncDir(filepath.Dir(dst)), syncDir(filepath.Join(archive, copyDir)))
}

// sameContent compares two files byte for byte.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
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
	const chunk = 1 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
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

func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncDir fsyncs a folder, making the names in it durable; a variable so
// that a test can see which folders are synced.
var syncDir = func(dir string) error { return syncFile(dir) }
