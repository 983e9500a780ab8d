package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// buildSource returns a folder to build the agent in, with the checkout's
// files and a .git folder. Go stamps a build with its git version only
// where .git is a folder: in a linked worktree ("git worktree add") it is
// a file, and the binary would say "(devel)"
// (https://github.com/golang/go/issues/58218). There the build runs in a
// shared clone of HEAD with the worktree's files (tracked, and untracked
// but not ignored) laid over it, so the stamp, "+dirty" included, is what
// a build in an ordinary clone would get. done removes the copy.
func buildSource(ctx context.Context, repo string) (dir string, done func(), err error) {
	if fi, err := os.Stat(filepath.Join(repo, ".git")); err == nil && fi.IsDir() {
		return repo, func() {}, nil
	}
	git := func(dir string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if e, ok := err.(*exec.ExitError); ok {
				stderr = string(e.Stderr)
			}
			return nil, fmt.Errorf("git %s: %v %s", strings.Join(args, " "), err, stderr)
		}
		return out, nil
	}
	head, err := git(repo, "rev-parse", "HEAD")
	if err != nil {
		return "", nil, fmt.Errorf("%s is not a git checkout, and the package's version comes from git: %w", repo, err)
	}
	tmp, err := os.MkdirTemp("", "offload-package-src-")
	if err != nil {
		return "", nil, err
	}
	done = func() { os.RemoveAll(tmp) }
	fail := func(err error) (string, func(), error) { done(); return "", nil, err }
	if _, err := git(repo, "clone", "--quiet", "--shared", "--no-checkout", repo, tmp); err != nil {
		return fail(err)
	}
	if _, err := git(tmp, "checkout", "--quiet", "--detach", strings.TrimSpace(string(head))); err != nil {
		return fail(err)
	}
	// Tracked files deleted in the worktree go from the copy too.
	tracked, err := git(tmp, "ls-files", "-z")
	if err != nil {
		return fail(err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(tracked), "\x00"), "\x00") {
		if _, err := os.Lstat(filepath.Join(repo, name)); os.IsNotExist(err) {
			os.Remove(filepath.Join(tmp, name))
		}
	}
	files, err := git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return fail(err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		if err := copyFile(filepath.Join(repo, name), filepath.Join(tmp, name)); err != nil && !os.IsNotExist(err) {
			return fail(err)
		}
	}
	return tmp, done, nil
}

// copyFile copies a regular file (its mode too) or a symbolic link.
func copyFile(from, to string) error {
	fi, err := os.Lstat(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	os.Remove(to)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(target, to)
	case fi.Mode().IsRegular():
		data, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
			return err
		}
		return os.Chmod(to, fi.Mode().Perm())
	}
	return nil // a submodule's folder or the like: nothing of the agent's
}
