package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The agent's own folders (the claim folder, its subfolders, the upload
// records, the archive's subfolders and its copy folder) are where it
// renames and deletes. Anyone who can write in the watch folder (a back-end,
// or an attacker with upload rights) can put a symlink or a plain file
// where one of them should be; the agent must refuse to act through it,
// with errNotFolder, and never lose or misplace a file.

// idAt is the identity of the file at p.
func idAt(t *testing.T, p string) fileID {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := idOf(fi)
	return id
}

// wantOnce checks that data is at exactly one of the paths, whole.
func wantOnce(t *testing.T, data string, paths ...string) {
	t.Helper()
	found := 0
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && string(b) == data {
			found++
		}
	}
	if found != 1 {
		t.Errorf("the file's bytes are at %d of %v; want exactly one (never lost, never twice)", found, paths)
	}
}

// wantRefused checks that err refuses to act through something that is not
// a real folder.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, errNotFolder) {
		t.Errorf("%s = %v; want errNotFolder", what, err)
	} else {
		t.Logf("%s: %v", what, err)
	}
}

// TestClaimFolderSymlinkedToTheArchive: .offload-claim is a symlink to the
// archive folder. Followed, the claim renames the file into the archive,
// the archive step finds "the same file" there and deletes the claimed
// one: the file is in neither folder. It must stay in the watch folder.
func TestClaimFolderSymlinkedToTheArchive(t *testing.T) {
	for _, after := range []After{AfterArchive, AfterDelete} {
		t.Run(string(after), func(t *testing.T) {
			watch, archive := t.TempDir(), t.TempDir()
			if err := os.Symlink(archive, filepath.Join(watch, claimDir)); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(watch, "a/b.jpg")
			writeFile(t, src, "photo")
			err := finishLocal(Config{Watch: watch, Archive: archive, After: after}, "a/b.jpg", idAt(t, src), syncNow, noCheck)
			wantRefused(t, "finishLocal through a symlinked claim folder", err)
			wantOnce(t, "photo", src, filepath.Join(archive, "a/b.jpg"))
			if _, err := os.Lstat(src); err != nil {
				t.Errorf("the file left the watch folder: %v", err)
			}
		})
	}
}

// TestClaimFolderNotAFolder: a plain file stands where the claim folder
// should be.
func TestClaimFolderNotAFolder(t *testing.T) {
	watch, archive := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(watch, claimDir), "not a folder")
	src := filepath.Join(watch, "a/b.jpg")
	writeFile(t, src, "photo")
	err := finishLocal(Config{Watch: watch, Archive: archive, After: AfterArchive}, "a/b.jpg", idAt(t, src), syncNow, noCheck)
	wantRefused(t, "finishLocal with a file for a claim folder", err)
	wantOnce(t, "photo", src, filepath.Join(archive, "a/b.jpg"))
	if _, err := os.Lstat(src); err != nil {
		t.Errorf("the file left the watch folder: %v", err)
	}
	if n, err := restoreClaimed(watch); n != 0 {
		t.Errorf("restoreClaimed = %d, %v; want 0", n, err)
	} else {
		wantRefused(t, "restoreClaimed with a file for a claim folder", err)
	}
}

// TestClaimSubfolderSymlinked: a folder inside the claim folder, on the
// file's path, is a symlink out of the watch folder.
func TestClaimSubfolderSymlinked(t *testing.T) {
	watch, archive, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(watch, claimDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(watch, claimDir, "a")); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(watch, "a/b.jpg")
	writeFile(t, src, "photo")
	err := finishLocal(Config{Watch: watch, Archive: archive, After: AfterArchive}, "a/b.jpg", idAt(t, src), syncNow, noCheck)
	wantRefused(t, "finishLocal through a symlinked claim subfolder", err)
	wantOnce(t, "photo", src, filepath.Join(archive, "a/b.jpg"), filepath.Join(elsewhere, "b.jpg"))
	if _, err := os.Lstat(src); err != nil {
		t.Errorf("the file left the watch folder: %v", err)
	}
}

// TestArchiveSubfolderSymlinked: a folder of the archive on the file's
// path is a symlink to elsewhere: the file must not land there.
func TestArchiveSubfolderSymlinked(t *testing.T) {
	watch, archive, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(archive, "a")); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(watch, "a/b.jpg")
	writeFile(t, src, "photo")
	err := finishLocal(Config{Watch: watch, Archive: archive, After: AfterArchive}, "a/b.jpg", idAt(t, src), syncNow, noCheck)
	wantRefused(t, "finishLocal through a symlinked archive subfolder", err)
	if _, err := os.Lstat(filepath.Join(elsewhere, "b.jpg")); err == nil {
		t.Error("the file was archived through the symlink, outside the archive")
	}
	wantOnce(t, "photo", src, filepath.Join(elsewhere, "b.jpg"))
	if _, err := os.Lstat(filepath.Join(watch, claimDir, "a/b.jpg")); err == nil {
		t.Error("the file was left in the claim folder; want it put back under its name")
	}
}

