package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"debug/buildinfo"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// debian holds the package's own files: maintainer scripts, the env file
// template, the sysusers.d entry, lighttpd's conf-available entry and
// README.Debian.
//
//go:embed debian
var debian embed.FS

const (
	packageName = "offload"
	// maintainer is the package's Maintainer field (and the changelog's
	// signature): the project's commit identity.
	maintainer = "offload maintainers <maintainers@users.noreply.r-seed-a987c2a7.example>"
	homepage   = "https://github.com/photosleeve/offload"
)

// conffiles are the package's files under /etc: dpkg keeps an
// administrator's edits to them across upgrades and removes them on purge.
var conffiles = []string{"/etc/offload/agent.env", "/etc/lighttpd/conf-available/50-offload.conf"}

// options says what to build.
type options struct {
	Repo   string // the checkout's root folder
	OutDir string // where the .deb goes; made when missing
	GOARCH string // "" is go env GOARCH
}

// deb is a built package.
type deb struct {
	Path      string // dist/offload_VERSION_ARCH.deb
	Version   string // the package's version, e.g. 0.0.0~git20261206051842.a98d0276ab55-1
	GoVersion string // the binary's module version, e.g. v0.0.0-20261206051842-a98d0276ab55
	Arch      string // Debian's architecture name
}

// file is one file of the package, at its installed path.
type file struct {
	path string
	mode os.FileMode
	data []byte
}

