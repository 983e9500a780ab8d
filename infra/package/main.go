// Command package builds offload's Debian package, dist/offload_VERSION_ARCH.deb
// ("make package"; "go run ./infra/package -h").
//
// Why dpkg-deb and not nfpm: the package is one static binary and a dozen
// text files, which takes a staging tree, a control file and two lists.
// nfpm (github.com/goreleaser/nfpm/v2) would write that .deb itself, but
// it brings dozens of modules into go.mod (or a second module to keep in
// step) to re-implement what dpkg-deb, Debian's own builder, does; and
// dpkg-deb is on every machine that can install the result. The maintainer
// scripts are the part that needs care, and nfpm would not write them:
// they are plain files in debian/, written after dh_installsystemd's
// generated snippets. lintian judges the result either way.
//
// The package is named offload, not offload-agent: besides the agent it
// carries the web servers' side (/usr/share/offload/, lighttpd's
// conf-available entry), the offload user and /etc/offload.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	out := fs.String("o", "dist", "folder the .deb is written to")
	goarch := fs.String("goarch", "", "GOARCH to build for (default: go env GOARCH)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./infra/package [-o dist] [-goarch amd64]\n\n"+
			"Builds offload's Debian package from this checkout and prints its path.\n\n")
		fs.PrintDefaults()
	}
	fs.SetOutput(os.Stdout)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	repo, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
	deb, err := build(context.Background(), options{Repo: repo, OutDir: *out, GOARCH: *goarch})
	if err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
	fmt.Println(deb.Path)
}

// repoRoot is the nearest folder above the working directory that holds
// go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the offload module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}