// TestPutBackRefusesSymlinkedFolder: a crashed run left a/b.jpg in the
// claim folder, and the watch folder's a is now a symlink out of it. The
// file must not be put back through it.
func TestPutBackRefusesSymlinkedFolder(t *testing.T) {
	watch, elsewhere := t.TempDir(), t.TempDir()
	claimed := filepath.Join(watch, claimDir, "a/b.jpg")
	writeFile(t, claimed, "photo")
	writeFile(t, filepath.Join(watch, claimDir, "c.jpg"), "other")
	if err := os.Symlink(elsewhere, filepath.Join(watch, "a")); err != nil {
		t.Fatal(err)
	}
	n, err := restoreClaimed(watch)
	wantRefused(t, "restoreClaimed through a symlinked folder", err)
	if n != 1 {
		t.Errorf("restoreClaimed put back %d files; want 1 (c.jpg: one refusal must not hold up the rest)", n)
	}
	if _, err := os.Lstat(filepath.Join(elsewhere, "b.jpg")); err == nil {
		t.Error("the claimed file was put back through the symlink, outside the watch folder")
	}
	wantOnce(t, "photo", claimed, filepath.Join(elsewhere, "b.jpg"))
	if b, _ := os.ReadFile(filepath.Join(watch, "c.jpg")); string(b) != "other" {
		t.Errorf("c.jpg = %q; want it put back", b)
	}
}

// TestUploadRecordsFolderSymlinked: .offload-claim/.uploads is a symlink to
// a folder holding a .tmp-x file of someone else's. The start-up clean-up
// must not delete it, and no record is read from or written there.
func TestUploadRecordsFolderSymlinked(t *testing.T) {
	watch, elsewhere := t.TempDir(), t.TempDir()
	foreign := filepath.Join(elsewhere, ".tmp-x")
	writeFile(t, foreign, "not the agent's")
	if err := os.MkdirAll(filepath.Join(watch, claimDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(watch, uploadsDir)); err != nil {
		t.Fatal(err)
	}
	r := newResumeRecords(watch, "web-1")
	r.removeTemps()
	if b, err := os.ReadFile(foreign); err != nil || string(b) != "not the agent's" {
		t.Errorf("%s after the clean-up: %q, %v; want it left alone", foreign, b, err)
	}
	rec := uploadRecord{Key: "k/a.mov", UploadID: "u1", Host: "web-1", Mtime: time.Unix(100, 0), PartSize: 8 << 20}
	wantRefused(t, "save through a symlinked records folder", r.save(rec))
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 1 {
		t.Errorf("%s holds %d names after a save; want only .tmp-x", elsewhere, len(entries))
	}
	_, err := r.byUploadID()
	wantRefused(t, "byUploadID through a symlinked records folder", err)
}

// TestUploadRecordsUnderSymlinkedClaimFolder: the claim folder itself is a
// symlink; the records under it are refused the same way.
func TestUploadRecordsUnderSymlinkedClaimFolder(t *testing.T) {
	watch, elsewhere := t.TempDir(), t.TempDir()
	foreign := filepath.Join(elsewhere, ".uploads", ".tmp-x")
	writeFile(t, foreign, "not the agent's")
	if err := os.Symlink(elsewhere, filepath.Join(watch, claimDir)); err != nil {
		t.Fatal(err)
	}
	newResumeRecords(watch, "web-1").removeTemps()
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("%s after the clean-up: %v; want it left alone", foreign, err)
	}
	_, err := newResumeRecords(watch, "web-1").byUploadID()
	wantRefused(t, "byUploadID under a symlinked claim folder", err)
}

// TestCopyFolderSymlinked: the archive's .offload-copy is a symlink to a
// folder with files of someone else's; the start-up clean-up must not
// delete them.
func TestCopyFolderSymlinked(t *testing.T) {
	archive, elsewhere := t.TempDir(), t.TempDir()
	foreign := filepath.Join(elsewhere, "copy-123")
	writeFile(t, foreign, "not the agent's")
	if err := os.Symlink(elsewhere, filepath.Join(archive, copyDir)); err != nil {
		t.Fatal(err)
	}
	n, err := removeCopies(archive)
	wantRefused(t, "removeCopies through a symlinked copy folder", err)
	if n != 0 {
		t.Errorf("removeCopies = %d; want 0", n)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("%s after the clean-up: %v; want it left alone", foreign, err)
	}
}