// build compiles the agent and writes the package. Its version comes from
// the binary itself (Go's stamp of the git checkout), so the package and
// "offload-agent version" cannot disagree.
func build(ctx context.Context, o options) (deb, error) {
	var d deb
	goarch := o.GOARCH
	if goarch == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOARCH").Output()
		if err != nil {
			return d, fmt.Errorf("go env GOARCH: %w", err)
		}
		goarch = strings.TrimSpace(string(out))
	}
	arch, err := debianArch(goarch)
	if err != nil {
		return d, err
	}
	d.Arch = arch

	src, done, err := buildSource(ctx, o.Repo)
	if err != nil {
		return d, err
	}
	defer done()

	work, err := os.MkdirTemp("", "offload-package-")
	if err != nil {
		return d, err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "offload-agent")
	// -s -w: no symbol table or DWARF, as Debian strips binaries; the build
	// information "offload-agent version" reads is kept. GOFLAGS is emptied:
	// a -buildvcs=false there (as on these machines) would drop the version.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=true", "-ldflags=-s -w",
		"-o", bin, "./agent/cmd/offload-agent")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return d, fmt.Errorf("go build: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return d, fmt.Errorf("read the build information of %s: %w", bin, err)
	}
	d.GoVersion = info.Main.Version
	if d.Version, err = debianVersion(d.GoVersion); err != nil {
		return d, err
	}
	when := commitTime(info)
	copyright, err := copyrightFile(info)
	if err != nil {
		return d, err
	}

	binData, err := os.ReadFile(bin)
	if err != nil {
		return d, err
	}
	helpBin := bin
	if goarch != runtime.GOARCH {
		// The package's binary cannot run here: the same source for this
		// machine says the same help.
		helpBin = filepath.Join(work, "offload-agent-host")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", helpBin, "./agent/cmd/offload-agent")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return d, fmt.Errorf("go build (for the manual page): %v\n%s", err, out)
		}
	}
	help, err := helpText(ctx, helpBin)
	if err != nil {
		return d, err
	}
	files := []file{
		{"/usr/bin/offload-agent", 0o755, binData},
		{"/usr/share/man/man1/offload-agent.1.gz", 0o644, gzipped(manPage(help, d.Version, when))},
		{"/usr/share/doc/offload/copyright", 0o644, copyright},
		{"/usr/share/doc/offload/changelog.Debian.gz", 0o644, gzipped(debianChangelog(d, info, when))},
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		from string // in the checkout, or debian/NAME when it starts so
	}{
		{"/lib/systemd/system/offload-agent.service", 0o644, "infra/systemd/offload-agent.service"},
		// Installed, not enabled (the postinst leaves it alone): pruning
		// deletes local copies, so the administrator opts in once
		// OFFLOAD_PRUNE_MIN_AGE is set (see the service's comment).
		{"/lib/systemd/system/offload-prune.service", 0o644, "infra/systemd/offload-prune.service"},
		{"/lib/systemd/system/offload-prune.timer", 0o644, "infra/systemd/offload-prune.timer"},
		{"/usr/lib/sysusers.d/offload.conf", 0o644, "debian/offload.sysusers"},
		{"/etc/offload/agent.env", 0o640, "debian/agent.env"},
		{"/etc/lighttpd/conf-available/50-offload.conf", 0o644, "debian/50-offload.conf"},
		{"/usr/share/doc/offload/README.Debian", 0o644, "debian/README.Debian"},
		{"/usr/share/lintian/overrides/offload", 0o644, "debian/offload.lintian-overrides"},
	} {
		data, err := readSource(src, f.from)
		if err != nil {
			return d, err
		}
		files = append(files, file{f.path, f.mode, data})
	}
	changes, err := os.ReadFile(filepath.Join(src, "CHANGELOG.md"))
	if err != nil {
		return d, err
	}
	files = append(files, file{"/usr/share/doc/offload/changelog.gz", 0o644, gzipped(changes)})
	for _, server := range []string{"lighttpd", "nginx", "apache"} {
		names, err := filepath.Glob(filepath.Join(src, "infra", server, "*"))
		if err != nil || len(names) == 0 {
			return d, fmt.Errorf("no files in infra/%s (%v)", server, err)
		}
		for _, name := range names {
			data, err := os.ReadFile(name)
			if err != nil {
				return d, err
			}
			files = append(files, file{"/usr/share/offload/" + server + "/" + filepath.Base(name), 0o644, data})
		}
	}

	root := filepath.Join(work, "root")
	if err := writeTree(root, files, when); err != nil {
		return d, err
	}
	if err := writeControl(root, d, files, when); err != nil {
		return d, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return d, err
	}
	d.Path, err = filepath.Abs(filepath.Join(o.OutDir, fmt.Sprintf("%s_%s_%s.deb", packageName, d.Version, d.Arch)))
	if err != nil {
		return d, err
	}
	// --root-owner-group: every file root:root in the archive, without
	// fakeroot; the offload group's hold on agent.env is the postinst's
	// stat override. SOURCE_DATE_EPOCH: the archive's timestamps are the
	// commit's, so the same commit gives the same package.
	pack := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, d.Path)
	pack.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(when.Unix(), 10))
	if out, err := pack.CombinedOutput(); err != nil {
		return d, fmt.Errorf("dpkg-deb --build: %v\n%s", err, out)
	}
	return d, nil
}

// readSource reads a file of the checkout, or of the embedded debian/
// folder when from starts with "debian/".
func readSource(src, from string) ([]byte, error) {
	if strings.HasPrefix(from, "debian/") {
		return debian.ReadFile(from)
	}
	return os.ReadFile(filepath.Join(src, from))
}

// commitTime is the commit's time from the build information, or now for
// a build without one.
func commitTime(info *buildinfo.BuildInfo) time.Time {
	for _, s := range info.Settings {
		if s.Key == "vcs.time" {
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				return t.UTC()
			}
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

// vcsRevision is the commit the binary was built from, "" when unknown.
func vcsRevision(info *buildinfo.BuildInfo) string {
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}

// writeTree writes the files, and the folders that hold them, mode 0755,
// under root, every time stamp the commit's.
func writeTree(root string, files []file, when time.Time) error {
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		// WriteFile's mode passes through the umask.
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		}
		return os.Chtimes(p, when, when)
	})
}

