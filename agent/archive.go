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

// archiveFile moves rel from the watch folder to the same relative path in
// the archive folder and makes the move durable (fsync of the file and of
// both folders). It never replaces a file in the archive: if one with the
// same bytes is there (a run that crashed between the move and its fsync, or
// a second copy of an already offloaded file), the watch-folder copy is the
// redundant one and is removed; different bytes are errArchiveTaken. Across
// file systems it copies, fsyncs, compares and only then unlinks.
// Idempotent: running it again after a crash finishes the move.
func archiveFile(watch, archive, rel string) error {
	src := filepath.Join(watch, filepath.FromSlash(rel))
	dst := filepath.Join(archive, filepath.FromSlash(rel))
	if err := mkdirAllSynced(archive, path.Dir(rel)); err != nil {
		return err
	}
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		same, cerr := sameContent(src, dst)
		if cerr != nil {
			return cerr
		}
		if !same {
			return fmt.Errorf("%s: %w", dst, errArchiveTaken)
		}
		if err := syncFile(dst); err != nil {
			return err
		}
		if err := os.Remove(src); err != nil {
			return err
		}
	case errors.Is(err, unix.EXDEV):
		if err := copyAcross(src, dst); err != nil {
			return err
		}
		if err := os.Remove(src); err != nil {
			return err
		}
	default:
		return fmt.Errorf("archive %s: %w", rel, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(src))
}

// deleteFile unlinks rel from the watch folder durably.
func deleteFile(watch, rel string) error {
	src := filepath.Join(watch, filepath.FromSlash(rel))
	if err := os.Remove(src); err != nil {
		return err
	}
	return syncDir(filepath.Dir(src))
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

// copyAcross copies src to dst on another file system: into a temporary
// name, fsync, compare byte for byte with the source, then link it into
// place without replacing anything.
func copyAcross(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".offload-copy-*")
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
	if err := unix.Renameat2(unix.AT_FDCWD, tmp.Name(), unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			if same, cerr := sameContent(src, dst); cerr == nil && same {
				return nil
			}
			return fmt.Errorf("%s: %w", dst, errArchiveTaken)
		}
		return err
	}
	return nil
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
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
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

func syncDir(dir string) error { return syncFile(dir) }