// controlTemplate is DEBIAN/control. Depends: adduser for the postinst's
// fallback where systemd-sysusers is missing; acl for the default ACLs
// "offload-agent init" sets on the folders. No ${shlibs:Depends}: the
// binary is static (CGO_ENABLED=0). init-system-helpers (deb-systemd-helper)
// is Essential.
var controlTemplate = template.Must(template.New("control").Parse(`Package: offload
Version: {{.Version}}
Architecture: {{.Arch}}
Maintainer: {{.Maintainer}}
Installed-Size: {{.InstalledSize}}
Depends: adduser, acl
Recommends: lighttpd-modules-lua
Suggests: lighttpd | nginx | apache2
Section: web
Priority: optional
Homepage: {{.Homepage}}
Description: moves a web site's uploaded originals to S3, keeping their URLs
 offload's agent watches the folder a web site's back-end writes uploads
 into, uploads each finished file to S3 with a checksum S3 verifies,
 records it in a DynamoDB ledger and moves it out of the web root. The web
 server's fallback (lighttpd, nginx or Apache; files under
 /usr/share/offload) then redirects a request for a moved file to the
 offload resolver, which answers with a presigned S3 URL: old URLs keep
 working.
 .
 After installation, "offload-agent init" configures the agent from the
 AWS stack's outputs and "offload-agent doctor" checks the result.
`))

// writeControl writes DEBIAN/: control, conffiles, md5sums and the
// maintainer scripts.
func writeControl(root string, d deb, files []file, when time.Time) error {
	dir := filepath.Join(root, "DEBIAN")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Installed-Size in KiB, each file rounded up, as dpkg-gencontrol
	// counts it (near enough: folders are counted once each).
	size, dirs := int64(0), map[string]bool{}
	var sums bytes.Buffer
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, f := range files {
		size += (int64(len(f.data)) + 1023) / 1024
		for p := filepath.Dir(f.path); p != "/" && !dirs[p]; p = filepath.Dir(p) {
			dirs[p] = true
		}
		if isConffile(f.path) {
			continue // dpkg keeps its own checksums of conffiles
		}
		fmt.Fprintf(&sums, "%x  %s\n", md5.Sum(f.data), strings.TrimPrefix(f.path, "/"))
	}
	size += int64(len(dirs))
	var control bytes.Buffer
	if err := controlTemplate.Execute(&control, map[string]any{
		"Version": d.Version, "Arch": d.Arch, "Maintainer": maintainer, "Homepage": homepage, "InstalledSize": size,
	}); err != nil {
		return err
	}
	out := []file{
		{"control", 0o644, control.Bytes()},
		{"conffiles", 0o644, []byte(strings.Join(conffiles, "\n") + "\n")},
		{"md5sums", 0o644, sums.Bytes()},
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		data, err := debian.ReadFile("debian/" + script)
		if err != nil {
			return err
		}
		out = append(out, file{script, 0o755, data})
	}
	for _, f := range out {
		p := filepath.Join(dir, f.path)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
		if err := os.Chtimes(p, when, when); err != nil {
			return err
		}
	}
	return nil
}

func isConffile(path string) bool {
	for _, c := range conffiles {
		if c == path {
			return true
		}
	}
	return false
}

// debianChangelog is changelog.Debian: one entry for this build, which
// names the commit; the project's changes are in changelog.gz.
func debianChangelog(d deb, info *buildinfo.BuildInfo, when time.Time) []byte {
	rev := vcsRevision(info)
	if rev == "" {
		rev = "unknown"
	}
	// Lines of at most 80 columns (lintian: debian-changelog-line-too-long);
	// the signature line is exempt.
	return []byte(fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n"+
		"  * Built with \"make package\" from git commit\n"+
		"    %s,\n"+
		"    Go module version %s.\n"+
		"  * The project's changes: changelog.gz.\n\n"+
		" -- %s  %s\n",
		packageName, d.Version, rev, d.GoVersion, maintainer, when.Format(time.RFC1123Z)))
}

// gzipped compresses data as Debian wants documentation compressed:
// maximum compression, no file name or time stamp in the header (gzip -9n).
func gzipped(data []byte) []byte {
	var b bytes.Buffer
	z, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	z.Write(data)
	z.Close()
	return b.Bytes()
}
